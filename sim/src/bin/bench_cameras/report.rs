//! Printing of `bench-cameras`: one human line per phase and the `RESULT key=value` lines
//! (scale: daemon vs bare client; ffmpeg: per camera, daemon vs ffmpeg) with the targets
//! of the issue checked.

use gridsight_sim::procstat::Usage;

use crate::phases::{BareRun, DaemonRun, FfmpegRun};

/// Scale targets: daemon CPU and RSS at most this many times the bare client's.
const CPU_RATIO_MAX: f64 = 1.3;
const RSS_RATIO_MAX: f64 = 2.0;
/// ffmpeg targets: the daemon at least this many times cheaper per camera.
const CPU_X_MIN: f64 = 3.0;
const RSS_X_MIN: f64 = 50.0;

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// CPU, memory and noise of a window.
pub fn usage_line(who: &str, u: &Usage) {
    println!(
        "  {who}: cpu {:.1}% of a core, rss max {:.1} MiB over {:.1} s (machine busy {:.0}% of a core, load {:.2})",
        u.cpu_pct, u.rss_mib, u.secs, u.machine_busy_pct, u.loadavg
    );
}

fn farm_line(u: &Usage) {
    println!("  camera-farm meanwhile: cpu {:.1}% of a core", u.cpu_pct);
}

/// The bare client's phase.
pub fn bare_line(who: &str, n: usize, b: &BareRun) {
    usage_line(who, &b.usage);
    println!(
        "  {who}: {n} sessions opened in {:.1} s, {:.0} frames/s ({:.2} per session), {} errors",
        b.connect.as_secs_f64(),
        b.frames_per_sec,
        b.frames_per_sec / n.max(1) as f64,
        b.errors
    );
    farm_line(&b.farm);
}

/// The daemon's phase.
pub fn daemon_line(who: &str, n: usize, d: &DaemonRun) {
    usage_line(who, &d.usage);
    let (mean, min) = d.track.fps_mean_min();
    println!(
        "  {who}: {:.0} frames/s received ({:.2} per camera); /api/cameras fps mean {mean:.2} min {min:.2}; {} polls, min online {}, {} cameras ever not online",
        d.frames_per_sec,
        d.frames_per_sec / n.max(1) as f64,
        d.track.polls,
        d.track.min_online.unwrap_or(0),
        d.track.ever_not_online.len()
    );
    if !d.track.ever_not_online.is_empty() {
        let some: Vec<&str> = d
            .track
            .ever_not_online
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        println!("  {who}: not online at some poll: {}", some.join(" "));
    }
    farm_line(&d.farm);
}

/// ffmpeg's phase.
pub fn ffmpeg_line(m: usize, f: &FfmpegRun) {
    usage_line(&format!("{m} x ffmpeg"), &f.usage);
    println!(
        "  {m} x ffmpeg: pss max {:.1} MiB (shared pages split between them); farm serving {} sessions",
        f.usage.pss_mib,
        f.farm_active.map_or("?".into(), |a| a.to_string())
    );
    farm_line(&f.farm);
}

/// The scale RESULT line and its targets.
pub fn scale_result(n: usize, secs: f64, bare: &BareRun, d: &DaemonRun) {
    let cpu_ratio = ratio(d.usage.cpu_pct, bare.usage.cpu_pct);
    let rss_ratio = ratio(d.usage.rss_mib, bare.usage.rss_mib);
    let min_online = d.track.min_online.unwrap_or(0);
    let all_online = min_online >= n && d.track.ever_not_online.is_empty();
    let (fps_mean, fps_min) = d.track.fps_mean_min();
    println!(
        "RESULT cameras={n} secs={secs} bare_cpu_pct={:.1} daemon_cpu_pct={:.1} cpu_ratio={cpu_ratio:.2} bare_rss_mib={:.1} daemon_rss_mib={:.1} rss_ratio={rss_ratio:.2} all_online={all_online} min_online={min_online} ever_not_online={} polls={} all_online_after_s={:.1} bare_fps_per_session={:.2} daemon_fps_per_camera={:.2} daemon_api_fps_mean={fps_mean:.2} daemon_api_fps_min={fps_min:.2} farm_cpu_ratio={:.2}",
        bare.usage.cpu_pct,
        d.usage.cpu_pct,
        bare.usage.rss_mib,
        d.usage.rss_mib,
        d.track.ever_not_online.len(),
        d.track.polls,
        d.all_online_after.as_secs_f64(),
        bare.frames_per_sec / n.max(1) as f64,
        d.frames_per_sec / n.max(1) as f64,
        ratio(d.farm.cpu_pct, bare.farm.cpu_pct),
    );
    println!(
        "  (farm_cpu_ratio: the farm does the same work in both windows, so a value away from 1.00 shows how much the machine's noise moved the CPU figures)"
    );
    println!(
        "targets: cpu_ratio {cpu_ratio:.2} <= {CPU_RATIO_MAX}: {}; rss_ratio {rss_ratio:.2} <= {RSS_RATIO_MAX}: {}; all {n} online for {secs} s: {}",
        verdict(cpu_ratio <= CPU_RATIO_MAX),
        verdict(rss_ratio <= RSS_RATIO_MAX),
        verdict(all_online)
    );
}

