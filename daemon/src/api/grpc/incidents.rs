//! `IncidentService`: Report (idempotent, answered once durable), Get, List, Transition.
//!
//! A report is stored with its first lifecycle step (to REPORTED, by the token's name).
//! `Transition` checks the request's fields, then hands the step to the [`Desk`], which
//! serialises changes per incident and answers once the new version is durable.
//!
//! Idempotency: a key already stored returns the stored incident. Two concurrent reports
//! with the same new key are serialised by an in-flight claim, so the second waits for the
//! first to commit and then returns the same incident: one key never makes two incidents.
//!
//! A report with a `location` and no `grid_id` (a phone that knows where it is, not which
//! grid) gets the grid its location lies in (`GridIndex::locate`: the deepest), before it
//! is routed and stored.

use std::{sync::Arc, time::Duration};

use dashmap::DashMap;
use gridsight_proto::{ts_from_millis, v1 as pb};
use tokio::sync::{oneshot, Notify};
use tonic::{Request, Response, Status};

use super::{expand_grids, invalid, page, ApiError};
use crate::{
    api::auth::{Auth, Perm},
    config::valid_id,
    correlate::Router,
    domain::now_ms,
    incidents::{lifecycle, Desk, DeskError, LifecycleError, StepRequest},
    store::{read, Record, Store, StoreError},
    telemetry::{Metrics, StepLabel},
};

/// The service.
#[derive(Clone)]
pub struct IncidentApi {
    /// Tokens.
    pub auth: Auth,
    /// Where reports go.
    pub router: Router,
    /// Reads.
    pub store: Store,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Idempotency keys being reported right now.
    pub inflight: Arc<DashMap<String, Arc<Notify>>>,
    /// Where lifecycle steps are taken.
    pub desk: Desk,
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Field { field, message } => invalid(field, message),
            LifecycleError::Stale { .. } => ApiError::Aborted(e.to_string()),
            LifecycleError::NotAllowed { .. } => ApiError::FailedPrecondition(e.to_string()),
        }
    }
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NotFound(_) => ApiError::NotFound(e.to_string()),
            DeskError::Lifecycle(l) => l.into(),
            DeskError::Store(s) => ApiError::Store(s),
        }
    }
}

/// Checks a report, and fills an empty `grid_id` from its `location`.
pub fn validate_report(
    r: &mut pb::ReportIncidentRequest,
    grids: &crate::domain::GridIndex,
) -> Result<(), ApiError> {
    if r.idempotency_key.is_empty() {
        return Err(invalid("idempotency_key", "required"));
    }
    if r.idempotency_key.len() > 128 {
        return Err(invalid("idempotency_key", "at most 128 bytes"));
    }
    match pb::IncidentCategory::try_from(r.category) {
        Ok(pb::IncidentCategory::Unspecified) | Err(_) => {
            return Err(invalid(
                "category",
                "must be DISPUTE, SAFETY_HAZARD, CENTRAL_TASK or PUBLIC_SERVICE",
            ))
        }
        Ok(_) => {}
    }
    if r.item_code.is_empty() || r.item_code.len() > 32 || !valid_id(&r.item_code) {
        return Err(invalid(
            "item_code",
            "required: 1-32 of letters, digits, `-`, `_`, `.`",
        ));
    }
    if r.description.trim().is_empty() {
        return Err(invalid("description", "required"));
    }
    if r.description.len() > 4000 {
        return Err(invalid("description", "at most 4000 bytes"));
    }
    if let Some(loc) = &r.location {
        if !loc.lat.is_finite() || !(-90.0..=90.0).contains(&loc.lat) {
            return Err(invalid("location.lat", "must be between -90 and 90"));
        }
        if !loc.lon.is_finite() || !(-180.0..=180.0).contains(&loc.lon) {
            return Err(invalid("location.lon", "must be between -180 and 180"));
        }
    }
    if r.grid_id.is_empty() {
        let Some(loc) = &r.location else {
            return Err(invalid("grid_id", "required (or a location inside a grid)"));
        };
        match grids.locate(loc.lon, loc.lat) {
            Some(g) => r.grid_id = g.to_string(),
            None => {
                return Err(invalid(
                    "location",
                    format!(
                        "lat {}, lon {} lies in no grid; give grid_id",
                        loc.lat, loc.lon
                    ),
                ))
            }
        }
    }
    if !grids.contains(&r.grid_id) {
        return Err(invalid("grid_id", format!("unknown grid `{}`", r.grid_id)));
    }
    if !valid_id(&r.reporter_id) {
        return Err(invalid(
            "reporter_id",
            "required: 1-64 of letters, digits, `-`, `_`, `.`",
        ));
    }
    if r.photo_urls.len() > 10 {
        return Err(invalid("photo_urls", "at most 10"));
    }
    for (i, u) in r.photo_urls.iter().enumerate() {
        if u.len() > 2048 || !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(invalid(
                format!("photo_urls[{i}]"),
                "must be an http(s) URL of at most 2048 bytes",
            ));
        }
    }
    Ok(())
}

