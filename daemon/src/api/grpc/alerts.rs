//! `AlertService`: Subscribe (snapshot or resume, then live, gap-free), Get, List,
//! Acknowledge, Resolve, AddNote, Dispatch (in `dispatch.rs`).
//!
//! A subscription first joins the fan-out hub (`fanout.rs`), then reads the store, so
//! every change is either in what it read or still to come on its feed, which carries
//! only the changes its filter takes; changes at or below the last seq sent are skipped,
//! so none is sent twice. A subscriber too slow for its feed (the hub had no room for a
//! change) is told so, catches up from the change log and goes on: a slow client is never
//! a gap, and never slows anyone else. With `exclude_muted`, changes of silenced or inhibited alerts are
//! left out everywhere (snapshot, catch-up, live): such a subscriber sees an alert from its
//! first unmuted change on.

use std::{sync::Arc, time::Duration};

use gridsight_proto::{ts_from_millis, v1 as pb};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::{Request, Response, Status};

use super::{expand_grids, invalid, page, ApiError};
use crate::{
    api::auth::{Auth, Perm},
    correlate::{silence::is_muted, Action, Command, Router},
    domain::{now_ms, GridIndex, Severity},
    store::{read, Store},
    telemetry::Metrics,
};

pub use super::subscription::Subscription;
use super::{
    fanout::{Fanout, Live},
    subscription::{self, Ended, Msg, Tx},
};

/// Change log rows read per query while catching up.
const CATCH_UP_PAGE: u32 = 1000;

/// The service.
#[derive(Clone)]
pub struct AlertApi {
    /// Tokens.
    pub auth: Auth,
    /// Where commands go.
    pub router: Router,
    /// Reads and the bus.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Seconds between heartbeats.
    pub heartbeat: Duration,
    /// Ends subscriptions at shutdown.
    pub cancel: CancellationToken,
    /// Subscription tasks, joined at shutdown.
    pub tasks: TaskTracker,
    /// Live alert changes and camera events, each handed only to the subscriptions whose
    /// filter takes it.
    pub fanout: Fanout,
    /// Where dispatches step incidents.
    pub desk: crate::incidents::Desk,
}

/// What a subscription wants to see.
#[derive(Clone)]
pub(crate) struct Filter {
    grids: Option<Vec<String>>,
    min_severity: i32,
    exclude_muted: bool,
    index: Arc<GridIndex>,
}

impl Filter {
    fn matches(&self, a: &pb::Alert) -> bool {
        self.matches_beyond_grid(a)
            && self
                .grids
                .as_ref()
                .is_none_or(|gs| gs.iter().any(|g| self.index.is_within(&a.grid_id, g)))
    }

    /// The severity and muting parts of [`Filter::matches`] (the fan-out finds the grids
    /// through its index).
    pub(super) fn matches_beyond_grid(&self, a: &pb::Alert) -> bool {
        !(self.exclude_muted && is_muted(a)) && a.severity >= self.min_severity
    }

    /// The grids asked for (empty: all).
    pub(super) fn grid_ids(&self) -> &[String] {
        self.grids.as_deref().unwrap_or_default()
    }
}

/// Checks a subscription against the grid tree and the change log's range
/// (`pruned`..=`last`): every grid known, the severity one of ours, a resume cursor inside
/// the log (else OUT_OF_RANGE).
pub(crate) fn check_filter(
    r: &pb::SubscribeAlertsRequest,
    grids: &Arc<GridIndex>,
    pruned: u64,
    last: u64,
) -> Result<Filter, ApiError> {
    for (i, g) in r.grid_ids.iter().enumerate() {
        if !grids.contains(g) {
            return Err(invalid(
                format!("grid_ids[{i}]"),
                format!("unknown grid `{g}`"),
            ));
        }
    }
    if r.min_severity != 0 && Severity::from_pb(r.min_severity).is_none() {
        return Err(invalid("min_severity", "unknown severity"));
    }
    if r.resume_after_seq > 0 {
        if r.resume_after_seq < pruned {
            return Err(ApiError::OutOfRange(format!(
                "resume_after_seq {} is older than retention (changes up to {pruned} were deleted); subscribe afresh with 0",
                r.resume_after_seq
            )));
        }
        if r.resume_after_seq > last {
            return Err(ApiError::OutOfRange(format!(
                "resume_after_seq {} is ahead of the newest change {last}",
                r.resume_after_seq
            )));
        }
    }
    Ok(Filter {
        grids: (!r.grid_ids.is_empty()).then(|| r.grid_ids.clone()),
        min_severity: r.min_severity,
        exclude_muted: r.exclude_muted,
        index: grids.clone(),
    })
}

