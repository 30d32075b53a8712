//! The first, built-in correlation: pure state, no I/O, no clock of its own.
//!
//! - A sensor in alarm opens an alert keyed by (sensor, kind); repeats fold into it
//!   (`count`, `last_seen`, latest evidence), never a second open alert for the key. An
//!   alert that only repeats is sent at most once per `update_interval_ms` (`correlate/held.rs`).
//! - A sensor in fault opens a WARNING alert keyed by the sensor.
//! - An incident opens an alert, unless a sensor-alarm alert in the same grid was seen
//!   within the window: then it joins that alert, and a sensor alarm likewise joins an
//!   incident's alert. The first time an alert holds both, its severity is raised.
//! - Operators acknowledge and resolve; a stale `expected_version` is refused.
//!
//! Invariants: every key in `by_key` points at an alert in `open`; an alert in `open` is
//! OPEN or ACKNOWLEDGED; versions grow by one per change. The rule engine of a later issue
//! replaces this module behind the same inputs and outputs ([`Engine::on_sensor`],
//! [`Engine::on_incident`], [`Engine::command`]).

use crate::domain::{keys, AlertChange};
use foldhash::{HashMap, HashMapExt};
use std::{borrow::Cow, sync::Arc};

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};

use super::{open_alert::OpenAlert, rules::Obs, silence::SilenceSet};
use crate::{
    config::CorrelationConfig,
    domain::{GridIndex, SensorEvent, SensorState, Severity},
    store::Ids,
};

/// Most evidence items kept on one alert (the count keeps growing past it).
pub const MAX_EVIDENCE: usize = 32;

/// What an operator asks of an alert.
#[derive(Debug, Clone)]
pub enum Action {
    /// Acknowledge it.
    Acknowledge,
    /// Resolve it.
    Resolve,
    /// Add the command's note to it (no version check: notes never conflict).
    Note,
    /// A linked incident took a step (the desk, after it is durable): show where it stands
    /// now in `incidents`, and the command's note (no version check: the step was checked
    /// against the incident's own version).
    Incident(Box<pb::Incident>),
}

impl Action {
    /// Whether the command must name the alert's current version.
    fn checks_version(&self) -> bool {
        matches!(self, Action::Acknowledge | Action::Resolve)
    }
}

/// Most notes an alert keeps (the oldest go first).
pub const MAX_ALERT_NOTES: usize = 100;

/// An operator's command.
#[derive(Debug, Clone)]
pub struct Command {
    /// The alert.
    pub alert_id: String,
    /// What to do.
    pub action: Action,
    /// The version the operator saw.
    pub expected_version: u64,
    /// Who (the token's name).
    pub actor: String,
    /// Optional note.
    pub note: String,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The alert is not open here (unknown, or resolved).
    #[error("alert {0} is not open")]
    NotOpen(String),
    /// `expected_version` is not the current version.
    #[error("alert {id} is at version {current}, not {expected}")]
    Stale {
        /// The alert.
        id: String,
        /// Its version.
        current: u64,
        /// What the caller expected.
        expected: u64,
    },
    /// The alert was already acknowledged.
    #[error("alert {0} is already acknowledged")]
    AlreadyAcknowledged(String),
}

/// The correlation state of one shard.
pub struct Engine {
    cfg: CorrelationConfig,
    ids: Arc<Ids>,
    open: HashMap<String, OpenAlert>,
    by_key: HashMap<String, String>,
    /// The keys pointing at each alert (the inverse of `by_key`, possibly with stale ones).
    keys_of: HashMap<String, Vec<String>>,
    by_grid: HashMap<String, Vec<String>>,
    /// Every sensor heard from: last reading, flap state (see `engine_noise.rs`).
    sensors: super::sensor_book::SensorBook,
    /// Cameras covering each grid, in config order (for `camera_ids` and snapshots).
    cameras_by_grid: HashMap<String, Vec<String>>,
    camera_rules: camera::CameraRules,
    grids: Arc<GridIndex>,
    silences: Arc<SilenceSet>,
    rules: rules_layer::RuleState,
    noise: noise_layer::NoiseState,
    groups: group_layer::Groups,
    last_tick: i64,
    /// Open alerts folded into whose update is held back (see [`Engine::flush_folds`]).
    held: super::held::Held,
    /// Inside [`Engine::begin_batch`] / [`Engine::end_batch`].
    batching: bool,
}

