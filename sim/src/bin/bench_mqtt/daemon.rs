//! The daemon as a child process of the bench: config rendering from the template, spawn,
//! readiness, graceful stop (SIGTERM) and polling of its Prometheus counters.
//!
//! The child is killed if the [`Daemon`] is dropped without [`Daemon::terminate`], so every
//! error path cleans up.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gridsight_sim::{broker::tail, probe, procstat};
use tokio::process::{Child, Command};

/// Values substituted into the daemon config template.
pub struct Placeholders<'a> {
    pub mqtt_port: u16,
    pub grpc_port: u16,
    pub http_port: u16,
    pub data_dir: &'a Path,
    pub qos: u8,
    pub client_id: &'a str,
    /// `[[grids]]` tables of the demo city, for an optional `{GRIDS_TOML}` placeholder.
    pub grids_toml: &'a str,
}

/// The template with `{MQTT_PORT}`, `{GRPC_PORT}`, `{HTTP_PORT}`, `{DATA_DIR}`, `{QOS}`,
/// `{CLIENT_ID}` (and optionally `{GRIDS_TOML}`) replaced.
pub fn render_config(template: &str, p: &Placeholders<'_>) -> Result<String> {
    for required in ["{MQTT_PORT}", "{HTTP_PORT}"] {
        if !template.contains(required) {
            bail!("the daemon config template has no {required} placeholder");
        }
    }
    Ok(template
        .replace("{MQTT_PORT}", &p.mqtt_port.to_string())
        .replace("{GRPC_PORT}", &p.grpc_port.to_string())
        .replace("{HTTP_PORT}", &p.http_port.to_string())
        .replace("{DATA_DIR}", &p.data_dir.display().to_string())
        .replace("{QOS}", &p.qos.to_string())
        .replace("{CLIENT_ID}", p.client_id)
        .replace("{GRIDS_TOML}", p.grids_toml))
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    log: PathBuf,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl Daemon {
    /// Spawns `bin run --config config`, appending its output to `log`.
    pub fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Daemon> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let spawned = Instant::now();
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the daemon {}", bin.display()))?;
        Ok(Daemon {
            child,
            log: log.to_path_buf(),
            spawned,
        })
    }

    /// The last lines of the daemon's output.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Fails (with the log tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the daemon exited ({status}); last log lines:\n{}",
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// Polls `GET /readyz` every 20 ms until it answers 200; returns the time since spawn.
    pub async fn wait_ready(
        &mut self,
        http: SocketAddr,
        token: &str,
        limit: Duration,
    ) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_alive()?;
            let r = probe::http_get(http, "/readyz", Some(token), Duration::from_secs(2)).await;
            if matches!(r, Ok(ref r) if r.status == 200) {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "/readyz not 200 after {limit:?} (last: {r:?}); last log lines:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET /healthz` every 20 ms until the HTTP listener answers 200 (the daemon
    /// runs; MQTT may still be down).
    pub async fn wait_listening(&mut self, http: SocketAddr, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_alive()?;
            let r = probe::http_get(http, "/healthz", None, Duration::from_secs(2)).await;
            if matches!(r, Ok(ref r) if r.status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "/healthz not 200 after {limit:?} (last: {r:?}); last log lines:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU seconds (user + system) the process has used.
    pub fn cpu_secs(&self) -> Result<f64> {
        let pid = self.child.id().context("the daemon has exited")?;
        Ok(procstat::cpu_ticks(pid)? as f64 / procstat::clock_ticks())
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; kills it after that.
    pub async fn terminate(mut self, limit: Duration) -> Result<ExitStatus> {
        let Some(pid) = self.child.id() else {
            return Ok(self.child.wait().await?);
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            tracing::warn!(pid, "kill -TERM failed; the daemon may already be gone");
        }
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "the daemon did not exit within {limit:?} of SIGTERM (killed); last log lines:\n{}",
                    self.log_tail(30)
                )
            }
        }
    }
}

/// When a counter got going and when it reached its target, measured from the spawn.
#[derive(Debug, Clone, Copy)]
pub struct CounterRun {
    /// Spawn → counter ≥ target.
    pub reached: Duration,
    /// Spawn → counter first > 0.
    pub first: Duration,
    /// Metrics polls made.
    pub polls: u64,
    /// How long the daemon took to answer a poll (`GET /metrics`, an API call made while
    /// it works): the median and the slowest. A failed poll counts until it failed.
    pub poll_median: Duration,
    /// The slowest poll.
    pub poll_max: Duration,
}

/// Polls `GET /metrics` every 20 ms until `metric` ≥ `target`.
pub async fn wait_counter(
    daemon: &mut Daemon,
    http: SocketAddr,
    token: &str,
    metric: &str,
    target: u64,
    limit: Duration,
) -> Result<CounterRun> {
    let deadline = Instant::now() + limit;
    let mut first = None;
    let mut polls = 0;
    let mut last = None;
    let mut took = Vec::new();
    loop {
        daemon.check_alive()?;
        polls += 1;
        let asked = Instant::now();
        let answer = probe::http_get(http, "/metrics", Some(token), Duration::from_secs(2)).await;
        took.push(asked.elapsed());
        // Connection refused while the daemon starts is expected: just poll again.
        if let Ok(r) = answer {
            if r.status != 200 {
                bail!("GET /metrics answered {}: {}", r.status, r.body.trim());
            }
            last = probe::metric_value(&r.body, metric);
            let v = last.unwrap_or(0.0);
            if v > 0.0 && first.is_none() {
                first = Some(daemon.spawned.elapsed());
            }
            if v >= target as f64 {
                let reached = daemon.spawned.elapsed();
                took.sort();
                return Ok(CounterRun {
                    reached,
                    first: first.unwrap_or(reached),
                    polls,
                    poll_median: took[took.len() / 2],
                    poll_max: took[took.len() - 1],
                });
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{metric} did not reach {target} within {limit:?} (last value {last:?}); last log lines:\n{}",
                daemon.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
