//! Noise control in `[correlation]`: flap suppression, inhibition and escalation chains.
//!
//! Each is declarative and validated here; the engine (`correlate::engine_noise`) applies
//! them. An [`AlertMatch`] selects alerts by the fields every alert has (rule, key prefix,
//! severity); all fields that are set must match.

use serde::{Deserialize, Serialize};

use crate::domain::Severity;

/// `[correlation.flap]`: a sensor that toggles between alarm and normal this often is
/// *flapping*: its alert stays open (marked `flapping`) instead of closing and reopening,
/// and closes once the sensor has been normal for `window_secs`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlapConfig {
    /// State changes (alarm ↔ normal) within the window that make a sensor flapping;
    /// 0 turns flap suppression off.
    pub changes: u32,
    /// The window, in seconds; also how long a flapping sensor must stay normal.
    pub window_secs: u64,
}

impl Default for FlapConfig {
    fn default() -> Self {
        Self {
            changes: 4,
            window_secs: 300,
        }
    }
}

/// Selects alerts. Every field that is set must match.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertMatch {
    /// Made by this rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// De-duplication key starts with this (`camera/` = camera alerts, `sensor/` = sensor
    /// alarms, `incident/` = reports).
    #[serde(default)]
    pub dedup_key_prefix: Option<String>,
    /// At least this severe.
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

impl AlertMatch {
    /// Whether nothing is set (matches every alert).
    pub fn is_empty(&self) -> bool {
        self.rule.is_none() && self.dedup_key_prefix.is_none() && self.min_severity.is_none()
    }
}

/// `[[correlation.inhibit]]`: while an alert matching `source` is open, alerts matching
/// `target` in its grid or beneath it are muted (`inhibited_by`), e.g. a county-wide
/// network outage mutes the camera-offline alerts it explains.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// The explaining alert.
    pub source: AlertMatch,
    /// The alerts it mutes.
    pub target: AlertMatch,
}

/// `[[correlation.escalation]]`: a chain of steps for open, unacknowledged, unmuted alerts
/// matching `alerts`; the first chain that matches applies. Acknowledging stops it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Which alerts.
    #[serde(default)]
    pub alerts: AlertMatch,
    /// The steps, in order of `after_secs`.
    pub steps: Vec<EscalationStep>,
}

/// One escalation step.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Seconds after the alert opened.
    pub after_secs: u64,
    /// Severity steps up.
    #[serde(default = "one")]
    pub raise_by: u8,
    /// Tier (grid depth, 0 = top) of the grid it is escalated to; default: one tier up
    /// from the previous step (the alert grid's parent first).
    #[serde(default)]
    pub to_tier: Option<usize>,
}

fn one() -> u8 {
    1
}

/// `[[correlation.groups]]`: related alerts under one group alert. Open alerts matching
/// `alerts` whose grids share an ancestor at depth `tier` form a group; once
/// `min_members` of them are open for `group_wait_secs`, a group alert opens on that
/// ancestor (members get `parent_id`); later changes are summed up at most every
/// `group_interval_secs`; it resolves when its last member does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Which alerts.
    pub alerts: AlertMatch,
    /// Depth of the grid the group alert goes on (must be at or below
    /// `correlation.partition_tier`, so a group never spans shards).
    pub tier: usize,
    /// Open members needed for a group alert.
    #[serde(default = "two")]
    pub min_members: u32,
    /// Seconds the first members wait, so one group alert tells about many.
    #[serde(default = "thirty")]
    pub group_wait_secs: u64,
    /// Seconds between two updates of a group alert.
    #[serde(default = "five_minutes")]
    pub group_interval_secs: u64,
    /// Title; placeholders `{count}`, `{grid}`, `{grid_name}`.
    pub title: String,
}

fn two() -> u32 {
    2
}
fn thirty() -> u64 {
    30
}
fn five_minutes() -> u64 {
    300
}

/// Checks the groups against the partition tier. Returns (field, message).
pub fn validate_groups(groups: &[GroupConfig], partition_tier: usize) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let at = format!("correlation.groups[{i}]");
        if g.tier < partition_tier {
            errs.push((
                format!("{at}.tier"),
                format!("must be at least correlation.partition_tier ({partition_tier})"),
            ));
        }
        if g.min_members < 2 {
            errs.push((format!("{at}.min_members"), "must be at least 2".into()));
        }
        if g.group_interval_secs == 0 {
            errs.push((
                format!("{at}.group_interval_secs"),
                "must be at least 1".into(),
            ));
        }
        if g.title.trim().is_empty() {
            errs.push((format!("{at}.title"), "must not be empty".into()));
        }
    }
    errs
}

/// Checks the noise-control settings. Returns (field, message).
pub fn validate(
    inhibit: &[InhibitConfig],
    escalation: &[EscalationConfig],
    rule_ids: &[&str],
) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let check_rule = |m: &AlertMatch, at: String, errs: &mut Vec<(String, String)>| {
        if let Some(r) = &m.rule {
            if !rule_ids.contains(&r.as_str()) {
                errs.push((format!("{at}.rule"), format!("unknown rule `{r}`")));
            }
        }
    };
    for (i, x) in inhibit.iter().enumerate() {
        let at = format!("correlation.inhibit[{i}]");
        if x.source.is_empty() {
            errs.push((format!("{at}.source"), "set at least one field".into()));
        }
        if x.target.is_empty() {
            errs.push((format!("{at}.target"), "set at least one field".into()));
        }
        check_rule(&x.source, format!("{at}.source"), &mut errs);
        check_rule(&x.target, format!("{at}.target"), &mut errs);
    }
    for (i, e) in escalation.iter().enumerate() {
        let at = format!("correlation.escalation[{i}]");
        check_rule(&e.alerts, format!("{at}.alerts"), &mut errs);
        if e.steps.is_empty() {
            errs.push((format!("{at}.steps"), "needs at least one step".into()));
        }
        let mut last = 0;
        for (j, s) in e.steps.iter().enumerate() {
            if s.after_secs == 0 || s.after_secs <= last {
                errs.push((
                    format!("{at}.steps[{j}].after_secs"),
                    "must be more than 0 and than the previous step's".into(),
                ));
            }
            last = s.after_secs;
            if s.raise_by > 4 {
                errs.push((format!("{at}.steps[{j}].raise_by"), "must be 0 to 4".into()));
            }
        }
    }
    errs
}