/// An alert raised from outside the sources (e.g. supervision of an overdue incident).
#[derive(Debug, Clone)]
pub struct RaiseAlert {
    /// De-duplication key: while an alert with this key is open, raising folds into it.
    pub key: String,
    /// Severity when it opens.
    pub severity: Severity,
    /// Title when it opens.
    pub title: String,
    /// Grid it belongs to.
    pub grid: String,
    /// What caused it.
    pub evidence: pb::Evidence,
}

impl Engine {
    /// An empty engine.
    pub fn new(cfg: CorrelationConfig, ids: Arc<Ids>) -> Self {
        Self {
            cfg,
            ids,
            open: HashMap::new(),
            by_key: HashMap::new(),
            keys_of: HashMap::new(),
            by_grid: HashMap::new(),
            sensors: Default::default(),
            cameras_by_grid: HashMap::new(),
            camera_rules: camera::CameraRules::default(),
            grids: Arc::new(GridIndex::default()),
            silences: Arc::new(SilenceSet::default()),
            rules: rules_layer::RuleState::default(),
            noise: noise_layer::NoiseState::default(),
            groups: group_layer::Groups::default(),
            last_tick: 0,
            held: super::held::Held::default(),
            batching: false,
        }
    }

    /// Sets the grid tree (at start and on reload).
    pub fn set_grids(&mut self, grids: Arc<GridIndex>) {
        self.grids = grids;
        self.sensors.grids_changed();
        self.rules.near.clear();
        self.rules.alerts.reindex(&self.grids);
    }

    /// Sets the silences in force (whenever one is created or expired). Open alerts are
    /// looked at again on their next change.
    pub fn set_silences(&mut self, silences: Arc<SilenceSet>) {
        self.silences = silences;
        self.silences_changed();
    }

    /// Starts a batch: until [`Engine::end_batch`], calls send no held-back updates (see
    /// `correlation.update_interval_ms`); the batch's end sends those that are due. A shard wraps
    /// each batch of readings in one.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch at `now` (ms): the held-back updates that are due.
    pub fn end_batch(&mut self, now: i64) -> Vec<AlertChange> {
        self.batching = false;
        self.flush_folds(now)
    }

    /// Repeats that only fold into an open alert do not send it each time: the alert is
    /// held back (see [`super::held`]), and sent once `correlation.update_interval_ms` has
    /// passed since its last change went out, in its latest state (so a county-wide alert
    /// that a thousand alarms a second fold into costs one update a second, not a
    /// thousand). Returns the `Updated` changes due at `now`, in the order they fell due.
    fn flush_folds(&mut self, now: i64) -> Vec<AlertChange> {
        if !self.held.any_due(now) {
            return Vec::new();
        }
        let due = self.held.take_due(now, self.cfg.update_interval_ms as i64);
        self.send_held(due)
    }

    /// The `Updated` changes of held alerts that are still open at the version held.
    fn send_held(&mut self, held: Vec<(String, u64)>) -> Vec<AlertChange> {
        let mut out = Vec::with_capacity(held.len());
        for (id, version) in held {
            let Some(alert) = self.open.get_mut(&id).filter(|a| a.version == version) else {
                continue;
            };
            alert.version += 1;
            out.push(AlertChange {
                seq: 0,
                kind: pb::ChangeKind::Updated as i32,
                alert: Some(alert.to_pb()),
            });
        }
        out
    }

    /// Every held-back update, due or not (when the shard stops, so that nothing folded is
    /// lost from the store).
    pub fn drain(&mut self) -> Vec<AlertChange> {
        let all = self.held.take_all();
        self.send_held(all)
    }

    /// Ends a public call at `now`: outside a batch, appends the held-back updates due.
    pub(super) fn finish(&mut self, mut out: Vec<AlertChange>, now: i64) -> Vec<AlertChange> {
        if !self.batching {
            out.extend(self.flush_folds(now));
        }
        out
    }

    /// Registers (or withdraws) the changed alerts as inhibitors; call with every batch of
    /// changes this engine produced.
    pub fn note(&self, changes: &[AlertChange]) {
        for a in changes.iter().filter_map(|c| c.alert.as_ref()) {
            self.track_inhibitor(a);
        }
    }

