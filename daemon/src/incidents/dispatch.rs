//! Dispatching an alert's work to a department with a deadline (the wall's "dispatch",
//! gRPC `AlertService.Dispatch`).
//!
//! The work is an incident, so the deadline is supervised like any other (overdue raises a
//! supervision alert) and the day's figures count it:
//! - the first incident linked to the alert that is not final (a grid worker's report, or
//!   the incident of an overdue alert) is stepped on to DISPATCHED along the lifecycle
//!   (REPORTED → ACCEPTED → DISPATCHED; a DISPATCHED or IN_PROGRESS one is re-dispatched;
//!   a RESOLVED one is reopened to IN_PROGRESS first);
//! - an alert without one gets a **work order**: an incident of category CENTRAL_TASK in
//!   the alert's grid, item code the alert's id, description its title, reported by the
//!   operator, linked to the alert, with the idempotency key `dispatch/{alert}/v{version}`
//!   (a retry of the same dispatch finds it again, even after a crash between its steps).
//!
//! Every step is a [`Desk::transition`], so each is durable, attributed to the operator and
//! shown on the incident's alert (its `incidents` entry and a note) before the next is
//! taken; the incident of another alert (dispatching from an overdue alert) is shown on the
//! alert dispatched as well. A step
//! refused midway (a stale version: someone else moved the incident) stops the dispatch
//! with that error; the steps already taken stand, and a retry goes on from there.

use gridsight_proto::{ts_from_millis, v1 as pb};
use pb::IncidentStatus as S;

use super::{
    desk::{Desk, DeskError},
    lifecycle::{self, LifecycleError, StepRequest},
};
use crate::{
    correlate::linked,
    store::{read, Record, StoreError},
};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct AlertDispatch {
    /// The department (already checked against the config).
    pub department: String,
    /// The deadline, ms since the Unix epoch (already checked to be in the future).
    pub deadline_ms: i64,
    /// Kept with the DISPATCHED step.
    pub note: String,
}

/// The idempotency key of the work order made when `alert` at `version` is dispatched.
pub fn work_order_key(alert: &str, version: u64) -> String {
    format!("dispatch/{alert}/v{version}")
}

impl Desk {
    /// Dispatches the work of `alert` (as the operator saw it) for `actor`; returns the
    /// incident as dispatched, durable and shown on the alert.
    pub async fn dispatch_alert(
        &self,
        alert: &pb::Alert,
        d: &AlertDispatch,
        actor: &str,
        now_ms: i64,
    ) -> Result<pb::Incident, DeskError> {
        let mut inc = match self.work_of(alert).await? {
            Some(inc) => inc,
            None => self.work_order(alert, actor, now_ms).await?,
        };
        loop {
            let from = S::try_from(inc.status).unwrap_or(S::Unspecified);
            let to =
                lifecycle::toward_dispatch(from).ok_or_else(|| LifecycleError::NotAllowed {
                    id: inc.id.clone(),
                    from,
                    to: S::Dispatched,
                })?;
            let last = to == S::Dispatched;
            let step = StepRequest {
                to,
                expected_version: inc.version,
                note: if last { d.note.clone() } else { String::new() },
                department: if last {
                    d.department.clone()
                } else {
                    String::new()
                },
                deadline_ms: last.then_some(d.deadline_ms),
                duplicate_of: String::new(),
            };
            inc = self.transition(&inc.id, step, actor, now_ms).await?;
            if last {
                // The incident of another alert (an overdue alert's): shown there by the
                // step, and here too.
                if inc.alert_id != alert.id {
                    let note = linked::step_note(&inc, self.departments());
                    self.show_on_alert(&alert.id, &inc, actor, note).await;
                }
                return Ok(inc);
            }
        }
    }

    /// The first linked incident that is not final, else the work order of this dispatch
    /// if one was made already.
    async fn work_of(&self, alert: &pb::Alert) -> Result<Option<pb::Incident>, DeskError> {
        let ids = alert.incident_ids.clone();
        let key = work_order_key(&alert.id, alert.version);
        Ok(self
            .store()
            .read(move |c| {
                for id in &ids {
                    if let Some(inc) = read::get_incident(c, id)? {
                        let status = S::try_from(inc.status).unwrap_or(S::Unspecified);
                        if !lifecycle::is_final(status) {
                            return Ok(Some(inc));
                        }
                    }
                }
                read::incident_by_key(c, &key)
            })
            .await?)
    }

    /// Makes the alert's work order (REPORTED, by `actor`), durable and linked to the alert.
    async fn work_order(
        &self,
        alert: &pb::Alert,
        actor: &str,
        now_ms: i64,
    ) -> Result<pb::Incident, DeskError> {
        let at = Some(ts_from_millis(now_ms));
        let key = work_order_key(&alert.id, alert.version);
        let order = pb::Incident {
            id: self.store().ids.next_incident(),
            idempotency_key: key.clone(),
            category: pb::IncidentCategory::CentralTask as i32,
            item_code: alert.id.clone(),
            description: alert.title.clone(),
            grid_id: alert.grid_id.clone(),
            location: location_of(alert),
            reporter_id: actor.to_string(),
            status: S::Reported as i32,
            reported_at: at,
            version: 1,
            alert_id: alert.id.clone(),
            steps: vec![lifecycle::reported_step(at, actor)],
            updated_at: at,
            ..Default::default()
        };
        let inc = match self
            .store()
            .write_and_wait(vec![Record::Incident(order)])
            .await
        {
            Ok(written) => written.into_iter().find_map(|r| match r {
                Record::Incident(i) => Some(i),
                _ => None,
            }),
            // The key is taken: a concurrent dispatch of the same version made it.
            Err(StoreError::Refused(_)) => {
                self.store()
                    .read(move |c| read::incident_by_key(c, &key))
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        let inc = inc.ok_or(DeskError::Store(StoreError::Closed))?;
        tracing::info!(incident = %inc.id, alert = %alert.id, actor, "work order made for an alert");
        let note = format!("{} work order opened", inc.id);
        self.show_on_alert(&alert.id, &inc, actor, note).await;
        Ok(inc)
    }
}

/// Where the alert's evidence says it is: the first sensor or report with a location.
fn location_of(alert: &pb::Alert) -> Option<pb::LatLon> {
    alert.evidence.iter().find_map(|e| match &e.item {
        Some(pb::evidence::Item::SensorEvent(s)) => s.location,
        Some(pb::evidence::Item::Incident(i)) => i.location,
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_order_key_names_the_alert_and_the_version_dispatched() {
        assert_eq!(work_order_key("ALR-000042", 7), "dispatch/ALR-000042/v7");
    }

    #[test]
    fn the_work_order_is_placed_where_the_first_located_evidence_is() {
        let at = |lat, lon| Some(pb::LatLon { lat, lon });
        let alert = pb::Alert {
            evidence: vec![
                pb::Evidence {
                    item: Some(pb::evidence::Item::CameraEvent(Default::default())),
                    ..Default::default()
                },
                pb::Evidence {
                    item: Some(pb::evidence::Item::SensorEvent(pb::SensorEvent {
                        location: at(30.1, 120.2),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(location_of(&alert), at(30.1, 120.2));
        assert_eq!(location_of(&pb::Alert::default()), None);
    }
}