/// The in-flight claim on an idempotency key; released (and its waiters woken) on drop.
struct Claim<'a> {
    inflight: &'a DashMap<String, Arc<Notify>>,
    key: &'a str,
    notify: Arc<Notify>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inflight
            .remove_if(self.key, |_, n| Arc::ptr_eq(n, &self.notify));
        self.notify.notify_waiters();
    }
}

fn duplicate(incident: pb::Incident) -> pb::ReportIncidentResponse {
    pb::ReportIncidentResponse {
        incident: Some(incident),
        duplicate: true,
    }
}

impl IncidentApi {
    async fn by_key(&self, key: &str) -> Result<Option<pb::Incident>, ApiError> {
        let key = key.to_string();
        Ok(self
            .store
            .read(move |c| read::incident_by_key(c, &key))
            .await?)
    }

    async fn report(
        &self,
        mut r: pb::ReportIncidentRequest,
        actor: &str,
    ) -> Result<pb::ReportIncidentResponse, ApiError> {
        validate_report(&mut r, self.router.grids())?;
        let _claim = loop {
            if let Some(incident) = self.by_key(&r.idempotency_key).await? {
                return Ok(duplicate(incident));
            }
            let waiter = match self.inflight.entry(r.idempotency_key.clone()) {
                dashmap::Entry::Vacant(v) => {
                    let notify = Arc::new(Notify::new());
                    v.insert(notify.clone());
                    break Claim {
                        inflight: &self.inflight,
                        key: &r.idempotency_key,
                        notify,
                    };
                }
                dashmap::Entry::Occupied(o) => o.get().clone(),
            };
            // Another call with this key is being committed: wait for it, then read it. The
            // claim is checked again after registering, as it may have ended in between.
            let done = waiter.notified();
            let still_claimed = self
                .inflight
                .get(&r.idempotency_key)
                .is_some_and(|n| Arc::ptr_eq(&n, &waiter));
            if still_claimed
                && tokio::time::timeout(Duration::from_secs(10), done)
                    .await
                    .is_err()
            {
                return Err(ApiError::Unavailable);
            }
        };
        // The claim is ours. Another call with this key may have committed and released its
        // claim between our read above and our claim: read once more, now that no other call
        // can commit this key until ours is released (when `_claim` drops, even if this call
        // is cancelled by its client going away).
        if let Some(incident) = self.by_key(&r.idempotency_key).await? {
            return Ok(duplicate(incident));
        }
        match self.create(r.clone(), actor).await {
            // The store holds this key after all (stored by a call this claim cannot see):
            // answer with what it holds, as for any repeat.
            Err(ApiError::Store(StoreError::Refused(e))) => {
                match self.by_key(&r.idempotency_key).await? {
                    Some(incident) => Ok(duplicate(incident)),
                    None => Err(ApiError::Store(StoreError::Refused(e))),
                }
            }
            other => other,
        }
    }

    async fn create(
        &self,
        r: pb::ReportIncidentRequest,
        actor: &str,
    ) -> Result<pb::ReportIncidentResponse, ApiError> {
        let reported_at = Some(ts_from_millis(now_ms()));
        let incident = pb::Incident {
            id: self.store.ids.next_incident(),
            idempotency_key: r.idempotency_key,
            category: r.category,
            item_code: r.item_code,
            description: r.description,
            grid_id: r.grid_id,
            location: r.location,
            reporter_id: r.reporter_id,
            photo_urls: r.photo_urls,
            status: pb::IncidentStatus::Reported as i32,
            reported_at,
            version: 1,
            steps: vec![lifecycle::reported_step(reported_at, actor)],
            updated_at: reported_at,
            ..Default::default()
        };
        let (reply, rx) = oneshot::channel();
        self.router.send_incident(incident, reply).await?;
        let records = rx.await.map_err(|_| ApiError::Unavailable)??;
        let incident = records
            .into_iter()
            .find_map(|r| match r {
                Record::Incident(i) => Some(i),
                _ => None,
            })
            .ok_or(ApiError::Unavailable)?;
        self.metrics.incidents_reported.inc();
        Ok(pb::ReportIncidentResponse {
            incident: Some(incident),
            duplicate: false,
        })
    }
}