    /// Timers: rule deadlines and quiet clears. Called about once a second.
    pub fn tick(&mut self, now: i64) -> Vec<AlertChange> {
        let mut out = self.tick_rules(now);
        out.extend(self.tick_noise(now));
        out.extend(self.tick_groups(now));
        self.last_tick = now;
        self.finish(out, now)
    }

    /// Opens an alert under `r.key`, or folds `r.evidence` into the open one.
    pub fn raise(&mut self, r: RaiseAlert, now: i64) -> Vec<AlertChange> {
        if let Some(id) = self.resolve_key(&r.key) {
            let out = self.fold(&id, Cow::Owned(r.evidence), now, None);
            return self.finish(out, now);
        }
        vec![self.open_alert(r.key, r.severity, r.title, &r.grid, r.evidence, now)]
    }

    /// Takes back alerts that were open when the daemon stopped.
    pub fn restore(&mut self, alert: pb::Alert) {
        // A rule alert holds the keys of the alerts it merged (when its rule merges); an
        // open single-source alert always holds its own.
        let rule_merges = alert.rule_id.is_empty()
            || self
                .rules
                .set
                .position(&alert.rule_id)
                .is_none_or(|i| self.rules.set.rules[i].cfg.merge);
        for ev in alert.evidence.iter().filter(|_| rule_merges) {
            if let Some(key) = evidence_key(ev) {
                if alert.rule_id.is_empty() {
                    self.bind_key(key, &alert.id);
                } else {
                    if !self.by_key.contains_key(&key) {
                        self.bind_key(key, &alert.id);
                    }
                }
            }
        }
        if !alert.dedup_key.is_empty() {
            self.bind_key(alert.dedup_key.clone(), &alert.id);
        }
        if !alert.rule_id.is_empty() {
            self.index_rule_alert(&alert.rule_id, &alert.grid_id, alert.id.clone());
        }
        self.by_grid
            .entry(alert.grid_id.clone())
            .or_default()
            .push(alert.id.clone());
        self.open.insert(alert.id.clone(), alert.into());
    }

    /// The open alert holding de-duplication key `key`.
    pub fn open_id(&self, key: &str) -> Option<String> {
        self.by_key.get(key).cloned()
    }

    /// The version of open alert `id`.
    pub fn open_version(&self, id: &str) -> Option<u64> {
        self.open.get(id).map(|a| a.version)
    }

