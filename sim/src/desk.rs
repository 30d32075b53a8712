//! An operator desk bot: moves reported incidents along their lifecycle over gRPC
//! (`IncidentService.List` and `Transition` with an operator token), so the demo's figures
//! of the day are not all zero.
//!
//! Every `interval` it lists the newest incidents and gives each one that has rested at
//! least `step_after` one step: most are accepted, dispatched to a random department with
//! a deadline a few minutes ahead, taken in hand, resolved and closed; a few are found
//! unfounded, and some dispatched ones are left alone past their deadline so the daemon's
//! supervision raises overdue alerts. Refusals (a race with a human operator) are counted
//! and skipped: the next round reads the incident again.

use std::time::Duration;

use gridsight_proto::{
    millis_from_ts, ts_from_millis,
    v1::{
        incident_service_client::IncidentServiceClient, Incident, IncidentStatus as S,
        ListIncidentsRequest, TransitionIncidentRequest,
    },
};
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::{
    now_unix_ms,
    reporter::{connect_with_retry, endpoint, BearerAuth},
    SimError,
};

/// What the desk does and how fast.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// E.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// Bearer token of an operator (or integrator).
    pub token: String,
    /// Department ids to dispatch to.
    pub departments: Vec<String>,
    /// Time between two rounds.
    pub interval: Duration,
    /// An incident rests at least this long between two steps.
    pub step_after: Duration,
    /// Deadlines given when dispatching: between these many seconds ahead.
    pub deadline_secs: (u64, u64),
    /// Share of dispatched incidents left alone until they are overdue.
    pub neglect_ratio: f64,
    /// Seed of the choices.
    pub seed: u64,
}

impl DeskConfig {
    /// Defaults: a round every 5 s, 20 s between steps, deadlines 2–10 min ahead, one in
    /// five dispatched incidents neglected.
    pub fn new(
        endpoint: impl Into<String>,
        token: impl Into<String>,
        departments: Vec<String>,
    ) -> Self {
        DeskConfig {
            endpoint: endpoint.into(),
            token: token.into(),
            departments,
            interval: Duration::from_secs(5),
            step_after: Duration::from_secs(20),
            deadline_secs: (120, 600),
            neglect_ratio: 0.2,
            seed: 7,
        }
    }
}

/// The step the desk takes on `inc` at `now_ms`, if any.
pub fn next_step(
    inc: &Incident,
    cfg: &DeskConfig,
    now_ms: i64,
    rng: &mut impl Rng,
) -> Option<TransitionIncidentRequest> {
    let last = inc
        .updated_at
        .or(inc.reported_at)
        .map(|t| millis_from_ts(&t))
        .unwrap_or(0);
    if now_ms - last < cfg.step_after.as_millis() as i64 {
        return None;
    }
    let mut r = TransitionIncidentRequest {
        id: inc.id.clone(),
        expected_version: inc.version,
        ..Default::default()
    };
    let to = match S::try_from(inc.status).ok()? {
        S::Reported if rng.random_bool(0.05) => S::Unfounded,
        S::Reported => S::Accepted,
        S::Accepted => {
            r.department = cfg.departments.choose(rng)?.clone();
            let (lo, hi) = cfg.deadline_secs;
            let secs = rng.random_range(lo.min(hi)..=hi.max(lo)) as i64;
            r.deadline = Some(ts_from_millis(now_ms + secs * 1000));
            S::Dispatched
        }
        // Neglected: nobody starts on it until it is overdue.
        S::Dispatched if !inc.overdue && rng.random_bool(cfg.neglect_ratio.clamp(0.0, 1.0)) => {
            return None
        }
        S::Dispatched => S::InProgress,
        S::InProgress => S::Resolved,
        S::Resolved => S::Closed,
        _ => return None,
    };
    r.to = to as i32;
    Some(r)
}

/// Runs the desk until `cancel`; returns the steps taken. Only a bad configuration is an
/// error.
pub async fn run_desk(cfg: DeskConfig, cancel: CancellationToken) -> Result<u64, SimError> {
    if cfg.departments.is_empty() {
        return Err(SimError::InvalidConfig("desk: no departments".into()));
    }
    let auth = BearerAuth::new(&cfg.token)?;
    let endpoint = endpoint(&cfg.endpoint, Duration::from_secs(5))?;
    let Some(channel) = connect_with_retry(&endpoint, &cfg.endpoint, &cancel).await else {
        return Ok(0);
    };
    let mut client = IncidentServiceClient::with_interceptor(channel, auth);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut taken, mut refused) = (0u64, 0u64);
    let mut tick = tokio::time::interval(cfg.interval.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let list = ListIncidentsRequest {
            page_size: 500,
            ..Default::default()
        };
        let incidents = match client.list(list).await {
            Ok(r) => r.into_inner().incidents,
            Err(status) => {
                tracing::debug!(code = ?status.code(), "desk: list failed");
                continue;
            }
        };
        for inc in incidents {
            let Some(step) = next_step(&inc, &cfg, now_unix_ms(), &mut rng) else {
                continue;
            };
            match client.transition(step).await {
                Ok(_) => taken += 1,
                Err(status) => {
                    refused += 1;
                    tracing::debug!(incident = %inc.id, code = ?status.code(), "desk: step refused");
                }
            }
        }
    }
    tracing::info!(taken, refused, "desk stopped");
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_move_one_step_at_a_time_after_a_rest() {
        let mut cfg = DeskConfig::new("http://x", "t", vec!["fire".into()]);
        cfg.neglect_ratio = 0.0;
        let mut rng = StdRng::seed_from_u64(1);
        let mut inc = Incident {
            id: "INC-000001".into(),
            status: S::Accepted as i32,
            version: 2,
            updated_at: Some(ts_from_millis(1_000)),
            ..Default::default()
        };
        assert!(
            next_step(&inc, &cfg, 1_000 + 19_999, &mut rng).is_none(),
            "resting"
        );
        let now = 1_000 + 20_000;
        let r = next_step(&inc, &cfg, now, &mut rng).expect("dispatch");
        assert_eq!((r.to, r.expected_version), (S::Dispatched as i32, 2));
        assert_eq!(r.department, "fire");
        let deadline = millis_from_ts(&r.deadline.expect("deadline")) - now;
        assert!((120_000..=600_000).contains(&deadline), "{deadline}");
        for (from, to) in [
            (S::Dispatched, Some(S::InProgress)),
            (S::InProgress, Some(S::Resolved)),
            (S::Resolved, Some(S::Closed)),
            (S::Closed, None),
            (S::Cancelled, None),
        ] {
            inc.status = from as i32;
            let got = next_step(&inc, &cfg, now, &mut rng).map(|r| r.to);
            assert_eq!(got, to.map(|s| s as i32), "{from:?}");
        }
        cfg.neglect_ratio = 1.0;
        inc.status = S::Dispatched as i32;
        assert!(next_step(&inc, &cfg, now, &mut rng).is_none(), "neglected");
        inc.overdue = true;
        assert!(
            next_step(&inc, &cfg, now, &mut rng).is_some(),
            "taken up once overdue"
        );
    }
}