/// Checks an operator's command before the alert is read: `id` given, `expected_version`
/// given (but for a note), the text at most 2000 bytes (and not blank for a note).
pub(crate) fn check_command(
    id: &str,
    expected_version: u64,
    note: &str,
    is_note: bool,
) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(invalid("id", "required"));
    }
    if expected_version == 0 && !is_note {
        return Err(invalid("expected_version", "required: the version you saw"));
    }
    // A note's text is `text` on the wire (AddNote); Acknowledge and Resolve call it `note`.
    let text_field = if is_note { "text" } else { "note" };
    if note.len() > 2000 {
        return Err(invalid(text_field, "at most 2000 bytes"));
    }
    if is_note && note.trim().is_empty() {
        return Err(invalid(text_field, "required: the note's text"));
    }
    Ok(())
}

fn change_msg(c: pb::AlertChange) -> subscription::Item {
    one(pb::subscribe_alerts_response::Event::Change(c))
}

fn one(e: pb::subscribe_alerts_response::Event) -> subscription::Item {
    Ok(Msg::One(Box::new(pb::SubscribeAlertsResponse {
        event: Some(e),
    })))
}

impl AlertApi {
    fn check_subscribe(&self, r: &pb::SubscribeAlertsRequest) -> Result<Filter, ApiError> {
        use std::sync::atomic::Ordering::Acquire;
        let seqs = &self.store.seqs;
        check_filter(
            r,
            self.router.grids(),
            seqs.pruned_through.load(Acquire),
            seqs.last.load(Acquire),
        )
    }

    /// Starts a subscription (gRPC `Subscribe`, or the WebSocket of `api::ws`): checks the
    /// request, then a task sends the snapshot or the catch-up, then live changes, into the
    /// returned receiver until it is dropped or the server stops (a last `UNAVAILABLE`).
    ///
    /// Backpressure: the receiver holds 256 messages; when it is full the task waits, and
    /// meanwhile it lags on the live bus, which it then catches up on from the change log.
    /// So a slow subscriber delays only itself, and never gets a gap.
    pub fn open(
        &self,
        r: pb::SubscribeAlertsRequest,
        who: &crate::api::auth::Identity,
    ) -> Result<Subscription, ApiError> {
        let f = self.check_subscribe(&r)?;
        // Counted against the caller's limits only once the request is valid; given back
        // when the stream ends, however it ends.
        let guard = self.auth.limits.open_stream(&who.name)?;
        let stall = Duration::from_secs(self.auth.limits.config().subscriber_stall_secs);
        let (tx, cut, sub) = subscription::channel(stall);
        let this = self.clone();
        let metrics = self.metrics.clone();
        let token = who.name.clone();
        self.tasks.spawn(async move {
            metrics.subscribers.inc();
            if this.stream(r, f, &tx).await == Err(Ended::Stalled) {
                metrics.subscribers_cut.inc();
                tracing::warn!(token = %token, stall_secs = stall.as_secs(), "subscriber read nothing with its queue full: cut off (it resumes with resume_after_seq)");
                // Before `tx` drops, so that the client reads the status, not an end.
                let _ = cut.send(subscription::stalled(stall));
            }
            drop(tx);
            metrics.subscribers.dec();
            drop(guard);
        });
        Ok(sub)
    }

