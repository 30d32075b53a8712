//! Silences: operator-made mutes with an expiry, matched against alerts by the engine.
//!
//! A [`SilenceSet`] is an immutable list of the silences that are active now or start
//! later; the API replaces it on every shard whenever one is created or expired
//! (`ShardMsg::Silences`). Matching is pure: a silence matches an alert when every field
//! of its matcher that is set matches, and `starts_at <= now < ends_at`, and it was not
//! expired early. A muted alert is still recorded, listed and streamed (with
//! `silenced_by`); it is neither published to MQTT nor escalated.

use gridsight_proto::{millis_from_ts, v1 as pb};

use crate::domain::{GridIndex, Severity};

/// The silences a shard checks alerts against.
#[derive(Debug, Clone, Default)]
pub struct SilenceSet {
    silences: Vec<pb::Silence>,
}

impl SilenceSet {
    /// From the silences that are not over (expired ones are ignored anyway).
    pub fn new(silences: Vec<pb::Silence>) -> Self {
        Self { silences }
    }

    /// Number of silences held.
    pub fn len(&self) -> usize {
        self.silences.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
    }

    /// The id of the first silence that mutes `alert` at `now`, if any.
    pub fn matching(&self, alert: &pb::Alert, grids: &GridIndex, now: i64) -> Option<&str> {
        self.silences
            .iter()
            .find(|s| is_active(s, now) && matches(s, alert, grids))
            .map(|s| s.id.as_str())
    }

    /// The earliest time after `now` at which some silence starts or ends (when muted
    /// alerts need a fresh look).
    pub fn next_edge(&self, now: i64) -> Option<i64> {
        self.silences
            .iter()
            .flat_map(|s| {
                [
                    s.starts_at.as_ref(),
                    s.ends_at.as_ref(),
                    s.expired_at.as_ref(),
                ]
            })
            .flatten()
            .map(millis_from_ts)
            .filter(|t| *t > now)
            .min()
    }
}

/// Whether `a` is muted: silenced or inhibited.
pub fn is_muted(a: &pb::Alert) -> bool {
    !a.silenced_by.is_empty() || !a.inhibited_by.is_empty()
}

/// Whether `s` is in force at `now`.
pub fn is_active(s: &pb::Silence, now: i64) -> bool {
    let starts = s.starts_at.as_ref().map(millis_from_ts).unwrap_or(i64::MIN);
    starts <= now && now < end_ms(s)
}

/// When `s` stops muting (ms since the Unix epoch): its `ends_at`, or its `expired_at`
/// when it was expired before that. A silence without `ends_at` never mutes.
pub fn end_ms(s: &pb::Silence) -> i64 {
    let ends = s.ends_at.as_ref().map(millis_from_ts).unwrap_or(i64::MIN);
    let expired = s
        .expired_at
        .as_ref()
        .map(millis_from_ts)
        .unwrap_or(i64::MAX);
    ends.min(expired)
}

/// Whether `s` is over at `now` (it will never mute again).
pub fn has_ended(s: &pb::Silence, now: i64) -> bool {
    end_ms(s) <= now
}

/// Whether the matcher of `s` matches `alert` (time aside).
pub fn matches(s: &pb::Silence, alert: &pb::Alert, grids: &GridIndex) -> bool {
    let Some(m) = &s.matcher else {
        return false;
    };
    if !m.grid_id.is_empty() && !grids.is_within(&alert.grid_id, &m.grid_id) {
        return false;
    }
    if !m.rule_id.is_empty() && m.rule_id != alert.rule_id {
        return false;
    }
    if !m.dedup_key_prefix.is_empty() && !alert.dedup_key.starts_with(&m.dedup_key_prefix) {
        return false;
    }
    if let Some(max) = Severity::from_pb(m.max_severity) {
        if Severity::from_pb(alert.severity).is_some_and(|s| s > max) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridsight_proto::ts_from_millis;

    fn grids() -> GridIndex {
        GridIndex::tree(&[("county", None), ("t1", Some("county")), ("c1", Some("t1"))])
    }

    fn silence(m: pb::SilenceMatcher, from: i64, to: i64) -> pb::Silence {
        pb::Silence {
            id: "sil-1".into(),
            matcher: Some(m),
            starts_at: Some(ts_from_millis(from)),
            ends_at: Some(ts_from_millis(to)),
            ..Default::default()
        }
    }

    #[test]
    fn a_silence_mutes_matching_alerts_only_while_in_force() {
        let alert = pb::Alert {
            grid_id: "c1".into(),
            dedup_key: "camera/cam-1/offline".into(),
            severity: pb::Severity::Major as i32,
            ..Default::default()
        };
        let set = SilenceSet::new(vec![silence(
            pb::SilenceMatcher {
                grid_id: "t1".into(),
                dedup_key_prefix: "camera/".into(),
                ..Default::default()
            },
            1_000,
            2_000,
        )]);
        let g = grids();
        assert_eq!(set.matching(&alert, &g, 999), None);
        assert_eq!(set.matching(&alert, &g, 1_000), Some("sil-1"));
        assert_eq!(set.matching(&alert, &g, 2_000), None);
        assert_eq!(set.next_edge(1_500), Some(2_000));
        let other = pb::Alert {
            dedup_key: "sensor/s1/smoke".into(),
            ..alert.clone()
        };
        assert_eq!(set.matching(&other, &g, 1_500), None);
    }

    #[test]
    fn max_severity_and_early_expiry_limit_a_silence() {
        let mut s = silence(
            pb::SilenceMatcher {
                max_severity: pb::Severity::Minor as i32,
                ..Default::default()
            },
            0,
            10_000,
        );
        let g = grids();
        let minor = pb::Alert {
            grid_id: "c1".into(),
            severity: pb::Severity::Minor as i32,
            ..Default::default()
        };
        let critical = pb::Alert {
            severity: pb::Severity::Critical as i32,
            ..minor.clone()
        };
        assert!(is_active(&s, 5) && matches(&s, &minor, &g));
        assert!(!matches(&s, &critical, &g));
        assert!(!has_ended(&s, 100));
        s.expired_at = Some(ts_from_millis(100));
        assert!(!is_active(&s, 100));
        assert!(has_ended(&s, 100) && !has_ended(&s, 99));
        assert_eq!(end_ms(&s), 100);
    }
}
