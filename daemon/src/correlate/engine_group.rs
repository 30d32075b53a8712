//! Grouping: related open alerts under one group alert (`[[correlation.groups]]`).
//!
//! On every tick, the open alerts matching a group's `alerts` are bucketed by their grid's
//! ancestor at the group's `tier` (never above the partition tier, so a bucket lives on
//! one shard). A bucket with `min_members` open alerts whose oldest has waited
//! `group_wait_secs` gets a group alert on that ancestor, keyed `group/{index}/{grid}`,
//! with the most severe member's severity, one evidence item per member (bounded), and
//! `group_size`; each member gets `parent_id`. Later members join at once (`parent_id`),
//! the group alert's summary is updated at most every `group_interval_secs`, and it is
//! resolved by `gridsight` when its last member closes. Members stay alerts of their
//! own: acknowledging or resolving them works as before.

use crate::domain::AlertChange;
use foldhash::HashMap;
use std::collections::BTreeMap;

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};

use super::{noise_layer::alert_matches, Engine};
use crate::domain::Severity;

/// One group's bookkeeping.
#[derive(Debug, Default)]
pub struct Group {
    /// The group alert, once open.
    parent: Option<String>,
    /// When its summary was last sent.
    last_emit: i64,
    /// Members at the last summary.
    shown: Vec<String>,
}

/// Every group of one engine, by key.
pub type Groups = HashMap<String, Group>;

impl Engine {
    pub(super) fn tick_groups(&mut self, now: i64) -> Vec<AlertChange> {
        if self.cfg.groups.is_empty() {
            return Vec::new();
        }
        // key → (config index, grid, members sorted by id)
        let mut buckets: BTreeMap<String, (usize, String, Vec<String>)> = BTreeMap::new();
        for a in self.open.values() {
            if a.dedup_key.starts_with("group/") {
                continue;
            }
            for (gi, g) in self.cfg.groups.iter().enumerate() {
                if !alert_matches(&g.alerts, a) {
                    continue;
                }
                if let Some(anc) = self.grids.ancestor_at(&a.grid_id, g.tier) {
                    let key = format!("group/{gi}/{anc}");
                    buckets
                        .entry(key)
                        .or_insert_with(|| (gi, anc.to_string(), Vec::new()))
                        .2
                        .push(a.id.clone());
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for (key, (gi, grid, mut members)) in buckets.clone() {
            members.sort();
            out.extend(self.tick_group(&key, gi, &grid, members, now));
        }
        // Groups whose members are all gone.
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|k| !buckets.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(parent) = self.groups.remove(&key).and_then(|g| g.parent) {
                let ev = self
                    .open
                    .get(&parent)
                    .and_then(|a| a.evidence.last().cloned())
                    .unwrap_or_default();
                out.extend(self.auto_resolve(&parent, ev, "every member of the group closed", now));
            }
        }
        out
    }

    fn tick_group(
        &mut self,
        key: &str,
        gi: usize,
        grid: &str,
        members: Vec<String>,
        now: i64,
    ) -> Vec<AlertChange> {
        let cfg = &self.cfg.groups[gi];
        let (wait, interval, min) = (
            cfg.group_wait_secs as i64 * 1000,
            cfg.group_interval_secs as i64 * 1000,
            cfg.min_members as usize,
        );
        let title = cfg
            .title
            .replace("{count}", &members.len().to_string())
            .replace("{grid_name}", self.grids.name(grid))
            .replace("{grid}", grid);
        let oldest = members
            .iter()
            .filter_map(|id| self.open.get(id))
            .filter_map(|a| a.first_seen.as_ref().map(millis_from_ts))
            .min()
            .unwrap_or(now);
        // The group alert held, or one restored from the store under the group's key.
        let parent = self
            .groups
            .get(key)
            .and_then(|g| g.parent.clone())
            .or_else(|| self.by_key.get(key).cloned());
        let mut out = Vec::new();
        let parent = match parent.filter(|p| self.open.contains_key(p)) {
            Some(p) => {
                self.groups.entry(key.to_string()).or_insert_with(|| Group {
                    parent: Some(p.clone()),
                    last_emit: i64::MIN,
                    shown: Vec::new(),
                });
                p
            }
            None => {
                if members.len() < min || now - oldest < wait {
                    return Vec::new();
                }
                let Some(first) = members
                    .first()
                    .and_then(|id| self.open.get(id))
                    .and_then(|a| a.evidence.first().cloned())
                else {
                    return Vec::new();
                };
                let opened = self.open_alert(
                    key.to_string(),
                    Severity::Info,
                    title.clone(),
                    grid,
                    first,
                    now,
                );
                let Some(id) = opened.alert.as_ref().map(|a| a.id.clone()) else {
                    return Vec::new();
                };
                out.push(opened);
                self.groups.insert(
                    key.to_string(),
                    Group {
                        parent: Some(id.clone()),
                        last_emit: i64::MIN,
                        shown: Vec::new(),
                    },
                );
                id
            }
        };
        // Members join at once.
        for id in &members {
            if let Some(a) = self.open.get_mut(id).filter(|a| a.parent_id != parent) {
                a.parent_id = parent.clone();
                a.version += 1;
                a.updated_at = Some(ts_from_millis(now));
                out.push(AlertChange {
                    seq: 0,
                    kind: pb::ChangeKind::Updated as i32,
                    alert: Some(a.to_pb()),
                });
            }
        }
        // The summary at most every interval.
        let due = self
            .groups
            .get(key)
            .is_some_and(|g| g.shown != members && now.saturating_sub(g.last_emit) >= interval);
        if due {
            let severity = members
                .iter()
                .filter_map(|id| self.open.get(id))
                .filter_map(|a| Severity::from_pb(a.severity))
                .max()
                .unwrap_or(Severity::Info);
            let evidence: Vec<pb::Evidence> = members
                .iter()
                .filter_map(|id| self.open.get(id))
                .filter_map(|a| a.evidence.first().cloned())
                .take(super::MAX_EVIDENCE)
                .collect();
            let count: u64 = members
                .iter()
                .filter_map(|id| self.open.get(id))
                .map(|a| a.count)
                .sum();
            if let Some(p) = self.open.get_mut(&parent) {
                p.severity = severity.to_pb() as i32;
                p.title = title;
                p.group_size = members.len() as u32;
                p.set_evidence(evidence);
                p.count = count;
                p.version += 1;
                p.last_seen = Some(ts_from_millis(now));
                p.updated_at = p.last_seen;
                out.push(AlertChange {
                    seq: 0,
                    kind: pb::ChangeKind::Updated as i32,
                    alert: Some(p.to_pb()),
                });
            }
            if let Some(g) = self.groups.get_mut(key) {
                g.last_emit = now;
                g.shown = members;
            }
        }
        out
    }
}
