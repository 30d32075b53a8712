//! Compiled correlation rules: what an event looks like to a rule ([`Obs`]), which rules
//! it can concern, whether a condition matches it, and which anchor grids it counts for.
//!
//! A [`RuleSet`] is built once from validated `[[rules]]` and shared (`Arc`) by the router
//! and every shard; a reload builds a new one. Everything here is pure. The per-anchor
//! window state and pattern evaluation are in [`window`]; the engine applies the result.
//!
//! Invariant: a rule's `when` conditions that are events come before nothing in
//! particular — conditions keep their config order, and condition `i` is bit `i` of an
//! observation's match mask (so at most 32 conditions per rule).

pub mod window;

use std::sync::Arc;

use gridsight_proto::{millis_from_ts, v1 as pb};

use crate::{
    config::{Condition, Label, Pattern, RuleConfig, Scope, Source},
    domain::{GridIndex, SensorEvent, SensorState, Severity},
};

/// The most conditions one rule may have (bits of a match mask).
pub const MAX_CONDITIONS: usize = 32;

/// An event as rules see it.
#[derive(Debug, Clone)]
pub struct Obs {
    /// Where it comes from.
    pub source: Source,
    /// Its grids (a camera may cover several; others have one).
    pub grids: Vec<Arc<str>>,
    /// When the daemon received it (ms); windows are on this clock.
    pub at: i64,
    /// Where it happened, when known (the rule layer fills in the centre of its first
    /// grid otherwise, once, so that [`Obs::place`] costs no lookup per window item).
    pub location: Option<[f64; 2]>,
    /// Sensor kind, or camera event name (`offline`, `activity`...).
    pub kind: String,
    /// Sensor, camera or incident id.
    pub id: String,
    /// Sensor state.
    pub state: Option<SensorState>,
    /// Sensor reading.
    pub reading: Option<f64>,
    /// Camera activity score.
    pub activity: f64,
    /// Incident category (wire value) and item code.
    pub category: i32,
    /// Incident item code.
    pub item_code: String,
    /// The evidence item an alert shows for it.
    pub evidence: pb::Evidence,
    /// Every one of `grids` is the grid index's own `Arc` (the rule layer makes them so):
    /// then one grid is one pointer among the anchors found around it, all of which come
    /// from the index, and telling them apart compares pointers, not names.
    pub indexed_grids: bool,
}

impl Obs {
    /// A sensor reading with its stored id.
    pub fn sensor(id: u64, ev: &SensorEvent) -> Self {
        Self {
            source: Source::Sensor,
            grids: vec![Arc::from(ev.grid_id.as_str())],
            at: ev.receive_ms,
            location: ev.location,
            kind: ev.kind.clone(),
            id: ev.sensor_id.clone(),
            state: Some(ev.state),
            reading: ev.reading,
            activity: 0.0,
            category: 0,
            item_code: String::new(),
            evidence: pb::Evidence {
                time: Some(gridsight_proto::ts_from_millis(ev.device_ms)),
                item: Some(pb::evidence::Item::SensorEvent(ev.to_pb(id))),
            },
            indexed_grids: false,
        }
    }

    /// A camera event, received at `now`.
    pub fn camera(ev: &pb::CameraEvent, now: i64) -> Self {
        Self {
            source: Source::Camera,
            grids: ev.grid_ids.iter().map(|g| Arc::from(g.as_str())).collect(),
            at: now,
            location: None,
            kind: camera_event_name(ev.kind).to_string(),
            id: ev.camera_id.clone(),
            state: None,
            reading: None,
            activity: ev.activity,
            category: 0,
            item_code: String::new(),
            evidence: pb::Evidence {
                time: ev.time,
                item: Some(pb::evidence::Item::CameraEvent(ev.clone())),
            },
            indexed_grids: false,
        }
    }

    /// A new incident (its `alert_id` not yet set), received at `now`.
    pub fn incident(inc: &pb::Incident, now: i64) -> Self {
        Self {
            source: Source::Incident,
            grids: vec![Arc::from(inc.grid_id.as_str())],
            at: now,
            location: inc.location.as_ref().map(|l| [l.lon, l.lat]),
            kind: String::new(),
            id: inc.id.clone(),
            state: None,
            reading: None,
            activity: 0.0,
            category: inc.category,
            item_code: inc.item_code.clone(),
            evidence: pb::Evidence {
                time: inc.reported_at,
                item: Some(pb::evidence::Item::Incident(Box::new(inc.clone()))),
            },
            indexed_grids: false,
        }
    }

