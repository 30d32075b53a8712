//! `SilenceService`: Create, List, Expire — operator-made mutes with an expiry.
//!
//! Create and Expire need an operator or integrator token (`Perm::Operate`); List any
//! reading role. Owns the validation of a new silence ([`check_create`]): every refusal is
//! `INVALID_ARGUMENT` naming the field, and a silence of everything is refused. Durability,
//! the audit line and telling the shards are the [`SilenceBook`]'s: an RPC answers OK only
//! once the silence (or its expiry) is durable and the shards have it.

use std::sync::Arc;

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};
use tonic::{Request, Response, Status};

use super::{invalid, silence_book::SilenceBook, ApiError};
use crate::{
    api::auth::{Auth, Perm},
    domain::{now_ms, GridIndex, Severity},
    store::{read, Store},
};

/// Longest silence, and furthest ahead one may start: 7 days (seconds).
pub const MAX_SECS: u32 = 7 * 24 * 3600;
/// Longest comment (bytes).
pub const MAX_COMMENT: usize = 1024;
/// Longest `dedup_key_prefix` and `rule_id` (bytes).
pub const MAX_KEY: usize = 128;

/// The service.
#[derive(Clone)]
pub struct SilenceApi {
    /// Tokens.
    pub auth: Auth,
    /// The silences not yet ended; creates and expires go through it.
    pub book: SilenceBook,
    /// Lists read from it.
    pub store: Store,
    /// The grid tree (to check `matcher.grid_id`).
    pub grids: Arc<GridIndex>,
}

