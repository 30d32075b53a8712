//! Noise control in the engine: flap suppression, inhibition, silences over time, and
//! escalation chains.
//!
//! - **Flap**: each sensor's alarm ↔ normal changes are counted over `flap.window_secs`;
//!   at `flap.changes` the sensor is flapping: its alert is marked `flapping` and stays
//!   open through normals, and closes once the sensor has been normal for the window.
//! - **Inhibition**: an open alert matching an `inhibit.source` is registered in the
//!   [`Inhibitors`] shared by all shards (it may explain alerts on every shard); alerts in
//!   its grid or beneath it matching `inhibit.target` get `inhibited_by`. Shards notice a
//!   new registry version on their next tick and re-check their open alerts, so a mute
//!   lands within about a second everywhere. The registry is touched only when such an
//!   alert opens or closes, never per event.
//! - **Silences** are re-checked on the tick after a new set arrives and when one starts
//!   or ends.
//! - **Escalation**: an open, unacknowledged, unmuted alert climbs the first matching chain:
//!   at each step's `after_secs` (since it opened) its severity goes up, `escalation_level`
//!   grows, `escalated_to` names the grid of the next tier up, and an `ESCALATED` change
//!   goes out. Acknowledging stops it.

use crate::domain::AlertChange;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        RwLock,
    },
};

use foldhash::HashSet;

use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};

use super::Engine;
use crate::{
    config::AlertMatch,
    domain::{SensorEvent, SensorState, Severity},
};

/// What shards share: the open alerts that inhibit others, and the open rule alerts (a
/// rule alert may hold keys of single-source alerts that live on other shards). Touched
/// only when such an alert opens or closes, never per event.
#[derive(Debug, Default)]
pub struct Inhibitors {
    pub(super) version: AtomicU64,
    /// (alert id, its grid, index of the `inhibit` entry it is a source for).
    pub(super) list: RwLock<Vec<(String, String, usize)>>,
    /// Ids of the open rule alerts of every shard.
    pub(super) rule_alerts: dashmap::DashSet<String>,
}

