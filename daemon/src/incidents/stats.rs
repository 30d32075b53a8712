//! The figures the centre reports on, per day (and grid), from the store.
//!
//! [`Figures::daily`] checks a [`pb::StatsRequest`], reads the rows it needs on a reader
//! connection and hands them to [`compute`], which is pure. Definitions (also in the
//! README), for each local day D of the range and the grids asked for:
//! - `reported`: incidents reported on D; `accepted`, `dispatched`, `resolved`: of those, how
//!   many have (by now) a step to ACCEPTED, DISPATCHED, RESOLVED; `closed`: how many are
//!   CLOSED; `discarded`: CANCELLED, UNFOUNDED or DUPLICATE;
//! - `closure_rate` = closed ÷ reported, `handling_rate` = accepted ÷ reported (0 when none);
//! - `mean_secs_to_accept` / `_to_dispatch`: mean time from the report to its first step to
//!   ACCEPTED / DISPATCHED, over those reported on D that have one (0 when none);
//! - `overdue`: incidents DISPATCHED or IN_PROGRESS past their deadline at the end of D (or
//!   now, for today; 0 for days to come), from the steps;
//! - `alerts_opened` / `alerts_resolved`: alerts that opened / were resolved on D;
//!   `mean_secs_to_acknowledge`: over the alerts opened on D that have been acknowledged;
//! - reporters: per reporter and month the days fall in (the whole month), the reports
//!   filed, the monthly quota and reports ÷ quota.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use gridsight_proto::v1 as pb;

use super::days;
use crate::{
    config::StatsConfig,
    domain::GridIndex,
    store::{
        figures::{self, AlertRow, ReportRow, StepRow},
        Store, StoreError,
    },
};

/// Most days one request may cover.
pub const MAX_DAYS: i64 = 366;

/// Why figures could not be given.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A request field is wrong.
    #[error("{field}: {message}")]
    Field {
        /// The field, e.g. `from_day` or `grid_ids[1]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn field(field: impl Into<String>, message: impl Into<String>) -> StatsError {
    StatsError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct Query {
    /// First and last local day (inclusive).
    pub first_day: i64,
    /// See `first_day`.
    pub last_day: i64,
    /// The grids asked for (empty = all), each standing for itself and its descendants.
    pub roots: Vec<String>,
    /// One row per grid and day.
    pub by_grid: bool,
    /// The centre's time zone and the reporters' quota.
    pub cfg: StatsConfig,
    /// Now (ms since the Unix epoch).
    pub now_ms: i64,
}

impl Query {
    /// Checks `r` against the grids; empty days are today (at `now_ms`).
    pub fn new(
        r: &pb::StatsRequest,
        grids: &GridIndex,
        cfg: &StatsConfig,
        now_ms: i64,
    ) -> Result<Self, StatsError> {
        let today = days::day_of(now_ms, cfg.utc_offset_minutes);
        let day = |name: &str, s: &str| -> Result<i64, StatsError> {
            if s.is_empty() {
                return Ok(today);
            }
            days::parse_day(s).ok_or_else(|| field(name, format!("`{s}` is not a date YYYY-MM-DD")))
        };
        let first_day = day("from_day", &r.from_day)?;
        let last_day = day("to_day", &r.to_day)?;
        if last_day < first_day {
            return Err(field("to_day", "must not be before from_day"));
        }
        if last_day - first_day + 1 > MAX_DAYS {
            return Err(field(
                "to_day",
                format!("at most {MAX_DAYS} days from from_day"),
            ));
        }
        for (i, g) in r.grid_ids.iter().enumerate() {
            if !grids.contains(g) {
                return Err(field(
                    format!("grid_ids[{i}]"),
                    format!("unknown grid `{g}`"),
                ));
            }
        }
        let mut roots: Vec<String> = Vec::new();
        for g in &r.grid_ids {
            if !roots.contains(g) {
                roots.push(g.clone());
            }
        }
        Ok(Query {
            first_day,
            last_day,
            roots,
            by_grid: r.by_grid,
            cfg: cfg.clone(),
            now_ms,
        })
    }

    fn start_of(&self, day: i64) -> i64 {
        days::day_start(day, self.cfg.utc_offset_minutes)
    }

    fn day_of(&self, ms: i64) -> i64 {
        days::day_of(ms, self.cfg.utc_offset_minutes)
    }

    fn in_range(&self, day: i64) -> bool {
        (self.first_day..=self.last_day).contains(&day)
    }
}

/// What [`compute`] reads: rows from the store for the query's grids.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Incidents reported in the months the days fall in.
    pub reports: Vec<ReportRow>,
    /// Alerts opened or resolved in the days.
    pub alerts: Vec<AlertRow>,
    /// Steps of incidents that may have been overdue in the days.
    pub steps: Vec<StepRow>,
}

