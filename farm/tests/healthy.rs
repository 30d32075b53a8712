//! A healthy farm as a `retina` client sees it: pacing, keyframes, parameters, content,
//! many sessions, and robustness against bad requests.

mod common;

use std::time::Duration;

use common::{collect, open, start, watch};
use gridsight_farm::{Content, ContentSchedule, FarmConfig, MountConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn healthy_mount_paces_frames_starting_at_a_keyframe() {
    let farm = start(vec![
        MountConfig::new("cam0001", 15).with_content(Content::Busy)
    ])
    .await;
    let c = watch(&farm, "cam0001", Duration::from_millis(2500)).await;
    assert!(c.error.is_none(), "error: {:?}", c.error);
    let n = c.frames.len();
    // 2.5 s at 15 fps = 37.5 frames; allow for start-up and timer slack.
    assert!((33..=40).contains(&n), "{n} frames in 2.5 s");
    assert!(c.frames[0].key, "first frame is a keyframe");
    // Sent right after PLAY, and complete at once (marker bit on its last packet; without
    // it the client would only finish the frame when the next one starts, 67 ms later).
    let first = c.frames[0].at - c.started;
    assert!(
        first < Duration::from_millis(60),
        "first frame after {first:?}"
    );
    // GOP 2 s: frame 30 is the next keyframe, none in between.
    assert!(c.frames[30].key, "keyframe after 2 s");
    assert!(
        c.frames[1..30].iter().all(|f| !f.key),
        "no keyframe inside the GOP"
    );
    assert_eq!(c.dims, Some((640, 360)));
    if let Some((num, den)) = c.frame_rate {
        assert_eq!(den / num, 15, "SPS frame rate {num}/{den}");
    }
    // RTP timestamps advance by 90000/15 per frame.
    for w in c.frames.windows(2) {
        assert_eq!(w[1].ts - w[0].ts, 6000);
    }
    // Arrival pacing: the last frame arrives about (n-1)/15 s after the first.
    let span = c.frames[n - 1].at - c.frames[0].at;
    let expected = Duration::from_secs_f64((n - 1) as f64 / 15.0);
    assert!(
        span + Duration::from_millis(150) > expected
            && span < expected + Duration::from_millis(150),
        "span {span:?} vs {expected:?}"
    );
    // One RTCP sender report with the first frame (the next is due after 5 s).
    assert_eq!(c.reports, vec![0], "sender reports at RTP time");
    let stats = farm.stats("cam0001").unwrap();
    assert_eq!(stats.sessions_opened, 1);
    assert!(stats.frames_sent >= n as u64);
    farm.shutdown().await;
}

#[tokio::test]
async fn busy_content_has_larger_p_frames_than_still() {
    let farm = start(vec![
        MountConfig::new("still", 15).with_content(Content::Still),
        MountConfig::new("busy", 15).with_content(Content::Busy),
    ])
    .await;
    let (still, busy) = tokio::join!(
        watch(&farm, "still", Duration::from_millis(1500)),
        watch(&farm, "busy", Duration::from_millis(1500)),
    );
    let (s, b) = (still.mean_delta_size(), busy.mean_delta_size());
    assert!(still.frames.len() > 15 && busy.frames.len() > 15);
    assert!(
        s < 1500,
        "still P-frames are small (one moving ball): {s} bytes"
    );
    assert!(b > 8 * s.max(1) && b > 2000, "busy {b} vs still {s}");
    farm.shutdown().await;
}

#[tokio::test]
async fn content_switches_on_demand_and_on_schedule() {
    let farm = start(vec![
        MountConfig::new("cam", 15),
        MountConfig::new("alt", 15).with_content(ContentSchedule::Alternate {
            still: Duration::from_millis(600),
            busy: Duration::from_millis(600),
        }),
    ])
    .await;
    let stream = open(&farm, "cam", None).await.unwrap();
    let switch = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        farm.set_content("cam", Content::Busy).unwrap();
    };
    let (c, ()) = tokio::join!(collect(stream, Duration::from_millis(1600)), switch);
    let first_big = c.frames.iter().position(|f| f.size > 2000 && !f.key);
    let i = first_big.expect("busy frames after the switch");
    assert!(c.frames[..i]
        .iter()
        .rev()
        .take_while(|f| !f.key)
        .all(|f| f.size < 200));
    // The switch restarts at a keyframe: the frame before the first big P-frame is one.
    assert!(c.frames[i - 1].key, "switch starts with a keyframe");

    let alt = open(&farm, "alt", None).await.unwrap();
    let c = collect(alt, Duration::from_millis(2000)).await;
    let kinds: Vec<bool> = c
        .frames
        .iter()
        .filter(|f| !f.key)
        .map(|f| f.size > 2000)
        .collect();
    let switches = kinds.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches >= 2,
        "alternating content switched {switches} times"
    );
    farm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    let farm = std::sync::Arc::new(
        gridsight_farm::Farm::start(FarmConfig::uniform(50, 15, Content::Still.into()))
            .await
            .unwrap(),
    );
    let mut streams = Vec::new();
    for batch in 0..10 {
        let opens = (0..20).map(|j| {
            let farm = farm.clone();
            let mount = gridsight_farm::mount_name((batch * 20 + j) % 50 + 1);
            async move { open(&farm, &mount, None).await }
        });
        for s in futures::future::join_all(opens).await {
            streams.push(s.expect("session opens"));
        }
    }
    assert_eq!(farm.total_stats().active_sessions, 200);
    let all = futures::future::join_all(
        streams
            .into_iter()
            .map(|s| collect(s, Duration::from_millis(2000))),
    )
    .await;
    for (i, c) in all.iter().enumerate() {
        assert!(c.error.is_none(), "session {i}: {:?}", c.error);
        assert!(
            c.frames.len() >= 25,
            "session {i}: {} frames",
            c.frames.len()
        );
        assert!(c.frames[0].key);
    }
    drop(all);
    let farm = std::sync::Arc::into_inner(farm).expect("sole owner");
    farm.shutdown().await;
}

#[tokio::test]
async fn unknown_mount_is_404_and_garbage_is_400_without_harm() {
    let farm = start(vec![MountConfig::new("cam", 15)]).await;
    let err = open(&farm, "nope", None).await.err().expect("404");
    assert_eq!(err.status_code(), Some(404), "{err}");

    let mut sock = tokio::net::TcpStream::connect(farm.addr()).await.unwrap();
    sock.write_all(b"\x16\x03\x01 this is not RTSP\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await; // the farm closes the connection
    assert!(
        answer.starts_with(b"RTSP/1.0 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    let mut sock = tokio::net::TcpStream::connect(farm.addr()).await.unwrap();
    sock.write_all(b"SETUP rtsp://x/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"RTSP/1.0 461"), "UDP is refused");

    // The farm still serves.
    let c = common::watch(&farm, "cam", Duration::from_millis(500)).await;
    assert!(!c.frames.is_empty());
    farm.shutdown().await;
}

#[tokio::test]
async fn keepalives_are_answered() {
    // timeout=2 makes retina send a keepalive every second and fail the session if the
    // previous one is unanswered when the next is due.
    let mut cfg = FarmConfig::new(vec![MountConfig::new("cam", 5)]);
    cfg.session_timeout_secs = 2;
    let farm = gridsight_farm::Farm::start(cfg).await.unwrap();
    let c = watch(&farm, "cam", Duration::from_millis(3300)).await;
    assert!(c.error.is_none() && !c.ended, "{:?}", c.error);
    assert!(c.frames.len() >= 14, "{} frames at 5 fps", c.frames.len());
    farm.shutdown().await;
}
