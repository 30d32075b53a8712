//! `AlertService.Dispatch` (and the wall's `POST /api/alerts/{id}/dispatch`): checks the
//! request and the alert, then hands the work to the desk
//! ([`crate::incidents::dispatch`]).
//!
//! Checked before anything changes: `id` and `expected_version` given, `department` one of
//! the config's (any valid id when none are configured), `deadline` in the future, `note`
//! at most 2000 bytes; the alert exists (NOT_FOUND), is not resolved
//! (FAILED_PRECONDITION) and is at `expected_version` (ABORTED), so an operator never
//! dispatches what they have not seen.

use gridsight_proto::{ts_from_millis, v1 as pb};

use super::{alerts::AlertApi, invalid, ApiError};
use crate::{
    config::DepartmentConfig,
    correlate::CommandError,
    domain::now_ms,
    incidents::{AlertDispatch, StepRequest},
};

/// The checks of a dispatch that need no alert: `id` and `expected_version` given, `note`
/// at most 2000 bytes, then the lifecycle's own checks of a step to DISPATCHED (the
/// department, a deadline after `now`).
pub(crate) fn check_dispatch(
    id: &str,
    expected_version: u64,
    department: String,
    deadline_ms: Option<i64>,
    note: String,
    departments: &[DepartmentConfig],
    now: i64,
) -> Result<StepRequest, ApiError> {
    if id.is_empty() {
        return Err(invalid("id", "required"));
    }
    if expected_version == 0 {
        return Err(invalid("expected_version", "required: the version you saw"));
    }
    if note.len() > 2000 {
        return Err(invalid("note", "at most 2000 bytes"));
    }
    Ok(StepRequest::from_pb(
        &pb::TransitionIncidentRequest {
            id: id.to_string(),
            to: pb::IncidentStatus::Dispatched as i32,
            department,
            deadline: deadline_ms.map(ts_from_millis),
            note,
            ..Default::default()
        },
        departments,
        now,
    )?)
}

impl AlertApi {
    /// Dispatches the work of alert `id` for `actor`; returns the alert and the incident
    /// as they stand once the dispatch is durable.
    pub(crate) async fn dispatch_alert(
        &self,
        id: String,
        expected_version: u64,
        department: String,
        deadline_ms: Option<i64>,
        note: String,
        actor: String,
    ) -> Result<(pb::Alert, pb::Incident), ApiError> {
        let now = now_ms();
        let step = check_dispatch(
            &id,
            expected_version,
            department,
            deadline_ms,
            note,
            self.desk.departments(),
            now,
        )?;
        let alert = self.read_alert(&id).await?;
        if alert.status == pb::AlertStatus::Resolved as i32 {
            return Err(ApiError::FailedPrecondition(format!(
                "alert {id} is resolved"
            )));
        }
        if alert.version != expected_version {
            return Err(CommandError::Stale {
                id,
                current: alert.version,
                expected: expected_version,
            }
            .into());
        }
        let d = AlertDispatch {
            department: step.department,
            deadline_ms: step.deadline_ms.unwrap_or_default(),
            note: step.note,
        };
        let incident = self.desk.dispatch_alert(&alert, &d, &actor, now).await?;
        tracing::info!(alert = %alert.id, incident = %incident.id, department = %d.department, actor = %actor, "alert dispatched");
        let alert = self.read_alert(&alert.id).await?;
        Ok((alert, incident))
    }
}
