//! The incident desk: every change to an existing incident goes through here.
//!
//! A change is read–check–write under the incident's lock: read the stored incident, let
//! the lifecycle decide, write the new version through the store and wait until it is
//! durable. Locks are striped by incident id (a fixed set of async mutexes, no map that
//! grows), so two changes of one incident never interleave: of two `Transition` calls with
//! the same `expected_version`, the second reads the first's result and gets `Stale`.
//! Reports create incidents through the correlator instead; an incident is only changed
//! here once its report is durable, so the two never race.
//!
//! An incident linked to an alert (`alert_id`) shows each step on that alert: still under
//! the incident's lock, once the step is durable, the desk sends the alert's shard an
//! [`Action::Incident`] command (its `incidents` entry and a note naming the step), so
//! the wall and every subscriber see the step in the same order it was taken. A resolved
//! alert is left as it is; the step stands either way.

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use gridsight_proto::v1 as pb;
use tokio::sync::Mutex;

use super::lifecycle::{self, LifecycleError, StepRequest};
use crate::{
    config::DepartmentConfig,
    correlate::{linked, Action, Command, Router},
    store::{read, Record, Store, StoreError},
};

const STRIPES: usize = 64;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// No incident with this id.
    #[error("incident {0} not found")]
    NotFound(String),
    /// The lifecycle refused the step.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// The store failed (or is shutting down).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Serialised, durable changes to incidents. Cheap to clone.
#[derive(Clone)]
pub struct Desk {
    store: Store,
    router: Router,
    departments: Arc<Vec<DepartmentConfig>>,
    locks: Arc<Vec<Mutex<()>>>,
}

impl Desk {
    /// A desk writing through `store`, dispatching to `departments` (empty = any), showing
    /// steps on alerts through `router`.
    pub fn new(store: Store, router: Router, departments: Vec<DepartmentConfig>) -> Self {
        Self {
            store,
            router,
            departments: Arc::new(departments),
            locks: Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()),
        }
    }

    /// The departments incidents may be dispatched to (empty = any).
    pub fn departments(&self) -> &[DepartmentConfig] {
        &self.departments
    }

    /// Takes one lifecycle step on incident `id` for `actor`; returns the incident as
    /// stored, once durable.
    pub async fn transition(
        &self,
        id: &str,
        step: StepRequest,
        actor: &str,
        now_ms: i64,
    ) -> Result<pb::Incident, DeskError> {
        let duplicate_of = step.duplicate_of.clone();
        let who = actor.to_string();
        let departments = self.departments.clone();
        let note = move |inc: &pb::Incident| linked::step_note(inc, &departments);
        self.update(id, actor, &note, move |inc, store_has| {
            lifecycle::apply(inc, &step, &who, now_ms)?;
            // Checked after the version and the step: a stale caller learns that first.
            // On refusal the changed copy is dropped, not written.
            if !duplicate_of.is_empty() && !store_has(&duplicate_of)? {
                return Err(DeskError::Lifecycle(LifecycleError::Field {
                    field: "duplicate_of",
                    message: format!("no incident `{duplicate_of}`"),
                }));
            }
            Ok(true)
        })
        .await?
        .ok_or_else(|| DeskError::NotFound(id.to_string()))
    }

    /// Marks incident `id` overdue if it still is due at `now_ms`; returns it when it was
    /// marked (durably), `None` when there was nothing to do.
    pub async fn mark_overdue(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<pb::Incident>, DeskError> {
        match self
            .update(id, "supervision", &overdue_note, move |inc, _| {
                Ok(lifecycle::mark_overdue(inc, now_ms))
            })
            .await
        {
            Err(DeskError::NotFound(_)) => Ok(None),
            other => other,
        }
    }

    /// Under the lock of `id`: reads it, lets `change` modify it (returning whether it
    /// did), writes it when changed and shows it on its alert as changed by `actor`, with
    /// the note `note` makes of it. `Ok(None)`: unchanged.
    async fn update<F>(
        &self,
        id: &str,
        actor: &str,
        note: &(dyn Fn(&pb::Incident) -> String + Sync),
        change: F,
    ) -> Result<Option<pb::Incident>, DeskError>
    where
        F: FnOnce(
                &mut pb::Incident,
                &dyn Fn(&str) -> Result<bool, StoreError>,
            ) -> Result<bool, DeskError>
            + Send
            + 'static,
    {
        let _guard = self.locks[stripe(id)].lock().await;
        let key = id.to_string();
        let checked = self
            .store
            .read(move |c| {
                let Some(mut inc) = read::get_incident(c, &key)? else {
                    return Ok(Err(DeskError::NotFound(key)));
                };
                let exists = |other: &str| Ok(read::get_incident(c, other)?.is_some());
                Ok(change(&mut inc, &exists).map(|changed| changed.then_some(inc)))
            })
            .await??;
        let Some(inc) = checked else {
            return Ok(None);
        };
        let written = self
            .store
            .write_and_wait(vec![Record::Incident(inc)])
            .await?;
        let inc = written.into_iter().find_map(|r| match r {
            Record::Incident(i) => Some(i),
            _ => None,
        });
        if let Some(inc) = &inc {
            self.show_on_alert(&inc.alert_id, inc, actor, note(inc))
                .await;
        }
        Ok(inc)
    }

    /// Shows `inc` as it stands on alert `alert_id` (none when empty) if that is not
    /// resolved; waits until that change is durable. Never fails the step: a failure is
    /// logged.
    pub(super) async fn show_on_alert(
        &self,
        alert_id: &str,
        inc: &pb::Incident,
        actor: &str,
        note: String,
    ) {
        if alert_id.is_empty() {
            return;
        }
        let id = alert_id.to_string();
        let alert = match self.store.read(move |c| read::get_alert(c, &id)).await {
            Ok(Some(a)) if a.status != pb::AlertStatus::Resolved as i32 => a,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(incident = %inc.id, alert = alert_id, error = %e, "step not shown on its alert");
                return;
            }
        };
        let cmd = Command {
            alert_id: alert.id,
            action: Action::Incident(Box::new(inc.clone())),
            expected_version: 0,
            actor: actor.to_string(),
            note,
        };
        if let Err(e) = self.router.command(&alert.grid_id, cmd).await {
            tracing::debug!(incident = %inc.id, alert = alert_id, error = %e, "step not shown on its alert");
        }
    }

    /// The store this desk writes through.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }
}

/// The alert note of an incident marked overdue.
fn overdue_note(inc: &pb::Incident) -> String {
    format!("{} overdue: not resolved by its deadline", inc.id)
}

fn stripe(id: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() as usize) % STRIPES
}