impl Inhibitors {
    fn set(&self, id: &str, grid: &str, entries: &[usize]) {
        let Ok(mut list) = self.list.write() else {
            return;
        };
        let before = list.len();
        let had: Vec<usize> = list.iter().filter(|x| x.0 == id).map(|x| x.2).collect();
        if had == entries {
            return;
        }
        list.retain(|x| x.0 != id);
        list.extend(
            entries
                .iter()
                .map(|e| (id.to_string(), grid.to_string(), *e)),
        );
        if list.len() != before || !entries.is_empty() {
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// A sensor's grid as its last reading named it: the grid's index, for the grids of
/// `generation` ([`SensorBook::grids_generation`]), and a 64-bit fingerprint of the id it
/// was found by. A reading naming the same id finds the index without reading the grid's
/// name (a cache miss on every reading when it was compared); two ids with one
/// fingerprint are a 2⁻⁶⁴ chance, taken.
///
/// [`SensorBook::grids_generation`]: super::sensor_book::SensorBook::grids_generation
#[derive(Debug, Clone, Copy)]
pub struct GridMemo {
    ix: u32,
    generation: u32,
    fingerprint: u64,
}

impl GridMemo {
    fn fingerprint(grid: &str) -> u64 {
        use std::hash::BuildHasher;
        foldhash::quality::FixedState::with_seed(0x67726964).hash_one(grid)
    }
}

/// Per-sensor flap state.
#[derive(Debug, Default)]
pub struct Flap {
    changes: VecDeque<i64>,
    last: Option<SensorState>,
    flapping: bool,
    normal_since: Option<i64>,
}

/// What one engine keeps of each sensor it has heard from (see `correlate/sensor_book.rs`).
/// Never dropped: a sensor's last state is what tells its next reading a change.
#[derive(Debug, Default)]
pub struct SensorTrack {
    /// (device ms, state, reading bits) of the latest reading: a redelivery repeats it.
    pub(crate) sig: Option<(i64, SensorState, Option<u64>)>,
    /// Its state changes, for flap suppression.
    pub(crate) flap: Flap,
    /// Whether a `sensor/{id}/…` key was ever bound in this engine: without one, a normal
    /// reading has no alert of its own to close, and no key is built for it.
    pub(crate) keyed: bool,
    /// The grid its last reading named, by index (checked on every use: a sensor may move,
    /// the grids may be reloaded).
    pub(crate) grid: Option<GridMemo>,
}

/// The noise-control state of one engine.
#[derive(Debug, Default)]
pub struct NoiseState {
    pub(super) inhibitors: std::sync::Arc<Inhibitors>,
    seen_inhibitors: u64,
    silences_changed: bool,
    /// Sensors with a state change within the flap window, or flapping: the ones the tick
    /// looks at (their state is in [`SensorTrack::flap`]).
    pub(super) watched: HashSet<String>,
}

/// Whether `m` selects `a`.
pub fn alert_matches(m: &AlertMatch, a: &pb::Alert) -> bool {
    m.rule.as_ref().is_none_or(|r| *r == a.rule_id)
        && m.dedup_key_prefix
            .as_ref()
            .is_none_or(|p| a.dedup_key.starts_with(p.as_str()))
        && m.min_severity
            .is_none_or(|s| Severity::from_pb(a.severity).is_some_and(|x| x >= s))
}

impl Engine {
    /// Shares the inhibitor registry of all shards with this engine.
    pub fn set_inhibitors(&mut self, inhibitors: std::sync::Arc<Inhibitors>) {
        self.noise.inhibitors = inhibitors;
    }

    /// Notes that the silences changed: open alerts are re-checked on the next tick.
    pub(super) fn silences_changed(&mut self) {
        self.noise.silences_changed = true;
    }

    /// Registers or withdraws `alert` as an inhibitor (and as an open rule alert), after
    /// any change to it.
    pub(super) fn track_inhibitor(&self, alert: &pb::Alert) {
        let open = alert.status != pb::AlertStatus::Resolved as i32;
        if !alert.rule_id.is_empty() {
            if open {
                if !self.noise.inhibitors.rule_alerts.contains(&alert.id) {
                    self.noise.inhibitors.rule_alerts.insert(alert.id.clone());
                }
            } else {
                self.noise.inhibitors.rule_alerts.remove(&alert.id);
            }
        }
        if self.cfg.inhibit.is_empty() {
            return;
        }
        let entries: Vec<usize> = self
            .cfg
            .inhibit
            .iter()
            .enumerate()
            .filter(|(_, x)| open && alert_matches(&x.source, alert))
            .map(|(i, _)| i)
            .collect();
        self.noise
            .inhibitors
            .set(&alert.id, &alert.grid_id, &entries);
    }

    /// The inhibitor that mutes `alert`, if any.
    pub(super) fn inhibitor_of(&self, alert: &pb::Alert) -> Option<String> {
        if self.cfg.inhibit.is_empty() {
            return None;
        }
        let list = self.noise.inhibitors.list.read().ok()?;
        list.iter()
            .find(|(id, grid, entry)| {
                *id != alert.id
                    && self.grids.is_within(&alert.grid_id, grid)
                    && self
                        .cfg
                        .inhibit
                        .get(*entry)
                        .is_some_and(|x| alert_matches(&x.target, alert))
            })
            .map(|(id, _, _)| id.clone())
    }

    /// Flap bookkeeping for a reading; returns whether the sensor is flapping now.
    pub(super) fn note_flap(&mut self, ev: &SensorEvent) -> bool {
        let (changes, window_secs) = (self.cfg.flap.changes, self.cfg.flap.window_secs);
        // Flapping only changes how normals close alerts: nothing to track otherwise.
        if changes == 0 || !self.cfg.sensor_clear_on_normal || ev.state == SensorState::Fault {
            return false;
        }
        let window = window_secs as i64 * 1000;
        let f = &mut self.sensor_track(&ev.sensor_id).flap;
        let mut watch = false;
        if f.last.is_some_and(|s| s != ev.state) {
            watch = f.changes.is_empty() && !f.flapping;
            f.changes.push_back(ev.receive_ms);
        }
        f.last = Some(ev.state);
        while f
            .changes
            .front()
            .is_some_and(|t| *t < ev.receive_ms - window)
        {
            f.changes.pop_front();
        }
        if f.changes.len() >= changes as usize {
            f.flapping = true;
        }
        f.normal_since = match ev.state {
            SensorState::Normal => f.normal_since.or(Some(ev.receive_ms)),
            _ => None,
        };
        let flapping = f.flapping;
        if watch {
            self.noise.watched.insert(ev.sensor_id.clone());
        }
        flapping
    }

    /// The sensor's track, made when it is new.
    pub(super) fn sensor_track(&mut self, sensor: &str) -> &mut SensorTrack {
        self.sensors.track(sensor)
    }

    /// The index of the reading's grid, remembered on its sensor's track; `None` for a grid
    /// the index does not know.
    pub(super) fn reading_grid(&mut self, ev: &SensorEvent) -> Option<usize> {
        let grids = &self.grids;
        let generation = self.sensors.grids_generation();
        let fingerprint = GridMemo::fingerprint(&ev.grid_id);
        let t = self.sensors.track(&ev.sensor_id);
        if let Some(m) = t.grid {
            if m.generation == generation && m.fingerprint == fingerprint {
                return Some(m.ix as usize);
            }
        }
        let ix = grids.index_of(&ev.grid_id);
        t.grid = ix.and_then(|i| u32::try_from(i).ok()).map(|ix| GridMemo {
            ix,
            generation,
            fingerprint,
        });
        ix
    }

    /// Whether a normal reading of `sensor` may close an alert of its own.
    pub(super) fn sensor_keyed(&self, sensor: &str) -> bool {
        self.sensors.get(sensor).is_some_and(|t| t.keyed)
    }

    /// A normal reading: resolves the sensor's own alarm alert (unless flapping).
    pub(super) fn on_normal(&mut self, ev: &SensorEvent, flapping: bool) -> Vec<AlertChange> {
        if !self.cfg.sensor_clear_on_normal {
            return Vec::new();
        }
        if !self.sensor_keyed(&ev.sensor_id) {
            return Vec::new();
        }
        let key = crate::domain::keys::sensor_key(&ev.sensor_id, &ev.kind);
        let Some(id) = self.by_key.get(&key).cloned() else {
            return Vec::new();
        };
        // Only the sensor's own alert: a correlated alert it was merged into stays.
        if self.open.get(&id).is_none_or(|a| a.dedup_key != key) {
            return Vec::new();
        }
        if flapping {
            // It stays open, marked, until the sensor is quiet (see `tick_flaps`).
            return match self.open.get_mut(&id).filter(|a| !a.flapping) {
                Some(a) => {
                    a.flapping = true;
                    a.version += 1;
                    a.updated_at = Some(ts_from_millis(ev.receive_ms));
                    vec![AlertChange {
                        seq: 0,
                        kind: pb::ChangeKind::Updated as i32,
                        alert: Some(a.to_pb()),
                    }]
                }
                None => Vec::new(),
            };
        }
        let evidence = pb::Evidence {
            time: Some(ts_from_millis(ev.device_ms)),
            item: Some(pb::evidence::Item::SensorEvent(ev.to_pb(0))),
        };
        self.auto_resolve(&id, evidence, "sensor back to normal", ev.receive_ms)
    }

    /// Marks the sensor's alert flapping (when it is).
    pub(super) fn mark_flapping(&mut self, key: &str) {
        if let Some(a) = self.by_key.get(key).and_then(|id| self.open.get_mut(id)) {
            a.flapping = true;
        }
    }

    /// The timers of noise control: flap quiet, mutes, escalation.
    pub(super) fn tick_noise(&mut self, now: i64) -> Vec<AlertChange> {
        let mut out = self.tick_flaps(now);
        out.extend(self.remute(now));
        out.extend(self.escalate(now));
        out
    }

    fn tick_flaps(&mut self, now: i64) -> Vec<AlertChange> {
        if !self.cfg.sensor_clear_on_normal || self.cfg.flap.changes == 0 {
            return Vec::new();
        }
        let window = self.cfg.flap.window_secs as i64 * 1000;
        let mut calm = Vec::new();
        let mut unwatch = Vec::new();
        for sensor in &self.noise.watched {
            let Some(f) = self.sensors.get(sensor).map(|t| &t.flap) else {
                unwatch.push(sensor.clone());
                continue;
            };
            if f.flapping && f.normal_since.is_some_and(|t| now - t >= window) {
                calm.push(sensor.clone());
            } else if !f.flapping && f.changes.back().is_none_or(|t| now - t >= window) {
                // Quiet for the window: nothing to count any more.
                unwatch.push(sensor.clone());
            }
        }
        let mut out = Vec::new();
        for sensor in calm {
            self.forget_flaps(&sensor);
            let prefix = format!("sensor/{sensor}/");
            let ids: Vec<String> = self
                .open
                .values()
                .filter(|a| a.dedup_key.starts_with(&prefix) && a.flapping)
                .map(|a| a.id.clone())
                .collect();
            for id in ids {
                let ev = self
                    .open
                    .get(&id)
                    .and_then(|a| a.evidence.last().cloned())
                    .unwrap_or_default();
                out.extend(self.auto_resolve(
                    &id,
                    ev,
                    "flapping sensor normal for the flap window",
                    now,
                ));
            }
        }
        for sensor in unwatch {
            self.forget_flaps(&sensor);
        }
        out
    }

    /// Clears the sensor's counted changes and flapping mark (its last state stays, so
    /// that its next change counts) and stops watching it.
    fn forget_flaps(&mut self, sensor: &str) {
        if let Some(t) = self.sensors.get_mut(sensor) {
            t.flap = Flap {
                last: t.flap.last,
                ..Flap::default()
            };
        }
        self.noise.watched.remove(sensor);
    }

    /// Re-checks silences and inhibitions of every open alert when something changed.
    fn remute(&mut self, now: i64) -> Vec<AlertChange> {
        let v = self.noise.inhibitors.version();
        let edge = self
            .silences
            .next_edge(self.last_tick)
            .is_some_and(|t| t <= now);
        if v == self.noise.seen_inhibitors && !self.noise.silences_changed && !edge {
            return Vec::new();
        }
        self.noise.seen_inhibitors = v;
        self.noise.silences_changed = false;
        let mut ids: Vec<String> = self.open.keys().cloned().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let Some(alert) = self.open.get(&id) else {
                continue;
            };
            let silenced = self
                .silences
                .matching(alert, &self.grids, now)
                .unwrap_or("")
                .to_string();
            let inhibited = self.inhibitor_of(alert).unwrap_or_default();
            if silenced == alert.silenced_by && inhibited == alert.inhibited_by {
                continue;
            }
            if let Some(a) = self.open.get_mut(&id) {
                a.silenced_by = silenced;
                a.inhibited_by = inhibited;
                a.version += 1;
                a.updated_at = Some(ts_from_millis(now));
                out.push(AlertChange {
                    seq: 0,
                    kind: pb::ChangeKind::Updated as i32,
                    alert: Some(a.to_pb()),
                });
            }
        }
        out
    }

    fn escalate(&mut self, now: i64) -> Vec<AlertChange> {
        if self.cfg.escalation.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut ids: Vec<String> = self.open.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let Some(alert) = self.open.get(&id) else {
                continue;
            };
            if alert.status != pb::AlertStatus::Open as i32
                || !alert.silenced_by.is_empty()
                || !alert.inhibited_by.is_empty()
            {
                continue;
            }
            let Some(chain) = self
                .cfg
                .escalation
                .iter()
                .find(|c| alert_matches(&c.alerts, alert))
            else {
                continue;
            };
            let Some(step) = chain.steps.get(alert.escalation_level as usize) else {
                continue;
            };
            let opened = alert.first_seen.as_ref().map(millis_from_ts).unwrap_or(now);
            if now - opened < step.after_secs as i64 * 1000 {
                continue;
            }
            let from = if alert.escalated_to.is_empty() {
                alert.grid_id.clone()
            } else {
                alert.escalated_to.clone()
            };
            let to = match step.to_tier {
                Some(t) => self.grids.ancestor_at(&from, t).map(str::to_string),
                None => self.grids.parent(&from).map(str::to_string),
            }
            .unwrap_or(from);
            let raise_by = step.raise_by;
            let Some(a) = self.open.get_mut(&id) else {
                continue;
            };
            let current = Severity::from_pb(a.severity).unwrap_or(Severity::Info);
            a.severity = current.raised(raise_by).to_pb() as i32;
            a.escalation_level += 1;
            a.escalated_to = to;
            a.version += 1;
            a.updated_at = Some(ts_from_millis(now));
            out.push(AlertChange {
                seq: 0,
                kind: pb::ChangeKind::Escalated as i32,
                alert: Some(a.to_pb()),
            });
        }
        out
    }
}