/// The ffmpeg RESULT line (per camera) and its targets. The daemon's memory per camera is
/// marginal: (RSS with M cameras - RSS with none) / M; the plain RSS / M is printed too.
pub fn ffmpeg_result(m: usize, idle: &Usage, d: &DaemonRun, bare: &BareRun, ff: &FfmpegRun) {
    let per = |x: f64| x / m as f64;
    let ff_cpu = per(ff.usage.cpu_pct);
    let ff_rss = per(ff.usage.rss_mib);
    let ff_pss = per(ff.usage.pss_mib);
    let d_cpu = per(d.usage.cpu_pct);
    let d_cpu_marginal = per(d.usage.cpu_pct - idle.cpu_pct);
    let d_rss = per(d.usage.rss_mib - idle.rss_mib);
    let d_rss_plain = per(d.usage.rss_mib);
    let cpu_x = ratio(ff_cpu, d_cpu);
    let rss_x = ratio(ff_rss, d_rss);
    println!(
        "RESULT ffmpeg_cameras={m} ffmpeg_per_camera_cpu_pct={ff_cpu:.3} daemon_per_camera_cpu_pct={d_cpu:.3} cpu_x={cpu_x:.1} ffmpeg_per_camera_rss_mib={ff_rss:.2} daemon_per_camera_rss_mib={d_rss:.3} rss_x={rss_x:.1} daemon_rss_idle_mib={:.1} daemon_rss_mib={:.1} daemon_plain_rss_per_camera_mib={d_rss_plain:.2} rss_x_plain={:.1} ffmpeg_per_camera_pss_mib={ff_pss:.2} pss_x={:.1} daemon_marginal_cpu_per_camera_pct={d_cpu_marginal:.3} bare_per_camera_cpu_pct={:.3} bare_per_camera_rss_mib={:.3}",
        idle.rss_mib,
        d.usage.rss_mib,
        ratio(ff_rss, d_rss_plain),
        ratio(ff_pss, d_rss),
        per(bare.usage.cpu_pct),
        per(bare.usage.rss_mib),
    );
    println!(
        "  (daemon_per_camera_rss_mib = (RSS with {m} cameras - RSS with none) / {m}; with no camera the daemon does not warm up its GStreamer snapshot pool, so this includes that one-off cost; daemon_per_camera_cpu_pct = its whole CPU / {m}, idle work included)"
    );
    println!(
        "targets: cpu_x {cpu_x:.1} >= {CPU_X_MIN}: {}; rss_x {rss_x:.1} >= {RSS_X_MIN}: {}",
        verdict(cpu_x >= CPU_X_MIN),
        verdict(rss_x >= RSS_X_MIN)
    );
}

/// The daemon's memory per camera between two camera counts (fixed costs cancel out).
pub fn rss_slope(n_big: usize, big: &DaemonRun, n_small: usize, small: &DaemonRun) {
    if n_big <= n_small {
        return;
    }
    let slope = (big.usage.rss_mib - small.usage.rss_mib) / (n_big - n_small) as f64 * 1024.0;
    println!(
        "RESULT daemon_rss_slope_kib_per_camera={slope:.1} (RSS with {n_big} cameras - RSS with {n_small}) / {}",
        n_big - n_small
    );
}