/// Reads the figures' rows and computes them. Cheap to clone.
#[derive(Clone)]
pub struct Figures {
    /// Where the rows are.
    pub store: Store,
    /// The grid tree.
    pub grids: Arc<GridIndex>,
    /// Time zone and quota.
    pub cfg: StatsConfig,
}

impl Figures {
    /// The figures asked for in `r`, at `now_ms`.
    pub async fn daily(
        &self,
        r: &pb::StatsRequest,
        now_ms: i64,
    ) -> Result<pb::StatsResponse, StatsError> {
        let q = Query::new(r, &self.grids, &self.cfg, now_ms)?;
        let grids = (!q.roots.is_empty()).then(|| self.grids.expand(&q.roots));
        let (from, to) = (q.start_of(q.first_day), q.start_of(q.last_day + 1));
        let months = (
            q.start_of(days::month_start(q.first_day)),
            q.start_of(days::next_month_start(q.last_day)),
        );
        let rows = self
            .store
            .read(move |c| {
                // One read transaction: the three agree with each other.
                let tx = c.unchecked_transaction()?;
                let rows = Rows {
                    reports: figures::reports(&tx, &grids, months.0, months.1)?,
                    alerts: figures::alerts(&tx, &grids, from, to)?,
                    steps: figures::supervised_steps(&tx, &grids, from, to)?,
                };
                tx.commit()?;
                Ok(rows)
            })
            .await?;
        Ok(compute(&q, &self.grids, &rows))
    }
}

/// Sums for one row.
#[derive(Debug, Default, Clone)]
struct Acc {
    s: pb::DayStats,
    accept_secs: f64,
    dispatch_secs: f64,
    ack_secs: f64,
    acked: u32,
}

/// Which rows an item of `grid` counts in: the day total, each grid asked for that holds
/// it, or its own grid.
fn keys(q: &Query, grids: &GridIndex, grid: &str) -> Vec<String> {
    if !q.by_grid {
        return vec![String::new()];
    }
    if q.roots.is_empty() {
        return vec![grid.to_string()];
    }
    q.roots
        .iter()
        .filter(|r| grids.is_within(grid, r))
        .cloned()
        .collect()
}

