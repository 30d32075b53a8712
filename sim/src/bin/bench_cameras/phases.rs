//! The measured phases of `bench-cameras`: a bare client, the daemon (with N cameras or
//! none) and one ffmpeg per camera, each against the same running farm, each measured over
//! a steady window that starts after every session is open and a warm-up.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use gridsight_sim::procstat::{Usage, Window};

use crate::{
    daemon::{self, DaemonSetup, OnlineTrack, RunningDaemon},
    farm::{parse_result, BareClient, Farm},
    procs::{terminate_all, Proc},
};

/// What every phase needs.
pub struct Ctx {
    pub farm: Farm,
    pub dir: PathBuf,
    pub daemon_bin: PathBuf,
    pub bare_bin: PathBuf,
    pub ffmpeg_bin: PathBuf,
    pub fps: u32,
    pub max_connects: usize,
    pub warmup: Duration,
    pub poll: Duration,
}

/// A bare-client run.
#[derive(Debug, Clone, Copy)]
pub struct BareRun {
    pub usage: Usage,
    pub farm: Usage,
    pub connect: Duration,
    pub frames_per_sec: f64,
    pub errors: u64,
}

/// A daemon run.
#[derive(Debug)]
pub struct DaemonRun {
    pub usage: Usage,
    pub farm: Usage,
    /// Spawn → all cameras online.
    pub all_online_after: Duration,
    pub frames_per_sec: f64,
    pub track: OnlineTrack,
}

/// An ffmpeg run.
#[derive(Debug, Clone, Copy)]
pub struct FfmpegRun {
    pub usage: Usage,
    pub farm: Usage,
    /// Sessions the farm served during the window.
    pub farm_active: Option<u64>,
}

/// Measures the groups of processes over `secs`, sampling memory every second and, for a
/// daemon, `/api/cameras` every `poll`. Returns one [`Usage`] per group.
async fn window(
    groups: &[&[u32]],
    secs: f64,
    pss: bool,
    mut daemon: Option<(&mut RunningDaemon, &mut OnlineTrack, Duration)>,
) -> Result<Vec<Usage>> {
    let mut ws = groups
        .iter()
        .map(|g| Window::start(g, pss))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut next_poll = t0;
    loop {
        let now = Instant::now();
        if let Some((d, track, every)) = daemon.as_mut() {
            d.proc.check_alive()?;
            if now >= next_poll {
                track.record(&d.cameras().await?);
                next_poll += *every;
            }
        }
        for w in &mut ws {
            w.sample()?;
        }
        if now >= end {
            break;
        }
        tokio::time::sleep((end - now).min(Duration::from_secs(1))).await;
    }
    if let Some((d, track, _)) = daemon {
        track.record(&d.cameras().await?);
    }
    ws.into_iter().map(Window::finish).collect()
}

impl Ctx {
    /// The bare retina client on mounts 1..=n.
    pub async fn bare(&self, n: usize, secs: f64) -> Result<BareRun> {
        let warm = self.warmup.as_secs_f64();
        let mut c = BareClient::start(
            &self.bare_bin,
            self.farm.port,
            n,
            warm + secs + 3.0,
            &self.dir,
        )?;
        let t0 = Instant::now();
        let connect_limit = Duration::from_secs(60 + 6 * n.div_ceil(20) as u64);
        let opened = c.wait_line("opened", connect_limit).await?;
        let connect = t0.elapsed();
        tracing::info!("farm_load: {opened}");
        tokio::time::sleep(self.warmup).await;
        let u = window(
            &[&[c.proc.pid()], &[self.farm.proc.pid()]],
            secs,
            false,
            None,
        )
        .await?;
        let result = c.wait_line(" frames in ", Duration::from_secs(30)).await?;
        tracing::info!("farm_load: {result}");
        let (frames_per_sec, errors) = parse_result(&result);
        c.proc.wait_exit(Duration::from_secs(5)).await?;
        Ok(BareRun {
            usage: u[0],
            farm: u[1],
            connect,
            frames_per_sec,
            errors,
        })
    }