    /// Sends every change after `last` from the change log; returns the new last seq.
    async fn catch_up(&self, mut last: u64, f: &Filter, tx: &Tx) -> Result<u64, Ended> {
        loop {
            let after = last;
            let page = self
                .store
                .read(move |c| read::changes_after(c, after, CATCH_UP_PAGE))
                .await
                .map_err(|_| Ended::Gone)?;
            let n = page.len();
            for c in page {
                last = c.seq;
                if c.alert.as_ref().is_some_and(|a| f.matches(a)) {
                    tx.send(change_msg(c)).await?;
                }
            }
            if n < CATCH_UP_PAGE as usize {
                return Ok(last);
            }
        }
    }

    async fn stream(self, r: pb::SubscribeAlertsRequest, f: Filter, tx: &Tx) -> Result<(), Ended> {
        // Joined before the store is read: every change the read does not hold comes
        // through the feed (see `fanout`).
        let (mut feed, _member) = self.fanout.join(f.clone()).await.map_err(|_| Ended::Gone)?;
        let mut last = if r.resume_after_seq == 0 {
            let (open, cursor) = self
                .store
                .read(read::open_alerts)
                .await
                .map_err(|_| Ended::Gone)?;
            let mut shown = 0;
            for a in open.into_iter().filter(|a| f.matches(a)) {
                shown += 1;
                let c = pb::AlertChange {
                    seq: a.seq,
                    kind: pb::ChangeKind::Snapshot as i32,
                    alert: Some(a),
                };
                tx.send(change_msg(c)).await?;
            }
            let end = pb::SnapshotEnd {
                cursor,
                open_alerts: shown,
            };
            tx.send(one(pb::subscribe_alerts_response::Event::SnapshotEnd(end)))
                .await?;
            cursor
        } else {
            r.resume_after_seq
        };
        last = self.catch_up(last, &f, tx).await?;
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable(format!("server shutting down; resume after seq {last}")))).await;
                    return Ok(());
                }
                _ = tx.closed() => return Ok(()),
                live = feed.recv() => match live {
                    // The feed holds only what the filter takes, in seq order; what the
                    // store read already sent is skipped.
                    Some(Live::Change(c)) if c.change.seq > last => {
                        last = c.change.seq;
                        tx.send(Ok(Msg::Shared(c))).await?;
                    }
                    Some(Live::Change(_)) => {}
                    // Changes were lost on the way: they are in the change log.
                    Some(Live::Lagged) => last = self.catch_up(last, &f, tx).await?,
                    Some(Live::Camera(e)) => {
                        tx.send(one(pb::subscribe_alerts_response::Event::CameraEvent((*e).clone())))
                            .await?;
                    }
                    // The hub stopped: the daemon is shutting down.
                    None => return Ok(()),
                },
                _ = beat.tick() => {
                    let hb = pb::Heartbeat {
                        last_seq: self.store.seqs.last.load(std::sync::atomic::Ordering::Acquire),
                        server_time: Some(ts_from_millis(now_ms())),
                    };
                    tx.send(one(pb::subscribe_alerts_response::Event::Heartbeat(hb)))
                        .await?;
                }
            }
        }
    }

    /// The stored alert `id`, or NOT_FOUND naming it.
    pub(super) async fn read_alert(&self, id: &str) -> Result<pb::Alert, ApiError> {
        let key = id.to_string();
        self.store
            .read(move |c| read::get_alert(c, &key))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("alert {id} not found")))
    }

    /// An operator's action on an alert (acknowledge, resolve), attributed to `actor`;
    /// returns the alert once the change is durable (and so on every stream).
    pub(crate) async fn command(
        &self,
        id: String,
        expected_version: u64,
        note: String,
        action: Action,
        actor: String,
    ) -> Result<pb::Alert, ApiError> {
        check_command(&id, expected_version, &note, matches!(action, Action::Note))?;
        let alert = self.read_alert(&id).await?;
        if alert.status == pb::AlertStatus::Resolved as i32 {
            return Err(ApiError::FailedPrecondition(format!(
                "alert {id} is resolved"
            )));
        }
        let cmd = Command {
            alert_id: id,
            action,
            expected_version,
            actor,
            note,
        };
        Ok(self.router.command(&alert.grid_id, cmd).await?)
    }
}

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for AlertApi {
    type SubscribeStream = Subscription;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeAlertsRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let who = self.auth.grpc(&req, Perm::Read)?;
        let rx = self.open(req.into_inner(), &who)?;
        Ok(Response::new(rx))
    }

    async fn get(&self, req: Request<pb::GetAlertRequest>) -> Result<Response<pb::Alert>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let id = req.into_inner().id;
        if id.is_empty() {
            return Err(invalid("id", "required").into());
        }
        Ok(Response::new(self.read_alert(&id).await?))
    }

    async fn list(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let r = req.into_inner();
        if r.min_severity != 0 && Severity::from_pb(r.min_severity).is_none() {
            return Err(invalid("min_severity", "unknown severity").into());
        }
        if r.status != 0 && pb::AlertStatus::try_from(r.status).is_err() {
            return Err(invalid("status", "unknown status").into());
        }
        let filter = read::AlertFilter {
            grids: expand_grids(self.router.grids(), &r.grid_ids, "grid_ids")?,
            min_severity: r.min_severity,
            status: r.status,
        };
        let page = page(r.page_size, &r.page_token)?;
        let (alerts, next_page_token) = self
            .store
            .read(move |c| read::list_alerts(c, &filter, page))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListAlertsResponse {
            alerts,
            next_page_token,
        }))
    }

    async fn acknowledge(
        &self,
        req: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let r = req.into_inner();
        let a = self
            .command(
                r.id,
                r.expected_version,
                r.note,
                Action::Acknowledge,
                who.name,
            )
            .await?;
        Ok(Response::new(a))
    }

    async fn resolve(
        &self,
        req: Request<pb::ResolveAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let r = req.into_inner();
        let a = self
            .command(r.id, r.expected_version, r.note, Action::Resolve, who.name)
            .await?;
        Ok(Response::new(a))
    }

    async fn add_note(
        &self,
        req: Request<pb::AddAlertNoteRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let r = req.into_inner();
        let a = self
            .command(r.id, 0, r.text, Action::Note, who.name)
            .await?;
        Ok(Response::new(a))
    }

    async fn dispatch(
        &self,
        req: Request<pb::DispatchAlertRequest>,
    ) -> Result<Response<pb::DispatchAlertResponse>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let r = req.into_inner();
        let deadline_ms = r.deadline.as_ref().map(gridsight_proto::millis_from_ts);
        let (alert, incident) = self
            .dispatch_alert(
                r.id,
                r.expected_version,
                r.department,
                deadline_ms,
                r.note,
                who.name,
            )
            .await?;
        Ok(Response::new(pb::DispatchAlertResponse {
            alert: Some(alert),
            incident: Some(incident),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_muted_leaves_out_silenced_and_inhibited_alerts_only() {
        let f = |exclude_muted| Filter {
            grids: None,
            min_severity: 0,
            exclude_muted,
            index: Arc::new(GridIndex::default()),
        };
        let plain = pb::Alert::default();
        let silenced = pb::Alert {
            silenced_by: "sil-1".into(),
            ..Default::default()
        };
        let inhibited = pb::Alert {
            inhibited_by: "ALR-000001".into(),
            ..Default::default()
        };
        assert!(f(true).matches(&plain));
        assert!(!f(true).matches(&silenced));
        assert!(!f(true).matches(&inhibited));
        assert!(f(false).matches(&silenced) && f(false).matches(&inhibited));
    }
}
