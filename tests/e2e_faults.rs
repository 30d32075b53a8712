//! End to end, faults of the daemon's surroundings: the broker restarted under load, the
//! store's disk full and then read-only. What is checked is what an operator relies on:
//! ingest comes back by itself, and no message a sensor had acknowledged is lost; and a
//! subscriber that stopped reading, which is cut off with a status it can act on, and
//! resumes without a gap.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use gridsight_proto::v1 as pb;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const T: Duration = Duration::from_secs(30);

/// The readings `0..n` not stored from sensors `prefix*`, as ranges.
fn missing(data_dir: &Path, prefix: &str, n: u64) -> Vec<(u64, u64)> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("gridsight.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the daemon's database");
    let mut st = conn
        .prepare("SELECT DISTINCT reading FROM sensor_events WHERE sensor_id LIKE ?1")
        .unwrap();
    let got: std::collections::HashSet<u64> = st
        .query_map([format!("{prefix}%")], |r| r.get::<_, f64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for i in (0..n).filter(|i| !got.contains(i)) {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => ranges.push((i, i)),
        }
    }
    ranges
}

/// A sensor gateway publishing `n` readings at QoS 1, `per_tick` every 10 ms, through
/// whatever happens to the broker: it reconnects (its unacknowledged publishes go out
/// again, as rumqttc keeps them) until the broker acknowledged all `n`. `acked` counts the
/// broker's PUBACKs as they come.
fn gateway(port: u16, prefix: &'static str, n: u64, per_tick: u64, acked: Arc<AtomicU64>) {
    let mut opts = MqttOptions::new(format!("gw-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(false)
        .set_inflight(200);
    let (client, mut el) = AsyncClient::new(opts, 1024);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0;
        while i < n {
            tick.tick().await;
            for _ in 0..per_tick.min(n - i) {
                let t = topic("a-1", "water_level", &format!("{prefix}{}", i % 50));
                let p = payload(now_ms(), "normal", i as f64);
                if client.publish(t, QoS::AtLeastOnce, false, p).await.is_err() {
                    return;
                }
                i += 1;
            }
        }
    });
    tokio::spawn(async move {
        while acked.load(Ordering::Relaxed) < n {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                // The broker is away: try again once it listens again.
                Err(_) => {
                    wait_for("the broker to listen again", T, || async {
                        port_open(port).then_some(())
                    })
                    .await
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_resumes_within_5s_and_loses_no_qos1_message() {
    const N: u64 = 12_000;
    let mut broker = Mosquitto::start_persistent();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    let acked = Arc::new(AtomicU64::new(0));
    // 2,000 readings a second for six seconds.
    gateway(broker.port, "flow-", N, 20, acked.clone());
    wait_for("a third of the load to be acknowledged", T, || async {
        (acked.load(Ordering::Relaxed) >= N / 3).then_some(())
    })
    .await;

    broker.restart_graceful();
    let back = Instant::now();
    let before = d.metric("gridsight_mqtt_messages_received_total");
    let resumed = wait_for("the daemon to receive again", T, || async {
        (d.metric("gridsight_mqtt_messages_received_total") > before).then(|| back.elapsed())
    })
    .await;
    eprintln!("ingest resumed {resumed:?} after the broker was back");
    assert!(
        resumed < Duration::from_secs(5),
        "ingest resumed only after {resumed:?}:\n{}",
        d.log()
    );
    assert!(d.metric("gridsight_mqtt_disconnects_total") >= 1.0);

    wait_for(
        "the gateway's every reading to be acknowledged",
        T,
        || async { (acked.load(Ordering::Relaxed) >= N).then_some(()) },
    )
    .await;
    let stored = try_wait_for(T, || async {
        let n = distinct_stored(&d.data_dir, "flow-");
        (n == N).then_some(n)
    })
    .await;
    assert_eq!(
        stored,
        Some(N),
        "readings lost across the broker restart: missing {:?}",
        missing(&d.data_dir, "flow-", N)
    );
}

/// A small disk of the store's own, so that the test can fill it or break it: a tmpfs,
/// or an ext4 image on a loop device (`errors=remount-ro`, as production mounts are).
/// Unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    image: Option<PathBuf>,
}

fn run(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

impl SmallDisk {
    fn tmpfs(path: PathBuf, mb: u32) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        assert!(
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
                .arg(&path)),
            "this test mounts a tmpfs for the store (root with CAP_SYS_ADMIN, as in CI)"
        );
        Self { path, image: None }
    }

    fn ext4(path: PathBuf, image: PathBuf, mb: u32) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(u64::from(mb) << 20).unwrap();
        assert!(run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)));
        let disk = Self {
            path,
            image: Some(image),
        };
        disk.mount_image();
        disk
    }

    fn mount_image(&self) {
        assert!(
            run(Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(self.image.as_ref().unwrap())
                .arg(&self.path)),
            "this test mounts an ext4 image on a loop device (root, as in CI)"
        );
    }

    /// Fills the disk up with a ballast file; returns it.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0u8; 512]).is_ok() {}
        let _ = f.sync_all();
        ballast
    }

    /// An error in the file system: ext4 turns it read-only at once, open files and all.
    fn fail(&self) {
        let out = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.path)
            .output()
            .unwrap();
        let source = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dev = source.rsplit('/').next().unwrap().to_string();
        std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "1")
            .expect("trigger an ext4 error");
    }

    /// What an operator does about it: unmount, check, mount again.
    fn repair(&self) {
        assert!(run(Command::new("umount").arg(&self.path)), "umount");
        // Exit 0: clean; 1: errors corrected; 4 and above: left uncorrected.
        let fsck = Command::new("e2fsck")
            .args(["-f", "-y"])
            .arg(self.image.as_ref().unwrap())
            .output()
            .unwrap();
        assert!(fsck.status.code().is_some_and(|c| c < 4), "{fsck:?}");
        self.mount_image();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Waits until the store has failed `more` more commits than `from`.
async fn commit_failures(d: &Daemon, from: f64, more: f64) -> f64 {
    wait_for("the store's commits to fail", T, || async {
        let n = d.metric("gridsight_store_commit_errors_total");
        (n >= from + more).then_some(n)
    })
    .await
}

/// `n` readings from sensors `disk-*` in a-2, numbered from `from`.
fn readings(from: u64, n: u64) -> Vec<(String, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            (
                topic("a-2", "water_level", &format!("disk-{}", i % 20)),
                payload(now_ms(), "normal", i as f64),
            )
        })
        .collect()
}

