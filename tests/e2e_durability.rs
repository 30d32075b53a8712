//! End to end: what survives a crash or a restart, and how the daemon stops.

mod common;

use std::time::Duration;

use common::*;
use gridsight_proto::v1 as pb;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_qos1_stream_loses_no_acknowledged_message() {
    // Enough that the stream is still running when the kill comes: 1,500 acknowledged is
    // seen by polling the metrics every 20 ms, and 5,000 could all be through by then on a
    // busy machine (the kill then "came too late").
    const N: usize = 20_000;
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonOpts::new(Some(broker.port)));
    let mut d = Daemon::start(&cfg).await;
    let base = now_ms();
    let msgs = (0..N)
        .map(|i| {
            (
                topic("a-1", "water_level", &format!("k-{}", i % 50)),
                payload(base + i as i64, "normal", i as f64),
            )
        })
        .collect();
    let publisher = tokio::spawn(publish_all(broker.port, msgs));
    let acked_before = wait_for("the daemon to acknowledge 1,500 messages", T, || async {
        let n = d.metric("gridsight_mqtt_messages_acked_total");
        (n >= 1500.0).then_some(n)
    })
    .await;
    d.kill9();
    publisher.await.expect("publisher");
    let stored_at_kill = distinct_stored(&d.data_dir, "k-");
    assert!(
        stored_at_kill as f64 >= acked_before,
        "acknowledged {acked_before} but only {stored_at_kill} stored"
    );
    assert!(
        (stored_at_kill as usize) < N,
        "the kill came too late to test anything"
    );

    // The broker kept everything not acknowledged; the restarted daemon takes it. If an
    // acknowledged message had not been stored, nothing would bring it back: count them.
    let d = Daemon::start(&cfg).await;
    let total = wait_for("every message to be stored", T, || async {
        let n = distinct_stored(&d.data_dir, "k-");
        (n as usize == N).then_some(n)
    })
    .await;
    assert_eq!(total as usize, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_open_alerts_and_the_stream_stays_gap_free() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonOpts::new(Some(broker.port)));
    let mut d = Daemon::start(&cfg).await;
    let mut s = d
        .alerts()
        .await
        .subscribe(req(Default::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    // Past the snapshot, so the alarm below shows as opened, not as a snapshot item.
    read_snapshot(&mut s, T).await;
    let now = now_ms();
    publish_all(
        broker.port,
        vec![(topic("b-1", "smoke", "smk-r"), payload(now, "alarm", 1.0))],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    let opened = seen.last().unwrap().clone();

    let (code, took) = d.terminate();
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{}", d.log());
    assert!(took < Duration::from_secs(5), "drain took {took:?}");
    // The subscriber is told to resume, not left hanging.
    let end = tokio::time::timeout(T, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("stream ends");
    if let Err(status) = end {
        assert!(
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
            "{status:?}"
        );
    }

    publish_all(
        broker.port,
        vec![(
            topic("b-1", "smoke", "smk-r"),
            payload(now + 1000, "alarm", 1.1),
        )],
    )
    .await;
    let d = Daemon::start(&cfg).await;
    let mut s = d
        .alerts()
        .await
        .subscribe(req(
            pb::SubscribeAlertsRequest {
                resume_after_seq: opened.seq,
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .unwrap()
        .into_inner();
    let after = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Updated as i32).await;
    let c = after.last().unwrap();
    assert_eq!(c.seq, opened.seq + 1, "gap-free across the restart");
    let a = c.alert.as_ref().unwrap();
    assert_eq!(
        a.id,
        opened.alert.as_ref().unwrap().id,
        "the repeat after a restart joins the open alert"
    );
    assert_eq!(a.count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_is_survived() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let port = broker.port;
    broker.restart();
    wait_for("the daemon to reconnect", T, || async {
        (d.metric("gridsight_mqtt_connected") == 1.0
            && d.metric("gridsight_mqtt_disconnects_total") >= 1.0)
            .then_some(())
    })
    .await;
    let mut s = d
        .alerts()
        .await
        .subscribe(req(Default::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    read_snapshot(&mut s, T).await;
    publish_all(
        port,
        vec![(
            topic("a-2", "gas", "gas-x"),
            payload(now_ms(), "alarm", 9.0),
        )],
    )
    .await;
    let seen = read_until(&mut s, T, |c| c.kind == pb::ChangeKind::Opened as i32).await;
    assert_eq!(
        sensors_of(seen.last().unwrap().alert.as_ref().unwrap()),
        vec!["gas-x"]
    );
}

/// The disk is stuck (here: another process holds the database's write lock): nothing is
/// acknowledged, the first SIGTERM's drain waits for the store, a second SIGTERM exits at
/// once, and the message the broker still holds is stored after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_store_second_sigterm_exits_now_and_nothing_is_lost() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &DaemonOpts::new(Some(broker.port)));
    let mut d = Daemon::start(&cfg).await;
    let lock = rusqlite::Connection::open(d.data_dir.join("gridsight.db")).expect("open db");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");

    publish_all(
        broker.port,
        vec![(
            topic("a-1", "smoke", "stuck-1"),
            payload(now_ms(), "alarm", 7.0),
        )],
    )
    .await;
    wait_for("the daemon to receive the message", T, || async {
        (d.metric("gridsight_mqtt_messages_received_total") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(d.metric("gridsight_mqtt_messages_acked_total"), 0.0);

    d.send_term();
    assert_eq!(
        d.wait_exit(Duration::from_secs(1)),
        None,
        "the first SIGTERM drains, and the drain waits for the store:\n{}",
        d.log()
    );
    let started = std::time::Instant::now();
    d.send_term();
    let code = d.wait_exit(Duration::from_secs(3));
    assert_eq!(
        code,
        Some(Some(130)),
        "a second SIGTERM exits now, code 130 (after {:?}):\n{}",
        started.elapsed(),
        d.log()
    );
    lock.execute_batch("ROLLBACK").expect("release the lock");
    drop(lock);

    let d = Daemon::start(&cfg).await;
    wait_for(
        "the unacknowledged message to be stored after restart",
        T,
        || async { (distinct_stored(&d.data_dir, "stuck-") == 1).then_some(()) },
    )
    .await;
}
