//! Metrics (Prometheus text format, served on `/metrics`) and log setup.
//!
//! Owns the one [`Metrics`] registry of the process. Counters are plain atomics, so
//! incrementing them on the hot path costs no lock; labelled families are only used on
//! rare paths (rejections, auth failures). Gauges of queue depths are set when scraped.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::config::LogFormat;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// `api` and `reason` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiReasonLabel {
    /// `grpc`, `http` or `mqtt`.
    pub api: String,
    /// Why.
    pub reason: String,
}

/// `call` and `token` labels (token names come from the config: a bounded set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    /// `report`, `subscribe`, `streams`.
    pub call: String,
    /// The token's (or client certificate's) name.
    pub token: String,
}

/// A `shard` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard number.
    pub shard: String,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// MQTT messages received (any topic, any content).
    pub mqtt_received: Counter,
    /// MQTT messages made durable (stored events and dead letters).
    pub mqtt_stored: Counter,
    /// MQTT messages acknowledged to the broker (QoS 1) after being durable.
    pub mqtt_acked: Counter,
    /// MQTT messages rejected, by reason.
    pub mqtt_rejected: Family<ReasonLabel, Counter>,
    /// Redelivered MQTT messages recognised as already handled.
    pub mqtt_duplicates: Counter,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Connections to the broker lost.
    pub mqtt_disconnects: Counter,
    /// Incidents accepted by `Report` (new ones only).
    pub incidents_reported: Counter,
    /// Lifecycle steps taken by `Transition`, by the status stepped to.
    pub incident_steps: Family<StepLabel, Counter>,
    /// Incidents found past their deadline (each raised a supervision alert).
    pub incidents_overdue: Counter,
    /// Alerts opened.
    pub alerts_opened: Counter,
    /// Alert changes committed (open, update, acknowledge, resolve).
    pub alert_changes: Counter,
    /// Store transactions committed.
    pub store_commits: Counter,
    /// Store transactions that failed (and were retried).
    pub store_commit_errors: Counter,
    /// 1 while the store's commits fail (a full or read-only disk): nothing is
    /// acknowledged or published until it is back to 0.
    pub store_failing: Gauge,
    /// Write items the store refused for good (a constraint, a value too big): each was
    /// answered with an error (or its MQTT packets acknowledged) and logged, not retried.
    pub store_rejected: Counter,
    /// Time to commit one batch.
    pub store_commit_seconds: Histogram,
    /// From an event's arrival to its alert change being durable and on the bus.
    pub alert_latency_seconds: Histogram,
    /// Items queued for the store writer.
    pub store_queue_depth: Gauge,
    /// Events queued per correlator shard.
    pub shard_queue_depth: Family<ShardLabel, Gauge>,
    /// Open alert subscriptions (gRPC).
    pub subscribers: Gauge,
    /// Subscriptions cut off because their client stopped reading.
    pub subscribers_cut: Counter,
    /// Alert changes a subscription's feed had no room for (it catches up from the log).
    pub fanout_lagged: Counter,
    /// Camera events a subscription's feed had no room for (live only: lost to it).
    pub fanout_camera_dropped: Counter,
    /// Tasks alive on the daemon's runtimes (its own and the APIs'; set when scraped): flat
    /// over days, or a leak.
    pub tasks: Gauge,
    /// The runtimes `tasks` counts (none registered: the one scraping).
    runtimes: std::sync::Mutex<Vec<tokio::runtime::Handle>>,
    /// The process's resident memory (bytes, from /proc; set when scraped).
    pub resident_memory_bytes: Gauge,
    /// The process's open file descriptors (sockets included; set when scraped, counted at
    /// most once a second).
    pub open_fds: Gauge,
    /// Memory SQLite holds (bytes; set when scraped): mostly page caches, the writer's up
    /// to 64 MiB, so part of the resident memory that fills up and then stays.
    pub store_memory_bytes: Gauge,
    /// When `open_fds` was last counted.
    fds_counted_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// Requests refused for a missing or wrong token, or a role that may not.
    pub auth_failures: Family<ReasonLabel, Counter>,
    /// TLS handshakes that failed or timed out, by listener and reason.
    pub tls_handshake_failures: Family<ApiReasonLabel, Counter>,
    /// Calls refused by a per-token limit, by call and token.
    pub rate_limited: Family<CallLabel, Counter>,
    /// SIGHUP reloads, by result (`ok`, `invalid`).
    pub config_reloads: Family<ReasonLabel, Counter>,
    /// Cameras in the configuration.
    pub cameras_configured: Gauge,
    /// Cameras by health status.
    pub cameras: Family<StatusLabel, Gauge>,
    /// Video frames received from all cameras.
    pub camera_frames: Counter,
    /// Video bytes received from all cameras.
    pub camera_bytes: Counter,
    /// Camera connections lost after playing.
    pub camera_reconnects: Counter,
    /// Camera streams dropped for a frame timeout.
    pub camera_stalls: Counter,
    /// Camera connection attempts that ended, by reason.
    pub camera_connect_errors: Family<ReasonLabel, Counter>,
    /// RTP timestamp jumps seen.
    pub camera_timestamp_jumps: Counter,
    /// Camera events (online, offline, freeze, activity...), by kind.
    pub camera_events: Family<ReasonLabel, Counter>,
    /// Snapshots made, by result (ok, busy, timeout, decode, no_keyframe).
    pub snapshots: Family<ReasonLabel, Counter>,
    /// Time to make one snapshot (keyframe to JPEG).
    pub snapshot_seconds: Histogram,
    /// Silences in force now (refreshed on every change and every minute).
    pub silences_active: Gauge,
    /// Silences created.
    pub silences_created: Counter,
    /// Silences ended early by `Expire`.
    pub silences_expired: Counter,
    /// Alert changes published to MQTT and acknowledged by the broker.
    pub mqtt_alerts_published: Counter,
    /// Alert changes not published to MQTT, by reason (`lagged`, `queue_full`).
    pub mqtt_alerts_dropped: Family<ReasonLabel, Counter>,
}

