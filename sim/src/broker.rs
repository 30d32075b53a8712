//! A real Mosquitto broker (Debian's `/usr/sbin/mosquitto`) on a free loopback port, for
//! tests and benchmarks.
//!
//! The config is generated in a temporary directory; the broker's output goes to a log file
//! there. The process is killed when the [`MosquittoBroker`] is dropped, on every path.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use crate::SimError;

/// Where Debian installs the broker.
pub const DEFAULT_MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// Broker settings for benches and tests: nothing persisted, unlimited queues for offline
/// persistent sessions (QoS 0 included), 1000 messages in flight per client.
pub const BENCH_SETTINGS: &str = "allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 0
queue_qos0_messages true
max_queued_bytes 0
";

/// A running Mosquitto child process.
#[derive(Debug)]
pub struct MosquittoBroker {
    child: Child,
    port: u16,
    log: PathBuf,
    binary: PathBuf,
    conf: PathBuf,
    // Holds the config and log; removed on drop (after the child is killed).
    dir: tempfile::TempDir,
}

impl MosquittoBroker {
    /// Starts [`DEFAULT_MOSQUITTO`] with [`BENCH_SETTINGS`] on a free port.
    pub async fn start() -> Result<MosquittoBroker, SimError> {
        MosquittoBroker::start_with(Path::new(DEFAULT_MOSQUITTO), BENCH_SETTINGS).await
    }

    /// Starts `binary` with `listener PORT 127.0.0.1` followed by `settings`, retrying on a
    /// fresh port if the chosen one was taken meanwhile, and returns once the port accepts
    /// connections. `{DIR}` in `settings` stands for the broker's own folder.
    pub async fn start_with(binary: &Path, settings: &str) -> Result<MosquittoBroker, SimError> {
        let dir = tempfile::Builder::new()
            .prefix("gridsight-mosquitto-")
            .tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        let settings = settings.replace("{DIR}", &dir.path().display().to_string());
        let mut last = String::new();
        for attempt in 1..=3 {
            let port = free_port()?;
            let log = dir.path().join(format!("mosquitto-{attempt}.log"));
            std::fs::write(&conf, format!("listener {port} 127.0.0.1\n{settings}"))?;
            match spawn(binary, &conf, &log, port).await {
                Ok(child) => {
                    tracing::debug!(port, "mosquitto up");
                    return Ok(MosquittoBroker {
                        child,
                        port,
                        log,
                        binary: binary.to_path_buf(),
                        conf,
                        dir,
                    });
                }
                Err(e) => {
                    last = format!("{e}; log: {}", tail(&log, 10));
                    tracing::warn!(attempt, port, error = %last, "mosquitto did not start");
                }
            }
        }
        Err(SimError::Startup {
            what: "mosquitto".into(),
            detail: last,
        })
    }

    /// Starts like [`MosquittoBroker::start_with`] with [`BENCH_SETTINGS`], but persistent:
    /// its sessions and queued messages are saved in its folder when it stops
    /// ([`MosquittoBroker::pause`]) and loaded again when it starts
    /// ([`MosquittoBroker::resume`]).
    pub async fn start_persistent(binary: &Path) -> Result<MosquittoBroker, SimError> {
        // `user root`: a broker started as root otherwise drops to the `mosquitto` user,
        // which cannot write its database into the 0700 temporary folder.
        let settings = BENCH_SETTINGS.replace(
            "persistence false\n",
            "persistence true\npersistence_location {DIR}/\nautosave_interval 0\nuser root\n",
        );
        MosquittoBroker::start_with(binary, &settings).await
    }

    /// Stops the broker gracefully (SIGTERM: a persistent one saves its state) and waits
    /// for the exit; [`MosquittoBroker::resume`] starts it again on the same port.
    pub async fn pause(&mut self) -> Result<(), SimError> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        let limit = Duration::from_secs(60);
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => Err(SimError::timeout("mosquitto to exit after SIGTERM", limit)),
        }
    }

    /// Starts a paused broker again on its port and config; returns once it accepts
    /// connections.
    pub async fn resume(&mut self) -> Result<(), SimError> {
        let log = self.dir.path().join("mosquitto-resumed.log");
        self.child = spawn(&self.binary, &self.conf, &log, self.port)
            .await
            .map_err(|e| SimError::Startup {
                what: "mosquitto (resumed)".into(),
                detail: format!("{e}; log: {}", tail(&log, 10)),
            })?;
        self.log = log;
        Ok(())
    }

    /// The host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id (if it is still running).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last `lines` lines of the broker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Kills the broker and waits for it to exit.
    pub async fn stop(mut self) -> Result<(), SimError> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Runs `binary -c conf` (output to `log`) and waits until `port` accepts connections.
async fn spawn(binary: &Path, conf: &Path, log: &Path, port: u16) -> Result<Child, SimError> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SimError::Startup {
            what: format!("{}", binary.display()),
            detail: e.to_string(),
        })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match wait_for_port(addr, Duration::from_secs(60), &mut child).await {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill().await;
            Err(e)
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> Result<u16, SimError> {
    let l = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// Polls `addr` every 20 ms until it accepts a TCP connection, `child` exits (an error), or
/// `limit` passes (an error).
pub async fn wait_for_port(
    addr: SocketAddr,
    limit: Duration,
    child: &mut Child,
) -> Result<(), SimError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(SimError::Startup {
                what: format!("process for {addr}"),
                detail: format!("exited with {status}"),
            });
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SimError::timeout(
                format!("{addr} to accept connections"),
                limit,
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last `lines` lines of a text file ("" if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_accepts_and_dies_with_its_handle() {
        let broker = MosquittoBroker::start().await.expect("mosquitto starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], broker.port()));
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        drop(broker);
        // kill_on_drop sends SIGKILL; the port must stop accepting soon after.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "broker still accepting after drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_startup_error() {
        let r = MosquittoBroker::start_with(Path::new("/nonexistent/mosquitto"), "").await;
        assert!(matches!(r, Err(SimError::Startup { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn a_paused_persistent_broker_keeps_a_session_queue_on_its_port() {
        use crate::load;
        let mut broker = MosquittoBroker::start_persistent(Path::new(DEFAULT_MOSQUITTO))
            .await
            .expect("mosquitto starts");
        let (host, port) = (broker.host(), broker.port());
        let limit = Duration::from_secs(30);
        let id = "paused-session";
        load::prepare_session(host, port, id, "t/#", rumqttc::QoS::AtLeastOnce, limit)
            .await
            .unwrap();
        let msgs: load::Messages = (0..50)
            .map(|i| (format!("t/{i}"), vec![b'x'; 10]))
            .collect();
        load::publish_all(host, port, "paused-pub", msgs, 2, limit)
            .await
            .unwrap();
        broker.pause().await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens while paused"
        );
        broker.resume().await.unwrap();
        assert_eq!(broker.port(), port);
        let drained = load::drain_session(host, port, id, 50, limit)
            .await
            .unwrap();
        assert_eq!(drained.received, 50, "the queue survived the pause");
    }
}
