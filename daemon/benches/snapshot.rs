//! Snapshot benchmark: keyframe → JPEG latency through the warm pool versus a fresh pipeline
//! per snapshot (same process, plugins already loaded), and pool throughput.
//!
//! `make bench-snapshot` (or `cargo bench -p gridsight --bench snapshot`). Prints figures;
//! lines starting with `RESULT` are the ones to grep. `SNAPSHOT_BENCH_ITERS` scales the runs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use gridsight::media::testkit::{encode_keyframe, fresh_pipeline_snapshot};
use gridsight::media::{Codec, SnapshotConfig, SnapshotPool};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

struct Summary {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).copied().map(ms).unwrap_or(f64::NAN)
    };
    let total: Duration = samples.iter().sum();
    Summary {
        n: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        mean: ms(total) / samples.len().max(1) as f64,
    }
}

fn print(label: &str, s: &Summary) {
    println!(
        "RESULT {label} p50_ms={:.2} p99_ms={:.2} mean_ms={:.2} n={}",
        s.p50, s.p99, s.mean, s.n
    );
}

fn config(workers: usize) -> SnapshotConfig {
    SnapshotConfig {
        workers,
        queue: 64,
        timeout: Duration::from_secs(10),
        ..SnapshotConfig::default()
    }
}

async fn pool_latency(pool: &SnapshotPool, codec: Codec, keyframe: &Bytes, n: usize) -> Summary {
    for _ in 0..5 {
        pool.snapshot(codec, keyframe.clone()).await.expect("warm");
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        pool.snapshot(codec, keyframe.clone())
            .await
            .expect("snapshot");
        samples.push(started.elapsed());
    }
    summarize(samples)
}

fn fresh_latency(codec: Codec, keyframe: &Bytes, n: usize) -> Summary {
    let config = config(1);
    let samples = (0..n)
        .map(|_| {
            fresh_pipeline_snapshot(codec, keyframe, &config, Duration::from_secs(10))
                .expect("fresh snapshot")
                .took
        })
        .collect();
    summarize(samples)
}

async fn throughput(pool: &SnapshotPool, codec: Codec, keyframe: &Bytes, jobs: usize) -> f64 {
    let started = Instant::now();
    let concurrency = pool.config().workers * 4;
    let ok = stream::iter(0..jobs)
        .map(|_| pool.snapshot(codec, keyframe.clone()))
        .buffer_unordered(concurrency)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(ok, jobs, "every throughput job succeeds");
    jobs as f64 / started.elapsed().as_secs_f64()
}

/// Why the pool sends EOS after each keyframe: in a running pipeline without EOS, does the
/// picture come out at all, and how fast? Pushes the same keyframe `pushes` times and reports
/// how many JPEGs appeared within 500 ms of each push.
fn probe_without_eos(keyframe: &Bytes, pushes: usize) -> String {
    let description = "appsrc name=src caps=video/x-h264,stream-format=byte-stream,alignment=au \
        format=time ! h264parse ! avdec_h264 ! videoconvert ! jpegenc ! appsink name=sink sync=false";
    let pipeline = gst::parse::launch(description)
        .expect("probe pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .expect("appsrc");
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut outcomes = Vec::new();
    for i in 0..pushes {
        let mut buffer = gst::Buffer::from_slice(keyframe.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        }
        let started = Instant::now();
        src.push_buffer(buffer).expect("push");
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) {
            Some(_) => outcomes.push(format!("{:.1}ms", started.elapsed().as_secs_f64() * 1e3)),
            None => outcomes.push("none".into()),
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    outcomes.join(",")
}

fn main() {
    let iters: usize = std::env::var("SNAPSHOT_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let sizes = [(640u32, 360u32), (1920, 1080)];
        let frames: Vec<(String, Codec, Bytes)> = [Codec::H264, Codec::H265]
            .into_iter()
            .flat_map(|codec| sizes.iter().map(move |&(w, h)| (codec, w, h)))
            .map(|(codec, w, h)| {
                let bytes = encode_keyframe(codec, w, h).expect("encode keyframe");
                println!("keyframe {codec} {w}x{h}: {} bytes", bytes.len());
                (format!("{codec} {w}x{h}"), codec, bytes)
            })
            .collect();

        for (label, codec, keyframe) in &frames {
            if *codec == Codec::H264 {
                println!(
                    "RESULT no_eos_reuse {label} per_push_output={}",
                    probe_without_eos(keyframe, 4)
                );
            }
        }

        let started = Instant::now();
        let pool = SnapshotPool::new(config(1)).expect("pool");
        pool.warm_up().await;
        println!(
            "RESULT warm_up_ms={:.1} (1 worker, both codecs)",
            started.elapsed().as_secs_f64() * 1e3
        );

        let mut p50_1080 = f64::NAN;
        for (label, codec, keyframe) in &frames {
            let n = if keyframe.len() > 100_000 || label.contains("1920") {
                iters / 2
            } else {
                iters
            };
            let warm = pool_latency(&pool, *codec, keyframe, n).await;
            print(&format!("pool_warm {label}"), &warm);
            let fresh = fresh_latency(*codec, keyframe, (n / 2).max(10));
            print(&format!("fresh_pipeline {label}"), &fresh);
            println!(
                "RESULT ratio {label} fresh_p50/pool_p50={:.2} fresh_mean/pool_mean={:.2}",
                fresh.p50 / warm.p50,
                fresh.mean / warm.mean
            );
            if *codec == Codec::H264 && label.contains("1920") {
                p50_1080 = warm.p50;
            }
        }
        drop(pool);

        for workers in [1, 2] {
            let pool = SnapshotPool::new(config(workers)).expect("pool");
            pool.warm_up().await;
            for (label, codec, keyframe) in frames.iter().filter(|(_, c, _)| *c == Codec::H264) {
                let jobs = if label.contains("1920") {
                    iters
                } else {
                    iters * 2
                };
                let rate = throughput(&pool, *codec, keyframe, jobs).await;
                println!(
                    "RESULT throughput {label} workers={workers} jobs_per_s={rate:.1} jobs={jobs}"
                );
            }
            let stats = pool.stats();
            println!("stats workers={workers}: {stats:?}");
        }

        println!(
            "RESULT target h264 1920x1080 pool p50 <= 50 ms: {} ({p50_1080:.2} ms)",
            if p50_1080 <= 50.0 { "met" } else { "MISSED" }
        );
    });
}
