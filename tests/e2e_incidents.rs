//! End to end: the incident lifecycle over real gRPC against the real binary — every step
//! attributed to the operator's token, the refusals and their codes, an overdue deadline
//! raising a supervision alert on a `Subscribe` stream, two racing transitions, the
//! centre's figures (`StatsService.Daily` and `GET /api/stats`) matching what was done,
//! and a restart keeping every step.

mod common;

use std::time::Duration;

use common::*;
use gridsight::incidents::days;
use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};
use pb::IncidentStatus as S;
use tonic::{transport::Channel, Code};

type Incidents = pb::incident_service_client::IncidentServiceClient<Channel>;

/// The centre at UTC+08:00, four reports a month (with [`SUPERVISED_DEPARTMENTS`]).
const STATS: &str = r#"
[stats]
utc_offset_minutes = 480
monthly_report_quota = 4
"#;

async fn daemon(dir: &std::path::Path) -> Daemon {
    let mut opts = DaemonOpts::new(None);
    opts.extra = format!("{SUPERVISED_DEPARTMENTS}{STATS}");
    Daemon::start(&write_config(dir, &opts)).await
}

async fn report(inc: &mut Incidents, key: &str, grid: &str, reporter: &str) -> pb::Incident {
    let r = pb::ReportIncidentRequest {
        idempotency_key: key.into(),
        category: pb::IncidentCategory::SafetyHazard as i32,
        item_code: "SH-01".into(),
        description: "Scooter charging in the stairwell".into(),
        grid_id: grid.into(),
        location: None,
        reporter_id: reporter.into(),
        photo_urls: vec![],
    };
    inc.report(req(r, REPORTER))
        .await
        .expect("report")
        .into_inner()
        .incident
        .expect("incident")
}

fn step(id: &str, to: S, version: u64) -> pb::TransitionIncidentRequest {
    pb::TransitionIncidentRequest {
        id: id.into(),
        to: to as i32,
        expected_version: version,
        ..Default::default()
    }
}

fn dispatch(id: &str, version: u64, department: &str, in_ms: i64) -> pb::TransitionIncidentRequest {
    pb::TransitionIncidentRequest {
        department: department.into(),
        deadline: Some(ts_from_millis(now_ms() + in_ms)),
        note: "send a patrol".into(),
        ..step(id, S::Dispatched, version)
    }
}

async fn transition(
    inc: &mut Incidents,
    r: pb::TransitionIncidentRequest,
    token: &str,
) -> Result<pb::Incident, tonic::Status> {
    inc.transition(req(r, token)).await.map(|r| r.into_inner())
}