    pub fn setup<'a>(&'a self, cameras: usize, tag: &'a str) -> DaemonSetup<'a> {
        DaemonSetup {
            farm_port: self.farm.port,
            cameras,
            fps: self.fps,
            max_connects: self.max_connects,
            dir: &self.dir,
            tag,
        }
    }

    /// The daemon with cameras 1..=n, once all are online.
    pub async fn daemon(&self, n: usize, secs: f64, tag: &str) -> Result<DaemonRun> {
        let t0 = Instant::now();
        let mut d = daemon::start(&self.daemon_bin, &self.setup(n, tag)).await?;
        let limit = Duration::from_secs(120 + n as u64 / 10);
        d.wait_all_online(n, limit).await?;
        let all_online_after = t0.elapsed();
        println!(
            "  daemon: {n} cameras online {:.1} s after spawn",
            all_online_after.as_secs_f64()
        );
        tokio::time::sleep(self.warmup).await;
        let f0 = d.frames().await?;
        let t1 = Instant::now();
        let mut track = OnlineTrack::default();
        let pid = d.proc.pid();
        let groups: [&[u32]; 2] = [&[pid], &[self.farm.proc.pid()]];
        let poll = self.poll;
        let u = window(&groups, secs, false, Some((&mut d, &mut track, poll))).await?;
        let frames_per_sec = (d.frames().await? - f0) / t1.elapsed().as_secs_f64();
        d.proc.terminate(Duration::from_secs(30)).await?;
        Ok(DaemonRun {
            usage: u[0],
            farm: u[1],
            all_online_after,
            frames_per_sec,
            track,
        })
    }

    /// The daemon with no camera: its fixed memory and CPU.
    pub async fn idle_daemon(&self, secs: f64) -> Result<Usage> {
        let d = daemon::start(&self.daemon_bin, &self.setup(0, "idle")).await?;
        tokio::time::sleep(self.warmup).await;
        let u = window(&[&[d.proc.pid()]], secs, false, None).await?;
        d.proc.terminate(Duration::from_secs(30)).await?;
        Ok(u[0])
    }

    /// One `ffmpeg ... -c copy -f null -` per mount 1..=m.
    pub async fn ffmpeg(&self, m: usize, secs: f64) -> Result<FfmpegRun> {
        let mut procs = Vec::with_capacity(m);
        for i in 1..=m {
            let mount = daemon::mount_name(i);
            let url = format!("rtsp://127.0.0.1:{}/{mount}", self.farm.port);
            let args = ffmpeg_args(&url);
            let log = self.dir.join(format!("ffmpeg-{mount}.log"));
            procs.push(Proc::spawn(
                &format!("ffmpeg {mount}"),
                &self.ffmpeg_bin,
                args,
                &log,
                false,
            )?);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Until the farm's counters line (every 5 s) shows every session playing.
        let t0 = Instant::now();
        loop {
            for p in &mut procs {
                p.check_alive()?;
            }
            let active = self.farm.counters().map(|c| c.0);
            if active.is_some_and(|a| a >= m as u64) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("the farm serves {active:?} sessions, not {m}, with {m} ffmpeg running");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::time::sleep(self.warmup).await;
        let pids: Vec<u32> = procs.iter().map(Proc::pid).collect();
        let u = window(&[&pids, &[self.farm.proc.pid()]], secs, true, None).await?;
        let farm_active = self.farm.counters().map(|c| c.0);
        terminate_all(procs, Duration::from_secs(10)).await?;
        Ok(FfmpegRun {
            usage: u[0],
            farm: u[1],
            farm_active,
        })
    }
}

/// The command line users run today to keep a camera's stream open (no decode).
pub fn ffmpeg_args(url: &str) -> Vec<String> {
    [
        "-hide_banner",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
        "-c",
        "copy",
        "-f",
        "null",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Fails unless `bin` runs `-version`.
pub fn check_ffmpeg(bin: &Path) -> Result<String> {
    let out = std::process::Command::new(bin).arg("-version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()),
        _ => bail!(
            "{} does not run: install it (./scripts/install-deps.sh) or pass --skip-ffmpeg",
            bin.display()
        ),
    }
}
