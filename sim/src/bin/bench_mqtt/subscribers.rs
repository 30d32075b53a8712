//! The subscribers of `--fanout`: gRPC `Subscribe` streams (dispatchers' and integrators'
//! terminals, one connection each, each watching one community) and `/ws` WebSockets
//! (town walls, each watching one town), all in this process.
//!
//! Each reads as a real client does: the gRPC ones decode every message, the WebSocket
//! ones parse every frame's JSON. Each counts the alert changes it received after its
//! snapshot; [`Crowd::connect`] returns once every one has had its `snapshot_end`.
//!
//! They stand for 1,050 machines elsewhere, yet share this machine's cores with the
//! daemon and the broker: so they run on a runtime of their own whose threads have a
//! lower priority (`nice`, default 19), and take the CPU the daemon and broker leave.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use gridsight_proto::v1::{
    alert_service_client::AlertServiceClient, subscribe_alerts_response::Event, ChangeKind,
    SubscribeAlertsRequest,
};
use gridsight_sim::reporter::BearerAuth;
use serde::Deserialize;
use tokio::{sync::mpsc, task::JoinSet};

/// Who subscribes to what.
pub struct Plan {
    /// One gRPC subscriber per entry: (token, grid it watches).
    pub grpc: Vec<(String, String)>,
    /// One WebSocket per entry: (token, grid it watches).
    pub ws: Vec<(String, String)>,
}

/// Every subscriber's running total.
#[derive(Default)]
pub struct Totals {
    /// Alert changes received over gRPC (snapshot rows not counted).
    pub grpc_changes: AtomicU64,
    /// Alert changes received over WebSockets (the same).
    pub ws_changes: AtomicU64,
    /// Streams that ended or failed before they were stopped.
    pub ended: AtomicU64,
}

/// The connected subscribers; dropping it closes them all.
pub struct Crowd {
    /// Their totals.
    pub totals: Arc<Totals>,
    tasks: JoinSet<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Crowd {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority to `nice` (Linux: the nice value is per thread).
fn renice(nice: i32) {
    // SAFETY: setpriority only reads its integer arguments.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "could not lower the subscribers' priority");
    }
}

impl Crowd {
    /// Connects everyone in `plan` (a few at a time) on a runtime of 2 threads at `nice`,
    /// and waits for every `snapshot_end`.
    pub async fn connect(
        grpc: SocketAddr,
        http: SocketAddr,
        plan: &Plan,
        nice: i32,
    ) -> Result<Crowd> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("subscribers")
            .on_thread_start(move || renice(nice))
            .enable_all()
            .build()
            .context("the subscribers' runtime")?;
        let on = runtime.handle().clone();
        let totals = Arc::new(Totals::default());
        let mut tasks = JoinSet::new();
        let (ready_tx, mut ready_rx) = mpsc::channel::<Result<()>>(64);
        let n = plan.grpc.len() + plan.ws.len();
        // At most this many handshakes in flight: a connect storm is no part of the figure.
        let slots = Arc::new(tokio::sync::Semaphore::new(32));
        let all = (plan.grpc.iter().map(|s| (true, s))).chain(plan.ws.iter().map(|s| (false, s)));
        for (is_grpc, (token, grid)) in all {
            let (t, g, totals, ready) = (
                token.clone(),
                grid.clone(),
                totals.clone(),
                ready_tx.clone(),
            );
            let slots = slots.clone();
            tasks.spawn_on(
                async move {
                    let permit = slots.acquire_owned().await.ok();
                    let end = if is_grpc {
                        grpc_subscriber(grpc, &t, &g, &totals, &ready, permit).await
                    } else {
                        ws_subscriber(http, &t, &g, &totals, &ready, permit).await
                    };
                    totals.ended.fetch_add(1, Relaxed);
                    // An error before snapshot_end goes to `connect`; later ones are counted.
                    let what = if is_grpc {
                        "gRPC subscriber"
                    } else {
                        "WebSocket"
                    };
                    let _ = ready.try_send(end.map_err(|e| anyhow!("{what} on {g}: {e:#}")));
                },
                &on,
            );
        }
        drop(ready_tx);
        let limit = Duration::from_secs(120);
        for i in 0..n {
            match tokio::time::timeout(limit, ready_rx.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) => bail!("subscribers ended before all were live ({i} of {n})"),
                Err(_) => bail!("{i} of {n} subscribers live after {limit:?}"),
            }
        }
        Ok(Crowd {
            totals,
            tasks,
            runtime: Some(runtime),
        })
    }

    /// Alert changes received so far: (gRPC, WebSocket).
    pub fn changes(&self) -> (u64, u64) {
        (
            self.totals.grpc_changes.load(Relaxed),
            self.totals.ws_changes.load(Relaxed),
        )
    }

    /// Closes every subscriber.
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn grpc_subscriber(
    addr: SocketAddr,
    token: &str,
    grid: &str,
    totals: &Totals,
    ready: &mpsc::Sender<Result<()>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .context("connecting")?;
    let mut client = AlertServiceClient::with_interceptor(channel, BearerAuth::new(token)?);
    let mut stream = client
        .subscribe(SubscribeAlertsRequest {
            grid_ids: vec![grid.to_string()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut permit = permit;
    while let Some(m) = stream.message().await? {
        match m.event {
            Some(Event::SnapshotEnd(_)) => {
                permit.take();
                ready.send(Ok(())).await?;
            }
            Some(Event::Change(c)) if c.kind != ChangeKind::Snapshot as i32 => {
                totals.grpc_changes.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
    Err(anyhow!("the stream ended"))
}

/// The parts of a `/ws` frame a wall looks at first (the rest is parsed and skipped).
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    ty: &'a str,
    #[serde(default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    message: Option<&'a str>,
}

async fn ws_subscriber(
    addr: SocketAddr,
    token: &str,
    grid: &str,
    totals: &Totals,
    ready: &mpsc::Sender<Result<()>>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{addr}/ws?token={token}&grid={grid}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .context("connecting")?;
    let mut permit = permit;
    while let Some(msg) = socket.next().await {
        let Message::Text(text) = msg? else { continue };
        let frame: Frame = serde_json::from_str(text.as_str()).context("a frame's JSON")?;
        match frame.ty {
            "snapshot_end" => {
                permit.take();
                ready.send(Ok(())).await?;
            }
            "change" if frame.kind != Some("SNAPSHOT") => {
                totals.ws_changes.fetch_add(1, Relaxed);
            }
            "error" => bail!("error frame: {}", frame.message.unwrap_or_default()),
            _ => {}
        }
    }
    Err(anyhow!("the socket closed"))
}