/// Publishes `n` readings while the store cannot write, and checks what the operator and
/// the sensors see: the store failing, the commits retried, nothing acknowledged.
async fn held_back(d: &Daemon, broker: u16, from: u64, n: u64) {
    let errors = d.metric("gridsight_store_commit_errors_total");
    publish_all(broker, readings(from, n)).await;
    let errors = commit_failures(d, errors, 1.0).await;
    assert_eq!(d.metric("gridsight_store_failing"), 1.0);
    let acked = d.metric("gridsight_mqtt_messages_acked_total");
    commit_failures(d, errors, 2.0).await;
    assert_eq!(
        d.metric("gridsight_mqtt_messages_acked_total"),
        acked,
        "nothing is acknowledged while the store cannot write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acks_and_ingest_resumes_when_space_returns() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::tmpfs(dir.path().join("data"), 24);
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts::new(Some(broker.port)),
    ))
    .await;
    assert_eq!(d.data_dir, disk.path, "the store is on the small disk");
    publish_all(broker.port, readings(0, 200)).await;
    wait_for("the first readings to be stored", T, || async {
        (distinct_stored(&d.data_dir, "disk-") == 200).then_some(())
    })
    .await;

    let ballast = disk.fill();
    held_back(&d, broker.port, 200, 300).await;
    let log = d.log();
    assert!(
        log.contains("store commit failed; acknowledgements stop until it succeeds")
            && log.contains("database or disk is full"),
        "the log says what is wrong:\n{log}"
    );

    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    wait_for("the readings held back to be stored", T, || async {
        (distinct_stored(&d.data_dir, "disk-") == 500).then_some(())
    })
    .await;
    eprintln!("stored again {:?} after space returned", freed.elapsed());
    assert_eq!(d.metric("gridsight_store_failing"), 0.0);
    assert!(
        d.log()
            .contains("store commits again; acknowledgements resume"),
        "{}",
        d.log()
    );
    publish_all(broker.port, readings(500, 100)).await;
    wait_for("new readings to be stored", T, || async {
        (distinct_stored(&d.data_dir, "disk-") == 600).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_disk_stops_acks_and_nothing_is_lost_once_repaired() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::ext4(dir.path().join("data"), dir.path().join("store.img"), 64);
    // As in production (the default): each commit is on the disk before it is acknowledged,
    // so what was acknowledged before the disk failed survives it. (With `normal`, those
    // commits may still be in the page cache, which the failing file system drops.)
    let opts = DaemonOpts {
        synchronous: "full",
        ..DaemonOpts::new(Some(broker.port))
    };
    let cfg = write_config(dir.path(), &opts);
    let mut d = Daemon::start(&cfg).await;
    publish_all(broker.port, readings(0, 200)).await;
    wait_for("the first readings to be stored", T, || async {
        (distinct_stored(&d.data_dir, "disk-") == 200).then_some(())
    })
    .await;

    disk.fail();
    held_back(&d, broker.port, 200, 300).await;
    let log = d.log();
    assert!(
        log.contains("store commit failed; acknowledgements stop until it succeeds")
            && (log.contains("readonly") || log.contains("disk I/O error")),
        "the log says what is wrong:\n{log}"
    );
    // The operator stops the daemon (it cannot commit what it holds, and says so), repairs
    // the disk and starts it again: the broker still holds every unacknowledged reading.
    let (code, _) = d.terminate();
    assert!(code.is_some(), "the daemon exits:\n{}", d.log());
    disk.repair();
    let again = Daemon::start(&cfg).await;
    let stored = try_wait_for(T, || async {
        let n = distinct_stored(&again.data_dir, "disk-");
        (n == 500).then_some(n)
    })
    .await;
    assert_eq!(
        stored,
        Some(500),
        "stored after the repair; missing {:?}\nbefore:\n{}\nafter:\n{}",
        missing(&again.data_dir, "disk-", 500),
        d.log(),
        again.log()
    );
}

/// Alarms from `n` distinct sensors over 100 kinds in three communities: each one a
/// change of one of 300 alerts (opened, then updated).
fn alarms(from: u64, n: u64) -> Vec<(String, Vec<u8>)> {
    let grids = ["a-1", "a-2", "b-1"];
    (from..from + n)
        .map(|i| {
            let grid = grids[(i % 3) as usize];
            let kind = format!("k{}", (i / 3) % 100);
            (
                topic(grid, &kind, &format!("st-{i}")),
                payload(now_ms(), "alarm", i as f64),
            )
        })
        .collect()
}

/// The seqs of the changes a gRPC subscription carries until it ends, or until `until`;
/// and how it ended.
async fn read_seqs(
    s: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    until: u64,
) -> (Vec<u64>, Option<tonic::Status>) {
    use pb::subscribe_alerts_response::Event;
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout(T, s.message()).await {
            Err(_) => panic!("no message within {T:?}; seqs so far {:?}", seqs.last()),
            Ok(Ok(Some(m))) => {
                if let Some(Event::Change(c)) = m.event {
                    seqs.push(c.seq);
                    if c.seq >= until {
                        return (seqs, None);
                    }
                }
            }
            Ok(Ok(None)) => panic!("the stream ended without a status after {:?}", seqs.last()),
            Ok(Err(status)) => return (seqs, Some(status)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_with_a_clear_status_and_resumes_gap_free() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&write_config(
        dir.path(),
        &DaemonOpts {
            extra: "[api.limits]\nsubscriber_stall_secs = 1\n".into(),
            ..DaemonOpts::new(Some(broker.port))
        },
    ))
    .await;

    // A: a gRPC client that stops reading after the snapshot, with a 64 KiB window (so
    // the daemon's queue for it fills soon).
    let narrow = tonic::transport::Endpoint::from_shared(d.grpc.clone())
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let mut a = pb::alert_service_client::AlertServiceClient::new(narrow)
        .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
        .await
        .unwrap()
        .into_inner();
    let (_, cursor) = read_snapshot(&mut a, T).await;
    // W: a WebSocket client that stops reading, with a 4 KiB receive buffer.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock
        .connect(format!("127.0.0.1:{}", d.http).parse().unwrap())
        .await
        .unwrap();
    let (mut w, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{}/ws?token={VIEWER}", d.http),
        tcp,
    )
    .await
    .unwrap();
    // B: a client that reads all along, until it has every change (a heartbeat says the
    // newest seq is the one it has, once the load is in).
    let mut b = d.subscribe_all().await;
    read_snapshot(&mut b, T).await;
    let loaded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_task = {
        let loaded = loaded.clone();
        tokio::spawn(async move {
            use pb::subscribe_alerts_response::Event;
            let mut seqs = Vec::new();
            loop {
                match tokio::time::timeout(T, b.message()).await {
                    Ok(Ok(Some(m))) => match m.event {
                        Some(Event::Change(c)) => seqs.push(c.seq),
                        Some(Event::Heartbeat(h))
                            if loaded.load(Ordering::Acquire)
                                && seqs.last() == Some(&h.last_seq) =>
                        {
                            return (seqs, None)
                        }
                        _ => {}
                    },
                    Ok(Err(status)) => return (seqs, Some(status)),
                    other => panic!("B: {other:?} after {:?}", seqs.last()),
                }
            }
        })
    };

    publish_all(broker.port, alarms(0, 4000)).await;
    wait_for("the load to be stored", T, || async {
        (d.metric("gridsight_mqtt_messages_acked_total") >= 4000.0).then_some(())
    })
    .await;
    loaded.store(true, Ordering::Release);
    wait_for("both stalled subscribers to be cut off", T, || async {
        (d.metric("gridsight_subscribers_cut_total") >= 2.0).then_some(())
    })
    .await;
    let (b_seqs, b_end) = b_task.await.unwrap();
    assert!(
        b_end.is_none(),
        "the reading client is not cut off: {b_end:?}"
    );
    let final_seq = *b_seqs.last().unwrap();
    assert_eq!(b_seqs, (cursor + 1..=final_seq).collect::<Vec<_>>());

    // A reads again: what was sent before, then why it was cut off.
    let (mut seqs, end) = read_seqs(&mut a, u64::MAX).await;
    let status = end.expect("a status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("subscriber stalled"),
        "{status:?}"
    );
    // It resumes from the last seq it has, and misses nothing.
    let resume_after = seqs.last().copied().unwrap_or(cursor);
    let mut again = d
        .alerts()
        .await
        .subscribe(req(
            pb::SubscribeAlertsRequest {
                resume_after_seq: resume_after,
                ..Default::default()
            },
            VIEWER,
        ))
        .await
        .unwrap()
        .into_inner();
    let (more, end) = read_seqs(&mut again, final_seq).await;
    assert!(end.is_none());
    seqs.extend(more);
    let want: Vec<u64> = (cursor + 1..=final_seq).collect();
    assert_eq!(
        seqs, want,
        "A's changes, before and after the cut-off, without a gap"
    );

    // W reads again: the frames sent before, the error frame, then close 4408.
    let mut error = None;
    let close = loop {
        match tokio::time::timeout(T, w.next()).await.expect("a frame") {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    error = Some(v);
                }
            }
            Some(Ok(Message::Close(c))) => break c,
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    let error = error.expect("an error frame before the close");
    assert_eq!(error["code"], "RESOURCE_EXHAUSTED", "{error}");
    assert_eq!(u16::from(close.expect("a close frame").code), 4408);
    assert_eq!(d.metric("gridsight_subscribers_cut_total"), 2.0);
}