#[tonic::async_trait]
impl pb::incident_service_server::IncidentService for IncidentApi {
    async fn report(
        &self,
        req: Request<pb::ReportIncidentRequest>,
    ) -> Result<Response<pb::ReportIncidentResponse>, Status> {
        let who = self.auth.grpc(&req, Perm::Report)?;
        self.auth.limits.report(&who.name)?;
        Ok(Response::new(
            self.report(req.into_inner(), &who.name).await?,
        ))
    }

    async fn get(
        &self,
        req: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let id = req.into_inner().id;
        if id.is_empty() {
            return Err(invalid("id", "required").into());
        }
        let found = {
            let id = id.clone();
            self.store
                .read(move |c| read::get_incident(c, &id))
                .await
                .map_err(ApiError::from)?
        };
        found
            .map(Response::new)
            .ok_or_else(|| ApiError::NotFound(format!("incident {id} not found")).into())
    }

    async fn list(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let r = req.into_inner();
        if r.category != 0 && pb::IncidentCategory::try_from(r.category).is_err() {
            return Err(invalid("category", "unknown category").into());
        }
        let filter = read::IncidentFilter {
            grids: expand_grids(self.router.grids(), &r.grid_ids, "grid_ids")?,
            category: r.category,
            reporter_id: r.reporter_id,
        };
        let page = page(r.page_size, &r.page_token)?;
        let (incidents, next_page_token) = self
            .store
            .read(move |c| read::list_incidents(c, &filter, page))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents,
            next_page_token,
        }))
    }

    async fn transition(
        &self,
        req: Request<pb::TransitionIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let r = req.into_inner();
        if r.id.is_empty() {
            return Err(invalid("id", "required").into());
        }
        let now = now_ms();
        let step =
            StepRequest::from_pb(&r, self.desk.departments(), now).map_err(ApiError::from)?;
        let to = step.to;
        let incident = self
            .desk
            .transition(&r.id, step, &who.name, now)
            .await
            .map_err(ApiError::from)?;
        self.metrics
            .incident_steps
            .get_or_create(&StepLabel {
                to: lifecycle::name(to),
            })
            .inc();
        tracing::info!(incident = %incident.id, to = lifecycle::name(to), actor = %who.name, version = incident.version, "incident step");
        Ok(Response::new(incident))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::GridConfig, domain::GridIndex};

    /// A town and its one community, the square 120.00-120.01 E, 30.00-30.01 N.
    fn grids() -> GridIndex {
        let square = |id: &str, parent: Option<&str>| GridConfig {
            id: id.into(),
            name: id.into(),
            parent: parent.map(Into::into),
            polygon: vec![
                [120.0, 30.0],
                [120.01, 30.0],
                [120.01, 30.01],
                [120.0, 30.01],
            ],
        };
        GridIndex::new(&[square("town", None), square("c1", Some("town"))])
    }

    fn report(grid: &str, at: Option<(f64, f64)>) -> pb::ReportIncidentRequest {
        pb::ReportIncidentRequest {
            idempotency_key: "k".into(),
            category: pb::IncidentCategory::SafetyHazard as i32,
            item_code: "AQ-01".into(),
            description: "Loose manhole cover".into(),
            grid_id: grid.into(),
            location: at.map(|(lat, lon)| pb::LatLon { lat, lon }),
            reporter_id: "rep-1".into(),
            photo_urls: vec![],
        }
    }

    fn field(r: Result<(), ApiError>) -> String {
        match r {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_location_alone_finds_the_deepest_grid() {
        let mut r = report("", Some((30.005, 120.005)));
        validate_report(&mut r, &grids()).unwrap();
        assert_eq!(r.grid_id, "c1");
    }

    #[test]
    fn a_location_in_no_grid_names_location() {
        let mut r = report("", Some((31.0, 121.0)));
        assert_eq!(field(validate_report(&mut r, &grids())), "location");
        let mut r = report("", None);
        assert_eq!(field(validate_report(&mut r, &grids())), "grid_id");
        let mut r = report("", Some((95.0, 121.0)));
        assert_eq!(field(validate_report(&mut r, &grids())), "location.lat");
    }

    #[test]
    fn a_given_grid_is_kept() {
        let mut r = report("town", Some((31.0, 121.0)));
        validate_report(&mut r, &grids()).unwrap();
        assert_eq!(r.grid_id, "town");
    }
}
