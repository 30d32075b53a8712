//! `[[rules]]`: declarative correlation rules, and their validation.
//!
//! A rule watches the events of one *anchor* grid's neighbourhood (its `scope`) inside a
//! time window, looks for a `pattern` of its `when` conditions, and opens one alert per
//! de-duplication key on the anchor grid (or, with `action = "raise"`, raises the open
//! alerts it finds). The engine compiles these into `correlate::rules::RuleSet`; every
//! reference (kinds, categories, tiers, labels, template placeholders) is checked here so a
//! rule that loads is a rule that can run.

use serde::{Deserialize, Serialize};

use crate::domain::Severity;

/// `[[rules]]`: one correlation rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique id (letters, digits, `-`, `_`, `.`); alerts carry it as `rule_id`.
    pub id: String,
    /// Alert title; placeholders: `{grid}`, `{grid_name}`, `{count}`, `{rule}` and the
    /// labels `{kind}`, `{sensor}`, `{camera}`, `{category}`, `{item_code}`.
    pub title: String,
    /// Severity of the alert it opens (ignored with `action = "raise"`).
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// What to look for in the window: `all` (each condition seen), `count` (`min_count`
    /// matching events, or distinct values with `distinct`), `sequence` (the conditions in
    /// order), `absence` (the first condition and no second one for `window_secs`).
    #[serde(default)]
    pub pattern: Pattern,
    /// The conditions (at least one; exactly two for `absence`; two or more for
    /// `sequence`).
    pub when: Vec<Condition>,
    /// Window in seconds: how far back events count (for `absence`: how long the second
    /// condition has to come).
    pub window_secs: u64,
    /// `count`: how many matching events (or distinct values) make the rule fire.
    #[serde(default = "one")]
    pub min_count: u32,
    /// `count`: count distinct values of this label instead of events.
    #[serde(default)]
    pub distinct: Option<Label>,
    /// `count` with `distinct = "grid"`: the grids must be neighbours of each other
    /// (connected through shared borders).
    #[serde(default)]
    pub adjacent: bool,
    /// Which events are seen together: `grid` (the anchor grid's own), `neighbours` (the
    /// anchor and the grids bordering it), `parent` (everything under the anchor, which is
    /// the event grid's parent), `tier` (everything under the anchor, the event grid's
    /// ancestor at depth `tier`).
    #[serde(default)]
    pub scope: Scope,
    /// Depth of the anchor for `scope = "tier"` (0 = the top of the grid tree).
    #[serde(default)]
    pub tier: Option<usize>,
    /// Only events within this many metres of the newest one count (sensor, camera or
    /// incident location; a grid's centre when the event has none).
    #[serde(default)]
    pub within_m: Option<f64>,
    /// `open` a correlated alert, or `raise` the open alerts matched by the rule's
    /// `source = "alert"` condition.
    #[serde(default)]
    pub action: RuleAction,
    /// `raise`: how many severity steps.
    #[serde(default = "one_u8")]
    pub raise_by: u8,
    /// Labels of the newest event that join the de-duplication key
    /// (`rule/{id}/{anchor}`): one open alert per distinct key.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Resolve the alert (by `gridsight`) when no matching event came for this long.
    #[serde(default)]
    pub clear_quiet_secs: Option<u64>,
    /// Resolve the alert when an event matching one of these comes in its scope.
    #[serde(default)]
    pub clear: Vec<Condition>,
    /// Merge the single-source alerts of the evidence into the correlated alert (they are
    /// resolved with `merged_into`, and their repeats fold into it).
    #[serde(default = "yes")]
    pub merge: bool,
}

