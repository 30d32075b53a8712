//! The daemon side of `bench-cameras`: its config (N `[[cameras]]` on the farm's mounts),
//! spawn and readiness, and polling of `GET /api/cameras` (who is online, at what fps)
//! and of its Prometheus frame counter.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gridsight_sim::{broker::free_port, probe};

use crate::procs::Proc;

/// Viewer token written into the config.
pub const TOKEN: &str = "bench-viewer-token-0123456789";
/// The status of a camera that delivers frames.
pub const ONLINE: &str = "CAMERA_STATUS_ONLINE";
/// The status of a camera that delivers frames but reconnected often in the last hour
/// (or runs below its expected rate).
pub const DEGRADED: &str = "CAMERA_STATUS_DEGRADED";
/// Counter of video frames received from all cameras.
pub const FRAMES_METRIC: &str = "gridsight_camera_frames_total";

/// What a daemon config is made of.
pub struct DaemonSetup<'a> {
    /// Farm port on 127.0.0.1.
    pub farm_port: u16,
    /// Cameras cam0001..camN (0: none).
    pub cameras: usize,
    /// Frames per second the farm sends.
    pub fps: u32,
    /// `[video] max_concurrent_connects`.
    pub max_connects: usize,
    /// Folder of the config, database and log.
    pub dir: &'a Path,
    /// Name of this run (file names).
    pub tag: &'a str,
}

/// The config text and the HTTP port it listens on.
pub fn config_text(s: &DaemonSetup<'_>, data_dir: &Path) -> Result<(String, u16)> {
    let (grpc, http) = (free_port()?, free_port()?);
    let mut text = format!(
        r#"# Written by bench-cameras.
[store]
data_dir = "{data}"
synchronous = "normal"

[api]
grpc_listen = "127.0.0.1:{grpc}"
http_listen = "127.0.0.1:{http}"
plaintext = true

[log]
level = "warn"

[video]
max_concurrent_connects = {connects}

[[tokens]]
name = "bench"
token = "{TOKEN}"
role = "viewer"

[[grids]]
id = "bench"
name = "Bench district"
"#,
        data = data_dir.display(),
        connects = s.max_connects,
    );
    for i in 1..=s.cameras {
        let m = mount_name(i);
        text.push_str(&format!(
            "\n[[cameras]]\nid = \"{m}\"\nurl = \"rtsp://127.0.0.1:{}/{m}\"\ngrids = [\"bench\"]\nexpected_fps = {}\n",
            s.farm_port, s.fps
        ));
    }
    Ok((text, http))
}

/// Mount name of the farm (`cam0001`...), as `gridsight_farm::mount_name`.
pub fn mount_name(i: usize) -> String {
    format!("cam{i:04}")
}

/// A running daemon and where to ask it.
pub struct RunningDaemon {
    pub proc: Proc,
    pub http: SocketAddr,
}

