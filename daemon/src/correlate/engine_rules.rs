//! The rule layer of the engine: events → rule windows → correlated alerts.
//!
//! Every event the base layer sees (and every copy routed here from another shard for an
//! anchor this shard owns) is offered to the rules that may concern it. For each anchor
//! grid this shard owns: a `clear` match resolves the rule's open alerts there; a `when`
//! match either folds into the rule's open alert for its de-duplication key, or goes into
//! the window, and when the pattern holds the rule fires:
//! - `open`: one alert on the anchor grid keyed `rule/{id}/{anchor}[/label=value...]`,
//!   holding the evidence; the single-source alerts of that evidence are merged into it
//!   (resolved with `merged_into`, their keys now fold into the rule's alert);
//! - `raise`: the open alerts in scope that match the rule's alert condition are raised
//!   `raise_by` steps, once per rule, with the event as evidence.
//!
//! Invariants: only the shard owning an anchor touches its window or its alerts, so one
//! key has one writer; while replaying the journal after a restart, windows are rebuilt
//! but nothing is emitted.

use crate::domain::AlertChange;
use std::{borrow::Cow, sync::Arc};

use foldhash::{HashMap, HashMapExt};

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};

use super::{evidence_key, Engine};
use crate::correlate::open_alert::id_print;
use crate::correlate::rule_alerts::RuleAlerts;
use crate::correlate::rules::{window::Windows, NearCache, Obs, Rule, RuleSet};
use crate::{
    config::{RuleAction, Scope},
    domain::Severity,
};

/// Which anchors this engine owns.
#[derive(Debug, Clone, Copy)]
pub struct Partition {
    /// This shard.
    pub shard: usize,
    /// Number of shards.
    pub shards: usize,
    /// Grids are routed by their ancestor at this depth.
    pub tier: usize,
}

impl Default for Partition {
    fn default() -> Self {
        Self {
            shard: 0,
            shards: 1,
            tier: 1,
        }
    }
}

/// The rule state of one engine.
#[derive(Debug, Default)]
pub struct RuleState {
    pub(super) set: Arc<RuleSet>,
    pub(super) windows: Windows,
    /// Open rule alerts by (rule, anchor grid).
    pub(super) alerts: RuleAlerts,
    /// (rule id, alert id) pairs already raised.
    pub(super) raised: HashMap<String, Vec<String>>,
    pub(super) replaying: bool,
    pub(super) partition: Partition,
    /// Alerts the current event already folded into (base layer or an earlier rule), by
    /// the fingerprints of their ids ([`id_print`]): a few per event, and asking costs no
    /// copy of an id.
    pub(super) touched: Vec<u128>,
    /// Answers of `within_m` lookups.
    pub(super) near: NearCache,
    /// The buffer rule keys are written into.
    pub(super) key_buf: String,
    /// The buffer an event's anchors under each rule are found into.
    pub(super) anchor_buf: Vec<Arc<str>>,
    /// Merges to ask of other shards: (grid, key, rule alert, rule).
    pub(super) foreign_merges: Vec<(String, String, String, String)>,
    /// While replaying: when each rule key's last alert was resolved. Events up to then
    /// had been consumed by its firing or folded into it, so they are skipped.
    pub(super) closed: HashMap<String, i64>,
}

impl Engine {
    /// Sets the rules (at start and on reload). The windows of rules whose config did not
    /// change are kept; open alerts are never touched.
    pub fn set_rules(&mut self, set: Arc<RuleSet>) {
        let old = &self.rules.set;
        let map: Vec<Option<usize>> = old
            .rules
            .iter()
            .map(|r| set.rules.iter().position(|n| n.cfg == r.cfg))
            .collect();
        self.rules.windows.renumber(&map);
        self.rules
            .alerts
            .rebuild(&set, &self.grids, self.open.values().map(|a| &**a));
        self.rules.set = set;
    }

    /// Sets which anchors this engine owns.
    pub fn set_partition(&mut self, p: Partition) {
        self.rules.partition = p;
    }

    /// Before replaying: the rule alert with `key` was resolved at `at` (ms).
    pub fn note_closed(&mut self, key: String, at: i64) {
        let t = self.rules.closed.entry(key).or_insert(at);
        *t = (*t).max(at);
    }

    /// After replaying: forgets what only the replay needed.
    pub fn end_replay(&mut self) {
        self.rules.closed = HashMap::new();
    }

