//! Every fault of the farm, as a `retina` client sees it.

mod common;

use std::time::Duration;

use common::{collect, open, start};
use gridsight_farm::{Content, Fault, MountConfig};

fn auth() -> Fault {
    Fault::Auth {
        user: "admin".into(),
        pass: "s3cret".into(),
    }
}

#[tokio::test]
async fn auth_right_credentials_play_wrong_get_401() {
    let farm = start(vec![MountConfig::new("cam", 15).with_fault(auth())]).await;
    let stream = open(&farm, "cam", Some(("admin", "s3cret")))
        .await
        .expect("right creds");
    let c = collect(stream, Duration::from_millis(700)).await;
    assert!(c.frames.len() >= 8 && c.error.is_none(), "{c:?}");

    for creds in [Some(("admin", "wrong")), Some(("root", "s3cret")), None] {
        let err = open(&farm, "cam", creds).await.err().expect("refused");
        assert_eq!(err.status_code(), Some(401), "{creds:?}: {err}");
    }
    assert!(farm.stats("cam").unwrap().auth_failures >= 3);
    farm.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_the_connection() {
    let farm = start(vec![MountConfig::new("cam", 15).with_fault(Fault::Refuse)]).await;
    let r = tokio::time::timeout(Duration::from_secs(2), open(&farm, "cam", None)).await;
    let err = r.expect("fails fast").err().expect("connect error");
    assert_eq!(err.status_code(), None, "no RTSP answer at all: {err}");
    // Setting Refuse at runtime closes running sessions too.
    farm.set_fault("cam", Fault::None).unwrap();
    let stream = open(&farm, "cam", None).await.unwrap();
    let kill = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        farm.set_fault("cam", Fault::Refuse).unwrap();
    };
    let (c, ()) = tokio::join!(collect(stream, Duration::from_secs(2)), kill);
    assert!(c.ended && !c.frames.is_empty(), "{c:?}");
    assert!(c.frames.last().unwrap().at - c.started < Duration::from_millis(600));
    farm.shutdown().await;
}

#[tokio::test]
async fn hang_describe_makes_the_client_time_out() {
    let farm = start(vec![
        MountConfig::new("cam", 15).with_fault(Fault::HangDescribe)
    ])
    .await;
    let r = tokio::time::timeout(Duration::from_millis(1200), open(&farm, "cam", None)).await;
    assert!(r.is_err(), "DESCRIBE must not be answered");
    assert_eq!(farm.stats("cam").unwrap().connections, 1);
    farm.shutdown().await;
}

#[tokio::test]
async fn stall_stops_media_but_keeps_the_connection() {
    let stall = Duration::from_millis(1000);
    let farm = start(vec![
        MountConfig::new("cam", 15).with_fault(Fault::StallAfter(stall))
    ])
    .await;
    let stream = open(&farm, "cam", None).await.unwrap();
    let c = collect(stream, Duration::from_millis(2500)).await;
    assert!(!c.ended, "the stream is still open: {:?}", c.error);
    let n = c.frames.len();
    assert!((13..=17).contains(&n), "{n} frames in the first second");
    let last = c.frames[n - 1].at - c.started;
    assert!(
        last < stall + Duration::from_millis(150),
        "last frame at {last:?}"
    );
    let s = farm.stats("cam").unwrap();
    assert_eq!(s.active_sessions, 1, "the session is still there");
    farm.shutdown().await;
}

#[tokio::test]
async fn garbage_rtp_breaks_the_client() {
    let farm = start(vec![
        MountConfig::new("cam", 15).with_fault(Fault::GarbageRtp)
    ])
    .await;
    let stream = open(&farm, "cam", None).await.unwrap();
    let c = collect(stream, Duration::from_millis(1500)).await;
    assert!(c.frames.is_empty(), "no frame out of garbage");
    assert!(c.error.is_some(), "client errors: {c:?}");
    assert!(farm.stats("cam").unwrap().garbage_sent >= 1);
    farm.shutdown().await;
}

#[tokio::test]
async fn disconnect_loop_forces_reconnects() {
    let every = Duration::from_millis(800);
    let farm = start(vec![
        MountConfig::new("cam", 15).with_fault(Fault::DisconnectLoop(every))
    ])
    .await;
    for round in 0..3 {
        let stream = open(&farm, "cam", None).await.expect("reconnect works");
        let c = collect(stream, Duration::from_secs(3)).await;
        assert!(c.ended, "round {round}: connection dropped");
        assert!(
            c.frames.len() >= 8,
            "round {round}: {} frames",
            c.frames.len()
        );
        let lived = c.frames.last().unwrap().at - c.started;
        assert!(lived < every, "round {round}: lived {lived:?}");
    }
    assert_eq!(farm.stats("cam").unwrap().connections, 3);
    farm.shutdown().await;
}