/// One condition on an event (or, with `source = "alert"`, on open alerts).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `sensor`, `camera`, `incident` or `alert`.
    pub source: Source,
    /// Sensor kind (`smoke`, `water_level`...); any when absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// Sensor state: `alarm` (default), `fault` or `normal`.
    #[serde(default)]
    pub state: Option<String>,
    /// A sensor reading at least this.
    #[serde(default)]
    pub min_reading: Option<f64>,
    /// A sensor reading at most this.
    #[serde(default)]
    pub max_reading: Option<f64>,
    /// One sensor or camera id only.
    #[serde(default)]
    pub id: Option<String>,
    /// Camera event: `offline`, `online`, `degraded`, `freeze`, `unfreeze`, `activity`.
    #[serde(default)]
    pub event: Option<String>,
    /// Camera activity score at least this (1 = the camera's quiet baseline).
    #[serde(default)]
    pub min_activity: Option<f64>,
    /// Incident category: `dispute`, `safety_hazard`, `central_task`, `public_service`.
    #[serde(default)]
    pub category: Option<String>,
    /// Incident item code; a trailing `*` matches a prefix.
    #[serde(default)]
    pub item_code: Option<String>,
    /// Alert: at least this severe.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Alert: made by this rule (`""` or absent: any alert, single-source ones included).
    #[serde(default)]
    pub rule: Option<String>,
}

/// Where an event comes from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An MQTT sensor reading.
    #[default]
    Sensor,
    /// A camera event.
    Camera,
    /// A grid worker's report.
    Incident,
    /// An open alert (a state, not an event: satisfied while one is open in scope).
    Alert,
}

/// What a rule looks for.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// Every condition seen in the window.
    #[default]
    All,
    /// At least `min_count` events (or distinct values).
    Count,
    /// The conditions in order.
    Sequence,
    /// The first condition, then none of the second for the window.
    Absence,
}

/// Which events a rule sees together.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The event's own grid.
    #[default]
    Grid,
    /// The event's grid and the grids bordering it.
    Neighbours,
    /// Everything under the event grid's parent (the alert goes on the parent).
    Parent,
    /// Everything under the event grid's ancestor at depth `tier`.
    Tier,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Open (or update) a correlated alert.
    #[default]
    Open,
    /// Raise the open alerts matched by the `source = "alert"` condition.
    Raise,
}

/// A label of an event.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The event's grid.
    Grid,
    /// Sensor kind.
    Kind,
    /// Sensor id.
    Sensor,
    /// Camera id.
    Camera,
    /// Incident id.
    Incident,
    /// Incident category.
    Category,
    /// Incident item code.
    ItemCode,
}

impl Label {
    /// The label's name in keys and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Grid => "grid",
            Label::Kind => "kind",
            Label::Sensor => "sensor",
            Label::Camera => "camera",
            Label::Incident => "incident",
            Label::Category => "category",
            Label::ItemCode => "item_code",
        }
    }
}

fn default_severity() -> Severity {
    Severity::Major
}
fn one() -> u32 {
    1
}
fn one_u8() -> u8 {
    1
}
fn yes() -> bool {
    true
}

/// Camera event names a condition may use.
pub const CAMERA_EVENTS: [&str; 6] = [
    "offline", "online", "degraded", "freeze", "unfreeze", "activity",
];
/// Incident category names a condition may use.
pub const CATEGORIES: [&str; 4] = ["dispute", "safety_hazard", "central_task", "public_service"];
const PLACEHOLDERS: [&str; 9] = [
    "grid",
    "grid_name",
    "count",
    "rule",
    "kind",
    "sensor",
    "camera",
    "category",
    "item_code",
];