    /// The value of a label.
    pub fn label(&self, l: Label) -> Option<&str> {
        match (l, self.source) {
            (Label::Grid, _) => self.grids.first().map(|g| &**g),
            (Label::Kind, Source::Sensor) => Some(&self.kind),
            (Label::Sensor, Source::Sensor) => Some(&self.id),
            (Label::Camera, Source::Camera) => Some(&self.id),
            (Label::Incident, Source::Incident) => Some(&self.id),
            (Label::Category, Source::Incident) => Some(category_name(self.category)),
            (Label::ItemCode, Source::Incident) => Some(&self.item_code),
            _ => None,
        }
    }

    /// Where it happened, or the centre of its first grid.
    pub fn place(&self, grids: &GridIndex) -> Option<[f64; 2]> {
        self.location
            .or_else(|| self.grids.first().and_then(|g| grids.centroid(g)))
    }
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Cond {
    /// The config it came from.
    pub cfg: Condition,
    state: Option<SensorState>,
    category: Option<i32>,
}

impl Cond {
    fn new(cfg: &Condition) -> Self {
        let state = match cfg.source {
            Source::Sensor => Some(
                cfg.state
                    .as_deref()
                    .and_then(SensorState::parse)
                    .unwrap_or(SensorState::Alarm),
            ),
            _ => None,
        };
        let category = cfg.category.as_deref().map(category_value);
        Self {
            cfg: cfg.clone(),
            state,
            category,
        }
    }

    /// Whether the event matches (never for `source = "alert"`).
    pub fn matches(&self, o: &Obs) -> bool {
        let c = &self.cfg;
        if c.source != o.source {
            return false;
        }
        if c.id.as_ref().is_some_and(|id| *id != o.id) {
            return false;
        }
        match o.source {
            Source::Sensor => {
                c.kind.as_ref().is_none_or(|k| *k == o.kind)
                    && self.state == o.state
                    && c.min_reading
                        .is_none_or(|m| o.reading.is_some_and(|r| r >= m))
                    && c.max_reading
                        .is_none_or(|m| o.reading.is_some_and(|r| r <= m))
            }
            Source::Camera => {
                c.event.as_ref().is_none_or(|e| *e == o.kind)
                    && c.min_activity.is_none_or(|m| o.activity >= m)
            }
            Source::Incident => {
                self.category.is_none_or(|v| v == o.category)
                    && c.item_code
                        .as_ref()
                        .is_none_or(|code| match code.strip_suffix('*') {
                            Some(prefix) => o.item_code.starts_with(prefix),
                            None => *code == o.item_code,
                        })
            }
            Source::Alert => false,
        }
    }

