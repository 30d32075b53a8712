//! Wires the pipeline together and runs it until the root shutdown token is cancelled.
//!
//! Start order: store (and its writer) → correlator shards (restoring open alerts) → APIs
//! → MQTT ingest. Stop order is the reverse, so every stage drains into one that still
//! runs: ingest stops reading and waits for its in-flight acks, the APIs finish their
//! calls, the shards empty their queues, and the writer commits what is left; the MQTT
//! alert publisher, last, sends what the writer committed. Every task is joined before
//! [`run`] returns.

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use dashmap::DashMap;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    api::{
        auth::Auth,
        grpc::{self, AlertApi, IncidentApi, SilenceApi, SilenceBook},
        http::{self, HttpState},
        runtime::ApiRuntime,
    },
    config::Config,
    correlate,
    domain::{now_ms, GridIndex},
    incidents::{Desk, Figures, Supervision},
    sources::{
        mqtt::{payload::Parser, MqttIngest},
        rtsp,
    },
    store::{Opened, Store, StoreError},
    telemetry::Metrics,
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// GStreamer could not start the snapshot pool.
    #[error("snapshots: {0}")]
    Media(#[from] crate::media::MediaError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which API.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[api.tls]` or `[mqtt.tls]` could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The APIs' runtime (`api.nice`) could not start, or take its listeners.
    #[error("cannot start the APIs' runtime: {0}")]
    ApiRuntime(std::io::Error),
}

/// Where the daemon listens, once it does.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// gRPC.
    pub grpc: SocketAddr,
    /// HTTP.
    pub http: SocketAddr,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