/// Checks every rule; `max_depth` is the deepest grid depth. Returns (field, message).
pub fn validate(rules: &[RuleConfig], max_depth: usize) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].{f}");
        if !super::valid_id(&r.id) {
            errs.push((at("id"), format!("`{}` is not a valid rule id", r.id)));
        }
        if !ids.insert(r.id.as_str()) {
            errs.push((at("id"), format!("duplicate rule id `{}`", r.id)));
        }
        if let Some(bad) = unknown_placeholder(&r.title) {
            errs.push((
                at("title"),
                format!("unknown placeholder `{{{bad}}}`, expected one of {PLACEHOLDERS:?}"),
            ));
        }
        if r.window_secs == 0 || r.window_secs > 7 * 24 * 3600 {
            errs.push((at("window_secs"), "must be 1 to 604800 seconds".into()));
        }
        let events = r.when.iter().filter(|c| c.source != Source::Alert).count();
        match r.pattern {
            _ if r.when.is_empty() => {
                errs.push((at("when"), "needs at least one condition".into()))
            }
            _ if events == 0 => errs.push((
                at("when"),
                "needs at least one sensor, camera or incident condition".into(),
            )),
            Pattern::Absence if r.when.len() != 2 || events != 2 => errs.push((
                at("when"),
                "absence needs exactly two event conditions (A, then no B)".into(),
            )),
            Pattern::Sequence if events < 2 || events != r.when.len() => errs.push((
                at("when"),
                "sequence needs two or more event conditions (no alert conditions)".into(),
            )),
            _ => {}
        }
        if r.min_count == 0 {
            errs.push((at("min_count"), "must be at least 1".into()));
        }
        if r.adjacent && r.distinct != Some(Label::Grid) {
            errs.push((at("adjacent"), "needs distinct = \"grid\"".into()));
        }
        if (r.distinct.is_some() || r.min_count > 1) && r.pattern != Pattern::Count {
            errs.push((
                at("min_count"),
                "min_count and distinct need pattern = \"count\"".into(),
            ));
        }
        match (r.scope, r.tier) {
            (Scope::Tier, None) => errs.push((at("tier"), "scope = \"tier\" needs a tier".into())),
            (Scope::Tier, Some(t)) if t > max_depth => errs.push((
                at("tier"),
                format!("no grid is that deep (the deepest tier is {max_depth})"),
            )),
            (s, Some(_)) if s != Scope::Tier => {
                errs.push((at("tier"), "only with scope = \"tier\"".into()))
            }
            _ => {}
        }
        if let Some(m) = r.within_m {
            if !(m > 0.0 && m <= 100_000.0) {
                errs.push((
                    at("within_m"),
                    "must be more than 0 and at most 100000".into(),
                ));
            }
        }
        let alerts = r.when.iter().filter(|c| c.source == Source::Alert).count();
        if r.action == RuleAction::Raise && alerts == 0 {
            errs.push((
                at("action"),
                "raise needs a `source = \"alert\"` condition naming what to raise".into(),
            ));
        }
        if r.raise_by == 0 || r.raise_by > 4 {
            errs.push((at("raise_by"), "must be 1 to 4".into()));
        }
        if r.clear_quiet_secs == Some(0) {
            errs.push((at("clear_quiet_secs"), "must be at least 1".into()));
        }
        for (j, c) in r.when.iter().enumerate() {
            errs.extend(validate_condition(c, &format!("rules[{i}].when[{j}]")));
        }
        for (j, c) in r.clear.iter().enumerate() {
            errs.extend(validate_condition(c, &format!("rules[{i}].clear[{j}]")));
            if c.source == Source::Alert {
                errs.push((
                    format!("rules[{i}].clear[{j}].source"),
                    "a clear condition is an event: sensor, camera or incident".into(),
                ));
            }
        }
    }
    errs
}