/// The code and message of a refused transition.
async fn refused(
    inc: &mut Incidents,
    r: pb::TransitionIncidentRequest,
    token: &str,
) -> (Code, String) {
    let e = transition(inc, r, token).await.expect_err("refused");
    (e.code(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_goes_through_its_lifecycle_and_the_figures_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path()).await;
    let mut inc = d.incidents().await;
    let mut stream = d
        .alerts()
        .await
        .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
        .await
        .expect("subscribe")
        .into_inner();
    read_snapshot(&mut stream, Duration::from_secs(5)).await;

    let a = report(&mut inc, "lc-a", "a-1", "rep-7").await;
    let b = report(&mut inc, "lc-b", "b-1", "rep-7").await;
    let c = report(&mut inc, "lc-c", "a-2", "rep-8").await;
    assert_eq!((a.version, a.status), (1, S::Reported as i32));
    assert_eq!(a.steps.len(), 1, "the report is the first step");
    assert_eq!(
        (a.steps[0].to, a.steps[0].actor.as_str(), a.steps[0].at),
        (S::Reported as i32, "app", a.reported_at)
    );

    // Who may: operators and integrators, not reporters or viewers.
    for token in [REPORTER, VIEWER] {
        let (code, _) = refused(&mut inc, step(&a.id, S::Accepted, 1), token).await;
        assert_eq!(code, Code::PermissionDenied);
    }
    let a = transition(&mut inc, step(&a.id, S::Accepted, 1), OPERATOR)
        .await
        .expect("accept");
    assert_eq!((a.status, a.version), (S::Accepted as i32, 2));

    // Refusals, each with its code and what it is about.
    let (code, msg) = refused(&mut inc, dispatch(&a.id, 1, "fire", 60_000), OPERATOR).await;
    assert_eq!(code, Code::Aborted, "{msg}");
    assert!(msg.contains("version 2"), "{msg}");
    let (code, msg) = refused(&mut inc, step(&a.id, S::Closed, 2), OPERATOR).await;
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("ACCEPTED") && msg.contains("CLOSED"), "{msg}");
    let (code, _) = refused(&mut inc, step("INC-999999", S::Accepted, 1), OPERATOR).await;
    assert_eq!(code, Code::NotFound);
    let bad_fields = [
        (step(&a.id, S::Unspecified, 2), "to"),
        (step(&a.id, S::Dispatched, 2), "department"),
        (dispatch(&a.id, 2, "police", 60_000), "department"),
        (
            pb::TransitionIncidentRequest {
                deadline: None,
                ..dispatch(&a.id, 2, "fire", 60_000)
            },
            "deadline",
        ),
        (dispatch(&a.id, 2, "fire", -1_000), "deadline"),
        (step(&a.id, S::Duplicate, 2), "duplicate_of"),
        (
            pb::TransitionIncidentRequest {
                duplicate_of: a.id.clone(),
                ..step(&a.id, S::Duplicate, 2)
            },
            "duplicate_of",
        ),
        (
            pb::TransitionIncidentRequest {
                duplicate_of: "INC-999999".into(),
                ..step(&a.id, S::Duplicate, 2)
            },
            "duplicate_of",
        ),
    ];
    for (r, field) in bad_fields {
        let (code, msg) = refused(&mut inc, r, OPERATOR).await;
        assert_eq!(code, Code::InvalidArgument, "{field}: {msg}");
        assert!(msg.starts_with(&format!("{field}: ")), "{field}: {msg}");
    }
    let b = transition(&mut inc, step(&b.id, S::Cancelled, 1), INTEGRATOR)
        .await
        .expect("an integrator may cancel");
    assert_eq!(b.steps[1].actor, "city-brain");

    // Dispatched with a deadline two seconds ahead: it becomes overdue and raises an alert.
    let a = transition(&mut inc, dispatch(&a.id, 2, "fire", 2_000), OPERATOR)
        .await
        .expect("dispatch");
    assert_eq!((a.department.as_str(), a.version), ("fire", 3));
    let deadline = a.deadline.map(|t| millis_from_ts(&t)).expect("deadline");
    let key = format!("incident/{}/overdue", a.id);
    let seen = read_until(&mut stream, Duration::from_secs(15), |c| {
        c.alert.as_ref().is_some_and(|al| al.dedup_key == key)
    })
    .await;
    let alert = seen.last().and_then(|c| c.alert.clone()).expect("alert");
    assert!(now_ms() > deadline, "raised only after the deadline");
    assert_eq!(alert.incident_ids, vec![a.id.clone()]);
    assert_eq!(alert.severity, pb::Severity::Critical as i32);
    assert!(
        alert.title.starts_with(
            "Overdue: Safety hazard report SH-01 dispatched to Fire brigade, deadline "
        ),
        "{}",
        alert.title
    );
    let a = inc
        .get(req(pb::GetIncidentRequest { id: a.id.clone() }, VIEWER))
        .await
        .expect("get")
        .into_inner();
    assert!(a.overdue);
    assert_eq!(a.version, 4, "marking it overdue is a new version");
    let a = transition(&mut inc, step(&a.id, S::InProgress, 4), OPERATOR)
        .await
        .expect("in progress");

    // The figures of the day, while A is overdue.
    let day = days::format_day(days::day_of(
        millis_from_ts(&a.reported_at.expect("at")),
        480,
    ));
    let mut stats = pb::stats_service_client::StatsServiceClient::new(d.channel().await);
    let ask = |grid_ids: Vec<&str>, by_grid: bool| pb::StatsRequest {
        grid_ids: grid_ids.into_iter().map(String::from).collect(),
        from_day: day.clone(),
        to_day: day.clone(),
        by_grid,
    };
    let today = stats
        .daily(req(ask(vec![], false), VIEWER))
        .await
        .expect("stats")
        .into_inner();
    let t = &today.days[0];
    assert_eq!(
        (t.reported, t.accepted, t.dispatched, t.discarded, t.overdue),
        (3, 1, 1, 1, 1)
    );

    let a = transition(&mut inc, step(&a.id, S::Resolved, 5), OPERATOR)
        .await
        .expect("resolve");
    let a = transition(&mut inc, step(&a.id, S::Closed, 6), OPERATOR)
        .await
        .expect("close");
    let tos: Vec<i32> = a.steps.iter().map(|s| s.to).collect();
    let want = [
        S::Reported,
        S::Accepted,
        S::Dispatched,
        S::InProgress,
        S::Resolved,
        S::Closed,
    ];
    assert_eq!(tos, want.map(|s| s as i32).to_vec());
    assert!(
        a.steps[1..].iter().all(|s| s.actor == "desk-1"),
        "{:?}",
        a.steps
    );
    assert!(a.steps.windows(2).all(|w| w[0].to == w[1].from));
    assert_eq!(a.steps[2].department, "fire");
    assert_eq!(a.steps[2].note, "send a patrol");
    assert_eq!((a.version, a.overdue), (7, false));

    let today = stats
        .daily(req(ask(vec![], false), OPERATOR))
        .await
        .expect("stats")
        .into_inner();
    let t = &today.days[0];
    assert_eq!(t.day, day);
    assert_eq!(
        (
            t.reported,
            t.accepted,
            t.dispatched,
            t.resolved,
            t.closed,
            t.discarded,
            t.overdue
        ),
        (3, 1, 1, 1, 1, 1, 0)
    );
    assert!(
        (t.closure_rate - 1.0 / 3.0).abs() < 1e-9,
        "{}",
        t.closure_rate
    );
    assert!((t.handling_rate - 1.0 / 3.0).abs() < 1e-9);
    assert!(t.mean_secs_to_accept > 0.0 && t.mean_secs_to_dispatch >= t.mean_secs_to_accept);
    assert_eq!(t.alerts_opened, 4, "three reports and the overdue alert");
    let reporters: Vec<_> = today
        .reporters
        .iter()
        .map(|r| (r.reporter_id.as_str(), r.reports, r.quota, r.quota_ratio))
        .collect();
    assert_eq!(reporters, vec![("rep-7", 2, 4, 0.5), ("rep-8", 1, 4, 0.25)]);
    let by_town = stats
        .daily(req(ask(vec!["town-a", "town-b"], true), VIEWER))
        .await
        .expect("stats by grid")
        .into_inner();
    let rows: Vec<_> = by_town
        .days
        .iter()
        .map(|r| (r.grid_id.as_str(), r.reported, r.closed))
        .collect();
    assert_eq!(rows, vec![("town-a", 2, 1), ("town-b", 1, 0)]);

    // Refusals of the figures.
    let e = stats
        .daily(req(ask(vec![], false), REPORTER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    for (r, field) in [
        (
            pb::StatsRequest {
                from_day: "23/11/2026".into(),
                ..Default::default()
            },
            "from_day",
        ),
        (
            pb::StatsRequest {
                from_day: "2024-01-01".into(),
                to_day: "2026-01-01".into(),
                ..Default::default()
            },
            "to_day",
        ),
        (
            pb::StatsRequest {
                grid_ids: vec!["nowhere".into()],
                ..Default::default()
            },
            "grid_ids[0]",
        ),
    ] {
        let e = stats.daily(req(r, VIEWER)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{}",
            e.message()
        );
    }

    // The same figures for the wall, over HTTP.
    let path = format!("/api/stats?from={day}&to={day}&grid=town-a,town-b&by_grid=true");
    let (code, body) = http_get(d.http, &path, Some(VIEWER));
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["days"][0]["grid_id"], "town-a");
    assert_eq!(json["days"][0]["reported"], 2);
    assert_eq!(json["days"][0]["closed"], 1);
    assert_eq!(json["reporters"][0]["reporter_id"], "rep-7");
    let (code, body) = http_get(d.http, "/api/stats?from=yesterday", Some(VIEWER));
    assert_eq!(code, 400);
    assert!(body.starts_with("from: "), "{body}");
    assert_eq!(http_get(d.http, "/api/stats", Some(REPORTER)).0, 403);
    assert_eq!(http_get(d.http, "/api/stats", None).0, 401);

    // A restart keeps every step, and the figures.
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0), "{}", d.log());
    let d = Daemon::start(&d.config).await;
    let mut inc = d.incidents().await;
    let again = inc
        .get(req(pb::GetIncidentRequest { id: a.id.clone() }, VIEWER))
        .await
        .expect("get after restart")
        .into_inner();
    assert_eq!(again, a);
    let mut stats = pb::stats_service_client::StatsServiceClient::new(d.channel().await);
    let after = stats
        .daily(req(ask(vec![], false), VIEWER))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(after.days, today.days);
    let (code, msg) = refused(&mut inc, step(&a.id, S::InProgress, 7), OPERATOR).await;
    assert_eq!(code, Code::FailedPrecondition, "closed is final: {msg}");
    let _ = c;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_transitions_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let mut inc = d.incidents().await;
    for round in 0..5 {
        let target = report(&mut inc, &format!("race-{round}"), "a-1", "rep-1").await;
        // Four clients on their own connections, all from version 1.
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(d.incidents().await);
        }
        let calls = clients.into_iter().enumerate().map(|(i, mut c)| {
            let to = if i % 2 == 0 {
                S::Accepted
            } else {
                S::Unfounded
            };
            let r = step(&target.id, to, 1);
            async move { transition(&mut c, r, OPERATOR).await }
        });
        let results = futures::future::join_all(calls).await;
        let won: Vec<&pb::Incident> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.code(), Code::Aborted, "round {round}: {e:?}");
            }
        }
        let stored = inc
            .get(req(
                pb::GetIncidentRequest {
                    id: target.id.clone(),
                },
                VIEWER,
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(&stored, won[0]);
        assert_eq!((stored.version, stored.steps.len()), (2, 2));
    }
}
