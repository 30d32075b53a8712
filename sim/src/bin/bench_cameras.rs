//! `bench-cameras`: what the daemon costs to keep thousands of RTSP cameras open, compared
//! with a bare retina client (no decode) and with one `ffmpeg -c copy -f null` per camera
//! (what users run today).
//!
//! One `camera-farm` process serves every phase. Each phase is measured over a steady
//! window (`--secs`) that starts after all sessions are open plus a warm-up: CPU is
//! utime + stime from `/proc/PID/stat` in % of one core, memory the largest VmRSS seen.
//! The scale part runs the bare client, then the daemon, on `--cameras` mounts and checks
//! that every camera stays online for the whole window; the ffmpeg part runs the daemon
//! with no camera (its fixed memory), the daemon, the bare client and ffmpeg on
//! `--ffmpeg-cameras` mounts. The machine is noisy: compare the ratios, which are taken
//! within one run. Run `bench-cameras --help` for the options.
//!
//! `--soak` instead runs the camera flap soak (`make soak`): the daemon on `--cameras`
//! cameras of a flapping farm for `--soak-secs`, its tasks, descriptors and memory compared
//! between two quiet points (see `bench_cameras/soak.rs`).

#[path = "bench_cameras/daemon.rs"]
mod daemon;
#[path = "bench_cameras/farm.rs"]
mod farm;
#[path = "bench_cameras/phases.rs"]
mod phases;
#[path = "bench_cameras/procs.rs"]
mod procs;
#[path = "bench_cameras/report.rs"]
mod report;
#[path = "bench_cameras/soak.rs"]
mod soak;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use clap::Parser;

use farm::Farm;
use phases::Ctx;

