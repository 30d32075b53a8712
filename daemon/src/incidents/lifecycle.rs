//! The incident lifecycle: which steps are allowed, what a step needs, what it changes.
//!
//! Pure: no store, no clock (the time is passed in). Invariants kept by [`apply`]:
//! - a step is taken only from the version the caller saw (else [`LifecycleError::Stale`]),
//!   and only along [`allowed`] (else [`LifecycleError::NotAllowed`]);
//! - every step appends one [`pb::IncidentStep`] (from, to, at, actor, note and the
//!   department/deadline or duplicate it carried), bumps `version` by one and sets
//!   `updated_at`, so `steps` is the incident's whole history, oldest first;
//! - `overdue` only survives a step to IN_PROGRESS: a re-dispatch brings a new deadline,
//!   every other step leaves the supervised states.
//!
//! ```text
//! REPORTED ──► ACCEPTED ──► DISPATCHED ◄──► IN_PROGRESS ◄──► RESOLVED ──► CLOSED
//!    │            │          │   ↺ re-dispatch               (reopened)
//!    ├────────────┼──────────┴──► CANCELLED
//!    └────────────┴─────────────► UNFOUNDED, DUPLICATE
//! ```
//! CLOSED, CANCELLED, UNFOUNDED and DUPLICATE are final.

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};
use pb::IncidentStatus as S;

use crate::config::{valid_id, DepartmentConfig};

/// Why a step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// A request field is missing or wrong.
    #[error("{field}: {message}")]
    Field {
        /// The request field, e.g. `deadline`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The caller's `expected_version` is not the incident's.
    #[error("incident {id} is at version {current}, not {expected}: read it again")]
    Stale {
        /// The incident.
        id: String,
        /// Its version now.
        current: u64,
        /// What the caller sent.
        expected: u64,
    },
    /// The lifecycle has no such step.
    #[error("incident {id} cannot go from {} to {}", name(*.from), name(*.to))]
    NotAllowed {
        /// The incident.
        id: String,
        /// Where it is.
        from: S,
        /// Where the caller wanted it.
        to: S,
    },
}

/// The status's name without the enum prefix, e.g. `IN_PROGRESS`.
pub fn name(s: S) -> &'static str {
    let n = s.as_str_name();
    n.strip_prefix("INCIDENT_STATUS_").unwrap_or(n)
}

/// Whether the lifecycle allows the step `from` → `to`.
pub fn allowed(from: S, to: S) -> bool {
    use S::*;
    matches!(
        (from, to),
        (Reported, Accepted | Cancelled | Unfounded | Duplicate)
            | (Accepted, Dispatched | Cancelled | Unfounded | Duplicate)
            | (Dispatched, InProgress | Dispatched | Cancelled)
            | (InProgress, Resolved | Dispatched)
            | (Resolved, Closed | InProgress)
    )
}

/// The next step on the way from `from` to DISPATCHED (a re-dispatch from DISPATCHED or
/// IN_PROGRESS, reopening a RESOLVED one first); `None` when there is no way.
pub fn toward_dispatch(from: S) -> Option<S> {
    match from {
        S::Reported => Some(S::Accepted),
        S::Accepted | S::Dispatched | S::InProgress => Some(S::Dispatched),
        S::Resolved => Some(S::InProgress),
        _ => None,
    }
}

/// Whether nothing follows `s` (closed, cancelled, unfounded, duplicate).
pub fn is_final(s: S) -> bool {
    matches!(s, S::Closed | S::Cancelled | S::Unfounded | S::Duplicate)
}

/// Whether the incident is with a department and its deadline is watched.
pub fn is_supervised(s: S) -> bool {
    matches!(s, S::Dispatched | S::InProgress)
}

/// One step asked for, as checked by [`StepRequest::from_pb`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRequest {
    /// The status to move to.
    pub to: S,
    /// The version the caller saw.
    pub expected_version: u64,
    /// Free text kept with the step.
    pub note: String,
    /// For DISPATCHED: the department.
    pub department: String,
    /// For DISPATCHED: the deadline (ms since the Unix epoch).
    pub deadline_ms: Option<i64>,
    /// For DUPLICATE: the incident this one repeats.
    pub duplicate_of: String,
}