    /// Replays a journaled event after a restart: rebuilds windows, emits nothing.
    pub fn replay(&mut self, obs: Obs) {
        self.rules.replaying = true;
        let at = obs.at;
        let _ = self.observe(obs, at);
        // Deadlines that passed while the journal went on had fired before the restart.
        let rules = &mut self.rules;
        let _ = rules.windows.due(at, &rules.set.rules);
        self.rules.replaying = false;
    }

    /// Observations and pending `absence` deadlines held in the rule windows.
    pub fn rule_window_items(&self) -> usize {
        self.rules.windows.len()
    }

    /// Whether this engine owns `anchor`.
    pub fn owns(&self, anchor: &str) -> bool {
        let p = self.rules.partition;
        p.shards <= 1 || partition_shard(&self.grids, p.tier, p.shards, anchor) == p.shard
    }

    /// Offers an event to the rules; returns the alert changes.
    pub fn observe(&mut self, obs: Obs, now: i64) -> Vec<AlertChange> {
        let out = self.observe_after(obs, now, &[]);
        self.finish(out, now)
    }

    /// Offers an event the base layer already turned into `base` changes: an alert it
    /// folded into is not folded into again.
    pub(super) fn observe_after(
        &mut self,
        obs: Obs,
        now: i64,
        base: &[AlertChange],
    ) -> Vec<AlertChange> {
        let set = self.rules.set.clone();
        let mut out = Vec::new();
        if set.candidates_for(&obs).is_empty() {
            return out;
        }
        self.rules.touched.clear();
        self.rules.touched.extend(
            base.iter()
                .filter_map(|c| c.alert.as_ref().map(|a| id_print(&a.id))),
        );
        // Its place, once: `within_m` looks at it for every window item.
        let mut obs = obs;
        if obs.location.is_none() {
            obs.location = obs.place(&self.grids);
        }
        // Its grids as the index's own `Arc`s, like every anchor found around it: the
        // windows and rule alerts are keyed by those, so a lookup compares pointers.
        let mut all_known = true;
        for g in &mut obs.grids {
            match self.grids.shared(g) {
                Some(shared) if !Arc::ptr_eq(shared, g) => *g = shared.clone(),
                Some(_) => {}
                None => all_known = false,
            }
        }
        obs.indexed_grids = all_known;
        let obs = Arc::new(obs);
        // One buffer for every rule's anchors (a nested call finds it taken and makes its own).
        let mut anchors = std::mem::take(&mut self.rules.anchor_buf);
        for &ri in set.candidates_for(&obs) {
            let rule = &set.rules[ri];
            let clears = rule.clears(&obs);
            let mask = rule.mask(&obs);
            if mask == 0 && !clears {
                continue;
            }
            if super::spread_layer::gathers(rule) {
                out.extend(self.offer_spread(rule, ri, &obs, mask, clears, now));
                continue;
            }
            anchors.clear();
            rule.anchors_into(&obs, &self.grids, Some(&mut self.rules.near), &mut anchors);
            for anchor in anchors.drain(..) {
                if !self.owns(&anchor) {
                    continue;
                }
                if clears && !self.rules.replaying {
                    out.extend(self.clear_rule(ri, &anchor, &obs, now));
                }
                if mask != 0 {
                    out.extend(self.offer(rule, ri, &anchor, mask, &obs, now));
                }
            }
        }
        self.rules.anchor_buf = anchors;
        self.rules.touched.clear();
        out
    }

    fn offer(
        &mut self,
        rule: &Rule,
        ri: usize,
        anchor: &Arc<str>,
        mask: u32,
        obs: &Arc<Obs>,
        now: i64,
    ) -> Vec<AlertChange> {
        let replaying = self.rules.replaying;
        match rule.cfg.action {
            RuleAction::Open => self.offer_open(rule, ri, anchor, mask, obs, now),
            RuleAction::Raise => {
                let targets = if own_anchor(rule, anchor, obs) {
                    self.raise_targets(rule, anchor, obs)
                } else {
                    Vec::new()
                };
                let ok = !targets.is_empty();
                let fired =
                    self.rules
                        .windows
                        .observe(rule, ri, anchor, mask, obs, &self.grids, ok);
                if fired.is_none() {
                    return Vec::new();
                }
                self.rules.windows.consume(ri, anchor);
                if replaying {
                    return Vec::new();
                }
                targets
                    .into_iter()
                    .flat_map(|id| self.raise_one(rule, &id, obs, now))
                    .collect()
            }
        }
    }