#[derive(Debug, Parser)]
#[command(
    name = "bench-cameras",
    about = "CPU and memory of the gridsight daemon on thousands of RTSP cameras vs a bare retina client and ffmpeg"
)]
struct Args {
    /// Cameras of the scale part (farm mounts, bare sessions, daemon cameras).
    #[arg(long, default_value_t = 2000)]
    cameras: usize,
    /// Length of each steady window of the scale part, seconds.
    #[arg(long, default_value_t = 60.0)]
    secs: f64,
    /// Cameras of the ffmpeg comparison.
    #[arg(long, default_value_t = 50)]
    ffmpeg_cameras: usize,
    /// Length of each window of the ffmpeg comparison, seconds.
    #[arg(long, default_value_t = 60.0)]
    ffmpeg_secs: f64,
    /// Skip the ffmpeg comparison.
    #[arg(long)]
    skip_ffmpeg: bool,
    /// Skip the scale part (bare client and daemon on --cameras).
    #[arg(long)]
    skip_scale: bool,
    /// Farm content: still, busy or mixed.
    #[arg(long, default_value = "still")]
    content: String,
    /// Frames per second of every mount.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// `[video] max_concurrent_connects` of the daemon.
    #[arg(long, default_value_t = 64)]
    max_concurrent_connects: usize,
    /// Seconds between the last session opening and the start of a window.
    #[arg(long, default_value_t = 5.0)]
    warmup_secs: f64,
    /// Seconds between two polls of the daemon's `/api/cameras` during a window.
    #[arg(long, default_value_t = 5.0)]
    poll_secs: f64,
    /// Window of the daemon with no camera (its fixed memory), seconds.
    #[arg(long, default_value_t = 10.0)]
    idle_secs: f64,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/gridsight")]
    daemon: PathBuf,
    /// The camera farm binary.
    #[arg(long, default_value = "target/release/camera-farm")]
    farm: PathBuf,
    /// The bare client (gridsight-farm's farm_load example).
    #[arg(long, default_value = "target/release/examples/farm_load")]
    bare_client: PathBuf,
    /// The ffmpeg binary.
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// Keep the temporary directory (configs, logs, databases) and print its path.
    #[arg(long)]
    keep_temp: bool,
    /// Run the camera flap soak on --cameras cameras instead of the benchmark.
    #[arg(long)]
    soak: bool,
    /// Soak: how long the cameras flap, seconds.
    #[arg(long, default_value_t = 600.0)]
    soak_secs: f64,
    /// Soak: flapping before the start point (builds what is built once), seconds.
    #[arg(long, default_value_t = 60.0)]
    soak_warmup_secs: f64,
    /// Soak: the flap cycle UP:DOWN in seconds (each camera healthy for UP, then down for
    /// DOWN; even cameras refuse, odd ones drop every connection after a second).
    #[arg(long, default_value = "20:10")]
    flap: String,
    /// Soak: seconds between two samples of the daemon's gauges.
    #[arg(long, default_value_t = 10.0)]
    sample_secs: f64,
    /// Soak: seconds every camera stays online before each of the two measuring points.
    #[arg(long, default_value_t = 30.0)]
    settle_secs: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // On Ctrl-C the work future is dropped, which kills every child (kill on drop).
    tokio::select! {
        r = bench(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn bench(args: &Args) -> Result<()> {
    if args.soak {
        return soak(args).await;
    }
    if args.secs <= 0.0 || args.ffmpeg_secs <= 0.0 || args.poll_secs <= 0.0 {
        bail!("--secs, --ffmpeg-secs and --poll-secs must be > 0");
    }
    if !matches!(args.content.as_str(), "still" | "busy" | "mixed") {
        bail!("--content must be still, busy or mixed");
    }
    let scale = !args.skip_scale && args.cameras > 0;
    let ffmpeg = !args.skip_ffmpeg && args.ffmpeg_cameras > 0;
    for (what, path) in [
        ("daemon", &args.daemon),
        ("camera farm", &args.farm),
        ("bare client", &args.bare_client),
    ] {
        if !path.is_file() {
            bail!(
                "{what} binary {} not found (make bench-cameras builds it)",
                path.display()
            );
        }
    }
    if ffmpeg {
        println!("ffmpeg: {}", phases::check_ffmpeg(&args.ffmpeg)?);
    }
    let (dir, _cleanup) = temp_dir(args.keep_temp)?;

    let mounts =
        if scale { args.cameras } else { 0 }.max(if ffmpeg { args.ffmpeg_cameras } else { 0 });
    if mounts == 0 {
        bail!("nothing to measure (--skip-scale and --skip-ffmpeg, or zero cameras)");
    }
    let farm = Farm::start(&args.farm, mounts, args.fps, &args.content, None, &dir).await?;
    farm_line(
        "bench-cameras",
        &farm,
        mounts,
        args.fps,
        &format!("content {}", args.content),
    );
    let ctx = context(args, farm, dir);

    let mut scale_daemon = None;
    if scale {
        let n = args.cameras;
        println!("scale: bare client, {n} sessions, {} s window", args.secs);
        let bare = ctx.bare(n, args.secs).await?;
        report::bare_line("bare", n, &bare);
        println!("scale: daemon, {n} cameras, {} s window", args.secs);
        let d = ctx.daemon(n, args.secs, "scale").await?;
        report::daemon_line("daemon", n, &d);
        report::scale_result(n, args.secs, &bare, &d);
        scale_daemon = Some(d);
    }
    if ffmpeg {
        let m = args.ffmpeg_cameras;
        let secs = args.ffmpeg_secs;
        println!("ffmpeg: daemon with no camera, {} s window", args.idle_secs);
        let idle = ctx.idle_daemon(args.idle_secs).await?;
        report::usage_line("daemon idle", &idle);
        println!("ffmpeg: daemon, {m} cameras, {secs} s window");
        let d = ctx.daemon(m, secs, "ffmpeg").await?;
        report::daemon_line("daemon", m, &d);
        println!("ffmpeg: bare client, {m} sessions, {secs} s window");
        let bare = ctx.bare(m, secs).await?;
        report::bare_line("bare", m, &bare);
        println!("ffmpeg: {m} x ffmpeg, {secs} s window");
        let ff = ctx.ffmpeg(m, secs).await?;
        report::ffmpeg_line(m, &ff);
        report::ffmpeg_result(m, &idle, &d, &bare, &ff);
        if let Some(big) = &scale_daemon {
            report::rss_slope(args.cameras, big, m, &d);
        }
    }
    ctx.farm.proc.terminate(Duration::from_secs(10)).await?;
    Ok(())
}

/// The run's temporary directory; with `keep`, it survives errors too (its logs explain
/// them) and its path is printed. The second value removes it when dropped.
fn temp_dir(keep: bool) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let tmp = tempfile::Builder::new()
        .prefix("gridsight-benchcam-")
        .tempdir()?;
    Ok(if keep {
        let kept = tmp.keep();
        println!("temporary files in {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    })
}

/// `--soak`: the camera flap soak.
async fn soak(args: &Args) -> Result<()> {
    if args.soak_secs <= 0.0 || args.sample_secs <= 0.0 || args.cameras == 0 {
        bail!("--soak needs --soak-secs, --sample-secs and --cameras > 0");
    }
    for (what, path) in [("daemon", &args.daemon), ("camera farm", &args.farm)] {
        if !path.is_file() {
            bail!(
                "{what} binary {} not found (make soak builds it)",
                path.display()
            );
        }
    }
    let (dir, _cleanup) = temp_dir(args.keep_temp)?;
    let n = args.cameras;
    let farm = Farm::start(
        &args.farm,
        n,
        args.fps,
        &args.content,
        Some(&args.flap),
        &dir,
    )
    .await?;
    farm_line(
        "soak",
        &farm,
        n,
        args.fps,
        &format!("flap {} (up:down s)", args.flap),
    );
    let mut ctx = context(args, farm, dir);
    let plan = soak::SoakPlan {
        cameras: n,
        warmup_secs: args.soak_warmup_secs.max(0.0),
        secs: args.soak_secs,
        sample: Duration::from_secs_f64(args.sample_secs),
        settle: Duration::from_secs_f64(args.settle_secs.max(0.0)),
    };
    let run = ctx.soak(&plan).await?;
    ctx.farm.proc.terminate(Duration::from_secs(10)).await?;
    soak::report(&plan, &run)
}

/// What every phase needs, from the arguments.
fn context(args: &Args, farm: Farm, dir: PathBuf) -> Ctx {
    Ctx {
        farm,
        dir,
        daemon_bin: args.daemon.clone(),
        bare_bin: args.bare_client.clone(),
        ffmpeg_bin: args.ffmpeg.clone(),
        fps: args.fps,
        max_connects: args.max_concurrent_connects,
        warmup: Duration::from_secs_f64(args.warmup_secs.max(0.0)),
        poll: Duration::from_secs_f64(args.poll_secs),
    }
}

/// The run's first line: where the farm serves, what, and the machine.
fn farm_line(who: &str, farm: &Farm, mounts: usize, fps: u32, what: &str) {
    println!(
        "{who}: camera-farm on 127.0.0.1:{} (pid {}), {mounts} mounts x {fps} fps, {what}; {} cores, load {:.2}",
        farm.port,
        farm.proc.pid(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        gridsight_sim::procstat::loadavg()
    );
}
