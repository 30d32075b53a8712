//! `bench-cameras --soak`: the camera flap soak. The daemon keeps N cameras of a flapping
//! farm for a long while; does it give back what each flap takes?
//!
//! Two quiet points are compared, each after the farm stopped flapping (SIGUSR1 to
//! `camera-farm --flap`), every camera plays again (online, or `degraded`: a camera that
//! reconnected more than `degraded_reconnects_per_hour` times stays degraded for the hour,
//! by design) and the daemon settled: the start point after a warm-up of flapping (which
//! builds what is built once), the end point after the soak's flapping. At each, the daemon's own gauges are read from `/metrics`
//! (`gridsight_tasks`, `gridsight_resident_memory_bytes`, `gridsight_open_fds`). Same
//! cameras, same state: a task or descriptor more at the end is a leak, and memory must be
//! flat within [`RSS_SLACK`]. Memory is judged without what SQLite holds
//! (`gridsight_store_memory_bytes`): its page caches fill up as the database grows with
//! the soak's alerts and snapshots, up to their cap (64 MiB for the writer), and are
//! reported on their own. In between, a sample every `--sample-secs` gives the curve
//! (printed each minute) and the memory slope over the second half of the flapping.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gridsight_sim::probe;

use crate::{
    daemon::{self, RunningDaemon, DEGRADED, ONLINE, TOKEN},
    phases::Ctx,
};

/// Memory at the end (SQLite's caches left out) may exceed the start by this fraction
/// (allocator caches) before the soak fails.
pub const RSS_SLACK: f64 = 0.10;
/// Tasks and descriptors at the end may exceed the start by this many (a scrape's own
/// connection, a snapshot worker finishing): anything past it is a leak.
pub const COUNT_SLACK: i64 = 2;

const MIB: f64 = 1024.0 * 1024.0;

/// What the soak is asked to do.
pub struct SoakPlan {
    pub cameras: usize,
    /// Flapping before the start point, seconds.
    pub warmup_secs: f64,
    /// Flapping between the start and end points, seconds.
    pub secs: f64,
    pub sample: Duration,
    pub settle: Duration,
}

/// The daemon's own gauges and counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Seconds since flapping started (0 at the start point).
    pub at: f64,
    pub tasks: i64,
    pub rss_bytes: f64,
    /// What SQLite holds of it (page caches: they fill up to their cap, then stay).
    pub store_bytes: f64,
    pub fds: i64,
    /// Camera connections lost after playing, so far.
    pub reconnects: f64,
    /// Camera connection attempts that ended, so far.
    pub connect_errors: f64,
    /// Camera events (online, offline...) so far.
    pub camera_events: f64,
}

impl Gauges {
    fn rss_mib(&self) -> f64 {
        self.rss_bytes / MIB
    }

    fn store_mib(&self) -> f64 {
        self.store_bytes / MIB
    }

    /// Resident memory less SQLite's: the part that must come back.
    fn own_bytes(&self) -> f64 {
        self.rss_bytes - self.store_bytes
    }

    fn own_mib(&self) -> f64 {
        self.own_bytes() / MIB
    }
}

/// Reads the gauges of `/metrics`.
async fn gauges(d: &RunningDaemon, at: f64) -> Result<Gauges> {
    let r = probe::http_get(d.http, "/metrics", Some(TOKEN), Duration::from_secs(10)).await?;
    if r.status != 200 {
        bail!("GET /metrics answered {}", r.status);
    }
    let v = |name: &str| probe::metric_value(&r.body, name);
    let need = |name: &str| v(name).with_context(|| format!("/metrics has no {name}"));
    Ok(Gauges {
        at,
        tasks: need("gridsight_tasks")? as i64,
        rss_bytes: need("gridsight_resident_memory_bytes")?,
        store_bytes: need("gridsight_store_memory_bytes")?,
        fds: need("gridsight_open_fds")? as i64,
        reconnects: v("gridsight_camera_reconnects_total").unwrap_or(0.0),
        connect_errors: v("gridsight_camera_connect_errors_total").unwrap_or(0.0),
        camera_events: v("gridsight_camera_events_total").unwrap_or(0.0),
    })
}

/// The statuses of a camera that delivers frames.
const PLAYING: &[&str] = &[ONLINE, DEGRADED];

/// The soak's result.
#[derive(Debug)]
pub struct SoakRun {
    /// Fresh daemon, every camera online, nothing flapped yet (for reference).
    pub fresh: Gauges,
    /// After the warm-up flapping: the soak's start point.
    pub start: Gauges,
    /// After the soak's flapping.
    pub end: Gauges,
    /// Samples of the soak's flapping.
    pub samples: Vec<Gauges>,
    /// Flapping stopped → every camera playing again (the soak's).
    pub healed_after: Duration,
    /// Fewest cameras playing (online or degraded) in one sample while flapping.
    pub min_playing: usize,
}

