//! Operations, end to end against the real binary: what systemd sees of the daemon
//! (`Type=notify`: READY once serving, RELOADING/READY around SIGHUP, STOPPING at the
//! drain, watchdog pings) and the shipped files under `deploy/` (the production config
//! checks, the Grafana dashboard's metrics exist on `/metrics`).

mod common;

use std::{os::unix::net::UnixDatagram, time::Duration};

use common::*;

/// Reads datagrams until one contains `want` (or panics after `within`), returning all read.
fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "no {want:?} from the daemon within {within:?}; got {got:?}"
        );
        sock.set_read_timeout(Some(left)).expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.contains(want);
            got.push(msg);
            if done {
                return got;
            }
        }
    }
}

/// Under systemd (`NOTIFY_SOCKET`, `WATCHDOG_USEC`): READY=1 comes once the APIs answer,
/// the watchdog is pinged, a SIGHUP is bracketed by RELOADING=1 and READY=1, and SIGTERM
/// sends STOPPING=1 before the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let config = write_config(dir.path(), &DaemonOpts::new(None));
    let mut d = Daemon::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let got = recv_until(&sock, "READY=1", Duration::from_secs(5));
    let ready = got.last().unwrap();
    assert!(ready.contains("STATUS=serving: grpc"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", d.pid())),
        "READY names the daemon's pid: {ready}"
    );
    // Ready means ready: the HTTP API answers (the gRPC one too, since both were bound).
    assert_eq!(http_get(d.http, "/readyz", None).0, 200);
    // Pinged every 200 ms: a few within a second.
    let pings = recv_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    assert!(pings.iter().all(|m| m == "WATCHDOG=1"), "{pings:?}");

    let _ = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status();
    let got = recv_until(&sock, "RELOADING=1", Duration::from_secs(5));
    assert!(got.last().unwrap().contains("RELOADING=1"));
    let got = recv_until(&sock, "STATUS=reloaded", Duration::from_secs(5));
    assert!(got.last().unwrap().starts_with("READY=1"), "{got:?}");

    d.send_term();
    let got = recv_until(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(got.last().unwrap().contains("STATUS=draining"));
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(Some(0)));
}

/// The shipped unit passes `systemd-analyze verify` (with `ExecStart` pointing at the
/// built binary) and its sandboxing scores "OK" (exposure ≤ 2.0 of 10) offline.
#[test]
fn the_systemd_unit_verifies_and_is_sandboxed() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/gridsight.service"
    ))
    .expect("deploy/systemd/gridsight.service");
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gridsight.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gridsight", binary())).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}",
        text.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}