#[tokio::test]
async fn timestamp_jumps_forward_once() {
    let farm = start(vec![
        MountConfig::new("cam", 15).with_fault(Fault::TimestampJump)
    ])
    .await;
    let stream = open(&farm, "cam", None).await.unwrap();
    let c = collect(stream, Duration::from_millis(1800)).await;
    assert!(c.error.is_none(), "{:?}", c.error);
    let deltas: Vec<i64> = c.frames.windows(2).map(|w| w[1].ts - w[0].ts).collect();
    let jumps: Vec<usize> = (0..deltas.len()).filter(|&i| deltas[i] != 6000).collect();
    assert_eq!(jumps.len(), 1, "one jump: {deltas:?}");
    assert_eq!(deltas[jumps[0]], 6000 + 3600 * 90_000);
    assert_eq!(jumps[0], 14, "after one second of media");
    farm.shutdown().await;
}

#[tokio::test]
async fn freeze_repeats_a_minimal_frame_with_a_stopped_clock() {
    let farm = start(vec![MountConfig::new("cam", 15).with_content(Content::Busy)]).await;
    let stream = open(&farm, "cam", None).await.unwrap();
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        farm.set_fault("cam", Fault::Freeze).unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        farm.set_fault("cam", Fault::None).unwrap();
    };
    let (c, ()) = tokio::join!(collect(stream, Duration::from_millis(2000)), freeze);
    assert!(c.error.is_none(), "{:?}", c.error);
    let frozen: Vec<_> = c
        .frames
        .iter()
        .filter(|f| {
            let t = f.at - c.started;
            t > Duration::from_millis(650) && t < Duration::from_millis(1400)
        })
        .collect();
    assert!(
        frozen.len() >= 9,
        "frames keep coming while frozen: {}",
        frozen.len()
    );
    assert!(frozen.iter().all(|f| f.ts == frozen[0].ts), "clock stopped");
    assert!(
        frozen.iter().all(|f| !f.key && f.size == frozen[0].size),
        "the same small delta frame, again and again"
    );
    // After the freeze: a keyframe, and the clock is back on the wall clock.
    let after: Vec<_> = c
        .frames
        .iter()
        .filter(|f| f.at - c.started > Duration::from_millis(1450))
        .collect();
    assert!(after.iter().any(|f| f.key), "resumes at a keyframe");
    assert!(after.iter().any(|f| f.size > 2000), "busy again");
    let last = c.frames.last().unwrap();
    let wall = (last.at - c.frames[0].at).as_secs_f64() * 90_000.0;
    assert!(
        (last.ts as f64 - wall).abs() < 9000.0,
        "ts {} vs wall {wall}",
        last.ts
    );
    farm.shutdown().await;
}

#[tokio::test]
async fn flapper_cycles_mounts_and_stop_heals_them() {
    use gridsight_farm::{flap::DROP_AFTER, Flap, Flapper};
    let farm = start(vec![
        MountConfig::new("cam0001", 15),
        MountConfig::new("cam0002", 15),
    ])
    .await;
    // 10 s up, 10 s down: mount 0 starts its cycle up, mount 1 half a cycle later (down).
    let flap: Flap = "10:10".parse().unwrap();
    let mut flapper = Flapper::new(flap, vec!["cam0001".into(), "cam0002".into()]);
    let t0 = std::time::Instant::now();
    flapper.tick(&farm, t0);
    assert_eq!((flapper.down_now(), flapper.drops), (1, 1));

    // The odd mount, down, accepts and drops each connection after DROP_AFTER.
    let c = collect(open(&farm, "cam0002", None).await.unwrap(), DROP_AFTER * 2).await;
    assert!(c.ended && !c.frames.is_empty(), "{c:?}");
    // The even mount, up, plays until its down phase refuses it (closing the session).
    let stream = open(&farm, "cam0001", None).await.unwrap();
    let flip = async {
        // Once the session has sent a few frames, the even mount's down phase begins.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while farm.stats("cam0001").unwrap().frames_sent < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "cam0001 sends no frames"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        flapper.tick(&farm, t0 + Duration::from_secs(10));
    };
    let (c, ()) = tokio::join!(collect(stream, Duration::from_secs(2)), flip);
    assert!(c.ended && !c.frames.is_empty(), "{c:?}");
    assert_eq!((flapper.down_now(), flapper.drops), (1, 2));
    let err = open(&farm, "cam0001", None).await.err().expect("refused");
    assert_eq!(err.status_code(), None, "{err}");

    // Stopping heals both: each plays without a break.
    flapper.stop(&farm);
    for cam in ["cam0001", "cam0002"] {
        let c = collect(open(&farm, cam, None).await.unwrap(), DROP_AFTER * 2).await;
        assert!(!c.ended && c.frames.len() >= 20, "{cam}: {c:?}");
    }
    farm.shutdown().await;
}
