//! Supervision of deadlines: overdue incidents raise an alert.
//!
//! Every `incidents.overdue_check_secs` the task looks for incidents DISPATCHED or
//! IN_PROGRESS whose deadline has passed and that are not yet `overdue`. Each one is first
//! marked `overdue` through the [`Desk`] (version + 1, durable), then a supervision alert
//! is raised through the correlator under the key `incident/{id}/overdue`, with the
//! incident as evidence (so the alert's `incident_ids` names it). Marking first means a
//! crash between the two loses at most that one alert, never raises it twice; the task is
//! joined before the correlator stops, so a shutdown does not cut it in between.

use std::{sync::Arc, time::Duration};

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};
use tokio_util::sync::CancellationToken;

use super::{days, desk::Desk};
use crate::{
    config::{DepartmentConfig, IncidentsConfig},
    correlate::{RaiseAlert, Router, ShardMsg},
    domain::now_ms,
    store::{figures, Store},
    telemetry::Metrics,
};

/// The overdue check and what it needs.
pub struct Supervision {
    /// Where incidents are marked.
    pub desk: Desk,
    /// Where alerts are raised.
    pub router: Router,
    /// Where due incidents are found.
    pub store: Store,
    /// Interval and severity.
    pub cfg: IncidentsConfig,
    /// The centre's time zone (minutes east of UTC), for the deadline in titles.
    pub utc_offset_minutes: i32,
    /// Counts overdue incidents.
    pub metrics: Arc<Metrics>,
}

impl Supervision {
    /// Checks every `overdue_check_secs` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_secs(self.cfg.overdue_check_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.check(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(overdue = n, "overdue incidents raised"),
                Err(e) => tracing::warn!(error = %e, "overdue check failed"),
            }
        }
    }

    /// One pass at `now`: returns how many incidents became overdue.
    pub async fn check(&self, now: i64) -> Result<usize, super::DeskError> {
        let due = self
            .store
            .read(move |c| figures::due_incidents(c, now))
            .await?;
        let mut raised = 0;
        for id in due {
            let Some(inc) = self.desk.mark_overdue(&id, now).await? else {
                continue;
            };
            self.metrics.incidents_overdue.inc();
            let alert = RaiseAlert {
                key: format!("incident/{}/overdue", inc.id),
                severity: self.cfg.supervision_severity,
                title: title(&inc, self.desk.departments(), self.utc_offset_minutes, now),
                grid: inc.grid_id.clone(),
                evidence: pb::Evidence {
                    time: Some(ts_from_millis(now)),
                    item: Some(pb::evidence::Item::Incident(Box::new(inc.clone()))),
                },
            };
            if self
                .router
                .send(&inc.grid_id, ShardMsg::Raise(alert))
                .await
                .is_err()
            {
                tracing::warn!(incident = %inc.id, "correlator stopped: overdue alert not raised");
                break;
            }
            raised += 1;
        }
        Ok(raised)
    }
}

/// E.g. "Overdue: Safety hazard report SH-01 dispatched to Fire brigade, deadline 14:05"
/// (the deadline in the centre's time, with its date when it is not the day of `now_ms`).
pub fn title(
    inc: &pb::Incident,
    departments: &[DepartmentConfig],
    offset_min: i32,
    now_ms: i64,
) -> String {
    let department = departments
        .iter()
        .find(|d| d.id == inc.department)
        .map(|d| d.name.as_str())
        .unwrap_or(&inc.department);
    let deadline = inc
        .deadline
        .as_ref()
        .map(|d| {
            let ms = millis_from_ts(d);
            let (day, hm) = (days::day_of(ms, offset_min), days::hh_mm(ms, offset_min));
            if day == days::day_of(now_ms, offset_min) {
                hm
            } else {
                format!("{} {hm}", days::format_day(day))
            }
        })
        .unwrap_or_else(|| "none".into());
    format!(
        "Overdue: {} report {} dispatched to {department}, deadline {deadline}",
        category_name(inc.category),
        inc.item_code
    )
}

/// "Safety hazard" for SAFETY_HAZARD; "Incident" when unknown.
fn category_name(c: i32) -> String {
    match pb::IncidentCategory::try_from(c) {
        Ok(pb::IncidentCategory::Unspecified) | Err(_) => "Incident".into(),
        Ok(cat) => {
            let words = cat.as_str_name().to_ascii_lowercase().replace('_', " ");
            let mut chars = words.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_names_category_item_department_and_local_deadline() {
        // 2026-11-23 06:05 UTC = 14:05 at UTC+08:00.
        let deadline =
            days::day_start(days::parse_day("2026-11-23").unwrap(), 0) + 6 * 3_600_000 + 5 * 60_000;
        let inc = pb::Incident {
            category: pb::IncidentCategory::SafetyHazard as i32,
            item_code: "SH-01".into(),
            department: "fire".into(),
            deadline: Some(ts_from_millis(deadline)),
            ..Default::default()
        };
        let deps = [DepartmentConfig {
            id: "fire".into(),
            name: "Fire brigade".into(),
        }];
        let a_day_later = deadline + 86_400_000;
        assert_eq!(
            title(&inc, &deps, 480, deadline + 60_000),
            "Overdue: Safety hazard report SH-01 dispatched to Fire brigade, deadline 14:05"
        );
        assert_eq!(
            category_name(pb::IncidentCategory::PublicService as i32),
            "Public service"
        );
        assert_eq!(category_name(0), "Incident");
        assert_eq!(
            title(&inc, &[], 0, a_day_later),
            "Overdue: Safety hazard report SH-01 dispatched to fire, deadline 2026-11-23 06:05"
        );
    }
}