    /// Whether an open alert matches (only for `source = "alert"`).
    pub fn matches_alert(&self, a: &pb::Alert) -> bool {
        let c = &self.cfg;
        c.source == Source::Alert
            && c.min_severity
                .is_none_or(|m| Severity::from_pb(a.severity).is_some_and(|s| s >= m))
            && c.rule
                .as_ref()
                .is_none_or(|r| r.is_empty() || *r == a.rule_id)
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The config it came from.
    pub cfg: RuleConfig,
    /// `when`, compiled, in order.
    pub when: Vec<Cond>,
    /// `clear`, compiled.
    pub clear: Vec<Cond>,
    /// The window in ms.
    pub window_ms: i64,
}

impl Rule {
    /// Bit mask of the `when` conditions the event matches.
    pub fn mask(&self, o: &Obs) -> u32 {
        self.when
            .iter()
            .enumerate()
            .filter(|(_, c)| c.matches(o))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Whether the event clears the rule's alerts.
    pub fn clears(&self, o: &Obs) -> bool {
        self.clear.iter().any(|c| c.matches(o))
    }

    /// Bit mask of the event conditions (not `source = "alert"`).
    pub fn event_mask(&self) -> u32 {
        self.when
            .iter()
            .enumerate()
            .filter(|(_, c)| c.cfg.source != Source::Alert)
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// The anchor grids the event counts for under this rule.
    pub fn anchors(&self, o: &Obs, grids: &GridIndex) -> Vec<Arc<str>> {
        self.anchors_near(o, grids, None)
    }

    /// [`Rule::anchors`], with `within_m` answered from `near` when given.
    pub fn anchors_near(
        &self,
        o: &Obs,
        grids: &GridIndex,
        near: Option<&mut NearCache>,
    ) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.anchors_into(o, grids, near, &mut out);
        out
    }

    /// [`Rule::anchors_near`], appended to `out` (a buffer the caller keeps: this runs for
    /// every rule an event is a candidate of).
    pub fn anchors_into(
        &self,
        o: &Obs,
        grids: &GridIndex,
        mut near: Option<&mut NearCache>,
        out: &mut Vec<Arc<str>>,
    ) {
        let from = out.len();
        let by_pointer = o.indexed_grids;
        let mut push = |g: &Arc<str>| {
            let seen = if by_pointer {
                out[from..].iter().any(|x| Arc::ptr_eq(x, g))
            } else {
                out[from..].iter().any(|x| x == g)
            };
            if !seen {
                out.push(g.clone());
            }
        };
        for g in &o.grids {
            match self.cfg.scope {
                Scope::Grid => push(g),
                Scope::Neighbours => {
                    push(g);
                    for n in grids.neighbours(g) {
                        push(n);
                    }
                }
                Scope::Parent => {
                    if let Some(p) = grids.parent_shared(g) {
                        push(p);
                    }
                }
                Scope::Tier => {
                    if let Some(a) = grids.ancestor_shared(g, self.cfg.tier.unwrap_or(0)) {
                        push(a);
                    }
                }
            }
            if let (Some(m), Some(at)) = (self.cfg.within_m, o.place(grids)) {
                if matches!(self.cfg.scope, Scope::Grid | Scope::Neighbours) {
                    let depth = grids.depth(g);
                    let found = match near.as_deref_mut() {
                        Some(cache) => cache.grids_within(grids, at, m, depth),
                        None => grids.grids_within_indices(at, m, depth).into(),
                    };
                    for n in found.iter().filter_map(|&ix| grids.shared_at(ix as usize)) {
                        push(n);
                    }
                }
            }
        }
    }
}

/// Grids within some metres of a point, remembered per (point, metres, depth): sensors
/// and cameras do not move, so an engine asks about the same points again and again.
/// Belongs to one engine (no lock). Bounded in two generations of at most
/// [`NearCache::MAX`] answers: when the current one is full it becomes the old one (the
/// older is dropped), and an answer found in the old one moves back to the current one. So
/// the points in use stay, even when a county asks about more points than one generation
/// holds (40,000 sensors and three radii); emptied whenever the grids change.
#[derive(Debug)]
pub struct NearCache {
    answers: foldhash::HashMap<NearKey, Arc<[u32]>>,
    old: foldhash::HashMap<NearKey, Arc<[u32]>>,
    /// Answers per generation ([`NearCache::MAX`] but in tests).
    limit: usize,
}

impl Default for NearCache {
    fn default() -> Self {
        Self::with_limit(Self::MAX)
    }
}

/// (lon bits, lat bits, metres bits, depth or `usize::MAX`).
type NearKey = (u64, u64, u64, usize);

impl NearCache {
    /// Most answers kept in one generation.
    pub const MAX: usize = 100_000;

    /// An empty cache of `limit` answers per generation.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            answers: Default::default(),
            old: Default::default(),
            limit: limit.max(1),
        }
    }

    /// [`GridIndex::grids_within_indices`], remembered.
    pub fn grids_within(
        &mut self,
        grids: &GridIndex,
        at: [f64; 2],
        metres: f64,
        depth: Option<usize>,
    ) -> Arc<[u32]> {
        let key = (
            at[0].to_bits(),
            at[1].to_bits(),
            metres.to_bits(),
            depth.unwrap_or(usize::MAX),
        );
        if let Some(found) = self.answers.get(&key) {
            return found.clone();
        }
        let found: Arc<[u32]> = match self.old.remove(&key) {
            Some(kept) => kept,
            None => grids.grids_within_indices(at, metres, depth).into(),
        };
        if self.answers.len() >= self.limit {
            self.old = std::mem::take(&mut self.answers);
        }
        self.answers.insert(key, found.clone());
        found
    }

    /// Forgets every answer (the grids changed).
    pub fn clear(&mut self) {
        self.answers.clear();
        self.old.clear();
    }

    /// Answers held (both generations).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.answers.len() + self.old.len()
    }
}

