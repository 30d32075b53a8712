//! Camera health: the pure rule ([`evaluate`]) and the monitor task that applies it to
//! every camera a few times a second and turns changes into [`pb::CameraEvent`]s.
//!
//! Debounce: a camera is `offline` only after `offline_after_secs` without a frame (also
//! when it never connected since start), so a reconnect blip of a second or two is not an
//! alarm; `degraded` is judged on rates over a window. Freeze and activity flags flip with
//! hysteresis (activity ends below half the threshold). Events leave the monitor, never the
//! frame readers, so a slow correlator can only delay events, never stall a camera.

use std::time::{Duration, Instant};

use gridsight_proto::{ts_from_millis, v1 as pb};

use super::registry::{CameraEntry, Live, Status};
use crate::config::VideoConfig;

/// The status `live` deserves at `now`.
pub fn evaluate(
    live: &Live,
    started: Instant,
    now: Instant,
    video: &VideoConfig,
    expected_fps: f64,
) -> Status {
    let offline_after = Duration::from_secs_f64(video.offline_after_secs);
    let window = Duration::from_secs_f64(video.rate_window_secs);
    let since_frame = match live.last_frame {
        Some((t, _)) => now.duration_since(t),
        None => {
            return if now.duration_since(started) >= offline_after {
                Status::Offline
            } else {
                Status::Connecting
            }
        }
    };
    if since_frame >= offline_after {
        return Status::Offline;
    }
    if live.reconnects.len() as u32 >= video.degraded_reconnects_per_hour {
        return Status::Degraded;
    }
    // Rates are judged once the session has played for a full window.
    let settled = live
        .connected_at
        .is_some_and(|c| now.duration_since(c) >= window);
    if settled {
        let (fps, _, loss) = live.rates(now, window);
        if fps < expected_fps * video.degraded_fps_ratio || loss > video.degraded_loss_ratio {
            return Status::Degraded;
        }
    }
    Status::Online
}

