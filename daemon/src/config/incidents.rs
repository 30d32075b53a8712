//! `[incidents]`, `[stats]` and `[[departments]]`: the incident lifecycle's settings.
//!
//! Owns the supervision of dispatched incidents (how often deadlines are checked, how
//! severe the alert), the figures the centre reports on (its time zone, the reporters'
//! monthly quota) and the departments incidents are dispatched to. Invariant after
//! [`validate`]: department ids are valid and unique, the check interval and the quota are
//! at least 1, and the time zone offset is a real one (UTC−12:00 to UTC+14:00).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::valid_id;
use crate::domain::Severity;

/// `[incidents]`: supervision of dispatched incidents.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Seconds between two looks for dispatched or in-progress incidents past their
    /// deadline; each one found is marked `overdue` and raises a supervision alert.
    pub overdue_check_secs: u64,
    /// Severity of the supervision alert raised for an overdue incident.
    pub supervision_severity: Severity,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            overdue_check_secs: 30,
            supervision_severity: Severity::Major,
        }
    }
}

/// `[stats]`: the figures the centre reports on (`StatsService`, `/api/stats`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// The centre's time zone as minutes east of UTC (480 = UTC+08:00): days and months
    /// of the figures start at its midnight, and deadlines in alert titles are shown in it.
    pub utc_offset_minutes: i32,
    /// Reports a grid worker is expected to file per month (the quota of the reporter
    /// figures).
    pub monthly_report_quota: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            utc_offset_minutes: 480,
            monthly_report_quota: 30,
        }
    }
}

/// `[[departments]]`: a department incidents can be dispatched to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DepartmentConfig {
    /// Unique id, sent as `department` in `Transition` (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Display name, used in supervision alert titles.
    pub name: String,
}

/// Checks the three sections; returns every problem as (field path, message).
pub(super) fn validate(
    incidents: &IncidentsConfig,
    stats: &StatsConfig,
    departments: &[DepartmentConfig],
) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if incidents.overdue_check_secs == 0 {
        errs.push((
            "incidents.overdue_check_secs".into(),
            "must be at least 1".into(),
        ));
    }
    if !(-720..=840).contains(&stats.utc_offset_minutes) {
        errs.push((
            "stats.utc_offset_minutes".into(),
            "must be between -720 (UTC-12:00) and 840 (UTC+14:00)".into(),
        ));
    }
    if stats.monthly_report_quota == 0 {
        errs.push((
            "stats.monthly_report_quota".into(),
            "must be at least 1".into(),
        ));
    }
    let mut ids = HashSet::new();
    for (i, d) in departments.iter().enumerate() {
        if !valid_id(&d.id) {
            errs.push((
                format!("departments[{i}].id"),
                format!(
                    "`{}` is not a valid department id (1-64 of letters, digits, `-`, `_`, `.`)",
                    d.id
                ),
            ));
        }
        if !ids.insert(d.id.as_str()) {
            errs.push((
                format!("departments[{i}].id"),
                format!("duplicate department id `{}`", d.id),
            ));
        }
        if d.name.trim().is_empty() {
            errs.push((format!("departments[{i}].name"), "must not be empty".into()));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let dep = |id: &str, name: &str| DepartmentConfig {
            id: id.into(),
            name: name.into(),
        };
        let errs = validate(
            &IncidentsConfig {
                overdue_check_secs: 0,
                ..Default::default()
            },
            &StatsConfig {
                utc_offset_minutes: 900,
                monthly_report_quota: 0,
            },
            &[
                dep("fire", "Fire"),
                dep("fire", "Fire 2"),
                dep("no space", " "),
            ],
        );
        let fields: Vec<_> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "incidents.overdue_check_secs",
                "stats.utc_offset_minutes",
                "stats.monthly_report_quota",
                "departments[1].id",
                "departments[2].id",
                "departments[2].name"
            ]
        );
        assert!(validate(
            &IncidentsConfig::default(),
            &StatsConfig::default(),
            &[dep("fire", "Fire")]
        )
        .is_empty());
    }
}