/// Every rule, compiled, with an index by source.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules in config order.
    pub rules: Vec<Rule>,
    /// Rules with a `when` or `clear` condition on each source (sensor, camera, incident).
    by_source: [Vec<usize>; 3],
    /// Sensor and camera events: per sensor kind / camera event name, the rules of
    /// `by_source` that may concern it (those naming it and those naming none), in order.
    by_kind: [foldhash::HashMap<String, Vec<usize>>; 2],
    /// The same for a kind no rule names.
    any_kind: [Vec<usize>; 2],
    /// The longest window of any rule (ms): how far back a restart replays the journal.
    pub max_window_ms: i64,
    /// (kind, state, reach) of every sensor condition, once each.
    sensor_reach: Vec<(Option<String>, SensorState, Reach)>,
    /// Per sensor kind a condition names: which states some condition, some `when`
    /// condition, asks for, and the rules a reading may clear. Every reading asks once,
    /// [`RuleSet::sensor_plan`]. A list: rules name a handful of kinds, and comparing a
    /// few short names (most differ in length) is cheaper than hashing the reading's.
    sensor_plans: Vec<(Box<str>, SensorPlan)>,
    /// [`RuleSet::sensor_plans`] for a kind no condition names.
    other_sensor_plan: SensorPlan,
}

/// What the sensor conditions ask of readings of one kind, by state (`Normal`, `Alarm`,
/// `Fault`).
#[derive(Debug, Clone, Default)]
pub struct SensorPlan {
    /// Some condition asks for it.
    interest: [bool; 3],
    /// Some `when` condition asks for it.
    when: [bool; 3],
    /// The rules with a `clear` condition asking for it, in config order.
    clear: [Vec<usize>; 3],
}

impl SensorPlan {
    /// Whether some `when` condition may match a reading in `state`.
    pub fn when_wants(&self, state: SensorState) -> bool {
        self.when[state_slot(state)]
    }

    /// Indices of the rules a reading in `state` may clear, in config order.
    pub fn clearing(&self, state: SensorState) -> &[usize] {
        &self.clear[state_slot(state)]
    }

    /// The plan of `kind` (`None`: a kind no condition names) from the (kind, state)
    /// pairs some condition asks for, those some `when` condition asks for, and the
    /// (kind, state, rule) of `clear` conditions (`None` kind: any).
    fn of(
        kind: Option<&str>,
        interest: &[(Option<String>, SensorState)],
        when: &[(Option<String>, SensorState)],
        clear: &[(Option<String>, SensorState, usize)],
    ) -> Self {
        let fits = |k: &Option<String>| k.is_none() || k.as_deref() == kind;
        let mut plan = Self::default();
        for (_, s) in interest.iter().filter(|(k, _)| fits(k)) {
            plan.interest[state_slot(*s)] = true;
        }
        for (_, s) in when.iter().filter(|(k, _)| fits(k)) {
            plan.when[state_slot(*s)] = true;
        }
        for (_, s, i) in clear.iter().filter(|(k, ..)| fits(k)) {
            plan.clear[state_slot(*s)].push(*i);
        }
        plan
    }
}

fn state_slot(s: SensorState) -> usize {
    match s {
        SensorState::Normal => 0,
        SensorState::Alarm => 1,
        SensorState::Fault => 2,
    }
}

/// How far from its own grid a rule anchors an event (for routing copies to shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Its own grid.
    Local,
    /// Around it (`neighbours`, `within_m`).
    Spread,
    /// Its parent.
    Parent,
    /// Its ancestor at this depth.
    Tier(usize),
}

impl Reach {
    fn of(r: &RuleConfig) -> Reach {
        if r.within_m.is_some() {
            return Reach::Spread;
        }
        match r.scope {
            Scope::Grid => Reach::Local,
            Scope::Neighbours => Reach::Spread,
            Scope::Parent => Reach::Parent,
            Scope::Tier => Reach::Tier(r.tier.unwrap_or(0)),
        }
    }
}

