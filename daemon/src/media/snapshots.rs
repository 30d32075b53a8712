//! Snapshots as the rest of the daemon uses them: of a camera's latest keyframe (API), and
//! of every camera shown with an alert, taken as the alert opens and stored with it.
//!
//! Invariants: the keyframe is taken from the registry at once (a pointer clone), so the
//! picture is the one of that moment even when the pool is busy; decoding runs in the
//! [`SnapshotPool`]'s worker threads, never on the runtime. Results are counted by outcome
//! in `gridsight_snapshots_total{reason}` and timed in `gridsight_snapshot_seconds`.

use std::sync::Arc;

use bytes::Bytes;
use gridsight_proto::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Jpeg, MediaError, SnapshotPool};
use crate::{
    sources::rtsp::{Keyframe, Registry},
    store::{Done, Record, Store, WriteItem},
    telemetry::{Metrics, ReasonLabel},
};

/// Why there is no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No such camera.
    #[error("camera {0} not found")]
    UnknownCamera(String),
    /// The camera has not delivered a keyframe yet.
    #[error("camera {0} has no picture yet")]
    NoKeyframe(String),
    /// The pool failed or refused.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// A JPEG and where it came from.
#[derive(Debug, Clone)]
pub struct Shot {
    /// The picture.
    pub jpeg: Bytes,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// When its keyframe arrived (ms since the Unix epoch).
    pub keyframe_ms: i64,
}

/// The snapshot maker shared by the APIs and the alert snapshot taker.
#[derive(Clone)]
pub struct Snapshots {
    /// The GStreamer worker pool.
    pub pool: Arc<SnapshotPool>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Snapshots {
    /// A JPEG of `camera`'s latest keyframe.
    pub async fn of_camera(&self, cameras: &Registry, camera: &str) -> Result<Shot, SnapshotError> {
        let entry = cameras
            .get(camera)
            .map(|e| e.value().clone())
            .ok_or_else(|| SnapshotError::UnknownCamera(camera.to_string()))?;
        let kf = entry.live().keyframe.clone();
        match kf {
            Some(kf) => Ok(self.of_keyframe(kf).await?),
            None => {
                self.count("no_keyframe");
                Err(SnapshotError::NoKeyframe(camera.to_string()))
            }
        }
    }

    /// A JPEG of `kf`.
    pub async fn of_keyframe(&self, kf: Keyframe) -> Result<Shot, MediaError> {
        match self.pool.snapshot(kf.codec, kf.data).await {
            Ok(Jpeg {
                bytes,
                width,
                height,
                took,
            }) => {
                self.count("ok");
                self.metrics.snapshot_seconds.observe(took.as_secs_f64());
                Ok(Shot {
                    jpeg: bytes,
                    width,
                    height,
                    keyframe_ms: kf.at_ms,
                })
            }
            Err(e) => {
                self.count(match e {
                    MediaError::Busy => "busy",
                    MediaError::Timeout => "timeout",
                    MediaError::Decode(_) => "decode",
                    _ => "error",
                });
                Err(e)
            }
        }
    }

    fn count(&self, reason: &str) {
        self.metrics
            .snapshots
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Takes the pictures of every newly opened alert that lists cameras, and stores them
/// under the alert's snapshot references. Runs until `cancel`.
pub async fn take_alert_snapshots(
    snapshots: Snapshots,
    cameras: Registry,
    store: Store,
    cancel: CancellationToken,
) {
    let mut changes = store.subscribe();
    let mut takers = tokio::task::JoinSet::new();
    loop {
        while takers.try_join_next().is_some() {}
        let change = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            c = changes.recv() => match c {
                Ok(c) => c,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "alert snapshot taker lagged; pictures of those alerts are skipped");
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
        };
        if change.kind != pb::ChangeKind::Opened as i32 {
            continue;
        }
        let Some(alert) = change.alert.as_ref() else {
            continue;
        };
        for r in &alert.snapshots {
            // The keyframe of this moment, even if the pool takes a while.
            let kf = cameras
                .get(&r.camera_id)
                .and_then(|e| e.live().keyframe.clone());
            let Some(kf) = kf else {
                continue;
            };
            let (snapshots, store) = (snapshots.clone(), store.clone());
            let (alert_id, camera_id) = (alert.id.clone(), r.camera_id.clone());
            takers.spawn(async move {
                match snapshots.of_keyframe(kf).await {
                    Ok(shot) => {
                        let _ = store
                            .write(WriteItem {
                                records: vec![Record::Snapshot {
                                    alert_id,
                                    camera_id,
                                    taken_ms: shot.keyframe_ms,
                                    jpeg: shot.jpeg,
                                }],
                                done: Done::Nothing,
                            })
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(alert = %alert_id, camera = %camera_id, error = %e, "alert snapshot failed")
                    }
                }
            });
        }
    }
    // Pictures already being made are finished and stored.
    while takers.join_next().await.is_some() {}
}
