//! The worker pool: OS threads (GStreamer calls block, so they stay off the async runtime),
//! one bounded queue, one oneshot reply per job, counters for metrics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::{oneshot, watch};

use super::pipeline::{Frame, SnapshotPipeline};
use super::{annexb, warmup_keyframe, Codec, Jpeg, MediaError, SnapshotConfig};

/// How long a worker may spend warming up one codec at start.
const WARM_UP_DEADLINE: Duration = Duration::from_secs(10);

/// Counters since the pool started, for metrics. Each `snapshot` call counts exactly once
/// in `ok`, `busy`, `timeout`, `decode_errors` or `other_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub ok: u64,
    pub busy: u64,
    pub timeout: u64,
    pub decode_errors: u64,
    /// Pipeline failures (missing plugin, state change) and calls after shutdown.
    pub other_errors: u64,
    /// Pipelines thrown away and built again after an error or a timeout.
    pub rebuilds: u64,
    /// Jobs skipped by a worker because their caller had already given up.
    pub abandoned: u64,
    /// Jobs accepted and not finished yet (queued or being worked on).
    pub in_flight: usize,
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    busy: AtomicU64,
    timeout: AtomicU64,
    decode_errors: AtomicU64,
    other_errors: AtomicU64,
    rebuilds: AtomicU64,
    abandoned: AtomicU64,
    in_flight: AtomicUsize,
}