    /// Open alerts held.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Before a batch of readings: brings the table buckets of their sensors into the
    /// cache, so the lookups of the batch do not each wait for memory in turn.
    pub fn prefetch_batch<'a>(&self, readings: impl Iterator<Item = &'a SensorEvent>) {
        for ev in readings {
            self.sensors.prefetch_bucket(&ev.sensor_id);
        }
    }

    /// One reading ahead in a batch: brings the next reading's sensor into the cache while
    /// this one is handled.
    pub fn prefetch_next(&self, next: &SensorEvent) {
        self.sensors.prefetch_track(&next.sensor_id);
    }

    /// Whether this reading repeats the sensor's previous one exactly (a redelivery).
    pub fn is_repeat(&mut self, ev: &SensorEvent) -> bool {
        let sig = Some((ev.device_ms, ev.state, ev.reading.map(f64::to_bits)));
        std::mem::replace(&mut self.sensor_track(&ev.sensor_id).sig, sig) == sig
    }

    /// A sensor reading (with its stored id); returns the alert changes it causes: its
    /// single-source alert first, then what the rules make of it.
    pub fn on_sensor(&mut self, event_id: u64, ev: &SensorEvent) -> Vec<AlertChange> {
        let mut out = self.on_sensor_base(event_id, ev);
        if self.rules_want_sensor(ev) {
            let rules = self.observe_after(Obs::sensor(event_id, ev), ev.receive_ms, &out);
            out.extend(rules);
        }
        self.finish(out, ev.receive_ms)
    }

    fn on_sensor_base(&mut self, event_id: u64, ev: &SensorEvent) -> Vec<AlertChange> {
        let flapping = self.note_flap(ev);
        if ev.state == SensorState::Normal {
            return self.on_normal(ev, flapping);
        }
        let mut out = self.on_sensor_alert(event_id, ev);
        if flapping && ev.state == SensorState::Alarm {
            let key = keys::sensor_key(&ev.sensor_id, &ev.kind);
            self.mark_flapping(&key);
            // The change shows the alert as now held (marked): share it, no second copy.
            let held = self.by_key.get(&key).and_then(|id| self.open.get(id));
            let held = held.map(|a| a.to_pb());
            for c in &mut out {
                if let Some(a) = c.alert.as_mut().filter(|a| a.dedup_key == key) {
                    match &held {
                        Some(h) if h.id == a.id && h.version == a.version => *a = h.clone(),
                        _ => Arc::make_mut(a).flapping = true,
                    }
                }
            }
        }
        out
    }

    fn on_sensor_alert(&mut self, event_id: u64, ev: &SensorEvent) -> Vec<AlertChange> {
        let now = ev.receive_ms;
        let (key, severity) = match ev.state {
            SensorState::Normal => return Vec::new(),
            SensorState::Alarm => (
                keys::sensor_key(&ev.sensor_id, &ev.kind),
                self.cfg
                    .sensor_severity
                    .get(&ev.kind)
                    .copied()
                    .unwrap_or(self.cfg.default_sensor_severity),
            ),
            SensorState::Fault => (keys::fault_key(&ev.sensor_id), Severity::Warning),
        };
        let evidence = pb::Evidence {
            time: Some(ts_from_millis(ev.device_ms)),
            item: Some(pb::evidence::Item::SensorEvent(ev.to_pb(event_id))),
        };
        if let Some(id) = self.resolve_key(&key) {
            return self.fold(&id, Cow::Owned(evidence), now, None);
        }
        if ev.state == SensorState::Alarm {
            if let Some(id) = self.partner(&ev.grid_id, now, Source::Incident) {
                self.bind_key(key, &id);
                return self.fold(&id, Cow::Owned(evidence), now, Some(severity));
            }
        }
        // The title only for a new alert (a repeat folds into one that has it).
        let title = if ev.state == SensorState::Alarm {
            format!("{} alarm at sensor {}", pretty_kind(&ev.kind), ev.sensor_id)
        } else {
            format!("Sensor {} ({}) reports a fault", ev.sensor_id, ev.kind)
        };
        vec![self.open_alert(key, severity, title, &ev.grid_id, evidence, now)]
    }

    /// A new incident; returns it (with `alert_id` set) and the alert changes it causes.
    pub fn on_incident(
        &mut self,
        mut inc: pb::Incident,
        now: i64,
    ) -> (pb::Incident, Vec<AlertChange>) {
        let key = keys::incident_key(&inc.id);
        let severity = self.cfg.incident_severity;
        let mut shown = inc.clone();
        shown.alert_id.clear();
        let evidence = pb::Evidence {
            time: inc.reported_at,
            item: Some(pb::evidence::Item::Incident(Box::new(shown))),
        };
        let changes = match self.partner(&inc.grid_id, now, Source::Sensor) {
            Some(id) => {
                self.bind_key(key, &id);
                self.fold(&id, Cow::Owned(evidence), now, Some(severity))
            }
            None => {
                let title = format!(
                    "{} report {}: {}",
                    category_name(inc.category),
                    inc.item_code,
                    short(&inc.description)
                );
                vec![self.open_alert(key, severity, title, &inc.grid_id.clone(), evidence, now)]
            }
        };
        let mut changes = changes;
        let rules = self.observe_after(Obs::incident(&shown_for_rules(&inc), now), now, &changes);
        changes.extend(rules);
        let changes = self.finish(changes, now);
        // The incident is evidence of the last alert that took it in (a rule's, if one fired).
        if let Some(a) = changes
            .iter()
            .rev()
            .filter_map(|c| c.alert.as_ref())
            .filter(|a| a.merged_into.is_empty())
            .find(|a| a.incident_ids.contains(&inc.id))
        {
            inc.alert_id = a.id.clone();
        }
        (inc, changes)
    }

    /// An operator's command; returns the change, or why it was refused.
    pub fn command(&mut self, cmd: &Command, now: i64) -> Result<AlertChange, CommandError> {
        let Some(alert) = self.open.get_mut(&cmd.alert_id) else {
            return Err(CommandError::NotOpen(cmd.alert_id.clone()));
        };
        if alert.version != cmd.expected_version && cmd.action.checks_version() {
            return Err(CommandError::Stale {
                id: alert.id.clone(),
                current: alert.version,
                expected: cmd.expected_version,
            });
        }
        let kind = match cmd.action {
            Action::Acknowledge => {
                if alert.status == pb::AlertStatus::Acknowledged as i32 {
                    return Err(CommandError::AlreadyAcknowledged(alert.id.clone()));
                }
                alert.status = pb::AlertStatus::Acknowledged as i32;
                alert.acknowledged_by = cmd.actor.clone();
                alert.acknowledged_at = Some(ts_from_millis(now));
                pb::ChangeKind::Acknowledged
            }
            Action::Resolve => {
                alert.status = pb::AlertStatus::Resolved as i32;
                alert.resolved_by = cmd.actor.clone();
                pb::ChangeKind::Resolved
            }
            Action::Note => pb::ChangeKind::Updated,
            Action::Incident(ref inc) => {
                super::linked::show(alert, inc, &cmd.actor);
                pb::ChangeKind::Updated
            }
        };
        if !cmd.note.is_empty() {
            alert.note = cmd.note.clone();
            if alert.notes.len() >= MAX_ALERT_NOTES {
                alert.notes.remove(0);
            }
            alert.notes.push(pb::AlertNote {
                by: cmd.actor.clone(),
                at: Some(ts_from_millis(now)),
                text: cmd.note.clone(),
            });
        }
        alert.version += 1;
        alert.updated_at = Some(ts_from_millis(now));
        let change = AlertChange {
            seq: 0,
            kind: kind as i32,
            alert: Some(alert.to_pb()),
        };
        if matches!(cmd.action, Action::Resolve) {
            self.forget(&cmd.alert_id);
        }
        Ok(change)
    }

    fn open_alert(
        &mut self,
        key: String,
        severity: Severity,
        title: String,
        grid: &str,
        evidence: pb::Evidence,
        now: i64,
    ) -> AlertChange {
        let id = self.ids.next_alert();
        let at = Some(ts_from_millis(now));
        let alert = pb::Alert {
            id: id.clone(),
            seq: 0,
            version: 1,
            severity: severity.to_pb() as i32,
            status: pb::AlertStatus::Open as i32,
            title,
            grid_id: grid.to_string(),
            evidence: vec![evidence],
            first_seen: at,
            last_seen: at,
            count: 1,
            dedup_key: key.clone(),
            acknowledged_by: String::new(),
            resolved_by: String::new(),
            note: String::new(),
            updated_at: at,
            ..Default::default()
        };
        let mut alert = alert;
        let own = evidence_camera(&alert.evidence[0]);
        self.attach_cameras(&mut alert, &own, now);
        link_incidents(&mut alert);
        self.mute(&mut alert, now);
        self.bind_key(key, &id);
        self.by_grid
            .entry(grid.to_string())
            .or_default()
            .push(id.clone());
        let open = OpenAlert::from(alert);
        let alert = open.to_pb();
        self.open.insert(id, open);
        AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Opened as i32,
            alert: Some(alert),
        }
    }

    /// Folds one more piece of evidence into an open alert. `joining` is the severity of
    /// the new source when it correlates with the alert rather than repeating it.
    fn fold(
        &mut self,
        id: &str,
        ev: Cow<'_, pb::Evidence>,
        now: i64,
        joining: Option<Severity>,
    ) -> Vec<AlertChange> {
        let Some(alert) = self.open.get_mut(id) else {
            return Vec::new();
        };
        if let Some(new_sev) = joining {
            let had_both = has(alert, Source::Sensor) && has(alert, Source::Incident);
            let current = Severity::from_pb(alert.severity).unwrap_or(Severity::Info);
            if !had_both {
                alert.severity = current
                    .max(new_sev)
                    .raised(self.cfg.correlated_raise)
                    .to_pb() as i32;
                alert.title = format!("{} + {}", alert.title, joined_title(&ev));
            }
        }
        if let Some(pb::evidence::Item::Incident(i)) = &ev.item {
            super::linked::link(alert, i);
        }
        alert.add_evidence(ev);
        let silenced = alert.silenced_by.is_empty()
            && match self.silences.matching(alert, &self.grids, now) {
                Some(s) => {
                    alert.silenced_by = s.to_string();
                    true
                }
                None => false,
            };
        alert.count += 1;
        let sent = alert.updated_at.as_ref().map_or(now, millis_from_ts);
        alert.last_seen = Some(ts_from_millis(now));
        alert.updated_at = alert.last_seen;
        if joining.is_none() && !silenced {
            // A repeat: held back (see `flush_folds`).
            let interval = self.cfg.update_interval_ms as i64;
            self.held.hold(id, alert.version, sent, interval);
            return Vec::new();
        }
        alert.version += 1;
        vec![AlertChange {
            seq: 0,
            kind: pb::ChangeKind::Updated as i32,
            alert: Some(alert.to_pb()),
        }]
    }

    /// The most recently seen open alert in `grid`, within the window, holding evidence
    /// from `want`.
    fn partner(&self, grid: &str, now: i64, want: Source) -> Option<String> {
        let window = self.cfg.window_secs as i64 * 1000;
        self.by_grid
            .get(grid)?
            .iter()
            .filter_map(|id| self.open.get(id))
            .filter(|a| has(a, want))
            .filter(|a| {
                a.last_seen
                    .as_ref()
                    .is_some_and(|t| now - gridsight_proto::millis_from_ts(t) <= window)
            })
            .max_by_key(|a| a.last_seen.as_ref().map(gridsight_proto::millis_from_ts))
            .map(|a| a.id.clone())
    }

    /// Points `key` at alert `id` (and remembers it among the alert's keys, so forgetting
    /// the alert never scans every key).
    pub(super) fn bind_key(&mut self, key: String, id: &str) {
        if let Some((sensor, _kind)) = key.strip_prefix("sensor/").and_then(|k| k.rsplit_once('/'))
        {
            self.sensor_track(sensor).keyed = true;
        }
        self.keys_of
            .entry(id.to_string())
            .or_default()
            .push(key.clone());
        self.by_key.insert(key, id.to_string());
    }

    /// The alert holding `key`: one of ours, or a rule alert of another shard that merged
    /// ours (events fold into it there). A key left pointing at a closed foreign alert is
    /// dropped.
    pub(super) fn resolve_key(&mut self, key: &str) -> Option<String> {
        let id = self.by_key.get(key)?;
        if self.open.contains_key(id) || self.noise.inhibitors.rule_alerts.contains(id) {
            return Some(id.clone());
        }
        let id = id.clone();
        self.by_key.remove(key);
        if let Some(keys) = self.keys_of.get_mut(&id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.keys_of.remove(&id);
            }
        }
        None
    }

    /// Merges a single-source alert of ours, by key, into rule alert `into` of another
    /// shard (asked by that shard when its rule fired on our alert's evidence).
    pub fn merge_foreign(
        &mut self,
        key: &str,
        into: &str,
        rule: &str,
        now: i64,
    ) -> Vec<AlertChange> {
        let Some(bid) = self.by_key.get(key).cloned() else {
            return Vec::new();
        };
        let out = self
            .merge_into(&bid, into, rule, now)
            .map(|(c, _, _)| vec![c])
            .unwrap_or_default();
        self.finish(out, now)
    }

    /// Merges this engine's rules asked of other shards: (grid of the alert, its key, the
    /// rule alert, the rule).
    pub fn take_foreign_merges(&mut self) -> Vec<(String, String, String, String)> {
        std::mem::take(&mut self.rules.foreign_merges)
    }

    /// Marks `alert` silenced when a silence in force matches it.
    fn mute(&self, alert: &mut pb::Alert, now: i64) {
        if let Some(s) = self.silences.matching(alert, &self.grids, now) {
            alert.silenced_by = s.to_string();
        }
        if let Some(i) = self.inhibitor_of(alert) {
            alert.inhibited_by = i;
        }
    }

    fn forget(&mut self, id: &str) {
        if let Some(alert) = self.open.remove(id) {
            self.forget_rule_alert(&alert);
            for key in self.keys_of.remove(id).unwrap_or_default() {
                if self.by_key.get(&key).is_some_and(|v| v == id) {
                    self.by_key.remove(&key);
                }
            }
            if let Some(ids) = self.by_grid.get_mut(&alert.grid_id) {
                ids.retain(|x| x != id);
                if ids.is_empty() {
                    self.by_grid.remove(&alert.grid_id);
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Source {
    Sensor,
    Incident,
    Camera,
}

fn has(a: &pb::Alert, want: Source) -> bool {
    a.evidence.iter().any(|e| match (&e.item, want) {
        (Some(pb::evidence::Item::SensorEvent(s)), Source::Sensor) => {
            s.state == pb::SensorState::Alarm as i32
        }
        (Some(pb::evidence::Item::Incident(_)), Source::Incident) => true,
        (Some(pb::evidence::Item::CameraEvent(c)), Source::Camera) => {
            c.kind == pb::CameraEventKind::Activity as i32
        }
        _ => false,
    })
}

fn evidence_key(e: &pb::Evidence) -> Option<String> {
    match &e.item {
        Some(pb::evidence::Item::SensorEvent(s)) if s.state == pb::SensorState::Fault as i32 => {
            Some(keys::fault_key(&s.sensor_id))
        }
        Some(pb::evidence::Item::SensorEvent(s)) => Some(keys::sensor_key(&s.sensor_id, &s.kind)),
        Some(pb::evidence::Item::Incident(i)) => Some(keys::incident_key(&i.id)),
        Some(pb::evidence::Item::CameraEvent(c)) => camera::camera_key(c),
        None => None,
    }
}

/// The incident as rules and evidence show it (no alert id yet).
fn shown_for_rules(inc: &pb::Incident) -> pb::Incident {
    let mut shown = inc.clone();
    shown.alert_id.clear();
    shown
}

/// Links the incidents among the evidence (in order, once each).
fn link_incidents(alert: &mut pb::Alert) {
    let evidence = std::mem::take(&mut alert.evidence);
    for e in &evidence {
        if let Some(pb::evidence::Item::Incident(i)) = &e.item {
            super::linked::link(alert, i);
        }
    }
    alert.evidence = evidence;
}

fn joined_title(e: &pb::Evidence) -> String {
    match &e.item {
        Some(pb::evidence::Item::SensorEvent(s)) => format!("{} alarm", pretty_kind(&s.kind)),
        Some(pb::evidence::Item::Incident(i)) => format!("{} report", category_name(i.category)),
        Some(pb::evidence::Item::CameraEvent(c)) => format!("activity on camera {}", c.camera_id),
        None => String::new(),
    }
}

fn pretty_kind(kind: &str) -> String {
    let mut s = kind.replace('_', " ");
    if let Some(first) = s.get(0..1) {
        let up = first.to_ascii_uppercase();
        s.replace_range(0..1, &up);
    }
    s
}

fn category_name(c: i32) -> &'static str {
    match pb::IncidentCategory::try_from(c) {
        Ok(pb::IncidentCategory::Dispute) => "Dispute",
        Ok(pb::IncidentCategory::SafetyHazard) => "Safety hazard",
        Ok(pb::IncidentCategory::CentralTask) => "Central task",
        Ok(pb::IncidentCategory::PublicService) => "Public service",
        _ => "Incident",
    }
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// The camera an evidence item comes from, if any.
fn evidence_camera(e: &pb::Evidence) -> Option<String> {
    match &e.item {
        Some(pb::evidence::Item::CameraEvent(c)) => Some(c.camera_id.clone()),
        _ => None,
    }
}

#[path = "engine_camera.rs"]
mod camera;
#[path = "engine_group.rs"]
mod group_layer;
#[path = "engine_noise.rs"]
pub mod noise_layer;
#[cfg(test)]
#[path = "engine_noise_tests.rs"]
mod noise_tests;
#[path = "engine_rules.rs"]
pub mod rules_layer;
#[path = "engine_spread.rs"]
mod spread_layer;
pub use camera::{snapshot_url, CameraRules, MAX_ALERT_CAMERAS};
pub use noise_layer::Inhibitors;
pub use rules_layer::{partition_shard, rule_key, Partition};

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