    /// [`Engine::offer`] for an `open` rule. Its key at `anchor` is looked at only when the
    /// rule has an alert open there (and then not even built for a rule without labels),
    /// when replaying, or when it fires: most offers go to the window without a key.
    fn offer_open(
        &mut self,
        rule: &Rule,
        ri: usize,
        anchor: &Arc<str>,
        mask: u32,
        obs: &Arc<Obs>,
        now: i64,
    ) -> Vec<AlertChange> {
        let replaying = self.rules.replaying;
        if replaying || self.rules.alerts.has(ri, anchor) {
            if let Some(changes) = self.fold_rule_key(rule, ri, anchor, obs, now) {
                return changes;
            }
        }
        let ok = own_anchor(rule, anchor, obs) && self.alert_conditions_hold(rule, anchor);
        let fired = self
            .rules
            .windows
            .observe(rule, ri, anchor, mask, obs, &self.grids, ok);
        match fired {
            Some(evidence) => {
                self.rules.windows.consume(ri, anchor);
                if replaying {
                    Vec::new()
                } else {
                    self.fire(rule, anchor, rule_key(rule, anchor, obs), evidence, now)
                }
            }
            None => Vec::new(),
        }
    }

    /// Opens the rule's alert on `anchor` with `evidence`, merging single-source alerts.
    pub(super) fn fire(
        &mut self,
        rule: &Rule,
        anchor: &Arc<str>,
        key: String,
        evidence: Vec<Arc<Obs>>,
        now: i64,
    ) -> Vec<AlertChange> {
        let newest = evidence.last().cloned();
        let title = render_title(rule, anchor, evidence.len(), newest.as_deref(), self);
        let labels = newest
            .as_deref()
            .map(|o| {
                rule.cfg
                    .labels
                    .iter()
                    .filter_map(|l| o.label(*l).map(|v| (l.as_str().to_string(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let first = evidence.first().map(|o| o.at).unwrap_or(now);
        let mut items = evidence.iter().map(|o| &o.evidence);
        let Some(head) = items.next() else {
            return Vec::new();
        };
        let mut change = self.open_alert(
            key.clone(),
            rule.cfg.severity,
            title,
            anchor,
            head.clone(),
            now,
        );
        let Some(id) = change.alert.as_ref().map(|a| a.id.clone()) else {
            return Vec::new();
        };
        // The rest of the evidence, and what merging brings.
        let mut merged_changes = Vec::new();
        let mut merged_count = 0;
        let mut first_seen = first;
        if rule.cfg.merge {
            // Each item's single-source key, made once.
            let keys: Vec<Option<String>> =
                evidence.iter().map(|o| evidence_key(&o.evidence)).collect();
            let mut merged: Vec<String> = keys
                .iter()
                .flatten()
                .filter_map(|k| self.by_key.get(k).cloned())
                .filter(|bid| *bid != id)
                .collect();
            merged.dedup();
            // Evidence whose single-source alert lives on another shard: ask it.
            for (o, k) in evidence.iter().zip(keys) {
                let (Some(k), Some(g)) = (k, o.grids.first()) else {
                    continue;
                };
                if !self.owns(g) && !self.by_key.contains_key(&k) {
                    self.rules.foreign_merges.push((
                        g.to_string(),
                        k,
                        id.clone(),
                        rule.cfg.id.clone(),
                    ));
                }
            }
            for bid in merged {
                if let Some((c, count, seen)) = self.merge_into(&bid, &id, &rule.cfg.id, now) {
                    merged_count += count.saturating_sub(1);
                    first_seen = first_seen.min(seen);
                    merged_changes.push(c);
                }
            }
        }
        if let Some(mut alert) = self.open.remove(&id) {
            for e in items {
                alert.add_evidence(Cow::Borrowed(e));
            }
            super::link_incidents(&mut alert);
            alert.rule_id = rule.cfg.id.clone();
            alert.labels = labels;
            alert.count = evidence.len() as u64 + merged_count;
            alert.first_seen = Some(ts_from_millis(first_seen));
            let own = evidence
                .iter()
                .rev()
                .find(|o| o.source == crate::config::Source::Camera)
                .map(|o| o.id.clone());
            self.attach_cameras(&mut alert, &own, now);
            self.mute(&mut alert, now);
            change.alert = Some(alert.to_pb());
            self.open.insert(id.clone(), alert);
        }
        self.index_rule_alert(&rule.cfg.id, anchor, id);
        let mut out = vec![change];
        out.extend(merged_changes);
        out
    }

    /// Resolves single-source alert `bid` into `into`; its keys now lead to `into`.
    /// Returns the change, its count and first_seen.
    pub(super) fn merge_into(
        &mut self,
        bid: &str,
        into: &str,
        rule: &str,
        now: i64,
    ) -> Option<(AlertChange, u64, i64)> {
        let alert = self.open.get_mut(bid)?;
        if !alert.rule_id.is_empty() {
            return None;
        }
        alert.status = pb::AlertStatus::Resolved as i32;
        alert.resolved_by = "gridsight".into();
        alert.merged_into = into.to_string();
        alert.note = format!("merged into {into} by rule {rule}");
        alert.version += 1;
        alert.updated_at = Some(ts_from_millis(now));
        let change = AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Resolved as i32,
            alert: Some(alert.to_pb()),
        };
        let count = alert.count;
        let seen = alert.first_seen.as_ref().map(millis_from_ts).unwrap_or(now);
        let keys: Vec<String> = self
            .keys_of
            .get(bid)
            .map(|ks| {
                ks.iter()
                    .filter(|k| self.by_key.get(*k).is_some_and(|v| v == bid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.forget(bid);
        for k in keys {
            self.bind_key(k, into);
        }
        Some((change, count, seen))
    }

    /// Resolves the rule's open alerts at `anchor` (a `clear` event came).
    pub(super) fn clear_rule(
        &mut self,
        ri: usize,
        anchor: &Arc<str>,
        obs: &Obs,
        now: i64,
    ) -> Vec<AlertChange> {
        if !self.rules.alerts.has(ri, anchor) {
            return Vec::new();
        }
        let ids = self.rules.alerts.take(ri, &self.grids, anchor);
        let detail = format!("cleared: {} {} {}", obs.kind, obs.id, state_name(obs));
        ids.into_iter()
            .flat_map(|id| self.auto_resolve(&id, obs.evidence.clone(), detail.trim(), now))
            .collect()
    }

    /// Whether the rule's `source = "alert"` conditions hold at `anchor`.
    pub(super) fn alert_conditions_hold(&self, rule: &Rule, anchor: &str) -> bool {
        rule.when
            .iter()
            .filter(|c| c.cfg.source == crate::config::Source::Alert)
            .all(|c| {
                self.alerts_in_scope(rule, anchor)
                    .any(|a| a.rule_id != rule.cfg.id && c.matches_alert(a))
            })
    }

    fn raise_targets(&self, rule: &Rule, anchor: &str, obs: &Obs) -> Vec<String> {
        // Not the alert the event itself opened (a camera's own offline alert); its key is
        // made only if some alert is in scope.
        let mut own: Option<Option<String>> = None;
        let mut out: Vec<String> = self
            .alerts_in_scope(rule, anchor)
            .filter(|a| a.rule_id != rule.cfg.id)
            .filter(|a| {
                own.get_or_insert_with(|| evidence_key(&obs.evidence))
                    .as_deref()
                    != Some(a.dedup_key.as_str())
            })
            .filter(|a| {
                rule.when
                    .iter()
                    .filter(|c| c.cfg.source == crate::config::Source::Alert)
                    .any(|c| c.matches_alert(a))
            })
            .filter(|a| {
                !self
                    .rules
                    .raised
                    .get(&a.id)
                    .is_some_and(|rs| rs.contains(&rule.cfg.id))
            })
            .map(|a| a.id.clone())
            .collect();
        out.sort();
        out
    }

    /// Open alerts whose grid is in the rule's scope around `anchor`.
    fn alerts_in_scope<'a>(
        &'a self,
        rule: &'a Rule,
        anchor: &'a str,
    ) -> Box<dyn Iterator<Item = &'a pb::Alert> + 'a> {
        match rule.cfg.scope {
            Scope::Grid => Box::new(self.alerts_of_grid(anchor)),
            Scope::Neighbours => Box::new(
                std::iter::once(anchor)
                    .chain(self.grids.neighbours(anchor).iter().map(|g| &**g))
                    .flat_map(|g| self.alerts_of_grid(g)),
            ),
            Scope::Parent | Scope::Tier => Box::new(
                self.open
                    .values()
                    .map(|a| &**a)
                    .filter(move |a| self.grids.is_within(&a.grid_id, anchor)),
            ),
        }
    }

    fn alerts_of_grid<'a>(&'a self, grid: &str) -> impl Iterator<Item = &'a pb::Alert> + 'a {
        self.by_grid
            .get(grid)
            .into_iter()
            .flatten()
            .filter_map(|id| self.open.get(id))
            .map(|a| &**a)
    }

    fn raise_one(&mut self, rule: &Rule, id: &str, obs: &Obs, now: i64) -> Vec<AlertChange> {
        let Some(alert) = self.open.get_mut(id) else {
            return Vec::new();
        };
        let current = Severity::from_pb(alert.severity).unwrap_or(Severity::Info);
        alert.severity = current.raised(rule.cfg.raise_by).to_pb() as i32;
        alert.add_evidence(Cow::Borrowed(&obs.evidence));
        alert.count += 1;
        alert.version += 1;
        alert.last_seen = Some(ts_from_millis(now));
        alert.updated_at = alert.last_seen;
        if alert.note.is_empty() {
            alert.note = format!("raised by rule {}", rule.cfg.id);
        }
        self.rules
            .raised
            .entry(id.to_string())
            .or_default()
            .push(rule.cfg.id.clone());
        vec![AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Updated as i32,
            alert: Some(alert.to_pb()),
        }]
    }

    /// Timers of the rules: `absence` deadlines and quiet clears. Called about once a second.
    pub fn tick_rules(&mut self, now: i64) -> Vec<AlertChange> {
        let set = self.rules.set.clone();
        let mut out = Vec::new();
        for (ri, anchor, obs) in self.rules.windows.due(now, &set.rules) {
            let Some(rule) = set.rules.get(ri) else {
                continue;
            };
            let key = rule_key(rule, &anchor, &obs);
            if let Some(id) = self.resolve_key(&key) {
                out.extend(self.fold(&id, Cow::Borrowed(&obs.evidence), now, None));
            } else if self.alert_conditions_hold(rule, &anchor) {
                out.extend(self.fire(rule, &anchor, key, vec![obs], now));
            }
        }
        let mut quiet = Vec::new();
        for (ri, id) in self.rules.alerts.iter() {
            let Some(q) = set.rules.get(ri).and_then(|r| r.cfg.clear_quiet_secs) else {
                continue;
            };
            let last = self
                .open
                .get(id)
                .and_then(|a| a.last_seen.as_ref())
                .map(millis_from_ts);
            if last.is_some_and(|t| now - t >= q as i64 * 1000) {
                quiet.push(id.clone());
            }
        }
        for id in quiet {
            out.extend(self.auto_resolve_quiet(&id, now));
        }
        self.rules.windows.sweep(now, &set.rules);
        out
    }

    fn auto_resolve_quiet(&mut self, id: &str, now: i64) -> Vec<AlertChange> {
        let Some(alert) = self.open.get(id) else {
            return Vec::new();
        };
        let ev = alert.evidence.last().cloned().unwrap_or_default();
        self.auto_resolve(
            id,
            ev,
            "quiet: no matching event within clear_quiet_secs",
            now,
        )
    }

    /// Forgets a rule alert's anchor entry (when it is resolved or merged).
    pub(super) fn forget_rule_alert(&mut self, alert: &pb::Alert) {
        if alert.rule_id.is_empty() {
            return;
        }
        if let Some(ri) = self.rules.set.position(&alert.rule_id) {
            self.rules
                .alerts
                .remove(ri, &self.grids, alert.grid_id.as_str(), &alert.id);
        }
        self.rules.raised.remove(&alert.id);
    }

    /// Records open rule alert `id` of `rule` at `anchor`.
    pub(super) fn index_rule_alert(&mut self, rule: &str, anchor: &str, id: String) {
        if let Some(ri) = self.rules.set.position(rule) {
            self.rules.alerts.add(ri, &self.grids, anchor, id);
        }
    }

    /// Whether a sensor reading may matter to the rules: a `when` condition asks for its
    /// kind and state, or a `clear` condition does and its rule has an alert open at one of
    /// the reading's anchors (most normal readings then cost nothing: no observation is
    /// built). Anchors are found from the grid alone; a `within_m` rule is assumed to care.
    pub(super) fn rules_want_sensor(&mut self, ev: &crate::domain::SensorEvent) -> bool {
        let set = self.rules.set.clone();
        let plan = set.sensor_plan(&ev.kind);
        if plan.when_wants(ev.state) {
            return true;
        }
        let clearing = plan.clearing(ev.state);
        let alerts = &self.rules.alerts;
        if !clearing.iter().any(|&ri| alerts.any(ri)) {
            return false;
        }
        // The reading's grid by index (remembered on its sensor): the tests below are bits.
        let at = self.reading_grid(ev);
        let (alerts, grids) = (&self.rules.alerts, &self.grids);
        let g = ev.grid_id.as_str();
        clearing
            .iter()
            .copied()
            .filter(|&ri| alerts.any(ri))
            .any(|ri| {
                let rule = &set.rules[ri].cfg;
                if rule.within_m.is_some() {
                    return true;
                }
                let Some(at) = at else {
                    // A grid the index does not know: only its own anchor, by name.
                    return alerts.has(ri, g);
                };
                match rule.scope {
                    Scope::Grid => alerts.has_at(ri, at),
                    Scope::Neighbours => {
                        alerts.has_at(ri, at)
                            || grids.neighbours(g).iter().any(|n| alerts.has(ri, n))
                    }
                    Scope::Parent => grids.parent_index(at).is_some_and(|p| alerts.has_at(ri, p)),
                    Scope::Tier => grids
                        .ancestor_index(at, rule.tier.unwrap_or(0))
                        .is_some_and(|a| alerts.has_at(ri, a)),
                }
            })
    }
}

/// The shard that owns `grid`: its ancestor at `tier` (or itself when shallower), by index.
pub fn partition_shard(
    grids: &crate::domain::GridIndex,
    tier: usize,
    n: usize,
    grid: &str,
) -> usize {
    let n = n.max(1);
    let root = grids.ancestor_at(grid, tier).unwrap_or(grid);
    match grids.index_of(root) {
        Some(i) => i % n,
        None => {
            root.bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
                % n
        }
    }
}

/// Whether the rule is evaluated at `anchor` for this event. With `neighbours` or
/// `within_m`, an event goes into the windows of every grid around it (so each sees it),
/// but the rule is evaluated only at the event's own grid: one situation, one alert.
fn own_anchor(rule: &Rule, anchor: &str, obs: &Obs) -> bool {
    let spread = rule.cfg.scope == Scope::Neighbours || rule.cfg.within_m.is_some();
    !spread || own_grid(anchor, obs)
}

/// Whether `grid` is one of the event's own grids.
fn own_grid(grid: &str, obs: &Obs) -> bool {
    obs.grids.iter().any(|g| &**g == grid)
}

/// `rule/{id}/{anchor}` plus `/{label}={value}` for each of the rule's labels.
pub fn rule_key(rule: &Rule, anchor: &str, obs: &Obs) -> String {
    let mut key = String::new();
    write_rule_key(&mut key, rule, anchor, obs);
    key
}

/// [`rule_key`], written into `key` (emptied first).
pub(super) fn write_rule_key(key: &mut String, rule: &Rule, anchor: &str, obs: &Obs) {
    key.clear();
    for part in ["rule/", &rule.cfg.id, "/", anchor] {
        key.push_str(part);
    }
    for l in &rule.cfg.labels {
        key.push('/');
        key.push_str(l.as_str());
        key.push('=');
        key.push_str(obs.label(*l).unwrap_or(""));
    }
}

fn render_title(
    rule: &Rule,
    anchor: &str,
    count: usize,
    newest: Option<&Obs>,
    e: &Engine,
) -> String {
    use crate::config::Label as L;
    let mut out = rule.cfg.title.clone();
    let label = |l: L| newest.and_then(|o| o.label(l)).unwrap_or("");
    for name in [
        "{grid_name}",
        "{grid}",
        "{count}",
        "{rule}",
        "{kind}",
        "{sensor}",
        "{camera}",
        "{category}",
        "{item_code}",
    ] {
        if !out.contains(name) {
            continue;
        }
        // Made only for a placeholder the title has.
        let value: Cow<str> = match name {
            "{grid_name}" => e.grids.name(anchor).into(),
            "{grid}" => anchor.into(),
            "{count}" => count.to_string().into(),
            "{rule}" => rule.cfg.id.as_str().into(),
            "{kind}" => label(L::Kind).into(),
            "{sensor}" => label(L::Sensor).into(),
            "{camera}" => label(L::Camera).into(),
            "{category}" => label(L::Category).into(),
            _ => label(L::ItemCode).into(),
        };
        out = out.replace(name, &value);
    }
    out
}

fn state_name(o: &Obs) -> &'static str {
    o.state.map(|s| s.as_str()).unwrap_or("")
}
