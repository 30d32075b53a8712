use super::*;
use pb::IncidentStatus as S;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn grids() -> GridIndex {
    GridIndex::test_county()
}

/// 2026-11-23 in the centre's zone (UTC+08:00), and when it starts.
fn d() -> i64 {
    days::parse_day("2026-11-23").unwrap()
}
fn start(day: i64) -> i64 {
    days::day_start(day, 480)
}

fn query(from: i64, to: i64, roots: &[&str], by_grid: bool, now_ms: i64) -> Query {
    Query {
        first_day: from,
        last_day: to,
        roots: roots.iter().map(|s| s.to_string()).collect(),
        by_grid,
        cfg: StatsConfig::default(),
        now_ms,
    }
}

fn report(grid: &str, reporter: &str, at: i64, status: S) -> ReportRow {
    ReportRow {
        grid_id: grid.into(),
        reporter_id: reporter.into(),
        reported_ms: at,
        status: status as i32,
        ..Default::default()
    }
}

fn step(incident: &str, grid: &str, to: S, at: i64, deadline: Option<i64>) -> StepRow {
    StepRow {
        incident_id: incident.into(),
        grid_id: grid.into(),
        to: to as i32,
        at_ms: at,
        deadline_ms: deadline,
    }
}

fn rows() -> Rows {
    let t = start(d());
    let mut closed = report("a-1", "rep-1", t + HOUR, S::Closed);
    closed.accepted_ms = Some(t + HOUR + 10 * MIN);
    closed.dispatched_ms = Some(t + HOUR + 30 * MIN);
    closed.resolved_ms = Some(t + 3 * HOUR);
    let mut cancelled = report("b-1", "rep-2", t + 24 * HOUR - MIN, S::Cancelled);
    cancelled.accepted_ms = Some(t + 24 * HOUR + 19 * MIN);
    Rows {
        reports: vec![
            closed,
            cancelled,
            // The last millisecond of the day before, and the first of the day after.
            report("a-2", "rep-1", t - 1, S::Reported),
            report("a-1", "rep-1", start(d() + 1), S::Reported),
            // Earlier in the month: only the reporters' figures see it.
            report("a-1", "rep-2", start(d() - 21), S::Reported),
        ],
        alerts: vec![
            AlertRow {
                grid_id: "a-1".into(),
                opened_ms: t + 10_000,
                acknowledged_ms: Some(t + 70_000),
                resolved_ms: Some(start(d() + 1) + HOUR),
            },
            AlertRow {
                grid_id: "b-1".into(),
                opened_ms: t - HOUR,
                acknowledged_ms: None,
                resolved_ms: Some(t + HOUR),
            },
        ],
        steps: vec![
            // X (a-2): in progress past its deadline at the end of D, resolved on D+1.
            step("X", "a-2", S::Dispatched, t + HOUR, Some(t + 2 * HOUR)),
            step("X", "a-2", S::InProgress, t + 3 * HOUR, None),
            step("X", "a-2", S::Resolved, start(d() + 1) + HOUR, None),
            // Y (b-1): due only on D+1 at 05:00.
            step(
                "Y",
                "b-1",
                S::Dispatched,
                t + HOUR,
                Some(start(d() + 1) + 5 * HOUR),
            ),
            // Z (b-1): resolved on D-1, reopened on D under its old deadline.
            step(
                "Z",
                "b-1",
                S::Dispatched,
                start(d() - 1) + HOUR,
                Some(start(d() - 1) + 2 * HOUR),
            ),
            step("Z", "b-1", S::Resolved, start(d() - 1) + 3 * HOUR, None),
            step("Z", "b-1", S::InProgress, t + HOUR, None),
        ],
    }
}

