//! Street cameras over RTSP (retina): one supervised task per camera, a shared registry of
//! their health and latest keyframes, and a health monitor that turns changes into camera
//! events for the correlator and the alert stream.
//!
//! Owns: the camera tasks (each in its own `camera` tracing span, cancelled through a child
//! of the root token), the connect admission semaphore, the registry and the monitor.
//! Invariants: a camera's task is the only writer of its frames and keyframe; adding or
//! removing cameras ([`Supervisor::reconcile`], on SIGHUP) touches no other camera; every
//! task is joined by [`Supervisor::shutdown`].
//!
//! Backpressure: the readers never wait on a consumer. The monitor sends camera events to
//! the correlator's bounded shard channels and waits when they are full (events are rare;
//! the frame readers are not affected). The live camera-event broadcast to subscribers drops
//! for a subscriber that lags (broadcast semantics), counted by the stream.

pub mod analytics;
pub mod camera;
pub mod health;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridsight_proto::v1 as pb;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use registry::{CameraEntry, Codec, Keyframe, Registry, Status};

use crate::config::{CameraConfig, VideoConfig};
use crate::correlate::{CameraRules, Router};
use crate::telemetry::Metrics;

struct Running {
    cfg: Arc<CameraConfig>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Supervises every camera.
pub struct Supervisor {
    video: Arc<VideoConfig>,
    registry: Registry,
    admit: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    running: HashMap<String, Running>,
    monitor: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the monitor; cameras come with [`Supervisor::reconcile`].
    pub fn start(
        video: VideoConfig,
        router: Router,
        events: broadcast::Sender<Arc<pb::CameraEvent>>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> Self {
        let video = Arc::new(video);
        let registry: Registry = Default::default();
        let monitor = tokio::spawn(
            monitor(
                video.clone(),
                registry.clone(),
                router,
                events,
                metrics.clone(),
                cancel.clone(),
            )
            .instrument(tracing::info_span!("camera_monitor")),
        );
        Self {
            admit: Arc::new(Semaphore::new(video.max_concurrent_connects.max(1))),
            video,
            registry,
            metrics,
            cancel,
            running: HashMap::new(),
            monitor: Some(monitor),
        }
    }

    /// The registry (read by the API and the snapshot taker).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Makes the running cameras match `cameras`: starts new ones, stops removed ones,
    /// restarts changed ones; leaves the others alone. Returns (started, stopped).
    pub async fn reconcile(&mut self, cameras: &[CameraConfig]) -> (usize, usize) {
        let wanted: HashMap<&str, &CameraConfig> = cameras
            .iter()
            .filter(|c| c.enabled)
            .map(|c| (c.id.as_str(), c))
            .collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| wanted.get(id.as_str()).is_none_or(|c| **c != *r.cfg))
            .map(|(id, _)| id.clone())
            .collect();
        let stopped = stale.len();
        for id in stale {
            if let Some(r) = self.running.remove(&id) {
                r.cancel.cancel();
                let _ = r.task.await;
                self.registry.remove(&id);
            }
        }
        let mut started = 0;
        let configured: HashSet<&str> = cameras.iter().map(|c| c.id.as_str()).collect();
        // Disabled cameras stay listed, with no task.
        for c in cameras.iter().filter(|c| !c.enabled) {
            self.registry
                .entry(c.id.clone())
                .or_insert_with(|| Arc::new(CameraEntry::new(Arc::new(c.clone()), 0)));
        }
        self.registry
            .retain(|id, _| configured.contains(id.as_str()));
        for c in cameras.iter().filter(|c| c.enabled) {
            if self.running.contains_key(&c.id) {
                continue;
            }
            let cfg = Arc::new(c.clone());
            let entry = Arc::new(CameraEntry::new(
                cfg.clone(),
                self.video.freeze_max_pframe_bytes,
            ));
            self.registry.insert(c.id.clone(), entry.clone());
            let cancel = self.cancel.child_token();
            let task = camera::CameraTask {
                entry,
                video: self.video.clone(),
                admit: self.admit.clone(),
                metrics: self.metrics.clone(),
            };
            let span = tracing::info_span!("camera", id = %c.id, url = %cfg.redacted_url());
            let handle = tokio::spawn(task.run(cancel.clone()).instrument(span));
            self.running.insert(
                c.id.clone(),
                Running {
                    cfg,
                    cancel,
                    task: handle,
                },
            );
            started += 1;
        }
        self.metrics.cameras_configured.set(cameras.len() as i64);
        (started, stopped)
    }

    /// Stops every camera and the monitor, and joins them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for (_, r) in self.running.drain() {
            let _ = r.task.await;
        }
        if let Some(m) = self.monitor.take() {
            let _ = m.await;
        }
    }
}

/// Who covers which grid, for the correlator.
pub fn camera_rules(video: &VideoConfig, cameras: &[CameraConfig]) -> CameraRules {
    let mut by_grid: HashMap<String, Vec<String>> = HashMap::new();
    for c in cameras {
        for g in &c.grids {
            by_grid.entry(g.clone()).or_default().push(c.id.clone());
        }
    }
    CameraRules {
        by_grid,
        offline_severity: video.offline_severity,
        freeze_severity: video.freeze_severity,
    }
}

/// Every `monitor_interval_ms`: evaluates each camera, sends its events, updates gauges.
async fn monitor(
    video: Arc<VideoConfig>,
    registry: Registry,
    router: Router,
    events: broadcast::Sender<Arc<pb::CameraEvent>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(video.monitor_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let entries: Vec<Arc<CameraEntry>> = registry.iter().map(|e| e.value().clone()).collect();
        let mut counts: HashMap<Status, i64> = HashMap::new();
        let mut out = Vec::new();
        for e in &entries {
            if e.cfg.enabled {
                out.extend(health::check(e, now, &video));
            }
            *counts.entry(e.live().status).or_default() += 1;
        }
        for s in [
            Status::Connecting,
            Status::Online,
            Status::Degraded,
            Status::Offline,
        ] {
            metrics
                .cameras
                .get_or_create(&crate::telemetry::StatusLabel { status: s.as_str() })
                .set(counts.get(&s).copied().unwrap_or(0));
        }
        for ev in out {
            metrics
                .camera_events
                .get_or_create(&crate::telemetry::ReasonLabel {
                    reason: kind_label(ev.kind).to_string(),
                })
                .inc();
            let _ = events.send(Arc::new(ev.clone()));
            if router.send_camera(ev).await.is_err() {
                return;
            }
        }
    }
}

fn kind_label(kind: i32) -> &'static str {
    use pb::CameraEventKind as K;
    match K::try_from(kind) {
        Ok(K::Online) => "online",
        Ok(K::Degraded) => "degraded",
        Ok(K::Offline) => "offline",
        Ok(K::Freeze) => "freeze",
        Ok(K::Unfreeze) => "unfreeze",
        Ok(K::Activity) => "activity",
        _ => "other",
    }
}