fn validate_condition(c: &Condition, at: &str) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let f = |name: &str| format!("{at}.{name}");
    let only = |name: &str, set: bool, src: &str, errs: &mut Vec<(String, String)>| {
        if set {
            errs.push((f(name), format!("only for source = \"{src}\"")));
        }
    };
    let sensor = c.source == Source::Sensor;
    let camera = c.source == Source::Camera;
    let incident = c.source == Source::Incident;
    let alert = c.source == Source::Alert;
    only("kind", c.kind.is_some() && !sensor, "sensor", &mut errs);
    only("state", c.state.is_some() && !sensor, "sensor", &mut errs);
    only(
        "min_reading",
        c.min_reading.is_some() && !sensor,
        "sensor",
        &mut errs,
    );
    only(
        "max_reading",
        c.max_reading.is_some() && !sensor,
        "sensor",
        &mut errs,
    );
    only("event", c.event.is_some() && !camera, "camera", &mut errs);
    only(
        "min_activity",
        c.min_activity.is_some() && !camera,
        "camera",
        &mut errs,
    );
    only(
        "category",
        c.category.is_some() && !incident,
        "incident",
        &mut errs,
    );
    only(
        "item_code",
        c.item_code.is_some() && !incident,
        "incident",
        &mut errs,
    );
    only(
        "min_severity",
        c.min_severity.is_some() && !alert,
        "alert",
        &mut errs,
    );
    only("rule", c.rule.is_some() && !alert, "alert", &mut errs);
    if c.id.is_some() && !(sensor || camera) {
        errs.push((f("id"), "only for source = \"sensor\" or \"camera\"".into()));
    }
    if let Some(s) = &c.state {
        if crate::domain::SensorState::parse(s).is_none() {
            errs.push((f("state"), format!("`{s}` is not alarm, fault or normal")));
        }
    }
    if let Some(e) = &c.event {
        if !CAMERA_EVENTS.contains(&e.as_str()) {
            errs.push((f("event"), format!("`{e}` is not one of {CAMERA_EVENTS:?}")));
        }
    }
    if let Some(cat) = &c.category {
        if !CATEGORIES.contains(&cat.as_str()) {
            errs.push((
                f("category"),
                format!("`{cat}` is not one of {CATEGORIES:?}"),
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (c.min_reading, c.max_reading) {
        if lo > hi {
            errs.push((f("min_reading"), "is above max_reading".into()));
        }
    }
    errs
}

fn unknown_placeholder(title: &str) -> Option<String> {
    let mut rest = title;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Some(name.to_string());
        }
        rest = &after[close + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> RuleConfig {
        toml::from_str(text).expect("rule parses")
    }

    #[test]
    fn a_good_rule_passes_and_bad_fields_are_named() {
        let ok = rule(
            r#"
id = "fire"
title = "Fire in {grid_name} ({count})"
severity = "critical"
window_secs = 120
[[when]]
source = "sensor"
kind = "smoke"
[[when]]
source = "camera"
event = "activity"
min_activity = 3.0
"#,
        );
        assert!(validate(std::slice::from_ref(&ok), 2).is_empty());
        let mut bad = ok.clone();
        bad.title = "{nope}".into();
        bad.when[1].event = Some("exploded".into());
        bad.when[0].category = Some("dispute".into());
        bad.scope = Scope::Tier;
        let fields: Vec<String> = validate(&[bad], 2).into_iter().map(|e| e.0).collect();
        assert_eq!(
            fields,
            vec![
                "rules[0].title",
                "rules[0].tier",
                "rules[0].when[0].category",
                "rules[0].when[1].event"
            ]
        );
    }

    #[test]
    fn the_bench_rule_set_validates() {
        #[derive(Deserialize)]
        struct File {
            rules: Vec<RuleConfig>,
        }
        let text = include_str!("../../../deploy/bench/rules-50.toml");
        let file: File = toml::from_str(text).expect("deploy/bench/rules-50.toml parses");
        assert_eq!(file.rules.len(), 50);
        let errs = validate(&file.rules, 2);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn patterns_check_their_shape() {
        let mut r = rule(
            r#"
id = "a"
title = "t"
pattern = "absence"
window_secs = 300
[[when]]
source = "sensor"
kind = "manhole_cover"
"#,
        );
        assert_eq!(validate(std::slice::from_ref(&r), 2)[0].0, "rules[0].when");
        r.pattern = Pattern::Count;
        r.adjacent = true;
        assert_eq!(
            validate(std::slice::from_ref(&r), 2)[0].0,
            "rules[0].adjacent"
        );
        r.adjacent = false;
        r.action = RuleAction::Raise;
        assert_eq!(validate(&[r], 2)[0].0, "rules[0].action");
    }
}
