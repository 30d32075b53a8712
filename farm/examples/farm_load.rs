//! `farm_load`: opens many `retina` sessions (TCP) against a running `camera-farm` and
//! counts frames, to measure the farm's cost. Opens sessions a few at a time, then
//! reports frames per second and errors.
//!
//! `cargo run --release -p gridsight-farm --example farm_load -- --sessions 2000 --secs 20`

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt as _;
use retina::client::{
    PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::CodecItem;

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the farm.
    #[arg(long, default_value = "rtsp://127.0.0.1:8554")]
    base: String,
    /// Sessions to open; session i plays mount cam{(i % mounts) + 1}.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Mounts the farm serves.
    #[arg(long, default_value_t = 0)]
    mounts: usize,
    /// Sessions opened at once.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Seconds to measure once all sessions are open.
    #[arg(long, default_value_t = 20)]
    secs: u64,
}

async fn play(
    url: String,
    frames: Arc<AtomicU64>,
    opened: tokio::sync::mpsc::Sender<()>,
) -> Result<(), retina::Error> {
    let url = url::Url::parse(&url).map_err(|e| panic!("bad url {url}: {e}"))?;
    let mut s = Session::describe(url, SessionOptions::default()).await?;
    let tcp = Transport::Tcp(TcpTransportOptions::default());
    s.setup(0, SetupOptions::default().transport(tcp)).await?;
    let mut s = s.play(PlayOptions::default()).await?.demuxed()?;
    let mut opened = Some(opened);
    while let Some(item) = s.next().await {
        if let CodecItem::VideoFrame(_) = item? {
            frames.fetch_add(1, Relaxed);
            if let Some(tx) = opened.take() {
                let _ = tx.send(()).await;
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mounts = if args.mounts == 0 {
        args.sessions
    } else {
        args.mounts
    };
    let frames = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for start in (0..args.sessions).step_by(args.batch.max(1)) {
        let end = (start + args.batch).min(args.sessions);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(args.batch);
        for i in start..end {
            let url = format!(
                "{}/{}",
                args.base,
                gridsight_farm::mount_name(i % mounts + 1)
            );
            let (frames, errors, tx) = (frames.clone(), errors.clone(), tx.clone());
            tokio::spawn(async move {
                if let Err(e) = play(url, frames, tx).await {
                    eprintln!("session {i}: {e}");
                    errors.fetch_add(1, Relaxed);
                }
            });
        }
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            for _ in start..end {
                rx.recv().await;
            }
        })
        .await;
    }
    println!("opened {} sessions in {:.1?}", args.sessions, t0.elapsed());
    let f0 = frames.load(Relaxed);
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let n = frames.load(Relaxed) - f0;
    let dt = t1.elapsed().as_secs_f64();
    println!(
        "{n} frames in {dt:.1} s = {:.0} frames/s ({:.2} per session per s), {} errors",
        n as f64 / dt,
        n as f64 / dt / args.sessions as f64,
        errors.load(Relaxed)
    );
}