/// The status an incident stepped to, e.g. `DISPATCHED`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    /// The status.
    pub to: &'static str,
}

/// Label of a status gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status.
    pub status: &'static str,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("gridsight"),
            mqtt_received: Counter::default(),
            mqtt_stored: Counter::default(),
            mqtt_acked: Counter::default(),
            mqtt_rejected: Family::default(),
            mqtt_duplicates: Counter::default(),
            mqtt_connected: Gauge::default(),
            mqtt_disconnects: Counter::default(),
            incidents_reported: Counter::default(),
            incident_steps: Family::default(),
            incidents_overdue: Counter::default(),
            alerts_opened: Counter::default(),
            alert_changes: Counter::default(),
            store_commits: Counter::default(),
            store_commit_errors: Counter::default(),
            store_failing: Gauge::default(),
            store_rejected: Counter::default(),
            cameras_configured: Gauge::default(),
            cameras: Family::default(),
            camera_frames: Counter::default(),
            camera_bytes: Counter::default(),
            camera_reconnects: Counter::default(),
            camera_stalls: Counter::default(),
            camera_connect_errors: Family::default(),
            camera_timestamp_jumps: Counter::default(),
            camera_events: Family::default(),
            snapshots: Family::default(),
            snapshot_seconds: Histogram::new([
                0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
            ]),
            store_commit_seconds: Histogram::new([
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
            alert_latency_seconds: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
            ]),
            store_queue_depth: Gauge::default(),
            shard_queue_depth: Family::default(),
            subscribers: Gauge::default(),
            subscribers_cut: Counter::default(),
            fanout_lagged: Counter::default(),
            fanout_camera_dropped: Counter::default(),
            tasks: Gauge::default(),
            runtimes: std::sync::Mutex::new(Vec::new()),
            resident_memory_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            store_memory_bytes: Gauge::default(),
            fds_counted_at: std::sync::Mutex::new(None),
            auth_failures: Family::default(),
            tls_handshake_failures: Family::default(),
            rate_limited: Family::default(),
            config_reloads: Family::default(),
            silences_active: Gauge::default(),
            silences_created: Counter::default(),
            silences_expired: Counter::default(),
            mqtt_alerts_published: Counter::default(),
            mqtt_alerts_dropped: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "mqtt_messages_received",
            "MQTT messages received",
            m.mqtt_received.clone(),
        );
        r.register(
            "mqtt_messages_stored",
            "MQTT messages made durable (events and dead letters)",
            m.mqtt_stored.clone(),
        );
        r.register(
            "mqtt_messages_acked",
            "MQTT QoS 1 messages acknowledged after being durable",
            m.mqtt_acked.clone(),
        );
        r.register(
            "mqtt_messages_rejected",
            "MQTT messages rejected, by reason",
            m.mqtt_rejected.clone(),
        );
        r.register(
            "mqtt_duplicates",
            "Redelivered MQTT messages already handled",
            m.mqtt_duplicates.clone(),
        );
        r.register(
            "mqtt_connected",
            "1 while connected to the MQTT broker",
            m.mqtt_connected.clone(),
        );
        r.register(
            "mqtt_disconnects",
            "Connections to the MQTT broker lost",
            m.mqtt_disconnects.clone(),
        );
        r.register(
            "incidents_reported",
            "New incidents accepted",
            m.incidents_reported.clone(),
        );
        r.register(
            "incident_steps",
            "Incident lifecycle steps taken, by the status stepped to",
            m.incident_steps.clone(),
        );
        r.register(
            "incidents_overdue",
            "Incidents found past their deadline (a supervision alert each)",
            m.incidents_overdue.clone(),
        );
        r.register("alerts_opened", "Alerts opened", m.alerts_opened.clone());
        r.register(
            "alert_changes",
            "Alert changes committed",
            m.alert_changes.clone(),
        );
        r.register(
            "store_commits",
            "Store transactions committed",
            m.store_commits.clone(),
        );
        r.register(
            "store_commit_errors",
            "Store transactions failed and retried",
            m.store_commit_errors.clone(),
        );
        r.register(
            "store_failing",
            "1 while store commits fail (full or read-only disk); acknowledgements wait",
            m.store_failing.clone(),
        );
        r.register(
            "store_rejected",
            "Write items refused for good by the store (logged, answered with an error)",
            m.store_rejected.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time to commit one batch",
            m.store_commit_seconds.clone(),
        );
        r.register(
            "alert_latency_seconds",
            "From an event's arrival to its alert change being durable and streamed",
            m.alert_latency_seconds.clone(),
        );
        r.register(
            "store_queue_depth",
            "Items queued for the store writer",
            m.store_queue_depth.clone(),
        );
        r.register(
            "shard_queue_depth",
            "Events queued per correlator shard",
            m.shard_queue_depth.clone(),
        );
        r.register(
            "subscribers",
            "Open alert subscriptions",
            m.subscribers.clone(),
        );
        r.register(
            "subscribers_cut",
            "Subscriptions cut off because their client read nothing for api.limits.subscriber_stall_secs",
            m.subscribers_cut.clone(),
        );
        r.register(
            "fanout_lagged",
            "Alert changes a subscription's queue had no room for; it caught up from the change log",
            m.fanout_lagged.clone(),
        );
        r.register(
            "fanout_camera_events_dropped",
            "Camera events a subscription's queue had no room for (live only: that subscriber missed them)",
            m.fanout_camera_dropped.clone(),
        );
        r.register(
            "tasks",
            "Tasks alive on the daemon's runtime",
            m.tasks.clone(),
        );
        r.register(
            "resident_memory_bytes",
            "Resident memory of the process (bytes)",
            m.resident_memory_bytes.clone(),
        );
        r.register(
            "open_fds",
            "Open file descriptors of the process",
            m.open_fds.clone(),
        );
        r.register(
            "store_memory_bytes",
            "Memory SQLite holds, page caches included (bytes; part of the resident memory)",
            m.store_memory_bytes.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused by authentication or role",
            m.auth_failures.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener and reason",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "rate_limited",
            "Calls refused by a per-token limit, by call and token",
            m.rate_limited.clone(),
        );
        r.register(
            "config_reloads",
            "SIGHUP config reloads, by result",
            m.config_reloads.clone(),
        );
        r.register(
            "cameras_configured",
            "Cameras in the configuration",
            m.cameras_configured.clone(),
        );
        r.register("cameras", "Cameras by health status", m.cameras.clone());
        r.register(
            "camera_frames",
            "Video frames received",
            m.camera_frames.clone(),
        );
        r.register(
            "camera_bytes",
            "Video bytes received",
            m.camera_bytes.clone(),
        );
        r.register(
            "camera_reconnects",
            "Camera connections lost after playing",
            m.camera_reconnects.clone(),
        );
        r.register(
            "camera_stalls",
            "Camera streams dropped for a frame timeout",
            m.camera_stalls.clone(),
        );
        r.register(
            "camera_connect_errors",
            "Camera connection attempts that ended, by reason",
            m.camera_connect_errors.clone(),
        );
        r.register(
            "camera_timestamp_jumps",
            "RTP timestamp jumps seen",
            m.camera_timestamp_jumps.clone(),
        );
        r.register(
            "camera_events",
            "Camera events by kind",
            m.camera_events.clone(),
        );
        r.register(
            "snapshots",
            "Snapshots made, by result",
            m.snapshots.clone(),
        );
        r.register(
            "snapshot_seconds",
            "Time to make one snapshot",
            m.snapshot_seconds.clone(),
        );
        r.register(
            "silences_active",
            "Silences in force now",
            m.silences_active.clone(),
        );
        r.register(
            "silences_created",
            "Silences created",
            m.silences_created.clone(),
        );
        r.register(
            "silences_expired",
            "Silences ended early by Expire",
            m.silences_expired.clone(),
        );
        r.register(
            "mqtt_alerts_published",
            "Alert changes published to MQTT and acknowledged by the broker",
            m.mqtt_alerts_published.clone(),
        );
        r.register(
            "mqtt_alerts_dropped",
            "Alert changes not published to MQTT, by reason",
            m.mqtt_alerts_dropped.clone(),
        );
        m.zero_labels();
        m
    }

    /// Counts a rejected MQTT message.
    pub fn reject(&self, reason: &str) {
        self.mqtt_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refused request.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a failed TLS handshake on `api`.
    pub fn tls_failure(&self, api: &str, reason: &str) {
        self.tls_handshake_failures
            .get_or_create(&ApiReasonLabel {
                api: api.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Sets every bounded label set to 0, so that each series exists from the start: a
    /// dashboard or alert rule sees 0 rather than no data, and `rate()` sees the first
    /// increment. Called once by [`Metrics::new`].
    fn zero_labels(&self) {
        for reason in crate::sources::mqtt::payload::REASONS {
            let _ = self.mqtt_rejected.get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            });
        }
        for reason in ["missing", "invalid", "unlisted_cert", "forbidden"] {
            let _ = self.auth_failures.get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            });
        }
        for api in ["grpc", "http"] {
            for reason in ["certificate", "not_tls", "closed", "timeout", "other"] {
                let _ = self.tls_handshake_failures.get_or_create(&ApiReasonLabel {
                    api: api.to_string(),
                    reason: reason.to_string(),
                });
            }
        }
    }

    /// Zero series of the per-token limits for these token names (at start and reload).
    pub fn known_callers<'a>(&self, names: impl Iterator<Item = &'a str>) {
        for token in names {
            for call in ["report", "subscribe", "streams"] {
                let _ = self.rate_limited.get_or_create(&CallLabel {
                    call: call.to_string(),
                    token: token.to_string(),
                });
            }
        }
    }

    /// Counts a call refused by a per-token limit.
    pub fn limited(&self, call: &str, token: &str) {
        self.rate_limited
            .get_or_create(&CallLabel {
                call: call.to_string(),
                token: token.to_string(),
            })
            .inc();
    }

    /// Counts the tasks of `runtime` in `gridsight_tasks` too (the daemon registers each of
    /// its runtimes).
    pub fn count_tasks_of(&self, runtime: tokio::runtime::Handle) {
        let mut rts = self.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        if !rts.iter().any(|h| h.id() == runtime.id()) {
            rts.push(runtime);
        }
    }

    /// Samples the process gauges: runtime tasks, resident memory, SQLite's memory, open
    /// descriptors. Called when scraped.
    pub fn sample_process(&self) {
        self.store_memory_bytes.set(crate::store::memory_used());
        let alive = |h: &tokio::runtime::Handle| h.metrics().num_alive_tasks() as i64;
        let rts = self.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        if rts.is_empty() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                self.tasks.set(alive(&h));
            }
        } else {
            self.tasks.set(rts.iter().map(alive).sum());
        }
        drop(rts);
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                self.resident_memory_bytes.set(kb * 1024);
            }
        }
        // Counting walks /proc/self/fd, one entry per socket: at most once a second,
        // however often the metrics are scraped.
        let due = {
            let mut at = self
                .fds_counted_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = at.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
            if due {
                *at = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                self.open_fds.set(fds.count() as i64);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets up `tracing` once: text or JSON lines to stderr; `RUST_LOG` overrides `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logs at most once per `every` for a given key: for floods of the same error.
pub struct RateLimit {
    every: std::time::Duration,
    last: std::sync::Mutex<std::collections::HashMap<&'static str, (std::time::Instant, u64)>>,
}

impl RateLimit {
    /// At most one line per key per `every`.
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            last: Default::default(),
        }
    }

    /// `Some(suppressed)` when a line may be logged now (with how many were suppressed
    /// since the last one), `None` when it should be dropped.
    pub fn check(&self, key: &'static str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut map = self.last.lock().ok()?;
        match map.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                map.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod process_tests {
    #[tokio::test]
    async fn the_process_gauges_read_this_process() {
        let m = super::Metrics::new();
        let _held = tokio::spawn(std::future::pending::<()>());
        // An open database with a row in it: SQLite holds some memory for it.
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        m.sample_process();
        assert!(
            m.store_memory_bytes.get() > 100_000,
            "SQLite's memory: {}",
            m.store_memory_bytes.get()
        );
        assert!(m.tasks.get() >= 1, "the pending task is alive");
        assert!(
            m.resident_memory_bytes.get() > 1 << 20,
            "more than 1 MiB resident"
        );
        assert!(m.open_fds.get() >= 3, "stdin, stdout, stderr at least");
        let text = m.encode();
        assert!(text.contains("gridsight_resident_memory_bytes "), "{text}");
        assert!(text.contains("gridsight_store_memory_bytes "), "{text}");
        drop(db);
    }
}