#[test]
fn a_day_is_the_centres_day_and_the_rates_follow_their_definitions() {
    let now = start(d() + 1) + 2 * HOUR;
    let out = compute(&query(d(), d(), &[], false, now), &grids(), &rows());
    assert_eq!(out.days.len(), 1);
    let day = &out.days[0];
    assert_eq!((day.day.as_str(), day.grid_id.as_str()), ("2026-11-23", ""));
    assert_eq!(
        (
            day.reported,
            day.accepted,
            day.dispatched,
            day.resolved,
            day.closed,
            day.discarded
        ),
        (2, 2, 1, 1, 1, 1)
    );
    assert_eq!(day.closure_rate, 0.5);
    assert_eq!(day.handling_rate, 1.0);
    // (10 min + 20 min) / 2, and 30 min for the one dispatched.
    assert_eq!(day.mean_secs_to_accept, 900.0);
    assert_eq!(day.mean_secs_to_dispatch, 1800.0);
    assert_eq!((day.alerts_opened, day.alerts_resolved), (1, 1));
    assert_eq!(day.mean_secs_to_acknowledge, 60.0);
    assert_eq!(
        day.overdue, 2,
        "X in progress past its deadline, Z reopened"
    );

    // Reporters: the whole month, most reports first.
    let reps: Vec<_> = out
        .reporters
        .iter()
        .map(|r| (r.month.as_str(), r.reporter_id.as_str(), r.reports, r.quota))
        .collect();
    assert_eq!(
        reps,
        vec![("2026-11", "rep-1", 3, 30), ("2026-11", "rep-2", 2, 30)]
    );
    assert_eq!(out.reporters[0].quota_ratio, 0.1);
}

#[test]
fn overdue_is_as_of_the_end_of_each_day_or_now() {
    let now = start(d() + 1) + 2 * HOUR;
    let out = compute(&query(d() - 1, d() + 2, &[], false, now), &grids(), &rows());
    let overdue: Vec<_> = out
        .days
        .iter()
        .map(|r| (r.day.as_str(), r.overdue))
        .collect();
    assert_eq!(
        overdue,
        vec![
            ("2026-11-22", 0),
            ("2026-11-23", 2),
            // Now is 02:00 on the 24th: X resolved at 01:00, Y not due until 05:00.
            ("2026-11-24", 1),
            ("2026-11-25", 0),
        ]
    );
    let reported: Vec<u32> = out.days.iter().map(|r| r.reported).collect();
    assert_eq!(reported, vec![1, 2, 1, 0]);
    // Later the same day Y is due too.
    let later = compute(
        &query(d() + 1, d() + 1, &[], false, now + 4 * HOUR),
        &grids(),
        &rows(),
    );
    assert_eq!(later.days[0].overdue, 2);
}

#[test]
fn by_grid_rows_roll_up_to_the_grids_asked_for() {
    let now = start(d() + 1) + 2 * HOUR;
    let out = compute(
        &query(d(), d(), &["town-a", "county"], true, now),
        &grids(),
        &rows(),
    );
    let got: Vec<_> = out
        .days
        .iter()
        .map(|r| (r.grid_id.as_str(), r.reported, r.overdue, r.alerts_opened))
        .collect();
    assert_eq!(got, vec![("county", 2, 2, 1), ("town-a", 1, 1, 1)]);
    // Without grids asked for: every grid seen, each on its own.
    let out = compute(&query(d(), d(), &[], true, now), &grids(), &rows());
    let got: Vec<_> = out
        .days
        .iter()
        .map(|r| (r.grid_id.as_str(), r.reported, r.overdue))
        .collect();
    assert_eq!(got, vec![("a-1", 1, 0), ("a-2", 0, 1), ("b-1", 1, 1)]);
}

#[test]
fn requests_are_checked() {
    let cfg = StatsConfig::default();
    let now = start(d()) + HOUR;
    let q = |from: &str, to: &str, grids_asked: &[&str]| {
        Query::new(
            &pb::StatsRequest {
                grid_ids: grids_asked.iter().map(|s| s.to_string()).collect(),
                from_day: from.into(),
                to_day: to.into(),
                by_grid: false,
            },
            &grids(),
            &cfg,
            now,
        )
    };
    let field_of = |r: Result<Query, StatsError>| match r {
        Err(StatsError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    };
    let today = q("", "", &[]).unwrap();
    assert_eq!((today.first_day, today.last_day), (d(), d()));
    assert_eq!(field_of(q("23-11-2026", "", &[])), "from_day");
    assert_eq!(field_of(q("2026-11-20", "2026-11-31", &[])), "to_day");
    assert_eq!(field_of(q("2026-11-20", "2026-11-19", &[])), "to_day");
    assert!(q("2025-11-23", "2026-11-23", &[]).is_ok(), "366 days");
    assert_eq!(field_of(q("2025-11-22", "2026-11-23", &[])), "to_day");
    assert_eq!(field_of(q("", "", &["a-1", "nowhere"])), "grid_ids[1]");
    let one = q("2026-11-01", "2026-11-02", &["a-1", "a-1"]).unwrap();
    assert_eq!(one.roots, vec!["a-1"]);
}
