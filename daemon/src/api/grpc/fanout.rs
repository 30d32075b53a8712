//! The alert stream's fan-out: one task ([`Fanout`]) reads the store's change bus and the
//! camera events once, and hands each item only to the subscriptions whose filter takes
//! it, found through an index by grid. So a change wakes the few subscriptions that
//! watch its grid (or an ancestor, or everything), not every subscription.
//!
//! Invariants:
//! - A subscription's feed carries its changes in seq order. Nothing it should see is
//!   ever skipped silently: when its feed is full (or the hub itself lagged on the bus),
//!   the change is not queued and the subscription is marked lagging; before anything
//!   else is queued for it, a [`Live::Lagged`] goes in, and the subscription catches up
//!   from the change log (which holds every change the bus carried: the writer commits
//!   before it publishes). The hub retries the marker every [`RETRY`] until it fits.
//! - When [`Fanout::join`] returns, every change the hub has not handed out yet will go
//!   through the new filter, and every change it has handed out is committed. A
//!   subscription that reads the store after joining therefore sees every change exactly
//!   once (it skips seqs it has).
//! - Camera events are live only: one a full feed has no room for is dropped and counted.
//!
//! Backpressure: the hub never waits for a subscription (`try_send` only); each feed holds
//! [`FEED`] items. Joins and leaves come on an unbounded channel: one message per
//! subscription opened or closed, already limited per token.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::extract::ws::Utf8Bytes;

use foldhash::HashMap;
use gridsight_proto::v1 as pb;
use tokio::sync::{broadcast, broadcast::error::RecvError, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::alerts::Filter;
use crate::{api::json, domain::GridIndex, telemetry::Metrics};

/// Items queued for one subscription.
pub const FEED: usize = 1024;

/// How often the hub retries telling a lagging subscription that it lagged.
const RETRY: Duration = Duration::from_millis(10);

/// One alert change as every subscription that takes it shares it: the change, and its
/// `/ws` frame, encoded by the first WebSocket that sends it.
#[derive(Debug)]
pub struct SharedChange {
    /// The change, as the store's bus carried it.
    pub change: Arc<pb::AlertChange>,
    frame: OnceLock<Utf8Bytes>,
}

impl SharedChange {
    fn new(change: Arc<pb::AlertChange>) -> SharedChange {
        SharedChange {
            change,
            frame: OnceLock::new(),
        }
    }

    /// The change's `/ws` frame (JSON text), encoded once.
    pub fn frame(&self) -> Utf8Bytes {
        self.frame
            .get_or_init(|| json::change_frame(&self.change).into())
            .clone()
    }
}

/// What the hub hands a subscription.
#[derive(Debug, Clone)]
pub enum Live {
    /// An alert change its filter takes.
    Change(Arc<SharedChange>),
    /// A camera event its filter takes.
    Camera(Arc<pb::CameraEvent>),
    /// Changes were lost on the way (the feed was full): catch up from the change log.
    Lagged,
}

/// Where subscriptions join the hub.
#[derive(Clone)]
pub struct Fanout {
    ctl: mpsc::UnboundedSender<Ctl>,
}

/// A subscription's place at the hub; leaving is dropping it.
pub struct Member {
    id: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.ctl.send(Ctl::Leave(self.id));
    }
}

/// The hub has stopped (the daemon is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubGone;

enum Ctl {
    Join {
        filter: Filter,
        feed: mpsc::Sender<Live>,
        reply: oneshot::Sender<u64>,
    },
    Leave(u64),
}