/// The figures of `q` from `rows` (already limited to the grids asked for).
pub fn compute(q: &Query, grids: &GridIndex, rows: &Rows) -> pb::StatsResponse {
    use pb::IncidentStatus as S;
    let mut acc: BTreeMap<(i64, String), Acc> = BTreeMap::new();
    fn at(acc: &mut BTreeMap<(i64, String), Acc>, day: i64, key: String) -> &mut Acc {
        acc.entry((day, key)).or_default()
    }
    let secs = |from: i64, to: i64| (to - from).max(0) as f64 / 1000.0;
    let mut reporters: BTreeMap<(i64, String), u32> = BTreeMap::new();
    for r in &rows.reports {
        let day = q.day_of(r.reported_ms);
        *reporters
            .entry((days::month_start(day), r.reporter_id.clone()))
            .or_default() += 1;
        if !q.in_range(day) {
            continue;
        }
        for key in keys(q, grids, &r.grid_id) {
            let a = at(&mut acc, day, key);
            a.s.reported += 1;
            if let Some(t) = r.accepted_ms {
                a.s.accepted += 1;
                a.accept_secs += secs(r.reported_ms, t);
            }
            if let Some(t) = r.dispatched_ms {
                a.s.dispatched += 1;
                a.dispatch_secs += secs(r.reported_ms, t);
            }
            a.s.resolved += u32::from(r.resolved_ms.is_some());
            let status = S::try_from(r.status).unwrap_or(S::Unspecified);
            a.s.closed += u32::from(status == S::Closed);
            a.s.discarded +=
                u32::from(matches!(status, S::Cancelled | S::Unfounded | S::Duplicate));
        }
    }
    for al in &rows.alerts {
        let opened = q.day_of(al.opened_ms);
        if q.in_range(opened) {
            for key in keys(q, grids, &al.grid_id) {
                let a = at(&mut acc, opened, key);
                a.s.alerts_opened += 1;
                if let Some(t) = al.acknowledged_ms {
                    a.acked += 1;
                    a.ack_secs += secs(al.opened_ms, t);
                }
            }
        }
        if let Some(resolved) = al
            .resolved_ms
            .map(|t| q.day_of(t))
            .filter(|d| q.in_range(*d))
        {
            for key in keys(q, grids, &al.grid_id) {
                at(&mut acc, resolved, key).s.alerts_resolved += 1;
            }
        }
    }
    for (grid, segments) in supervised_segments(&rows.steps) {
        for day in q.first_day..=q.last_day {
            let start = q.start_of(day);
            if start > q.now_ms {
                break;
            }
            let end = q.start_of(day + 1).min(q.now_ms);
            let overdue = segments
                .iter()
                .any(|s| s.from <= end && end < s.until && s.deadline < end);
            if overdue {
                for key in keys(q, grids, grid) {
                    at(&mut acc, day, key).s.overdue += 1;
                }
            }
        }
    }
    // Every day has its rows, even empty: the grids asked for, or those seen at all.
    let row_keys: BTreeSet<String> = if !q.by_grid {
        [String::new()].into()
    } else if !q.roots.is_empty() {
        q.roots.iter().cloned().collect()
    } else {
        acc.keys().map(|(_, k)| k.clone()).collect()
    };
    for day in q.first_day..=q.last_day {
        for key in &row_keys {
            acc.entry((day, key.clone())).or_default();
        }
    }
    let mean = |sum: f64, n: u32| if n == 0 { 0.0 } else { sum / f64::from(n) };
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            0.0
        } else {
            f64::from(a) / f64::from(b)
        }
    };
    let days_out = acc
        .into_iter()
        .map(|((day, key), a)| pb::DayStats {
            day: days::format_day(day),
            grid_id: key,
            closure_rate: ratio(a.s.closed, a.s.reported),
            handling_rate: ratio(a.s.accepted, a.s.reported),
            mean_secs_to_accept: mean(a.accept_secs, a.s.accepted),
            mean_secs_to_dispatch: mean(a.dispatch_secs, a.s.dispatched),
            mean_secs_to_acknowledge: mean(a.ack_secs, a.acked),
            ..a.s
        })
        .collect();
    let quota = q.cfg.monthly_report_quota.max(1);
    let mut reporter_rows: Vec<pb::ReporterStats> = reporters
        .into_iter()
        .map(|((month, reporter_id), reports)| pb::ReporterStats {
            reporter_id,
            month: days::format_month(month),
            reports,
            quota,
            quota_ratio: ratio(reports, quota),
        })
        .collect();
    reporter_rows.sort_by(|a, b| {
        (&a.month, std::cmp::Reverse(a.reports), &a.reporter_id).cmp(&(
            &b.month,
            std::cmp::Reverse(b.reports),
            &b.reporter_id,
        ))
    });
    pb::StatsResponse {
        days: days_out,
        reporters: reporter_rows,
    }
}

/// A stretch of time an incident was with a department under one deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    from: i64,
    /// Exclusive; `i64::MAX` while it lasts.
    until: i64,
    deadline: i64,
}

/// Per incident (with its grid), the stretches it was DISPATCHED or IN_PROGRESS: a step to
/// DISPATCHED starts one with its deadline, IN_PROGRESS continues it (or, reopened after
/// RESOLVED, starts one under the last deadline), any other step ends it. `steps` is
/// ordered by incident, then step.
fn supervised_segments(steps: &[StepRow]) -> Vec<(&str, Vec<Segment>)> {
    use pb::IncidentStatus as S;
    #[derive(Default)]
    struct Track<'a> {
        grid: &'a str,
        done: Vec<Segment>,
        open: Option<Segment>,
        deadline: Option<i64>,
    }
    let mut by_incident: HashMap<&str, Track<'_>> = HashMap::new();
    for s in steps {
        let t = by_incident
            .entry(s.incident_id.as_str())
            .or_insert_with(|| Track {
                grid: &s.grid_id,
                ..Track::default()
            });
        let to = S::try_from(s.to).unwrap_or(S::Unspecified);
        if to == S::InProgress && t.open.is_some() {
            continue;
        }
        if let Some(mut seg) = t.open.take() {
            seg.until = s.at_ms;
            t.done.push(seg);
        }
        if to == S::Dispatched {
            t.deadline = Some(s.deadline_ms.unwrap_or(i64::MAX));
        }
        if let (S::Dispatched | S::InProgress, Some(deadline)) = (to, t.deadline) {
            t.open = Some(Segment {
                from: s.at_ms,
                until: i64::MAX,
                deadline,
            });
        }
    }
    by_incident
        .into_values()
        .map(|mut t| {
            t.done.extend(t.open);
            (t.grid, t.done)
        })
        .collect()
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
