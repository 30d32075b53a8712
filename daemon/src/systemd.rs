//! systemd's notify protocol (`Type=notify`), without libsystemd.
//!
//! Owns the messages the daemon sends to `$NOTIFY_SOCKET`: `READY=1` once every listener
//! is bound and the store, correlator and sources run; `RELOADING=1` / `READY=1` around a
//! SIGHUP reload; `STOPPING=1` when the drain starts; `WATCHDOG=1` every half of
//! `$WATCHDOG_USEC` from a task on the daemon's runtime (a stuck runtime stops the pings,
//! and systemd restarts the unit). Without `$NOTIFY_SOCKET` (not under systemd) every call
//! is a no-op. A socket that cannot be written is logged once per message, never fatal.

use std::{os::unix::net::UnixDatagram, time::Duration};

use tokio_util::sync::CancellationToken;

/// Where systemd listens, from `$NOTIFY_SOCKET`: a path, or `@name` (abstract namespace).
fn socket_addr() -> Option<std::os::unix::net::SocketAddr> {
    let raw = std::env::var_os("NOTIFY_SOCKET")?;
    let raw = raw.to_str()?;
    if let Some(name) = raw.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()
    } else {
        std::os::unix::net::SocketAddr::from_pathname(raw).ok()
    }
}

/// Sends `state` (newline-separated `KEY=value` lines) to systemd; false when not under
/// systemd or when the send failed (logged).
pub fn notify(state: &str) -> bool {
    let Some(addr) = socket_addr() else {
        return false;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr));
    match sent {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, state, "cannot notify systemd");
            false
        }
    }
}

/// `READY=1`, with a status line systemd shows in `systemctl status`.
pub fn ready(status: &str) {
    notify(&format!(
        "READY=1\nSTATUS={status}\nMAINPID={}",
        std::process::id()
    ));
}

/// `STOPPING=1`: the drain has started.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

/// `RELOADING=1` before a SIGHUP reload is applied; [`reloaded`] after.
pub fn reloading() {
    notify("RELOADING=1\nSTATUS=reloading the config");
}

/// `READY=1` after a reload, with its outcome.
pub fn reloaded(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), when it is for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half interval until `cancel` (nothing when there is none).
pub async fn watchdog(cancel: CancellationToken) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                notify("WATCHDOG=1");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        // The variable is process-wide: this is the only test of the crate that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        ready("3 cameras");
        stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let first = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            first.starts_with("READY=1\nSTATUS=3 cameras\nMAINPID="),
            "{first}"
        );
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=draining");
        assert!(!notify("READY=1"), "no socket: nothing sent");
    }
}