/// Writes the config, starts `gridsight run` and waits until `/readyz` answers 200.
pub async fn start(bin: &Path, s: &DaemonSetup<'_>) -> Result<RunningDaemon> {
    let data = s.dir.join(format!("data-{}", s.tag));
    std::fs::create_dir_all(&data)?;
    let (text, port) = config_text(s, &data)?;
    let config = s.dir.join(format!("daemon-{}.toml", s.tag));
    std::fs::write(&config, text)?;
    let log = s.dir.join(format!("daemon-{}.log", s.tag));
    let args = ["run".as_ref(), "--config".as_ref(), config.as_os_str()];
    let mut proc = Proc::spawn("gridsight", bin, args, &log, false)?;
    let http = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_alive()?;
        let r = probe::http_get(http, "/readyz", None, Duration::from_secs(2)).await;
        if matches!(r, Ok(ref r) if r.status == 200) {
            return Ok(RunningDaemon { proc, http });
        }
        if Instant::now() >= deadline {
            bail!(
                "daemon /readyz not 200 after 60 s ({r:?}); log:\n{}",
                proc.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One camera as `/api/cameras` shows it.
#[derive(Debug, Clone)]
pub struct CameraRow {
    pub id: String,
    pub status: String,
    pub fps: f64,
}

impl RunningDaemon {
    /// `GET /api/cameras`.
    pub async fn cameras(&self) -> Result<Vec<CameraRow>> {
        let r = probe::http_get(
            self.http,
            "/api/cameras",
            Some(TOKEN),
            Duration::from_secs(10),
        )
        .await?;
        if r.status != 200 {
            bail!("GET /api/cameras answered {}: {}", r.status, r.body.trim());
        }
        let v: serde_json::Value = serde_json::from_str(&r.body).context("parsing /api/cameras")?;
        let list = v["cameras"]
            .as_array()
            .context("/api/cameras has no cameras array")?;
        Ok(list
            .iter()
            .map(|c| CameraRow {
                id: c["id"].as_str().unwrap_or_default().to_string(),
                status: c["status"].as_str().unwrap_or_default().to_string(),
                fps: c["fps"].as_f64().unwrap_or(0.0),
            })
            .collect())
    }

    /// The frames counter of `/metrics`.
    pub async fn frames(&self) -> Result<f64> {
        let r =
            probe::http_get(self.http, "/metrics", Some(TOKEN), Duration::from_secs(10)).await?;
        if r.status != 200 {
            bail!("GET /metrics answered {}", r.status);
        }
        Ok(probe::metric_value(&r.body, FRAMES_METRIC).unwrap_or(0.0))
    }

    /// Polls every second until all `n` cameras are online; returns how long it took.
    pub async fn wait_all_online(&mut self, n: usize, limit: Duration) -> Result<Duration> {
        self.wait_all(n, limit, &[ONLINE]).await
    }

    /// Polls every second until all `n` cameras have one of the `statuses`; returns how
    /// long it took.
    pub async fn wait_all(
        &mut self,
        n: usize,
        limit: Duration,
        statuses: &[&str],
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let mut last = 0;
        loop {
            self.proc.check_alive()?;
            let rows = self.cameras().await?;
            let online = rows
                .iter()
                .filter(|c| statuses.contains(&c.status.as_str()))
                .count();
            if online != last {
                tracing::info!(online, n, "cameras online");
                last = online;
            }
            if online >= n {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() >= limit {
                let mut by_status = std::collections::BTreeMap::<&str, usize>::new();
                for c in &rows {
                    *by_status.entry(c.status.as_str()).or_default() += 1;
                }
                bail!(
                    "only {online} of {n} cameras online after {limit:?} ({by_status:?}); log:\n{}",
                    self.proc.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Who was online across the polls of a window.
#[derive(Debug, Default)]
pub struct OnlineTrack {
    /// Polls made.
    pub polls: usize,
    /// Fewest cameras online in one poll.
    pub min_online: Option<usize>,
    /// Cameras seen not online in at least one poll.
    pub ever_not_online: BTreeSet<String>,
    /// fps of every camera at the last poll.
    pub last_fps: Vec<f64>,
}

impl OnlineTrack {
    /// Records one poll.
    pub fn record(&mut self, rows: &[CameraRow]) {
        self.polls += 1;
        let online = rows.iter().filter(|c| c.status == ONLINE).count();
        self.min_online = Some(self.min_online.map_or(online, |m| m.min(online)));
        for c in rows.iter().filter(|c| c.status != ONLINE) {
            self.ever_not_online.insert(c.id.clone());
        }
        self.last_fps = rows.iter().map(|c| c.fps).collect();
    }

    /// Mean and smallest fps at the last poll.
    pub fn fps_mean_min(&self) -> (f64, f64) {
        if self.last_fps.is_empty() {
            return (0.0, 0.0);
        }
        let mean = self.last_fps.iter().sum::<f64>() / self.last_fps.len() as f64;
        let min = self.last_fps.iter().copied().fold(f64::INFINITY, f64::min);
        (mean, min)
    }
}
