//! The figures' tables on a real SQLite file: written with their records, read back with
//! grid filters, and filled in for a data folder from before they existed.

use std::sync::Arc;

use gridsight_proto::{ts_from_millis, v1 as pb};
use pb::IncidentStatus as S;

use super::*;
use crate::{
    config::StoreConfig,
    store::{Opened, Record, Store},
    telemetry::Metrics,
};

fn open(dir: &std::path::Path) -> Opened {
    let cfg = StoreConfig {
        data_dir: dir.to_path_buf(),
        ..StoreConfig::default()
    };
    Store::open(&cfg, Arc::new(Metrics::new()), None).unwrap()
}

fn step(from: S, to: S, at: i64, deadline: Option<i64>) -> pb::IncidentStep {
    pb::IncidentStep {
        from: from as i32,
        to: to as i32,
        at: Some(ts_from_millis(at)),
        actor: "desk".into(),
        department: if deadline.is_some() {
            "fire".into()
        } else {
            String::new()
        },
        deadline: deadline.map(ts_from_millis),
        ..Default::default()
    }
}

fn incident(id: &str, grid: &str, steps: Vec<pb::IncidentStep>) -> pb::Incident {
    pb::Incident {
        id: id.into(),
        idempotency_key: id.into(),
        grid_id: grid.into(),
        reporter_id: "rep-1".into(),
        reported_at: steps[0].at,
        status: steps.last().map(|s| s.to).unwrap_or(0),
        version: steps.len() as u64,
        deadline: steps.iter().rev().find_map(|s| s.deadline),
        steps,
        ..Default::default()
    }
}

fn alert(id: &str, status: pb::AlertStatus, at: i64, acked: Option<i64>) -> Record {
    Record::AlertChange(crate::domain::AlertChange::from(pb::AlertChange {
        seq: 0,
        kind: pb::ChangeKind::Opened as i32,
        alert: Some(pb::Alert {
            id: id.into(),
            grid_id: "g1".into(),
            status: status as i32,
            version: 1,
            first_seen: Some(ts_from_millis(1_000)),
            updated_at: Some(ts_from_millis(at)),
            acknowledged_at: acked.map(ts_from_millis),
            ..Default::default()
        }),
    }))
}

#[tokio::test]
async fn steps_are_stored_once_and_read_back_by_grid() {
    let dir = tempfile::tempdir().unwrap();
    let Opened { store, writer } = open(dir.path());
    let reported = step(S::Unspecified, S::Reported, 1_000, None);
    let accepted = step(S::Reported, S::Accepted, 2_000, None);
    let dispatched = step(S::Accepted, S::Dispatched, 3_000, Some(5_000));
    let a = incident("INC-000001", "g1", vec![reported.clone()]);
    store
        .write_and_wait(vec![Record::Incident(a)])
        .await
        .unwrap();
    let a = incident(
        "INC-000001",
        "g1",
        vec![reported.clone(), accepted, dispatched],
    );
    let b = incident("INC-000002", "g2", vec![reported]);
    store
        .write_and_wait(vec![Record::Incident(a), Record::Incident(b)])
        .await
        .unwrap();
    let g1 = Some(vec!["g1".to_string()]);
    let (rows, steps, due, n) = store
        .read(move |c| {
            let n: i64 = c.query_row("SELECT COUNT(*) FROM incident_steps", [], |r| r.get(0))?;
            Ok((
                reports(c, &g1, 0, 10_000)?,
                supervised_steps(c, &g1, 4_000, 10_000)?,
                due_incidents(c, 6_000)?,
                n,
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        n, 4,
        "three steps of one incident, one of the other, none twice"
    );
    assert_eq!(
        rows,
        vec![ReportRow {
            grid_id: "g1".into(),
            reporter_id: "rep-1".into(),
            reported_ms: 1_000,
            status: S::Dispatched as i32,
            accepted_ms: Some(2_000),
            dispatched_ms: Some(3_000),
            resolved_ms: None,
        }]
    );
    let tos: Vec<i32> = steps.iter().map(|s| s.to).collect();
    assert_eq!(
        tos,
        vec![S::Reported as i32, S::Accepted as i32, S::Dispatched as i32]
    );
    assert_eq!(steps[2].deadline_ms, Some(5_000));
    assert_eq!(due, vec!["INC-000001".to_string()]);
    let (none, other_grid) = store
        .read(|c| {
            Ok((
                due_incidents(c, 5_000)?,
                supervised_steps(c, &Some(vec!["g2".into()]), 0, 10_000)?,
            ))
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "not due before the deadline has passed");
    assert!(other_grid.is_empty());
    drop(store);
    writer.join().unwrap();
}

#[tokio::test]
async fn alert_times_are_kept_and_filled_in_for_an_older_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let Opened { store, writer } = open(dir.path());
    store
        .write_and_wait(vec![
            alert("ALR-000001", pb::AlertStatus::Open, 1_000, None),
            alert("ALR-000002", pb::AlertStatus::Open, 1_000, None),
        ])
        .await
        .unwrap();
    store
        .write_and_wait(vec![
            alert(
                "ALR-000001",
                pb::AlertStatus::Acknowledged,
                4_000,
                Some(4_000),
            ),
            alert("ALR-000001", pb::AlertStatus::Resolved, 9_000, Some(4_000)),
        ])
        .await
        .unwrap();
    let rows = store.read(|c| alerts(c, &None, 0, 10_000)).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].acknowledged_ms, rows[0].resolved_ms),
        (Some(4_000), Some(9_000))
    );
    drop(store);
    writer.join().unwrap();

    // A data folder from before the table: it is filled in from the alerts on open.
    let conn = rusqlite::Connection::open(dir.path().join("gridsight.db")).unwrap();
    conn.execute_batch("DROP TABLE alert_times; DROP TABLE incident_steps;")
        .unwrap();
    drop(conn);
    let Opened { store, writer } = open(dir.path());
    let rows = store
        .read(|c| alerts(c, &Some(vec!["g1".into()]), 0, 10_000))
        .await
        .unwrap();
    let times: Vec<_> = rows
        .iter()
        .map(|r| (r.opened_ms, r.acknowledged_ms, r.resolved_ms))
        .collect();
    assert_eq!(
        times,
        vec![(1_000, Some(4_000), Some(9_000)), (1_000, None, None)]
    );
    drop(store);
    writer.join().unwrap();
}