/// Applies the rules to one camera at `now`; returns the events to send.
pub fn check(entry: &CameraEntry, now: Instant, video: &VideoConfig) -> Vec<pb::CameraEvent> {
    use pb::CameraEventKind as K;
    let mut events = Vec::new();
    let mut live = entry.live();
    live.prune(now, Duration::from_secs_f64(video.rate_window_secs));
    let status = evaluate(&live, entry.started, now, video, entry.cfg.expected_fps);
    let wall = crate::domain::now_ms();
    let make = |kind: K, activity: f64, detail: String| pb::CameraEvent {
        camera_id: entry.cfg.id.clone(),
        kind: kind as i32,
        time: Some(ts_from_millis(wall)),
        grid_ids: entry.cfg.grids.clone(),
        activity,
        detail,
    };
    if status != live.status {
        let detail = match status {
            Status::Offline => match live.last_frame {
                Some((t, _)) => format!(
                    "no frame for {:.1} s; {}",
                    now.duration_since(t).as_secs_f64(),
                    live.last_error
                ),
                None => format!("never connected: {}", live.last_error),
            },
            Status::Degraded => {
                let (fps, _, loss) =
                    live.rates(now, Duration::from_secs_f64(video.rate_window_secs));
                format!(
                    "{fps:.1} fps of {:.1} expected, {:.1}% loss, {} reconnects in the last hour",
                    entry.cfg.expected_fps,
                    loss * 100.0,
                    live.reconnects.len()
                )
            }
            _ => format!("was {}", live.status.as_str()),
        };
        let kind = match status {
            Status::Online => Some(K::Online),
            Status::Degraded => Some(K::Degraded),
            Status::Offline => Some(K::Offline),
            Status::Connecting => None,
        };
        // Connecting → online is news too: the wall and the retained MQTT status learn it.
        if let Some(kind) = kind {
            events.push(make(kind, live.activity.score(), detail));
        }
        tracing::info!(camera = %entry.cfg.id, from = live.status.as_str(), to = status.as_str(), "camera status");
        live.status = status;
        live.status_since_ms = wall;
    }
    let frozen = live.connected
        && status != Status::Offline
        && live
            .freeze
            .frozen(now, Duration::from_secs_f64(video.freeze_after_secs));
    if frozen != live.frozen {
        live.frozen = frozen;
        let (kind, detail) = if frozen {
            (K::Freeze, live.freeze.reason(now))
        } else {
            (K::Unfreeze, "picture changes again".to_string())
        };
        events.push(make(kind, live.activity.score(), detail));
    }
    let score = live.activity.score();
    if !live.active && score >= video.activity_threshold && status != Status::Offline {
        live.active = true;
        events.push(make(
            K::Activity,
            score,
            format!("activity {score:.1}x the camera's quiet baseline"),
        ));
    } else if live.active && (score < video.activity_threshold / 2.0 || status == Status::Offline) {
        live.active = false;
    }
    events
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{CameraConfig, CameraTransport, TimestampPolicy};

    fn entry() -> CameraEntry {
        CameraEntry::new(
            Arc::new(CameraConfig {
                id: "cam-1".into(),
                name: String::new(),
                url: "rtsp://user:pw@10.0.0.1/s".into(),
                username: None,
                password: None,
                location: None,
                grids: vec!["g1".into()],
                expected_fps: 10.0,
                transport: CameraTransport::Tcp,
                timestamp_policy: TimestampPolicy::Default,
                max_timestamp_jump_secs: None,
                enabled: true,
            }),
            64,
        )
    }

    fn frames(e: &CameraEntry, from: Instant, secs: f64, fps: f64) -> Instant {
        let mut live = e.live();
        live.connected = true;
        live.connected_at = Some(from);
        let n = (secs * fps) as u64;
        let step = Duration::from_secs_f64(1.0 / fps);
        let mut t = from;
        for i in 0..n {
            t = from + step * i as u32;
            live.last_frame = Some((t, 0));
            live.window.push_back((t, 500, 0));
            live.freeze.on_frame(t, 500, None, i as i64 * 9000);
        }
        t
    }

    #[test]
    fn a_blip_is_not_offline_but_a_dead_camera_is() {
        let video = VideoConfig::default();
        let e = entry();
        let t0 = e.started;
        let last = frames(&e, t0, 6.0, 10.0);
        let ev = check(&e, last, &video);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].kind, pb::CameraEventKind::Online as i32);
        assert_eq!(e.live().status, Status::Online);
        // A 2-second gap: still online, no event.
        assert!(check(&e, last + Duration::from_secs(2), &video).is_empty());
        // Past the offline delay: one offline event, naming the gap.
        let ev = check(&e, last + Duration::from_secs(6), &video);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].kind, pb::CameraEventKind::Offline as i32);
        assert!(
            ev[0].detail.contains("no frame for 6.0 s"),
            "{}",
            ev[0].detail
        );
        assert!(!ev[0].detail.contains("pw"));
        // Frames again: online event.
        let back = frames(&e, last + Duration::from_secs(7), 1.0, 10.0);
        let ev = check(&e, back, &video);
        assert_eq!(ev[0].kind, pb::CameraEventKind::Online as i32);
    }

    #[test]
    fn never_connected_goes_offline_after_the_delay() {
        let video = VideoConfig::default();
        let e = entry();
        assert!(check(&e, e.started + Duration::from_secs(1), &video).is_empty());
        let ev = check(&e, e.started + Duration::from_secs(6), &video);
        assert_eq!(ev[0].kind, pb::CameraEventKind::Offline as i32);
        assert!(ev[0].detail.starts_with("never connected"));
    }

    #[test]
    fn low_fps_is_degraded() {
        let video = VideoConfig::default();
        let e = entry();
        let last = frames(&e, e.started, 8.0, 4.0);
        check(&e, last, &video);
        assert_eq!(e.live().status, Status::Degraded);
    }
}
