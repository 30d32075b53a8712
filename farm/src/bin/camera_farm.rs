//! `camera-farm`: runs a camera farm as its own process (for benchmarks and demos) until
//! SIGTERM or ctrl-c. With `--flap UP:DOWN`, SIGUSR1 starts the mounts flapping and the
//! next SIGUSR1 stops them (all healthy again); the soak run (`bench-cameras --soak`) uses
//! this.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use gridsight_farm::{mount_name, Content, ContentSchedule, Farm, FarmConfig, Flap, Flapper};

/// Serve N RTSP mounts (cam0001, cam0002, ...) of pre-encoded H.264 over TCP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Number of mounts.
    #[arg(long, default_value_t = 10)]
    mounts: usize,
    /// Frames per second of every mount.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8554")]
    listen: SocketAddr,
    /// Picture size, WIDTHxHEIGHT (e.g. 640x360 or 1920x1080).
    #[arg(long, default_value = "640x360")]
    size: String,
    /// still, busy, or mixed (odd mounts still, even mounts alternating still 20 s / busy 10 s).
    #[arg(long, default_value = "still")]
    content: String,
    /// Directory of the clip cache (default: $TMPDIR/gridsight-farm-clips).
    #[arg(long)]
    clip_dir: Option<PathBuf>,
    /// Print counters every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    stats_every: u64,
    /// Flap cycle UP:DOWN in seconds (e.g. 20:10), started and stopped by SIGUSR1: each
    /// mount is healthy for UP, then down for DOWN (even mounts refuse, odd mounts drop each
    /// connection after a second), phases spread over the cycle.
    #[arg(long)]
    flap: Option<Flap>,
}

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    Ok((w.parse()?, h.parse()?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let (width, height) = parse_size(&args.size)?;
    let mixed = ContentSchedule::Alternate {
        still: Duration::from_secs(20),
        busy: Duration::from_secs(10),
    };
    let mut config = match args.content.as_str() {
        "still" | "busy" => {
            let c: Content = args.content.parse().map_err(anyhow::Error::msg)?;
            FarmConfig::uniform(args.mounts, args.fps, c.into())
        }
        "mixed" => {
            let mut cfg = FarmConfig::uniform(args.mounts, args.fps, Content::Still.into());
            for (i, m) in cfg.mounts.iter_mut().enumerate() {
                if i % 2 == 1 {
                    m.content = mixed;
                }
            }
            cfg
        }
        other => bail!("unknown content {other:?}; expected still, busy or mixed"),
    };
    config.listen = args.listen;
    config.width = width;
    config.height = height;
    config.clip_dir = args.clip_dir;

    let farm = Farm::start(config).await.context("starting the farm")?;
    println!(
        "camera-farm: {} mounts at {} fps, {}x{}, content {}: rtsp://{}/cam0001 .. rtsp://{}/{}",
        args.mounts,
        args.fps,
        width,
        height,
        args.content,
        farm.addr(),
        farm.addr(),
        mount_name(args.mounts.max(1))
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("installing the SIGUSR1 handler")?;
    let mut ticker = tokio::time::interval(Duration::from_secs(args.stats_every.max(1)));
    ticker.tick().await;
    // The flap schedule is applied every 100 ms while flapping.
    let mut flap_tick = tokio::time::interval(Duration::from_millis(100));
    let mut flapper: Option<Flapper> = None;
    let names: Vec<String> = (1..=args.mounts).map(mount_name).collect();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = usr1.recv() => match (flapper.take(), args.flap) {
                (Some(f), _) => {
                    tracing::info!(drops = f.drops, "flapping stopped: every mount healthy");
                    f.stop(&farm);
                }
                (None, Some(flap)) => {
                    tracing::info!(up = ?flap.up, down = ?flap.down, "flapping started");
                    flapper = Some(Flapper::new(flap, names.clone()));
                }
                (None, None) => tracing::warn!("SIGUSR1 ignored: no --flap"),
            },
            _ = flap_tick.tick(), if flapper.is_some() => {
                if let Some(f) = &mut flapper {
                    f.tick(&farm, std::time::Instant::now());
                }
            }
            _ = ticker.tick(), if args.stats_every > 0 => {
                let t = farm.total_stats();
                tracing::info!(
                    active = t.active_sessions,
                    sessions = t.sessions_opened,
                    connections = t.connections,
                    frames = t.frames_sent,
                    mbytes = t.media_bytes / 1_000_000,
                    flap_drops = flapper.as_ref().map_or(0, |f| f.drops),
                    flap_down = flapper.as_ref().map_or(0, |f| f.down_now()),
                    "counters"
                );
            }
        }
    }
    farm.shutdown().await;
    Ok(())
}
