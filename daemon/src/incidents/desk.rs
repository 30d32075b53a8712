//! The incident desk: every change to an existing incident goes through here.
//!
//! A change is read–check–write under the incident's lock: read the stored incident, let
//! the lifecycle decide, write the new version through the store and wait until it is
//! durable. Locks are striped by incident id (a fixed set of async mutexes, no map that
//! grows), so two changes of one incident never interleave: of two `Transition` calls with
//! the same `expected_version`, the second reads the first's result and gets `Stale`.
//! Reports create incidents through the correlator instead; an incident is only changed
//! here once its report is durable, so the two never race.

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use gridsight_proto::v1 as pb;
use tokio::sync::Mutex;

use super::lifecycle::{self, LifecycleError, StepRequest};
use crate::{
    config::DepartmentConfig,
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
    departments: Arc<Vec<DepartmentConfig>>,
    locks: Arc<Vec<Mutex<()>>>,
}

impl Desk {
    /// A desk writing through `store`, dispatching to `departments` (empty = any).
    pub fn new(store: Store, departments: Vec<DepartmentConfig>) -> Self {
        Self {
            store,
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
        let actor = actor.to_string();
        self.update(id, move |inc, store_has| {
            lifecycle::apply(inc, &step, &actor, now_ms)?;
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
            .update(id, move |inc, _| Ok(lifecycle::mark_overdue(inc, now_ms)))
            .await
        {
            Err(DeskError::NotFound(_)) => Ok(None),
            other => other,
        }
    }

    /// Under the lock of `id`: reads it, lets `change` modify it (returning whether it
    /// did), writes it when changed. `Ok(None)`: unchanged.
    async fn update<F>(&self, id: &str, change: F) -> Result<Option<pb::Incident>, DeskError>
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
        Ok(written.into_iter().find_map(|r| match r {
            Record::Incident(i) => Some(i),
            _ => None,
        }))
    }
}

fn stripe(id: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() as usize) % STRIPES
}
