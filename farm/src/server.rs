//! The farm itself: configuration, start-up (clips, listener, accept loop), and the handle
//! tests and the binary use to address mounts, inject faults, read counters and shut down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clip::cache::ClipCache;
use crate::clip::{Clip, ClipSpec, Content};
use crate::mount::{ContentSchedule, Fault, MountConfig, MountState, MountStats};
use crate::session::{self, Shared};
use crate::FarmError;

/// How the farm is set up.
#[derive(Clone, Debug)]
pub struct FarmConfig {
    /// Where to listen; port 0 picks a free one. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Picture width of every mount. Default 640.
    pub width: u32,
    /// Picture height of every mount. Default 360.
    pub height: u32,
    /// Seconds between keyframes. Default 2.
    pub gop_secs: u32,
    /// Length of the replayed loop in seconds. Default 4.
    pub clip_secs: u32,
    /// Where encoded clips are cached; default [`ClipCache::default_dir`].
    pub clip_dir: Option<PathBuf>,
    /// `timeout=` announced in the `Session` header. Default 60.
    pub session_timeout_secs: u32,
    /// The mounts.
    pub mounts: Vec<MountConfig>,
}

impl FarmConfig {
    /// Defaults with these mounts.
    pub fn new(mounts: Vec<MountConfig>) -> Self {
        FarmConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            width: 640,
            height: 360,
            gop_secs: 2,
            clip_secs: 4,
            clip_dir: None,
            session_timeout_secs: 60,
            mounts,
        }
    }

    /// `n` healthy mounts `cam0001`, `cam0002`, ... at `fps` showing `content`.
    pub fn uniform(n: usize, fps: u32, content: ContentSchedule) -> Self {
        Self::new(
            (1..=n)
                .map(|i| MountConfig::new(mount_name(i), fps).with_content(content))
                .collect(),
        )
    }

    /// The clip spec a mount at `fps` showing `content` uses.
    pub fn clip_spec(&self, content: Content, fps: u32) -> ClipSpec {
        let mut spec = ClipSpec::new(content, self.width, self.height, fps);
        spec.gop_secs = self.gop_secs.max(1);
        spec.clip_secs = self.clip_secs.max(spec.gop_secs);
        spec
    }
}

/// The name of the `i`-th mount of [`FarmConfig::uniform`] (1-based): `cam0001`.
pub fn mount_name(i: usize) -> String {
    format!("cam{i:04}")
}

/// Entry point: see [`Farm::start`].
#[derive(Debug)]
pub struct Farm;

impl Farm {
    /// Prepares the clips (from cache or encoded now, on a blocking thread), binds the
    /// listener and starts serving. The returned handle stops the farm when dropped.
    pub async fn start(config: FarmConfig) -> Result<FarmHandle, FarmError> {
        let mut seen = std::collections::HashSet::new();
        for m in &config.mounts {
            m.validate().map_err(FarmError::Config)?;
            if !seen.insert(m.name.as_str()) {
                return Err(FarmError::Config(format!("duplicate mount {:?}", m.name)));
            }
        }
        let cfg = config.clone();
        let clips = tokio::task::spawn_blocking(move || prepare_clips(&cfg))
            .await
            .map_err(|e| FarmError::Gstreamer(format!("clip task failed: {e}")))??;
        let mut mounts = HashMap::with_capacity(config.mounts.len());
        for m in &config.mounts {
            let (still, busy) = clips
                .get(&m.fps)
                .cloned()
                .ok_or_else(|| FarmError::Config("missing clip".into()))?;
            mounts.insert(m.name.clone(), Arc::new(MountState::new(m, still, busy)));
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| FarmError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| FarmError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            mounts,
            session_timeout_secs: config.session_timeout_secs.max(1),
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        tracing::info!(%addr, mounts = shared.mounts.len(), "camera farm listening");
        Ok(FarmHandle {
            addr,
            shared,
            cancel,
            tracker,
            accept: Some(accept),
        })
    }
}

type ClipPair = (Arc<Clip>, Arc<Clip>);

fn prepare_clips(config: &FarmConfig) -> Result<HashMap<u32, ClipPair>, FarmError> {
    let cache = ClipCache::new(
        config
            .clip_dir
            .clone()
            .unwrap_or_else(ClipCache::default_dir),
    );
    let mut out = HashMap::new();
    for m in &config.mounts {
        if out.contains_key(&m.fps) {
            continue;
        }
        let still = cache.get(&config.clip_spec(Content::Still, m.fps))?;
        let busy = cache.get(&config.clip_spec(Content::Busy, m.fps))?;
        out.insert(m.fps, (still, busy));
    }
    Ok(out)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tracker.spawn(session::serve(stream, shared.clone(), cancel.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A running farm. Dropping it stops the farm (without waiting); prefer
/// [`FarmHandle::shutdown`].
#[derive(Debug)]
pub struct FarmHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    accept: Option<JoinHandle<()>>,
}

impl FarmHandle {
    /// The address the farm listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `rtsp://IP:PORT/<mount>`.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://{}/{mount}", self.addr)
    }

    /// Names of all mounts (unordered).
    pub fn mounts(&self) -> Vec<String> {
        self.shared.mounts.keys().cloned().collect()
    }

    fn mount(&self, mount: &str) -> Result<&Arc<MountState>, FarmError> {
        self.shared
            .mounts
            .get(mount)
            .ok_or_else(|| FarmError::NoSuchMount(mount.to_string()))
    }

    /// Changes a mount's fault; running sessions see it at their next frame or request.
    pub fn set_fault(&self, mount: &str, fault: Fault) -> Result<(), FarmError> {
        self.mount(mount)?.settings.send_modify(|s| {
            s.fault = fault;
            s.fault_since = Instant::now();
        });
        Ok(())
    }

    /// Changes a mount's content (a fixed content or an alternating schedule, whose phase
    /// starts now); running sessions switch at their next frame, starting at a keyframe.
    pub fn set_content(
        &self,
        mount: &str,
        content: impl Into<ContentSchedule>,
    ) -> Result<(), FarmError> {
        let content = content.into();
        self.mount(mount)?.settings.send_modify(|s| {
            s.content = content;
            s.content_since = Instant::now();
        });
        Ok(())
    }

    /// The mount's counters.
    pub fn stats(&self, mount: &str) -> Result<MountStats, FarmError> {
        Ok(self.mount(mount)?.counters.snapshot())
    }

    /// Counters summed over all mounts (`active_sessions` included).
    pub fn total_stats(&self) -> MountStats {
        let mut t = MountStats::default();
        for m in self.shared.mounts.values() {
            let s = m.counters.snapshot();
            t.connections += s.connections;
            t.sessions_opened += s.sessions_opened;
            t.active_sessions += s.active_sessions;
            t.frames_sent += s.frames_sent;
            t.garbage_sent += s.garbage_sent;
            t.media_bytes += s.media_bytes;
            t.auth_failures += s.auth_failures;
        }
        t
    }

    /// The clip a mount replays for `content` (for tests comparing sizes).
    pub fn clip(&self, mount: &str, content: Content) -> Result<Arc<Clip>, FarmError> {
        Ok(self.mount(mount)?.clip(content).clone())
    }

    /// Stops accepting, closes every connection and waits for their tasks to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for FarmHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
