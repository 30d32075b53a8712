//! Pool tests against real GStreamer (x264enc/x265enc make the keyframes).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use super::jpeg::parse_header;
use super::testkit::encode_keyframe;
use super::*;

type KeyframeCache = Mutex<Vec<((Codec, u32, u32), Bytes)>>;

/// Keyframes are encoded once per test binary.
fn keyframe(codec: Codec, width: u32, height: u32) -> Bytes {
    static CACHE: OnceLock<KeyframeCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (codec, width, height);
    if let Some((_, bytes)) = cache.lock().expect("cache").iter().find(|(k, _)| *k == key) {
        return bytes.clone();
    }
    let bytes = encode_keyframe(codec, width, height).expect("encode keyframe");
    cache.lock().expect("cache").push((key, bytes.clone()));
    bytes
}

fn pool(workers: usize, queue: usize) -> SnapshotPool {
    SnapshotPool::new(SnapshotConfig {
        workers,
        queue,
        timeout: Duration::from_secs(10),
        ..SnapshotConfig::default()
    })
    .expect("pool")
}

/// A baseline JPEG of the expected size, with its JpegHeader consistent with `Jpeg`.
fn assert_jpeg(jpeg: &Jpeg, width: u16, height: u16) {
    let header = parse_header(&jpeg.bytes).expect("well-formed JPEG (FFD8 … FFD9, SOF)");
    assert_eq!(header.sof_marker, 0xC0, "baseline SOF0");
    assert_eq!((header.width, header.height), (width, height));
    assert_eq!(
        (jpeg.width, jpeg.height),
        (u32::from(width), u32::from(height))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_640x360_keyframe_to_jpeg() {
    let pool = pool(1, 4);
    pool.warm_up().await;
    let jpeg = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 640, 360))
        .await
        .expect("snapshot");
    assert_jpeg(&jpeg, 640, 360);
    // Reuse: the same pipeline serves the next job.
    let again = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 640, 360))
        .await
        .expect("second snapshot");
    assert_jpeg(&again, 640, 360);
    let stats = pool.stats();
    assert_eq!((stats.ok, stats.rebuilds, stats.in_flight), (2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_1080p_keyframe_to_jpeg() {
    let pool = pool(1, 4);
    let jpeg = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 1920, 1080))
        .await
        .expect("snapshot");
    assert_jpeg(&jpeg, 1920, 1080);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_keyframe_to_jpeg() {
    let pool = pool(1, 4);
    for _ in 0..2 {
        let jpeg = pool
            .snapshot(Codec::H265, keyframe(Codec::H265, 640, 360))
            .await
            .expect("snapshot");
        assert_jpeg(&jpeg, 640, 360);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_decode_error_and_the_worker_survives() {
    let pool = pool(1, 4);
    let good = keyframe(Codec::H264, 640, 360);
    let without_pps: Vec<u8> = {
        // Drop the PPS NAL unit (type 8), keep the rest with 4-byte start codes.
        annexb::nal_units(&good)
            .filter(|nal| annexb::nal_type(Codec::H264, nal) != Some(8))
            .flat_map(|nal| [&[0, 0, 0, 1][..], nal].concat())
            .collect()
    };
    let corrupt: Vec<u8> = {
        // Every NAL unit keeps its header byte; the payloads become noise.
        let mut seed = 0x2545_f491_u32;
        annexb::nal_units(&good)
            .flat_map(|nal| {
                let noise = nal[1..].iter().map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    // No accidental start codes.
                    (seed as u8) | 0x80
                });
                [0, 0, 0, 1, nal[0]]
                    .into_iter()
                    .chain(noise)
                    .collect::<Vec<u8>>()
            })
            .collect()
    };
    let inputs: Vec<(&str, Bytes)> = vec![
        ("empty", Bytes::new()),
        ("garbage", Bytes::from_static(b"definitely not a keyframe")),
        ("without PPS", Bytes::from(without_pps)),
        ("corrupt payloads", Bytes::from(corrupt)),
        ("H.264 as H.265", good.clone()),
        ("truncated", good.slice(..good.len() / 3)),
    ];
    let mut decode_errors = 0;
    for (name, input) in inputs {
        let codec = if name == "H.264 as H.265" {
            Codec::H265
        } else {
            Codec::H264
        };
        match pool.snapshot(codec, input).await {
            Err(MediaError::Decode(message)) => {
                decode_errors += 1;
                eprintln!("{name}: Decode({message})");
            }
            // A decoder may conceal damage and still produce a picture; that is fine as
            // long as the result is a well-formed JPEG.
            Ok(jpeg) if name == "truncated" || name == "corrupt payloads" => {
                eprintln!("{name}: concealed, {}x{}", jpeg.width, jpeg.height);
                assert!(parse_header(&jpeg.bytes).is_some());
            }
            other => panic!("{name}: expected Decode, got {other:?}"),
        }
        let next = pool
            .snapshot(Codec::H264, good.clone())
            .await
            .unwrap_or_else(|e| panic!("good job after {name}: {e}"));
        assert_jpeg(&next, 640, 360);
    }
    let stats = pool.stats();
    assert!(decode_errors >= 4, "{stats:?}");
    assert_eq!(stats.decode_errors, decode_errors);
    assert_eq!(stats.ok, 6 + (6 - decode_errors));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_fast_with_busy() {
    let pool = pool(1, 1);
    pool.warm_up().await;
    let big = keyframe(Codec::H264, 1920, 1080);
    let results = join_all((0..12).map(|_| pool.snapshot(Codec::H264, big.clone()))).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(MediaError::Busy)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(busy >= 1 && ok >= 1, "{results:?}");
    assert_eq!(busy + ok, 12, "{results:?}");
    let stats = pool.stats();
    assert_eq!(
        (stats.busy, stats.ok, stats.in_flight),
        (busy as u64, ok as u64, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_jobs_all_complete_with_their_own_picture() {
    let pool = pool(2, 64);
    let jobs = (0..40).map(|i| {
        let (codec, width, height) = match i % 4 {
            0 => (Codec::H264, 640, 360),
            1 => (Codec::H264, 320, 240),
            2 => (Codec::H265, 640, 360),
            _ => (Codec::H265, 352, 288),
        };
        let frame = keyframe(codec, width, height);
        let pool = &pool;
        async move {
            let jpeg = pool.snapshot(codec, frame).await.expect("snapshot");
            assert_jpeg(&jpeg, width as u16, height as u16);
        }
    });
    join_all(jobs).await;
    let stats = pool.stats();
    assert_eq!((stats.ok, stats.in_flight, stats.rebuilds), (40, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downscale_honours_max_width_and_never_upscales() {
    let pool = SnapshotPool::new(SnapshotConfig {
        workers: 1,
        max_width: Some(640),
        timeout: Duration::from_secs(10),
        ..SnapshotConfig::default()
    })
    .expect("pool");
    let scaled = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 1920, 1080))
        .await
        .expect("snapshot");
    assert_jpeg(&scaled, 640, 360);
    let small = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 320, 240))
        .await
        .expect("snapshot");
    assert_jpeg(&small, 320, 240);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_gives_timeout() {
    let pool = SnapshotPool::new(SnapshotConfig {
        workers: 1,
        timeout: Duration::from_micros(200),
        ..SnapshotConfig::default()
    })
    .expect("pool");
    pool.warm_up().await;
    let big = keyframe(Codec::H264, 1920, 1080);
    let result = pool.snapshot(Codec::H264, big).await;
    assert!(matches!(result, Err(MediaError::Timeout)), "{result:?}");
    assert_eq!(pool.stats().timeout, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_joins_workers_and_refuses_new_jobs() {
    let pool = pool(2, 4);
    pool.shutdown();
    let result = pool
        .snapshot(Codec::H264, keyframe(Codec::H264, 320, 240))
        .await;
    assert_eq!(result.unwrap_err(), MediaError::ShutDown);
    pool.shutdown();
}

#[test]
fn pool_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SnapshotPool>();
    assert_send_sync::<Jpeg>();
    assert_send_sync::<MediaError>();
}

#[test]
fn config_is_validated() {
    for config in [
        SnapshotConfig {
            workers: 0,
            ..SnapshotConfig::default()
        },
        SnapshotConfig {
            queue: 0,
            ..SnapshotConfig::default()
        },
        SnapshotConfig {
            jpeg_quality: 101,
            ..SnapshotConfig::default()
        },
        SnapshotConfig {
            max_width: Some(0),
            ..SnapshotConfig::default()
        },
    ] {
        assert!(matches!(
            SnapshotPool::new(config),
            Err(MediaError::Config(_))
        ));
    }
}
