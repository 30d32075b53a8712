//! End to end: dispatching an alert's work to a department with a deadline, over real
//! gRPC (`AlertService.Dispatch`) and the wall's HTTP action, against the real binary and
//! a real Mosquitto — the refusals and that they change nothing, a sensor alert's work
//! order, a report's own incident stepped on, every step shown on the alert to a
//! `Subscribe` client, the deadline supervised (overdue on the alert, a supervision alert)
//! and a re-dispatch clearing it.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::{millis_from_ts, ts_from_millis, v1 as pb};
use pb::IncidentStatus as S;
use serde_json::Value;
use tonic::Code;

fn dispatch_req(id: &str, version: u64, department: &str, in_ms: i64) -> pb::DispatchAlertRequest {
    pb::DispatchAlertRequest {
        id: id.into(),
        expected_version: version,
        department: department.into(),
        deadline: Some(ts_from_millis(now_ms() + in_ms)),
        note: String::new(),
    }
}

/// Reads the stream until alert `id` shows incident `inc` as `pred` wants; returns the alert.
async fn until_linked(
    stream: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    id: &str,
    inc: &str,
    pred: impl Fn(&pb::LinkedIncident) -> bool,
) -> pb::Alert {
    let seen = read_until(stream, Duration::from_secs(10), |c| {
        c.alert
            .as_ref()
            .is_some_and(|a| a.id == id && a.incidents.iter().any(|l| l.id == inc && pred(l)))
    })
    .await;
    seen.last().and_then(|c| c.alert.clone()).expect("alert")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alerts_work_is_dispatched_supervised_and_every_step_shows_on_the_alert() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DaemonOpts::new(Some(broker.port));
    opts.extra = SUPERVISED_DEPARTMENTS.into();
    let d = Daemon::start(&write_config(dir.path(), &opts)).await;
    let mut alerts = d.alerts().await;
    let mut incidents = d.incidents().await;
    let mut stream = d.subscribe_all().await;
    read_snapshot(&mut stream, Duration::from_secs(5)).await;

    // A sensor alarm: an alert with no incident.
    publish_all(
        broker.port,
        vec![(
            topic("a-1", "smoke", "sm-1"),
            payload(now_ms(), "alarm", 0.9),
        )],
    )
    .await;
    let opened = read_until(&mut stream, Duration::from_secs(10), |c| {
        c.kind == pb::ChangeKind::Opened as i32
    })
    .await;
    let a = opened.last().unwrap().alert.clone().unwrap();
    assert!(a.incidents.is_empty());

    // Refusals: each names what is wrong, and none leaves an incident behind.
    let refused = |r: Result<tonic::Response<pb::DispatchAlertResponse>, tonic::Status>| {
        let e = r.expect_err("refused");
        (e.code(), e.message().to_string())
    };
    let mut client = alerts.clone();
    let (code, _) = refused(
        client
            .dispatch(req(dispatch_req(&a.id, a.version, "fire", 60_000), VIEWER))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    let (code, msg) = refused(
        client
            .dispatch(req(
                dispatch_req(&a.id, a.version, "police", 60_000),
                OPERATOR,
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        msg.contains("department") && msg.contains("fire, transport"),
        "{msg}"
    );
    let (code, msg) = refused(
        client
            .dispatch(req(
                dispatch_req(&a.id, a.version, "fire", -1_000),
                OPERATOR,
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("deadline"), "{msg}");
    let (code, msg) = refused(
        client
            .dispatch(req(
                dispatch_req(&a.id, a.version + 5, "fire", 60_000),
                OPERATOR,
            ))
            .await,
    );
    assert_eq!(code, Code::Aborted, "{msg}");
    let (code, _) = refused(
        client
            .dispatch(req(dispatch_req("ALR-999999", 1, "fire", 60_000), OPERATOR))
            .await,
    );
    assert_eq!(code, Code::NotFound);
    let (status, text) = http_post(
        d.http,
        &format!("/api/alerts/{}/dispatch", a.id),
        OPERATOR,
        &format!(
            r#"{{"expected_version": {}, "deadline_ms": {}}}"#,
            a.version,
            now_ms() + 60_000
        ),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("department"), "{text}");
    let none = incidents
        .list(req(pb::ListIncidentsRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert!(
        none.incidents.is_empty(),
        "a refused dispatch made {:?}",
        none.incidents
    );

    // From the wall: a work order, dispatched with a deadline 3 s away.
    let deadline = now_ms() + 3_000;
    let (status, text) = http_post(
        d.http,
        &format!("/api/alerts/{}/dispatch", a.id),
        OPERATOR,
        &format!(
            r#"{{"expected_version": {}, "department": "transport", "deadline_ms": {deadline}, "note": "close the underpass"}}"#,
            a.version
        ),
    );
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let wo = v["incident"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["incident"]["status"], "DISPATCHED");
    assert_eq!(v["incident"]["category"], "CENTRAL_TASK");
    assert_eq!(v["incident"]["alert_id"], a.id.as_str());
    assert_eq!(v["alert"]["incidents"][0]["id"], wo.as_str());
    assert_eq!(v["alert"]["incidents"][0]["department"], "transport");
    assert_eq!(v["alert"]["incidents"][0]["deadline_ms"], deadline);

    // A gRPC subscriber sees it on the alert, attributed.
    let shown = until_linked(&mut stream, &a.id, &wo, |l| {
        l.status == S::Dispatched as i32
    })
    .await;
    let l = &shown.incidents[0];
    assert_eq!(
        (l.department.as_str(), l.updated_by.as_str()),
        ("transport", "desk-1")
    );
    assert_eq!(l.deadline.as_ref().map(millis_from_ts), Some(deadline));
    assert_eq!(l.category, pb::IncidentCategory::CentralTask as i32);
    let notes: Vec<&str> = shown.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(
        notes,
        vec![
            format!("{wo} work order opened"),
            format!("{wo} ACCEPTED"),
            format!("{wo} DISPATCHED to Transport bureau: close the underpass"),
        ]
    );
    assert!(shown.notes.iter().all(|n| n.by == "desk-1"));
    assert_eq!(shown.incident_ids, vec![wo.clone()]);

    // The work order itself: the operator reported, accepted and dispatched it.
    let order = incidents
        .get(req(pb::GetIncidentRequest { id: wo.clone() }, VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (order.item_code.as_str(), order.grid_id.as_str()),
        (a.id.as_str(), "a-1")
    );
    assert_eq!(order.description, a.title);
    assert_eq!(order.reporter_id, "desk-1");
    let steps: Vec<(i32, &str)> = order
        .steps
        .iter()
        .map(|s| (s.to, s.actor.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (S::Reported as i32, "desk-1"),
            (S::Accepted as i32, "desk-1"),
            (S::Dispatched as i32, "desk-1"),
        ]
    );

    // The department takes it up (through the incident API): the alert follows.
    incidents
        .transition(req(
            pb::TransitionIncidentRequest {
                id: wo.clone(),
                to: S::InProgress as i32,
                expected_version: order.version,
                ..Default::default()
            },
            INTEGRATOR,
        ))
        .await
        .expect("in progress");
    let shown = until_linked(&mut stream, &a.id, &wo, |l| {
        l.status == S::InProgress as i32
    })
    .await;
    assert_eq!(shown.incidents[0].updated_by, "city-brain");

    // The deadline passes: the alert shows it overdue, and a supervision alert opens.
    let mut latest = None;
    let seen = read_until(&mut stream, Duration::from_secs(10), |c| {
        let a2 = c.alert.as_ref().unwrap();
        if a2.id == a.id {
            latest = Some(a2.clone());
        }
        a2.dedup_key == format!("incident/{wo}/overdue")
    })
    .await;
    let shown = latest.expect("the alert changed");
    let l = &shown.incidents[0];
    assert!(l.overdue, "{l:?}");
    assert_eq!(l.updated_by, "supervision");
    let note = format!("{wo} overdue: not resolved by its deadline");
    assert!(
        shown
            .notes
            .iter()
            .any(|n| n.text == note && n.by == "supervision"),
        "{:?}",
        shown.notes
    );
    let sup = seen.last().unwrap().alert.clone().unwrap();
    assert_eq!(sup.severity, pb::Severity::Critical as i32);
    assert!(sup.title.contains("Transport bureau"), "{}", sup.title);

    // Re-dispatched to another department with a new deadline: the same work order, no
    // longer overdue.
    let r = alerts
        .dispatch(req(
            pb::DispatchAlertRequest {
                note: "transport cannot reach it".into(),
                ..dispatch_req(&a.id, shown.version, "fire", 3_600_000)
            },
            OPERATOR,
        ))
        .await
        .expect("re-dispatch")
        .into_inner();
    let inc = r.incident.unwrap();
    assert_eq!(
        inc.id, wo,
        "the open work order is re-dispatched, not a new one"
    );
    assert_eq!(
        (inc.status, inc.department.as_str(), inc.overdue),
        (S::Dispatched as i32, "fire", false)
    );
    let l = &r.alert.unwrap().incidents[0];
    assert_eq!((l.department.as_str(), l.overdue), ("fire", false));

    // A report's alert: its own incident is stepped on, no work order is made.
    let rep = incidents
        .report(req(
            pb::ReportIncidentRequest {
                idempotency_key: "disp-b".into(),
                category: pb::IncidentCategory::SafetyHazard as i32,
                item_code: "SH-01".into(),
                description: "Gas smell at the market".into(),
                grid_id: "b-1".into(),
                reporter_id: "rep-3".into(),
                ..Default::default()
            },
            REPORTER,
        ))
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let b = until_linked(&mut stream, &rep.alert_id, &rep.id, |l| {
        l.status == S::Reported as i32
    })
    .await;
    assert_eq!(b.incidents[0].updated_by, "app");
    let r = alerts
        .dispatch(req(
            dispatch_req(&b.id, b.version, "fire", 600_000),
            OPERATOR,
        ))
        .await
        .expect("dispatch a report")
        .into_inner();
    assert_eq!(r.incident.as_ref().unwrap().id, rep.id);
    assert_eq!(r.incident.as_ref().unwrap().status, S::Dispatched as i32);
    let all = incidents
        .list(req(pb::ListIncidentsRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.incidents.len(),
        2,
        "the work order and the report, nothing else"
    );

    // A resolved alert is not dispatched.
    let b = r.alert.unwrap();
    alerts
        .resolve(req(
            pb::ResolveAlertRequest {
                id: b.id.clone(),
                expected_version: b.version,
                note: String::new(),
            },
            OPERATOR,
        ))
        .await
        .expect("resolve");
    let e = alerts
        .dispatch(req(
            dispatch_req(&b.id, b.version + 1, "fire", 600_000),
            OPERATOR,
        ))
        .await
        .expect_err("resolved");
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
}