/// Checks a Create request at `now` (ms) and builds the silence it asks for (no id, no
/// author yet).
pub fn check_create(
    r: &pb::CreateSilenceRequest,
    grids: &GridIndex,
    now: i64,
) -> Result<pb::Silence, ApiError> {
    let m = r
        .matcher
        .as_ref()
        .filter(|m| {
            !m.grid_id.is_empty()
                || !m.rule_id.is_empty()
                || !m.dedup_key_prefix.is_empty()
                || m.max_severity != 0
        })
        .ok_or_else(|| {
            invalid(
                "matcher",
                "set at least one of grid_id, rule_id, dedup_key_prefix, max_severity",
            )
        })?;
    if !m.grid_id.is_empty() && !grids.contains(&m.grid_id) {
        return Err(invalid(
            "matcher.grid_id",
            format!("unknown grid `{}`", m.grid_id),
        ));
    }
    if m.rule_id.len() > MAX_KEY {
        return Err(invalid(
            "matcher.rule_id",
            format!("at most {MAX_KEY} bytes"),
        ));
    }
    if m.dedup_key_prefix.len() > MAX_KEY {
        return Err(invalid(
            "matcher.dedup_key_prefix",
            format!("at most {MAX_KEY} bytes"),
        ));
    }
    if m.max_severity != 0 && Severity::from_pb(m.max_severity).is_none() {
        return Err(invalid("matcher.max_severity", "unknown severity"));
    }
    if !(1..=MAX_SECS).contains(&r.duration_secs) {
        return Err(invalid(
            "duration_secs",
            format!("must be between 1 and {MAX_SECS} (7 days)"),
        ));
    }
    if r.comment.trim().is_empty() {
        return Err(invalid("comment", "required: say why (kept for the audit)"));
    }
    if r.comment.len() > MAX_COMMENT {
        return Err(invalid("comment", format!("at most {MAX_COMMENT} bytes")));
    }
    let starts = r.starts_at.as_ref().map(millis_from_ts).unwrap_or(now);
    if starts > now + i64::from(MAX_SECS) * 1000 {
        return Err(invalid("starts_at", "at most 7 days ahead"));
    }
    let ends = starts + i64::from(r.duration_secs) * 1000;
    if ends <= now {
        return Err(invalid(
            "starts_at",
            "starts_at + duration_secs is already past",
        ));
    }
    Ok(pb::Silence {
        matcher: Some(m.clone()),
        starts_at: Some(ts_from_millis(starts)),
        ends_at: Some(ts_from_millis(ends)),
        comment: r.comment.clone(),
        created_at: Some(ts_from_millis(now)),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl pb::silence_service_server::SilenceService for SilenceApi {
    async fn create(
        &self,
        req: Request<pb::CreateSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let mut s = check_create(req.get_ref(), &self.grids, now_ms())?;
        s.created_by = who.name;
        Ok(Response::new(self.book.create(s).await?))
    }

    async fn list(
        &self,
        req: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesResponse>, Status> {
        self.auth.grpc(&req, Perm::Read)?;
        let all = req.into_inner().include_expired;
        let now = now_ms();
        let silences = self
            .store
            .read(move |c| read::silences(c, all, now, read::SILENCES_LIMIT))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListSilencesResponse { silences }))
    }

    async fn expire(
        &self,
        req: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::Silence>, Status> {
        let who = self.auth.grpc(&req, Perm::Operate)?;
        let id = req.into_inner().id;
        if id.is_empty() {
            return Err(invalid("id", "required").into());
        }
        Ok(Response::new(self.book.expire(&id, &who.name).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GridConfig;

    const NOW: i64 = 1_800_000_000_000;

    fn grids() -> GridIndex {
        GridIndex::new(&[GridConfig {
            id: "a-1".into(),
            name: "A1".into(),
            parent: None,
            polygon: vec![],
        }])
    }

    fn good() -> pb::CreateSilenceRequest {
        pb::CreateSilenceRequest {
            matcher: Some(pb::SilenceMatcher {
                grid_id: "a-1".into(),
                ..Default::default()
            }),
            starts_at: None,
            duration_secs: 3600,
            comment: "road works on Dipu Road".into(),
        }
    }

    /// The field a refused request names, or `None` when it is accepted.
    fn field_of(r: pb::CreateSilenceRequest) -> Option<String> {
        match check_create(&r, &grids(), NOW) {
            Ok(_) => None,
            Err(ApiError::InvalidArgument { field, .. }) => Some(field),
            Err(e) => panic!("not INVALID_ARGUMENT: {e}"),
        }
    }

    #[test]
    fn a_good_request_makes_a_silence_from_now_for_its_duration() {
        let s = check_create(&good(), &grids(), NOW).unwrap();
        assert_eq!(s.starts_at, Some(ts_from_millis(NOW)));
        assert_eq!(s.ends_at, Some(ts_from_millis(NOW + 3_600_000)));
        assert_eq!(s.created_at, Some(ts_from_millis(NOW)));
        assert!(s.id.is_empty() && s.created_by.is_empty());
        let later = pb::CreateSilenceRequest {
            starts_at: Some(ts_from_millis(NOW + 60_000)),
            ..good()
        };
        let s = check_create(&later, &grids(), NOW).unwrap();
        assert_eq!(s.ends_at, Some(ts_from_millis(NOW + 3_660_000)));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let matcher = |m: pb::SilenceMatcher| pb::CreateSilenceRequest {
            matcher: Some(m),
            ..good()
        };
        let cases = [
            (
                pb::CreateSilenceRequest {
                    matcher: None,
                    ..good()
                },
                "matcher",
            ),
            (matcher(Default::default()), "matcher"),
            (
                matcher(pb::SilenceMatcher {
                    grid_id: "nowhere".into(),
                    ..Default::default()
                }),
                "matcher.grid_id",
            ),
            (
                matcher(pb::SilenceMatcher {
                    dedup_key_prefix: "k".repeat(MAX_KEY + 1),
                    ..Default::default()
                }),
                "matcher.dedup_key_prefix",
            ),
            (
                matcher(pb::SilenceMatcher {
                    max_severity: 42,
                    ..Default::default()
                }),
                "matcher.max_severity",
            ),
            (
                pb::CreateSilenceRequest {
                    duration_secs: 0,
                    ..good()
                },
                "duration_secs",
            ),
            (
                pb::CreateSilenceRequest {
                    duration_secs: MAX_SECS + 1,
                    ..good()
                },
                "duration_secs",
            ),
            (
                pb::CreateSilenceRequest {
                    comment: " ".into(),
                    ..good()
                },
                "comment",
            ),
            (
                pb::CreateSilenceRequest {
                    comment: "x".repeat(MAX_COMMENT + 1),
                    ..good()
                },
                "comment",
            ),
            (
                pb::CreateSilenceRequest {
                    starts_at: Some(ts_from_millis(NOW + i64::from(MAX_SECS) * 1000 + 1)),
                    ..good()
                },
                "starts_at",
            ),
            (
                pb::CreateSilenceRequest {
                    starts_at: Some(ts_from_millis(NOW - 7_200_000)),
                    ..good()
                },
                "starts_at",
            ),
        ];
        for (r, field) in cases {
            assert_eq!(field_of(r.clone()).as_deref(), Some(field), "{r:?}");
        }
        // The limits themselves are allowed.
        let edge = pb::CreateSilenceRequest {
            duration_secs: MAX_SECS,
            comment: "x".repeat(MAX_COMMENT),
            starts_at: Some(ts_from_millis(NOW + i64::from(MAX_SECS) * 1000)),
            matcher: Some(pb::SilenceMatcher {
                dedup_key_prefix: "k".repeat(MAX_KEY),
                max_severity: pb::Severity::Minor as i32,
                ..Default::default()
            }),
        };
        assert_eq!(field_of(edge), None);
    }
}