impl StepRequest {
    /// Checks what can be checked without the incident: `to` is a status, DISPATCHED has
    /// a department (one of `departments` when there are any) and a deadline after
    /// `now_ms`, DUPLICATE names another incident. Fields a step does not use are ignored.
    pub fn from_pb(
        r: &pb::TransitionIncidentRequest,
        departments: &[DepartmentConfig],
        now_ms: i64,
    ) -> Result<Self, LifecycleError> {
        let field = |field, message: &str| LifecycleError::Field {
            field,
            message: message.to_string(),
        };
        let to = match S::try_from(r.to) {
            Ok(S::Unspecified) | Err(_) => {
                return Err(field("to", "required: the status to move to"))
            }
            Ok(S::Reported) => return Err(field("to", "an incident is reported only once")),
            Ok(s) => s,
        };
        if r.note.len() > 4000 {
            return Err(field("note", "at most 4000 bytes"));
        }
        let mut step = StepRequest {
            to,
            expected_version: r.expected_version,
            note: r.note.clone(),
            department: String::new(),
            deadline_ms: None,
            duplicate_of: String::new(),
        };
        match to {
            S::Dispatched => {
                if r.department.is_empty() {
                    return Err(field("department", "required to dispatch"));
                }
                if !departments.is_empty() && !departments.iter().any(|d| d.id == r.department) {
                    let known: Vec<&str> = departments.iter().map(|d| d.id.as_str()).collect();
                    return Err(LifecycleError::Field {
                        field: "department",
                        message: format!(
                            "unknown department `{}`; one of {}",
                            r.department,
                            known.join(", ")
                        ),
                    });
                }
                if !valid_id(&r.department) {
                    return Err(field(
                        "department",
                        "1-64 of letters, digits, `-`, `_`, `.`",
                    ));
                }
                let deadline = r
                    .deadline
                    .as_ref()
                    .ok_or_else(|| field("deadline", "required to dispatch"))?;
                let deadline = millis_from_ts(deadline);
                if deadline <= now_ms {
                    return Err(field("deadline", "must be in the future"));
                }
                step.department = r.department.clone();
                step.deadline_ms = Some(deadline);
            }
            S::Duplicate => {
                if r.duplicate_of.is_empty() {
                    return Err(field("duplicate_of", "required: the incident this repeats"));
                }
                if r.duplicate_of == r.id {
                    return Err(field("duplicate_of", "an incident cannot duplicate itself"));
                }
                step.duplicate_of = r.duplicate_of.clone();
            }
            _ => {}
        }
        Ok(step)
    }
}

/// The first step of every incident: reported by `actor` at its `reported_at`.
pub fn reported_step(reported_at: Option<prost_types::Timestamp>, actor: &str) -> pb::IncidentStep {
    pb::IncidentStep {
        from: S::Unspecified as i32,
        to: S::Reported as i32,
        at: reported_at,
        actor: actor.to_string(),
        ..Default::default()
    }
}

/// Takes the step on `inc` at `now_ms` for `actor`, or says why not (and leaves `inc`
/// unchanged).
pub fn apply(
    inc: &mut pb::Incident,
    step: &StepRequest,
    actor: &str,
    now_ms: i64,
) -> Result<(), LifecycleError> {
    if inc.version != step.expected_version {
        return Err(LifecycleError::Stale {
            id: inc.id.clone(),
            current: inc.version,
            expected: step.expected_version,
        });
    }
    let from = S::try_from(inc.status).unwrap_or(S::Unspecified);
    if !allowed(from, step.to) {
        return Err(LifecycleError::NotAllowed {
            id: inc.id.clone(),
            from,
            to: step.to,
        });
    }
    let at = Some(ts_from_millis(now_ms));
    let deadline = step.deadline_ms.map(ts_from_millis);
    inc.steps.push(pb::IncidentStep {
        from: from as i32,
        to: step.to as i32,
        at,
        actor: actor.to_string(),
        note: step.note.clone(),
        department: step.department.clone(),
        deadline,
        duplicate_of: step.duplicate_of.clone(),
    });
    match step.to {
        S::Dispatched => {
            inc.department = step.department.clone();
            inc.deadline = deadline;
        }
        S::Duplicate => inc.duplicate_of = step.duplicate_of.clone(),
        _ => {}
    }
    if step.to != S::InProgress {
        inc.overdue = false;
    }
    inc.status = step.to as i32;
    inc.version += 1;
    inc.updated_at = at;
    Ok(())
}

/// Marks a supervised incident past its deadline as overdue (version + 1). Returns false,
/// changing nothing, when it is not supervised, already overdue, or not yet due.
pub fn mark_overdue(inc: &mut pb::Incident, now_ms: i64) -> bool {
    let supervised = S::try_from(inc.status).is_ok_and(is_supervised);
    let due = inc
        .deadline
        .as_ref()
        .is_some_and(|d| millis_from_ts(d) < now_ms);
    if !supervised || inc.overdue || !due {
        return false;
    }
    inc.overdue = true;
    inc.version += 1;
    inc.updated_at = Some(ts_from_millis(now_ms));
    true
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