/// Runs the daemon until `cancel`; `on_bound` learns the listening addresses once ready.
///
/// `config_path`, when given, is re-read on SIGHUP to add, remove or change cameras.
pub async fn run(
    mut cfg: Config,
    config_path: Option<std::path::PathBuf>,
    cancel: CancellationToken,
    on_bound: impl FnOnce(Bound) + Send,
) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::new());
    // Certificates first: a bad one stops the start before anything runs.
    let server_tls = cfg
        .api
        .tls
        .as_ref()
        .map(crate::tls::ServerTls::new)
        .transpose()?;
    let mqtt_tls = match cfg.mqtt.as_ref() {
        Some(m) => m
            .tls
            .as_ref()
            .map(|t| crate::tls::mqtt_client(t, &m.host))
            .transpose()?,
        None => None,
    };
    let grids = Arc::new(GridIndex::new(&cfg.grids));
    // Cameras given only a location (a config built in code, not by `config::load`).
    crate::config::cameras::place(&mut cfg.cameras, &grids);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let Opened { store, writer } = Store::open(
        &cfg.store,
        metrics.clone(),
        cfg.mqtt.as_ref().map(|_| ack_tx),
    )?;
    tracing::info!(path = %store.path().display(), last_seq = store.seqs.last.load(std::sync::atomic::Ordering::Relaxed), "store open");
    let (router, shards) = correlate::start(
        &cfg.correlation,
        &cfg.rules,
        grids.clone(),
        store.clone(),
        metrics.clone(),
    )
    .await?;
    // Silences reach the shards before any source sends them an event.
    let silence_book = SilenceBook::load(store.clone(), router.clone(), metrics.clone()).await?;
    let silence_refresh = tokio::spawn(silence_book.clone().run_refresh(cancel.clone()));
    // Camera events to live subscribers: a lagging subscriber loses the oldest (broadcast).
    let (camera_events, _) = tokio::sync::broadcast::channel(1024);
    let _ = router
        .set_cameras(rtsp::camera_rules(&cfg.video, &cfg.cameras))
        .await;
    let mut supervisor = rtsp::Supervisor::start(
        cfg.video.clone(),
        router.clone(),
        camera_events.clone(),
        metrics.clone(),
        cancel.child_token(),
    );
    let (started, _) = supervisor.reconcile(&cfg.cameras).await;
    tracing::info!(cameras = started, "camera supervision started");
    let cameras = supervisor.registry();
    let snapshots = crate::media::Snapshots {
        pool: Arc::new(crate::media::SnapshotPool::new(cfg.video.snapshot_pool())?),
        metrics: metrics.clone(),
    };
    if !cfg.cameras.is_empty() {
        // Plugin loading before the first user-facing snapshot.
        let pool = snapshots.pool.clone();
        tokio::spawn(async move { pool.warm_up().await });
    }
    // Availability and camera status, retained, on the sensors' broker.
    let publisher = cfg.mqtt.clone().map(|m| {
        tokio::spawn(tracing::Instrument::instrument(
            crate::publish::run(
                m,
                cameras.clone(),
                camera_events.subscribe(),
                mqtt_tls.clone(),
                cancel.clone(),
            ),
            tracing::info_span!("mqtt_publish"),
        ))
    });
    // Alert changes out to MQTT; it ends once the writer committed the last one.
    let alert_publisher = cfg.mqtt.clone().filter(|m| m.publish_alerts).map(|m| {
        tokio::spawn(tracing::Instrument::instrument(
            crate::publish::alerts::run(m, store.subscribe(), metrics.clone(), mqtt_tls.clone()),
            tracing::info_span!("mqtt_alerts"),
        ))
    });
    let snapshot_taker = tokio::spawn(tracing::Instrument::instrument(
        crate::media::snapshots::take_alert_snapshots(
            snapshots.clone(),
            cameras.clone(),
            store.clone(),
            cancel.clone(),
        ),
        tracing::info_span!("alert_snapshots"),
    ));
    // The APIs run on threads of their own at `api.nice`, so that ingest comes first when
    // the cores are short (see `api::runtime`).
    let api_rt = ApiRuntime::start(cfg.api.nice).map_err(AppError::ApiRuntime)?;
    metrics.count_tasks_of(tokio::runtime::Handle::current());
    metrics.count_tasks_of(api_rt.handle().clone());
    let grpc_listener = api_rt
        .adopt(bind("gRPC", cfg.api.grpc_listen).await?)
        .map_err(AppError::ApiRuntime)?;
    let http_listener = api_rt
        .adopt(bind("HTTP", cfg.api.http_listen).await?)
        .map_err(AppError::ApiRuntime)?;
    let bound = Bound {
        grpc: grpc_listener.local_addr().unwrap_or(cfg.api.grpc_listen),
        http: http_listener.local_addr().unwrap_or(cfg.api.http_listen),
    };
    let auth = Auth::with(
        &cfg.tokens,
        &cfg.client_certs,
        &cfg.api.limits,
        metrics.clone(),
    );
    if server_tls.is_none() {
        tracing::warn!("api.plaintext: gRPC and HTTP are served without TLS");
    }
    let camera_reload = tokio::spawn(crate::reload::reload_loop(
        supervisor,
        config_path,
        router.clone(),
        crate::reload::Reloadable {
            auth: auth.clone(),
            tls: server_tls.clone(),
            metrics: metrics.clone(),
        },
        cancel.clone(),
    ));
    let api_cancel = cancel.child_token();
    let tasks = TaskTracker::new();

    let ready = Arc::new(AtomicBool::new(false));
    let mqtt_ready = cfg.mqtt.as_ref().map(|_| Arc::new(AtomicBool::new(false)));
    let ingest = cfg.mqtt.clone().map(|m| {
        let parser =
            Parser::new(grids.clone(), &m.mappings, m.max_payload_bytes).with_sensors(&cfg.sensors);
        let ingest = MqttIngest {
            cfg: m,
            parser,
            router: router.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            acks: ack_rx,
            tls: mqtt_tls.clone(),
            ready: mqtt_ready.clone().unwrap_or_default(),
        };
        tokio::spawn(tracing::Instrument::instrument(
            ingest.run(cancel.clone()),
            tracing::info_span!("mqtt"),
        ))
    });

    let desk = Desk::new(store.clone(), router.clone(), cfg.departments.clone());
    let figures = Figures {
        store: store.clone(),
        grids: grids.clone(),
        cfg: cfg.stats.clone(),
    };
    // Deadlines: joined before the correlator stops, so no overdue alert is cut off.
    let supervision = tokio::spawn(tracing::Instrument::instrument(
        Supervision {
            desk: desk.clone(),
            router: router.clone(),
            store: store.clone(),
            cfg: cfg.incidents.clone(),
            utc_offset_minutes: cfg.stats.utc_offset_minutes,
            metrics: metrics.clone(),
        }
        .run(cancel.clone()),
        tracing::info_span!("supervision"),
    ));
    let incidents = IncidentApi {
        auth: auth.clone(),
        router: router.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        inflight: Arc::new(DashMap::new()),
        desk: desk.clone(),
    };
    // One task hands each alert change and camera event to the subscriptions that take it.
    let (fanout, hub) = grpc::Fanout::start(
        store.subscribe(),
        camera_events.subscribe(),
        grids.clone(),
        metrics.clone(),
        api_cancel.clone(),
    );
    tasks.spawn_on(
        tracing::Instrument::instrument(hub, tracing::info_span!("fanout")),
        api_rt.handle(),
    );
    let alerts = AlertApi {
        auth: auth.clone(),
        router: router.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        heartbeat: Duration::from_secs(cfg.api.heartbeat_secs.max(1)),
        cancel: api_cancel.clone(),
        tasks: tasks.clone(),
        fanout,
        desk,
    };
    let camera_api = grpc::CameraApi {
        auth: auth.clone(),
        cameras: cameras.clone(),
        grids: grids.clone(),
        window: Duration::from_secs_f64(cfg.video.rate_window_secs),
        snapshots: snapshots.clone(),
    };
    let stats_api = grpc::StatsApi {
        auth: auth.clone(),
        figures: figures.clone(),
    };
    let silence_api = SilenceApi {
        auth: auth.clone(),
        book: silence_book,
        store: store.clone(),
        grids: grids.clone(),
    };
    let grpc_task = api_rt.handle().spawn(grpc::serve(
        grpc_listener,
        grpc::Services {
            incidents,
            alerts: alerts.clone(),
            cameras: camera_api,
            stats: stats_api,
            silences: silence_api,
        },
        auth.clone(),
        server_tls.clone().map(|t| (t, metrics.clone())),
        api_cancel.clone(),
    ));
    let http_state = HttpState {
        auth,
        store: store.clone(),
        metrics: metrics.clone(),
        router: router.clone(),
        ready: ready.clone(),
        mqtt_ready,
        cameras: cameras.clone(),
        snapshots: snapshots.clone(),
        camera_window: Duration::from_secs_f64(cfg.video.rate_window_secs),
        figures,
        alerts,
        sensors: Arc::new(cfg.sensors.clone()),
    };
    let http_task = api_rt.handle().spawn(http::serve(
        http_listener,
        http_state,
        server_tls.clone(),
        api_cancel.clone(),
    ));
    let retention = tokio::spawn(retention_loop(cfg.clone(), store.clone(), cancel.clone()));

    ready.store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(grpc = %bound.grpc, http = %bound.http, "gridsight ready");
    // The watchdog pings on through the drain; it stops when everything is joined.
    let watchdog_stop = CancellationToken::new();
    let watchdog = tokio::spawn(crate::systemd::watchdog(watchdog_stop.clone()));
    crate::systemd::ready(&format!(
        "serving: grpc {} http {}, {} cameras",
        bound.grpc,
        bound.http,
        cfg.cameras.len()
    ));
    on_bound(bound);

    cancel.cancelled().await;
    tracing::info!("shutting down: draining");
    crate::systemd::stopping();
    ready.store(false, std::sync::atomic::Ordering::Release);
    if let Some(t) = ingest {
        let _ = t.await;
    }
    api_cancel.cancel();
    tasks.close();
    match grpc_task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "gRPC server task failed"),
        Ok(Ok(())) => {}
    }
    if let Ok(Err(e)) = http_task.await {
        tracing::warn!(error = %e, "HTTP server ended with an error");
    }
    tasks.wait().await;
    // Everything spawned on the APIs' runtime has ended: its threads go.
    drop(api_rt);
    let _ = retention.await;
    let _ = supervision.await;
    let _ = silence_refresh.await;
    if let Ok(supervisor) = camera_reload.await {
        supervisor.shutdown().await;
    }
    if let Some(p) = publisher {
        let _ = p.await;
    }
    // Pictures being made for alerts are stored before the store closes.
    let _ = snapshot_taker.await;
    let pool = snapshots.pool.clone();
    let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
    drop(router);
    for s in shards {
        let _ = s.await;
    }
    drop(store);
    // The writer ends once every store handle is gone and its queue is committed.
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    if let Some(p) = alert_publisher {
        let _ = p.await;
    }
    watchdog_stop.cancel();
    let _ = watchdog.await;
    tracing::info!("stopped");
    Ok(())
}

/// Deletes expired sensor events and alert changes every `retention_interval_secs`.
async fn retention_loop(cfg: Config, store: Store, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(
        cfg.store.retention_interval_secs.max(1),
    ));
    tick.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let path = store.path().to_path_buf();
        let seqs = store.seqs.clone();
        let ev_ms = (cfg.store.sensor_event_retention_hours * 3_600_000) as i64;
        let ch_ms = (cfg.store.alert_change_retention_hours * 3_600_000) as i64;
        let res = tokio::task::spawn_blocking(move || {
            let conn = rusqlite::Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            crate::store::prune(&conn, now_ms(), ev_ms, ch_ms, &seqs)
        })
        .await;
        match res {
            Ok(Ok((events, changes))) if events + changes > 0 => {
                tracing::info!(events, changes, "retention deleted old records")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention failed"),
            _ => {}
        }
    }
}