/// What one flapping period saw.
struct Flapped {
    samples: Vec<Gauges>,
    min_playing: usize,
    healed_after: Duration,
}

impl Ctx {
    /// Runs the soak against the farm (which must have been started with `--flap`).
    pub async fn soak(&mut self, plan: &SoakPlan) -> Result<SoakRun> {
        let n = plan.cameras;
        let mut d = daemon::start(&self.daemon_bin, &self.setup(n, "soak")).await?;
        let limit = Duration::from_secs(120 + n as u64 / 10);
        let t = d.wait_all_online(n, limit).await?;
        println!(
            "soak: {n} cameras online {:.1} s after spawn; settling {} s",
            t.as_secs_f64(),
            plan.settle.as_secs()
        );
        tokio::time::sleep(plan.settle).await;
        let fresh = gauges(&d, 0.0).await?;
        print_sample("fresh (all online, settled)", &fresh, n);

        // The first flaps take what is made once (the snapshot pool's pipelines, SQLite's
        // cache, the change log): the start point is after them.
        if plan.warmup_secs > 0.0 {
            println!("soak: warm-up, {:.0} s of flapping", plan.warmup_secs);
            self.flap_for(&mut d, plan, plan.warmup_secs).await?;
        }
        let start = gauges(&d, 0.0).await?;
        print_sample("start (all playing, settled)", &start, n);

        println!("soak: {:.0} s of flapping", plan.secs);
        let f = self.flap_for(&mut d, plan, plan.secs).await?;
        let end = gauges(&d, plan.secs).await?;
        print_sample("end (all playing, settled)", &end, n);
        d.proc.terminate(Duration::from_secs(30)).await?;
        Ok(SoakRun {
            fresh,
            start,
            end,
            samples: f.samples,
            healed_after: f.healed_after,
            min_playing: f.min_playing,
        })
    }

    /// Flaps the farm for `secs` (sampling the daemon), stops, waits until every camera
    /// plays again, and settles.
    async fn flap_for(
        &mut self,
        d: &mut RunningDaemon,
        plan: &SoakPlan,
        secs: f64,
    ) -> Result<Flapped> {
        let n = plan.cameras;
        self.farm.signal_flap()?;
        let t0 = Instant::now();
        let end_at = t0 + Duration::from_secs_f64(secs);
        let mut samples = Vec::new();
        let mut min_playing = n;
        let mut next_print = 60.0;
        while Instant::now() < end_at {
            let left = end_at.saturating_duration_since(Instant::now());
            tokio::time::sleep(plan.sample.min(left)).await;
            d.proc.check_alive()?;
            self.farm.proc.check_alive()?;
            let g = gauges(d, t0.elapsed().as_secs_f64()).await?;
            let playing = d
                .cameras()
                .await?
                .iter()
                .filter(|c| PLAYING.contains(&c.status.as_str()))
                .count();
            min_playing = min_playing.min(playing);
            if g.at >= next_print {
                print_sample(&format!("{:>4.0} s flapping", g.at), &g, playing);
                next_print += 60.0;
            }
            samples.push(g);
        }
        self.farm.signal_flap()?;
        let t1 = Instant::now();
        d.wait_all(n, Duration::from_secs(180), PLAYING).await?;
        let healed_after = t1.elapsed();
        println!(
            "soak: flapping stopped; all {n} playing again after {:.1} s; settling {} s",
            healed_after.as_secs_f64(),
            plan.settle.as_secs()
        );
        tokio::time::sleep(plan.settle).await;
        Ok(Flapped {
            samples,
            min_playing,
            healed_after,
        })
    }
}

fn print_sample(what: &str, g: &Gauges, playing: usize) {
    println!(
        "  {what:<28} rss {:>7.1} MiB (sqlite {:>5.1})  tasks {:>5}  fds {:>5}  playing {playing:>5}  reconnects {:>7.0}  connect errors {:>7.0}",
        g.rss_mib(),
        g.store_mib(),
        g.tasks,
        g.fds,
        g.reconnects,
        g.connect_errors
    );
}