impl Counters {
    fn count<T>(&self, result: &Result<T, MediaError>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(MediaError::Busy) => &self.busy,
            Err(MediaError::Timeout) => &self.timeout,
            Err(MediaError::Decode(_)) => &self.decode_errors,
            Err(_) => &self.other_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Decrements `in_flight` when the job is finished, dropped unsent, or dropped at shutdown.
struct InFlight(Arc<Counters>);

impl InFlight {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Job {
    codec: Codec,
    keyframe: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Result<Frame, MediaError>>,
    _in_flight: InFlight,
}

/// A bounded pool of snapshot workers. Cheap to share behind an `Arc`.
///
/// Dropping it (or [`shutdown`](Self::shutdown)) closes the queue, lets the workers finish
/// what is queued, and joins them: that blocks for at most about one job per worker, so call
/// it from a blocking context (or at the end of `main`), not inside a busy async task.
pub struct SnapshotPool {
    config: SnapshotConfig,
    queue: RwLock<Option<Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    counters: Arc<Counters>,
    warm: watch::Receiver<usize>,
}

impl SnapshotPool {
    /// Initialise GStreamer, start `config.workers` threads. Each worker builds and warms up
    /// one pipeline per codec before it takes jobs (see [`warm_up`](Self::warm_up)).
    pub fn new(config: SnapshotConfig) -> Result<Self, MediaError> {
        config.validate()?;
        super::init()?;
        // Backpressure policy: the queue holds at most `config.queue` waiting jobs. When it is
        // full, `snapshot` fails at once with `Busy` (counted) instead of waiting: a snapshot
        // is an interactive request, and a late picture is worth less than a quick 503.
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.queue);
        let counters = Arc::new(Counters::default());
        let (warm_tx, warm) = watch::channel(0usize);
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let worker = Worker {
                rx: rx.clone(),
                config: config.clone(),
                counters: Arc::clone(&counters),
                warm: warm_tx.clone(),
                pipelines: [None, None],
            };
            let handle = std::thread::Builder::new()
                .name(format!("snapshot-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| MediaError::Pipeline(format!("spawn worker: {e}")))?;
            workers.push(handle);
        }
        Ok(Self {
            config,
            queue: RwLock::new(Some(tx)),
            workers: Mutex::new(workers),
            counters,
            warm,
        })
    }

    pub fn config(&self) -> &SnapshotConfig {
        &self.config
    }

    /// Resolves when every worker has built and exercised its pipelines (plugin loading,
    /// decoder set-up: ≈100 ms), so the first user-facing snapshot does not pay for it.
    /// Optional: jobs submitted earlier simply wait in the queue.
    pub async fn warm_up(&self) {
        let workers = self.config.workers;
        let mut warm = self.warm.clone();
        // Err only if every worker is gone; then there is nothing left to wait for.
        let _ = warm.wait_for(|n| *n >= workers).await;
    }

    /// Turn one keyframe (Annex B, parameter sets in front) into a JPEG.
    ///
    /// Never blocks the runtime: the job is queued with `try_send` (`Busy` when the queue is
    /// full) and the reply is awaited until the deadline (`Timeout`).
    pub async fn snapshot(&self, codec: Codec, keyframe: Bytes) -> Result<Jpeg, MediaError> {
        let started = Instant::now();
        let result = self.submit(codec, keyframe, started).await;
        self.counters.count(&result);
        result.map(|frame| Jpeg {
            bytes: frame.bytes,
            width: frame.width,
            height: frame.height,
            took: started.elapsed(),
        })
    }

    async fn submit(
        &self,
        codec: Codec,
        keyframe: Bytes,
        started: Instant,
    ) -> Result<Frame, MediaError> {
        let deadline = started + self.config.timeout;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            codec,
            keyframe,
            deadline,
            reply,
            _in_flight: InFlight::new(&self.counters),
        };
        {
            let queue = self.queue.read().unwrap_or_else(|e| e.into_inner());
            let Some(queue) = queue.as_ref() else {
                return Err(MediaError::ShutDown);
            };
            match queue.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(MediaError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(MediaError::ShutDown),
            }
        }
        match tokio::time::timeout_at(deadline.into(), answer).await {
            Ok(Ok(result)) => result,
            // Workers answer every job they take, even while shutting down: a dropped reply
            // means the worker thread died.
            Ok(Err(_)) => Err(MediaError::Pipeline("snapshot worker stopped".into())),
            Err(_) => Err(MediaError::Timeout),
        }
    }

    pub fn stats(&self) -> SnapshotStats {
        let c = &self.counters;
        SnapshotStats {
            ok: c.ok.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            timeout: c.timeout.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
            other_errors: c.other_errors.load(Ordering::Relaxed),
            rebuilds: c.rebuilds.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Close the queue, let the workers finish what is queued, join them. Idempotent; later
    /// `snapshot` calls fail with `ShutDown`. Blocks (see the type's documentation).
    pub fn shutdown(&self) {
        self.queue.write().unwrap_or_else(|e| e.into_inner()).take();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in workers {
            if handle.join().is_err() {
                tracing::error!("snapshot worker panicked");
            }
        }
    }
}

impl Drop for SnapshotPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    rx: Receiver<Job>,
    config: SnapshotConfig,
    counters: Arc<Counters>,
    warm: watch::Sender<usize>,
    /// One per codec, indexed by `Codec::index`; `None` until built or after an error.
    pipelines: [Option<SnapshotPipeline>; 2],
}

impl Worker {
    fn run(mut self) {
        for codec in Codec::ALL {
            let deadline = Instant::now() + WARM_UP_DEADLINE;
            if let Err(error) = self.decode(codec, &warmup_keyframe(codec), deadline) {
                tracing::warn!(%codec, %error, "snapshot warm-up failed");
            }
            self.prepare(codec);
        }
        self.warm.send_modify(|n| *n += 1);

        while let Ok(job) = self.rx.recv() {
            let Job {
                codec,
                keyframe,
                deadline,
                reply,
                _in_flight: in_flight,
            } = job;
            if reply.is_closed() {
                self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let result = if Instant::now() >= deadline {
                Err(MediaError::Timeout)
            } else {
                self.decode(codec, &keyframe, deadline)
            };
            // Finished before the caller can see it, so `in_flight` never lags a reply.
            drop(in_flight);
            let _ = reply.send(result);
            // After the reply: get the pipeline ready for the next job.
            self.prepare(codec);
        }
    }

    fn decode(
        &mut self,
        codec: Codec,
        keyframe: &Bytes,
        deadline: Instant,
    ) -> Result<Frame, MediaError> {
        annexb::check_keyframe(codec, keyframe)?;
        let slot = &mut self.pipelines[codec.index()];
        let pipeline = match slot {
            Some(pipeline) => pipeline,
            None => slot.insert(SnapshotPipeline::new(codec, &self.config)?),
        };
        match pipeline.run(keyframe, deadline) {
            Ok(frame) => Ok(frame),
            Err(failure) => {
                if failure.rebuild {
                    tracing::debug!(%codec, error = %failure.error, "dropping snapshot pipeline");
                    *slot = None;
                    self.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
                }
                Err(failure.error)
            }
        }
    }

    /// Reset the used pipeline, or build it again if it was dropped after an error.
    fn prepare(&mut self, codec: Codec) {
        let slot = &mut self.pipelines[codec.index()];
        let outcome = match slot {
            Some(pipeline) => pipeline.reset(),
            None => SnapshotPipeline::new(codec, &self.config).map(|p| {
                *slot = Some(p);
            }),
        };
        if let Err(error) = outcome {
            tracing::warn!(%codec, %error, "snapshot pipeline not ready; retrying on next job");
            *slot = None;
        }
    }
}