impl RuleSet {
    /// Compiles validated rules.
    pub fn new(cfgs: &[RuleConfig]) -> Self {
        let rules: Vec<Rule> = cfgs
            .iter()
            .map(|cfg| Rule {
                cfg: cfg.clone(),
                when: cfg
                    .when
                    .iter()
                    .take(MAX_CONDITIONS)
                    .map(Cond::new)
                    .collect(),
                clear: cfg.clear.iter().map(Cond::new).collect(),
                window_ms: cfg.window_secs as i64 * 1000,
            })
            .collect();
        let mut by_source: [Vec<usize>; 3] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            for (s, slot) in [Source::Sensor, Source::Camera, Source::Incident]
                .into_iter()
                .zip(by_source.iter_mut())
            {
                if r.when.iter().chain(&r.clear).any(|c| c.cfg.source == s) {
                    slot.push(i);
                }
            }
        }
        let mut by_kind: [foldhash::HashMap<String, Vec<usize>>; 2] = Default::default();
        let mut any_kind: [Vec<usize>; 2] = Default::default();
        for (k, s) in [Source::Sensor, Source::Camera].into_iter().enumerate() {
            let kind_of = |c: &Cond| match s {
                Source::Sensor => c.cfg.kind.clone(),
                _ => c.cfg.event.clone(),
            };
            // Every kind some condition names, then each rule under the kinds it may take.
            for r in &rules {
                for c in r.when.iter().chain(&r.clear).filter(|c| c.cfg.source == s) {
                    if let Some(kind) = kind_of(c) {
                        by_kind[k].entry(kind).or_default();
                    }
                }
            }
            for &i in &by_source[k] {
                let conds = || rules[i].when.iter().chain(&rules[i].clear);
                let any = conds().any(|c| c.cfg.source == s && kind_of(c).is_none());
                if any {
                    any_kind[k].push(i);
                }
                for (kind, list) in by_kind[k].iter_mut() {
                    let named =
                        conds().any(|c| c.cfg.source == s && kind_of(c).as_deref() == Some(kind));
                    if any || named {
                        list.push(i);
                    }
                }
            }
        }
        let max_window_ms = rules
            .iter()
            .map(|r| {
                r.window_ms
                    .max(r.cfg.clear_quiet_secs.unwrap_or(0) as i64 * 1000)
            })
            .max()
            .unwrap_or(0);
        let mut sensor_interest = Vec::new();
        let mut sensor_when = Vec::new();
        let mut sensor_clear = Vec::new();
        let mut sensor_reach = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            for (c, is_clear) in r
                .when
                .iter()
                .map(|c| (c, false))
                .chain(r.clear.iter().map(|c| (c, true)))
            {
                let Some(state) = c.state else {
                    continue;
                };
                let want = (c.cfg.kind.clone(), state);
                if !sensor_interest.contains(&want) {
                    sensor_interest.push(want.clone());
                }
                let reach = (want.0.clone(), state, Reach::of(&r.cfg));
                if !sensor_reach.contains(&reach) {
                    sensor_reach.push(reach);
                }
                if is_clear {
                    sensor_clear.push((want.0, want.1, i));
                } else if !sensor_when.contains(&want) {
                    sensor_when.push(want);
                }
            }
        }
        let mut sensor_plans: Vec<(Box<str>, SensorPlan)> = Vec::new();
        for k in sensor_interest.iter().filter_map(|(k, _)| k.as_deref()) {
            if !sensor_plans.iter().any(|(named, _)| **named == *k) {
                let plan = SensorPlan::of(Some(k), &sensor_interest, &sensor_when, &sensor_clear);
                sensor_plans.push((k.into(), plan));
            }
        }
        let other_sensor_plan = SensorPlan::of(None, &sensor_interest, &sensor_when, &sensor_clear);
        Self {
            rules,
            by_source,
            by_kind,
            any_kind,
            max_window_ms,
            sensor_reach,
            sensor_plans,
            other_sensor_plan,
        }
    }

    /// What the sensor conditions ask of readings of `kind`.
    pub fn sensor_plan(&self, kind: &str) -> &SensorPlan {
        self.sensor_plans
            .iter()
            .find(|(named, _)| **named == *kind)
            .map_or(&self.other_sensor_plan, |(_, plan)| plan)
    }

    /// Whether some rule may care about a sensor reading of this kind and state (a cheap
    /// test before building an [`Obs`]).
    pub fn wants_sensor(&self, kind: &str, state: SensorState) -> bool {
        self.sensor_plan(kind).interest[state_slot(state)]
    }

    /// Whether some `when` condition may match a sensor reading of this kind and state.
    pub fn sensor_when_wants(&self, kind: &str, state: SensorState) -> bool {
        self.sensor_plan(kind).when[state_slot(state)]
    }

    /// Indices of the rules a sensor reading of this kind and state may clear.
    pub fn sensor_clearing_rules<'a>(
        &'a self,
        kind: &'a str,
        state: SensorState,
    ) -> impl Iterator<Item = usize> + 'a {
        self.sensor_plan(kind).clear[state_slot(state)]
            .iter()
            .copied()
    }

    /// Indices of the rules that may concern an event of `source`.
    pub fn candidates(&self, source: Source) -> &[usize] {
        match source {
            Source::Sensor => &self.by_source[0],
            Source::Camera => &self.by_source[1],
            Source::Incident => &self.by_source[2],
            Source::Alert => &[],
        }
    }

    /// Indices of the rules that may concern `o`: for sensor and camera events, only those
    /// naming its kind (or naming none), in config order.
    pub fn candidates_for(&self, o: &Obs) -> &[usize] {
        self.candidates_of_kind(o.source, &o.kind)
    }

    /// [`RuleSet::candidates_for`] an event of `source` and `kind` (sensor kind, camera
    /// event name; ignored for other sources).
    pub fn candidates_of_kind(&self, source: Source, kind: &str) -> &[usize] {
        let k = match source {
            Source::Sensor => 0,
            Source::Camera => 1,
            _ => return self.candidates(source),
        };
        match self.by_kind[k].get(kind) {
            Some(list) => list,
            None => &self.any_kind[k],
        }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.cfg.id == id)
    }

    /// Whether a sensor reading of `kind` and `state` in a grid at `depth` may count for
    /// an anchor in another partition (grids partitioned by their ancestor at `tier`): some
    /// rule with a sensor condition on it spreads (`neighbours`, `within_m`) or anchors
    /// above the partition tier. A cheap test before building an [`Obs`] for routing;
    /// conservative (ids and readings are not looked at).
    pub fn sensor_may_cross(
        &self,
        kind: &str,
        state: SensorState,
        depth: usize,
        tier: usize,
    ) -> bool {
        self.sensor_reach.iter().any(|(k, s, reach)| {
            *s == state
                && k.as_deref().is_none_or(|k| k == kind)
                && match *reach {
                    Reach::Local => false,
                    Reach::Spread => true,
                    Reach::Parent => depth == 0 || depth - 1 < tier,
                    Reach::Tier(t) => t < tier,
                }
        })
    }

    /// Every anchor grid the event counts for under some rule (for routing copies).
    pub fn anchors_of(&self, o: &Obs, grids: &GridIndex) -> Vec<Arc<str>> {
        self.anchors_of_near(o, grids, None)
    }

    /// [`RuleSet::anchors_of`], with `within_m` answered from `near` when given.
    pub fn anchors_of_near(
        &self,
        o: &Obs,
        grids: &GridIndex,
        mut near: Option<&mut NearCache>,
    ) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for &i in self.candidates_for(o) {
            let r = &self.rules[i];
            if r.mask(o) != 0 || r.clears(o) {
                for a in r.anchors_near(o, grids, near.as_deref_mut()) {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }

    /// Whether the pattern of rule `i` needs timers (absence).
    pub fn timed(&self, i: usize) -> bool {
        self.rules[i].cfg.pattern == Pattern::Absence
            || self.rules[i].cfg.clear_quiet_secs.is_some()
    }
}

/// The name of a camera event kind in rules.
pub fn camera_event_name(kind: i32) -> &'static str {
    use pb::CameraEventKind as K;
    match K::try_from(kind) {
        Ok(K::Online) => "online",
        Ok(K::Degraded) => "degraded",
        Ok(K::Offline) => "offline",
        Ok(K::Freeze) => "freeze",
        Ok(K::Unfreeze) => "unfreeze",
        Ok(K::Activity) => "activity",
        _ => "unspecified",
    }
}

/// The rule name of an incident category.
pub fn category_name(c: i32) -> &'static str {
    match pb::IncidentCategory::try_from(c) {
        Ok(pb::IncidentCategory::Dispute) => "dispute",
        Ok(pb::IncidentCategory::SafetyHazard) => "safety_hazard",
        Ok(pb::IncidentCategory::CentralTask) => "central_task",
        Ok(pb::IncidentCategory::PublicService) => "public_service",
        _ => "unspecified",
    }
}

fn category_value(name: &str) -> i32 {
    match name {
        "dispute" => pb::IncidentCategory::Dispute as i32,
        "safety_hazard" => pb::IncidentCategory::SafetyHazard as i32,
        "central_task" => pb::IncidentCategory::CentralTask as i32,
        "public_service" => pb::IncidentCategory::PublicService as i32,
        _ => -1,
    }
}

/// When an evidence item happened (ms), for ordering.
pub fn evidence_ms(e: &pb::Evidence) -> i64 {
    e.time.as_ref().map(millis_from_ts).unwrap_or(0)
}

#[cfg(test)]
#[path = "tests.rs"]
pub(crate) mod tests;