/// Least-squares slope of RSS less SQLite's memory over the second half of the samples,
/// MiB per minute.
pub fn rss_slope_mib_per_min(samples: &[Gauges]) -> Option<f64> {
    let half = &samples[samples.len() / 2..];
    if half.len() < 3 {
        return None;
    }
    let n = half.len() as f64;
    let mx = half.iter().map(|g| g.at).sum::<f64>() / n;
    let my = half.iter().map(Gauges::own_mib).sum::<f64>() / n;
    let sxx: f64 = half.iter().map(|g| (g.at - mx).powi(2)).sum();
    let sxy: f64 = half.iter().map(|g| (g.at - mx) * (g.own_mib() - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// What failed, if anything: a task or descriptor leak, or memory that did not come back.
pub fn verdict(start: &Gauges, end: &Gauges) -> Vec<String> {
    let mut failed = Vec::new();
    if end.tasks > start.tasks + COUNT_SLACK {
        failed.push(format!(
            "task leak: {} tasks at the start, {} at the end",
            start.tasks, end.tasks
        ));
    }
    if end.fds > start.fds + COUNT_SLACK {
        failed.push(format!(
            "descriptor leak: {} open at the start, {} at the end",
            start.fds, end.fds
        ));
    }
    if end.own_bytes() > start.own_bytes() * (1.0 + RSS_SLACK) {
        failed.push(format!(
            "memory not flat: {:.1} MiB resident less SQLite's at the start, {:.1} MiB at the end (> +{:.0} %)",
            start.own_mib(),
            end.own_mib(),
            RSS_SLACK * 100.0
        ));
    }
    failed
}

/// Prints the soak's result; fails if it found a leak or nothing flapped.
pub fn report(plan: &SoakPlan, r: &SoakRun) -> Result<()> {
    let (s, e) = (&r.start, &r.end);
    let reconnects = e.reconnects - s.reconnects;
    let errors = e.connect_errors - s.connect_errors;
    let peak = r
        .samples
        .iter()
        .map(Gauges::rss_mib)
        .fold(e.rss_mib(), f64::max);
    println!(
        "soak result: {} cameras flapping {:.0} s: {reconnects:.0} reconnects after playing, {errors:.0} connection attempts ended, {:.0} camera events; fewest playing {}; healed {:.1} s after the flapping stopped",
        plan.cameras,
        plan.secs,
        e.camera_events - s.camera_events,
        r.min_playing,
        r.healed_after.as_secs_f64()
    );
    println!(
        "  fresh daemon before any flap: rss {:.1} MiB  tasks {}  fds {}",
        r.fresh.rss_mib(),
        r.fresh.tasks,
        r.fresh.fds
    );
    println!(
        "  soak start -> end: rss {:.1} -> {:.1} MiB, of which SQLite {:.1} -> {:.1}; the rest {:.1} -> {:.1} MiB (x{:.3}, second-half slope {}); peak rss {:.1}  tasks {} -> {}  fds {} -> {}",
        s.rss_mib(),
        e.rss_mib(),
        s.store_mib(),
        e.store_mib(),
        s.own_mib(),
        e.own_mib(),
        e.own_bytes() / s.own_bytes(),
        rss_slope_mib_per_min(&r.samples).map_or("n/a".into(), |v| format!("{v:+.2} MiB/min")),
        peak,
        s.tasks,
        e.tasks,
        s.fds,
        e.fds
    );
    // Each camera goes down once per cycle; a soak in which they did not is no soak.
    if reconnects < plan.cameras as f64 {
        bail!("the cameras hardly flapped ({reconnects:.0} reconnects for {} cameras): is the farm started with --flap?", plan.cameras);
    }
    let failed = verdict(s, e);
    if failed.is_empty() {
        println!(
            "soak: PASS (no task or descriptor more, memory less SQLite's within +{:.0} %)",
            RSS_SLACK * 100.0
        );
        Ok(())
    } else {
        bail!("soak: FAIL: {}", failed.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(at: f64, tasks: i64, rss_mib: f64, fds: i64) -> Gauges {
        Gauges {
            at,
            tasks,
            rss_bytes: rss_mib * MIB,
            fds,
            ..Gauges::default()
        }
    }

    #[test]
    fn verdict_names_each_leak() {
        let s = g(0.0, 1010, 100.0, 520);
        assert!(verdict(&s, &g(600.0, 1012, 109.0, 522)).is_empty());
        let v = verdict(&s, &g(600.0, 1013, 111.0, 530));
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].contains("task leak: 1010") && v[0].contains("1013"));
        assert!(v[1].contains("descriptor leak"));
        assert!(v[2].contains("100.0 MiB resident less SQLite's at the start, 111.0 MiB"));
        // SQLite's caches filling up are not held against the daemon.
        let mut end = g(600.0, 1010, 130.0, 520);
        end.store_bytes = 25.0 * MIB;
        assert!(verdict(&s, &end).is_empty(), "{:?}", verdict(&s, &end));
        end.store_bytes = 15.0 * MIB;
        assert_eq!(verdict(&s, &end).len(), 1);
    }

    #[test]
    fn slope_is_taken_over_the_second_half() {
        // Flat for the first half, then +1 MiB every 10 s: 6 MiB/min.
        let samples: Vec<Gauges> = (0..20)
            .map(|i| {
                let at = i as f64 * 10.0;
                let rss = if i < 10 {
                    200.0
                } else {
                    200.0 + (i - 10) as f64
                };
                g(at, 0, rss, 0)
            })
            .collect();
        let s = rss_slope_mib_per_min(&samples).unwrap();
        assert!((s - 6.0).abs() < 1e-9, "{s}");
        assert_eq!(rss_slope_mib_per_min(&samples[..4]), None);
    }
}