impl Fanout {
    /// Starts the hub on the store's bus and the camera events; it runs until `cancel`.
    pub fn start(
        bus: broadcast::Receiver<Arc<pb::AlertChange>>,
        cameras: broadcast::Receiver<Arc<pb::CameraEvent>>,
        grids: Arc<GridIndex>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> (
        Fanout,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (ctl, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            members: HashMap::default(),
            by_grid: vec![Vec::new(); grids.len()],
            everywhere: Vec::new(),
            lagging: Vec::new(),
            next_id: 0,
            round: 0,
            grids,
            metrics,
            scratch: Vec::new(),
        };
        (Fanout { ctl }, hub.run(bus, cameras, rx, cancel))
    }

    /// Joins with `filter`: its feed, and its membership (leaving when dropped).
    pub(crate) async fn join(
        &self,
        filter: Filter,
    ) -> Result<(mpsc::Receiver<Live>, Member), HubGone> {
        let (feed, rx) = mpsc::channel(FEED);
        let (reply, answer) = oneshot::channel();
        self.ctl
            .send(Ctl::Join {
                filter,
                feed,
                reply,
            })
            .map_err(|_| HubGone)?;
        let id = answer.await.map_err(|_| HubGone)?;
        let member = Member {
            id,
            ctl: self.ctl.clone(),
        };
        Ok((rx, member))
    }
}

/// The hub's record of one member.
struct Seat {
    filter: Filter,
    feed: mpsc::Sender<Live>,
    /// Grid indexes it is listed under (empty: `everywhere`).
    listed: Vec<usize>,
    /// The last round it was handed something in (one item reaches it once, even when
    /// two of its grids contain the item's).
    round: u64,
    /// Changes were dropped for it; [`Live::Lagged`] must go in before anything else.
    lagging: bool,
}

struct Hub {
    members: HashMap<u64, Seat>,
    /// Members by the grid index of each grid in their filter.
    by_grid: Vec<Vec<u64>>,
    /// Members with no grid filter.
    everywhere: Vec<u64>,
    /// Members whose [`Live::Lagged`] is still to be queued.
    lagging: Vec<u64>,
    next_id: u64,
    /// Items handed out so far (for the once-per-item check).
    round: u64,
    grids: Arc<GridIndex>,
    metrics: Arc<Metrics>,
    /// The candidates of the item being handed out (kept, so that no item allocates).
    scratch: Vec<u64>,
}

impl Hub {
    async fn run(
        mut self,
        mut bus: broadcast::Receiver<Arc<pb::AlertChange>>,
        mut cameras: broadcast::Receiver<Arc<pb::CameraEvent>>,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        cancel: CancellationToken,
    ) {
        let mut cameras_open = true;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                // Joins before changes: a join answered now covers the next change.
                c = ctl.recv() => match c {
                    Some(c) => self.control(c),
                    None => return,
                },
                c = bus.recv() => match c {
                    Ok(c) => self.change(c),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "alert fan-out lagged on the bus: every subscription catches up from the change log");
                        let ids: Vec<u64> = self.members.keys().copied().collect();
                        for id in ids {
                            self.lag(id);
                        }
                        self.retry_lagging();
                    }
                    Err(RecvError::Closed) => return,
                },
                e = cameras.recv(), if cameras_open => match e {
                    Ok(e) => self.camera(e),
                    Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "alert fan-out lagged on camera events"),
                    Err(RecvError::Closed) => cameras_open = false,
                },
                _ = tokio::time::sleep(RETRY), if !self.lagging.is_empty() => self.retry_lagging(),
            }
        }
    }

    fn control(&mut self, c: Ctl) {
        match c {
            Ctl::Join {
                filter,
                feed,
                reply,
            } => {
                let id = self.next_id;
                self.next_id += 1;
                let listed: Vec<usize> = filter
                    .grid_ids()
                    .iter()
                    .filter_map(|g| self.grids.index_of(g))
                    .collect();
                if filter.grid_ids().is_empty() {
                    self.everywhere.push(id);
                }
                for &g in &listed {
                    if let Some(list) = self.by_grid.get_mut(g) {
                        list.push(id);
                    }
                }
                self.members.insert(
                    id,
                    Seat {
                        filter,
                        feed,
                        listed,
                        round: 0,
                        lagging: false,
                    },
                );
                // A subscription that went away meanwhile leaves at once (its Member drops).
                let _ = reply.send(id);
            }
            Ctl::Leave(id) => {
                if let Some(m) = self.members.remove(&id) {
                    if m.listed.is_empty() {
                        self.everywhere.retain(|x| *x != id);
                    }
                    for g in m.listed {
                        if let Some(list) = self.by_grid.get_mut(g) {
                            list.retain(|x| *x != id);
                        }
                    }
                    self.lagging.retain(|x| *x != id);
                }
            }
        }
    }

    /// The members listed on `grid` or one of its ancestors, and the unfiltered ones.
    fn candidates(&self, grid: Option<usize>, out: &mut Vec<u64>) {
        out.extend_from_slice(&self.everywhere);
        let mut g = grid;
        while let Some(ix) = g {
            if let Some(list) = self.by_grid.get(ix) {
                out.extend_from_slice(list);
            }
            g = self.grids.parent_index(ix);
        }
    }

    fn change(&mut self, c: Arc<pb::AlertChange>) {
        let Some(a) = c.alert.as_ref() else { return };
        self.round += 1;
        // Built once, and only when someone takes the change.
        let mut shared: Option<Arc<SharedChange>> = None;
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        self.candidates(self.grids.index_of(&a.grid_id), &mut ids);
        for &id in &ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if m.round == self.round || !m.filter.matches_beyond_grid(a) {
                continue;
            }
            m.round = self.round;
            // Its marker first; while that finds no room, this change is caught up with
            // the rest.
            if m.lagging {
                if m.feed.try_send(Live::Lagged).is_err() {
                    continue;
                }
                m.lagging = false;
            }
            let item = shared.get_or_insert_with(|| Arc::new(SharedChange::new(c.clone())));
            if let Err(mpsc::error::TrySendError::Full(_)) =
                m.feed.try_send(Live::Change(item.clone()))
            {
                self.metrics.fanout_lagged.inc();
                self.lag(id);
            }
        }
        self.scratch = ids;
    }

    fn camera(&mut self, e: Arc<pb::CameraEvent>) {
        self.round += 1;
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for g in &e.grid_ids {
            self.candidates(self.grids.index_of(g), &mut ids);
        }
        if e.grid_ids.is_empty() {
            ids.extend_from_slice(&self.everywhere);
        }
        for &id in &ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            if m.round == self.round {
                continue;
            }
            m.round = self.round;
            if let Err(mpsc::error::TrySendError::Full(_)) =
                m.feed.try_send(Live::Camera(e.clone()))
            {
                self.metrics.fanout_camera_dropped.inc();
            }
        }
        self.scratch = ids;
    }

    /// Marks `id` lagging: its marker goes in with its next change, or on a retry.
    fn lag(&mut self, id: u64) {
        if let Some(m) = self.members.get_mut(&id) {
            if !m.lagging {
                m.lagging = true;
                self.lagging.push(id);
            }
        }
    }

    fn retry_lagging(&mut self) {
        let members = &mut self.members;
        self.lagging.retain(|id| {
            let Some(m) = members.get_mut(id) else {
                return false;
            };
            if !m.lagging {
                // Its marker went in with a change.
                return false;
            }
            match m.feed.try_send(Live::Lagged) {
                Ok(()) => {
                    m.lagging = false;
                    false
                }
                // Still full: next time. Closed: it leaves soon.
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::grpc::check_filter;

    struct Bench {
        fanout: Fanout,
        bus: broadcast::Sender<Arc<pb::AlertChange>>,
        cams: broadcast::Sender<Arc<pb::CameraEvent>>,
        grids: Arc<GridIndex>,
        metrics: Arc<Metrics>,
        _cancel: tokio_util::sync::DropGuard,
    }

    fn start() -> Bench {
        let grids = Arc::new(GridIndex::test_county());
        let (bus, bus_rx) = broadcast::channel(4 * FEED);
        let (cams, cams_rx) = broadcast::channel(64);
        let metrics = Arc::new(Metrics::new());
        let cancel = CancellationToken::new();
        let (fanout, hub) = Fanout::start(
            bus_rx,
            cams_rx,
            grids.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        tokio::spawn(hub);
        Bench {
            fanout,
            bus,
            cams,
            grids,
            metrics,
            _cancel: cancel.drop_guard(),
        }
    }

    impl Bench {
        async fn join(&self, grids: &[&str], min: pb::Severity) -> (mpsc::Receiver<Live>, Member) {
            let r = pb::SubscribeAlertsRequest {
                grid_ids: grids.iter().map(|g| g.to_string()).collect(),
                min_severity: min as i32,
                ..Default::default()
            };
            let f = check_filter(&r, &self.grids, 0, 0).unwrap();
            self.fanout.join(f).await.unwrap()
        }

        fn change(&self, seq: u64, grid: &str, severity: pb::Severity) {
            let alert = pb::Alert {
                grid_id: grid.into(),
                severity: severity as i32,
                ..Default::default()
            };
            self.bus
                .send(Arc::new(pb::AlertChange {
                    seq,
                    kind: pb::ChangeKind::Opened as i32,
                    alert: Some(alert),
                }))
                .unwrap();
        }
    }

    /// Waits until the unfiltered member `probe` got the change with seq `mark` (sent
    /// last): the hub has handed out everything before it.
    async fn settled(probe: &mut mpsc::Receiver<Live>, mark: u64) {
        loop {
            if let Live::Change(c) = probe.recv().await.unwrap() {
                if c.change.seq == mark {
                    return;
                }
            }
        }
    }

    /// Reads the changes `seqs` from `rx`, in order, and nothing else.
    async fn read_changes(rx: &mut mpsc::Receiver<Live>, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            match rx.recv().await.unwrap() {
                Live::Change(c) => assert_eq!(c.change.seq, seq),
                other => panic!("expected change {seq}, got {other:?}"),
            }
        }
    }

    fn name(l: Live) -> String {
        match l {
            Live::Change(c) => format!("change {}", c.change.seq),
            Live::Camera(e) => format!("camera {}", e.camera_id),
            Live::Lagged => "lagged".into(),
        }
    }

    /// What is queued on `rx`, in order.
    fn queued(rx: &mut mpsc::Receiver<Live>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = rx.try_recv() {
            out.push(name(l));
        }
        out
    }

    #[tokio::test]
    async fn a_change_reaches_each_subscription_whose_grids_hold_it_once() {
        let b = start();
        let (mut probe, _p) = b.join(&[], pb::Severity::Unspecified).await;
        let (mut town_a, _town_a) = b.join(&["town-a"], pb::Severity::Unspecified).await;
        // Both of its grids hold a-1: it still gets each change once.
        let (mut nested, _nested) = b.join(&["a-1", "county"], pb::Severity::Unspecified).await;
        let (mut b_1, _b_1) = b.join(&["b-1"], pb::Severity::Unspecified).await;
        let (mut major, _major) = b.join(&["county"], pb::Severity::Major).await;
        b.change(1, "a-1", pb::Severity::Minor);
        b.change(2, "b-1", pb::Severity::Critical);
        b.change(3, "town-a", pb::Severity::Major);
        b.change(4, "county", pb::Severity::Info);
        settled(&mut probe, 4).await;
        assert_eq!(queued(&mut town_a), ["change 1", "change 3"]);
        assert_eq!(
            queued(&mut nested),
            ["change 1", "change 2", "change 3", "change 4"]
        );
        assert_eq!(queued(&mut b_1), ["change 2"]);
        assert_eq!(queued(&mut major), ["change 2", "change 3"]);
    }

    #[tokio::test]
    async fn a_full_feed_loses_nothing_silently_the_marker_comes_first_once_there_is_room() {
        let b = start();
        let (mut probe, _p) = b.join(&["b-1"], pb::Severity::Unspecified).await;
        let (mut slow, _s) = b.join(&["town-a"], pb::Severity::Unspecified).await;
        for seq in 1..=FEED as u64 + 3 {
            b.change(seq, "a-2", pb::Severity::Minor);
        }
        let mark = FEED as u64 + 4;
        b.change(mark, "b-1", pb::Severity::Minor);
        settled(&mut probe, mark).await;
        assert_eq!(
            b.metrics.fanout_lagged.get(),
            1,
            "the first change without room"
        );
        // The slow one reads its full feed: changes 1..=FEED, in order.
        read_changes(&mut slow, 1..=FEED as u64).await;
        // With room again, the marker goes in before any later change.
        b.change(mark + 1, "a-1", pb::Severity::Minor);
        assert!(matches!(slow.recv().await.unwrap(), Live::Lagged));
        read_changes(&mut slow, mark + 1..=mark + 1).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_marker_is_retried_even_when_no_change_follows() {
        let b = start();
        let (mut probe, _p) = b.join(&["b-1"], pb::Severity::Unspecified).await;
        let (mut slow, _s) = b.join(&["a-1"], pb::Severity::Unspecified).await;
        for seq in 1..=FEED as u64 + 1 {
            b.change(seq, "a-1", pb::Severity::Minor);
        }
        b.change(FEED as u64 + 2, "b-1", pb::Severity::Minor);
        settled(&mut probe, FEED as u64 + 2).await;
        read_changes(&mut slow, 1..=FEED as u64).await;
        // Nothing else happens on the bus: the hub's retry puts the marker in.
        assert!(matches!(slow.recv().await.unwrap(), Live::Lagged));
    }

    #[tokio::test]
    async fn camera_events_go_by_grid_and_a_subscription_that_left_gets_nothing() {
        let b = start();
        let (mut probe, _p) = b.join(&[], pb::Severity::Unspecified).await;
        let (mut a, _a) = b.join(&["town-a"], pb::Severity::Critical).await;
        let (mut gone, member) = b.join(&["a-1"], pb::Severity::Unspecified).await;
        drop(member);
        b.cams
            .send(Arc::new(pb::CameraEvent {
                camera_id: "cam-a".into(),
                grid_ids: vec!["a-1".into(), "a-2".into()],
                ..Default::default()
            }))
            .unwrap();
        b.cams
            .send(Arc::new(pb::CameraEvent {
                camera_id: "cam-b".into(),
                grid_ids: vec!["b-1".into()],
                ..Default::default()
            }))
            .unwrap();
        // Camera events have no severity: a severity filter does not hold them back.
        b.change(1, "a-1", pb::Severity::Critical);
        // The unfiltered probe got all three: the hub has handed out everything. (Camera
        // events and changes come on two channels: there is no order between them.)
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(name(probe.recv().await.unwrap()));
        }
        seen.sort();
        assert_eq!(seen, ["camera cam-a", "camera cam-b", "change 1"]);
        let mut got = queued(&mut a);
        got.sort();
        assert_eq!(got, ["camera cam-a", "change 1"]);
        // It left before anything was sent: its feed was closed, empty.
        assert!(gone.recv().await.is_none());
    }
}
