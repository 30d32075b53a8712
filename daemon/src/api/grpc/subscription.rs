//! The two ends of one alert subscription: [`Tx`], where its task sends, and
//! [`Subscription`], which gRPC `Subscribe` streams and `/ws` reads.
//!
//! Backpressure: the queue between them holds [`QUEUE`] messages. A slow client only
//! makes its own task wait (and catch up from the change log later). A client that takes
//! nothing at all for `api.limits.subscriber_stall_secs` while the queue is full has
//! stopped reading: its task ends, and the client is told so ([`Subscription`] yields the
//! cut-off status before anything still queued, then ends). The task, its queue and its
//! place among the token's streams are freed; the client resubscribes with
//! `resume_after_seq` set to the last seq it received and misses nothing.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use gridsight_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::fanout::SharedChange;

/// Messages queued for one subscriber.
pub const QUEUE: usize = 256;

/// One message of a subscription: its own, or a live change shared with every other
/// subscription that takes it (gRPC copies it into its response; a WebSocket sends the
/// change's frame, encoded once for all of them).
#[derive(Debug)]
pub enum Msg {
    /// A message of this subscription alone (snapshot, catch-up, heartbeat, camera event);
    /// boxed, so that a queue slot is two words.
    One(Box<pb::SubscribeAlertsResponse>),
    /// A live alert change.
    Shared(Arc<SharedChange>),
}

impl Msg {
    /// The gRPC message.
    pub fn into_pb(self) -> pb::SubscribeAlertsResponse {
        match self {
            Msg::One(r) => *r,
            Msg::Shared(c) => pb::SubscribeAlertsResponse {
                event: Some(pb::subscribe_alerts_response::Event::Change(
                    (*c.change).clone(),
                )),
            },
        }
    }
}

/// One item of a subscription.
pub type Item = Result<Msg, Status>;

/// Why a subscription's task stopped sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client went away (or the stream ended for another reason).
    Gone,
    /// The client read nothing for the stall time while its queue was full.
    Stalled,
}

/// The task's end: each send waits at most `stall` for room in the queue.
pub struct Tx {
    tx: mpsc::Sender<Item>,
    stall: Duration,
}

impl Tx {
    /// Queues `m`, or says why not. With room in the queue (the usual case) it is queued
    /// at once; only a full queue starts the stall timer.
    pub async fn send(&self, m: Item) -> Result<(), Ended> {
        let m = match self.tx.try_send(m) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Ended::Gone),
            Err(mpsc::error::TrySendError::Full(m)) => m,
        };
        match tokio::time::timeout(self.stall, self.tx.send(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ended::Gone),
            Err(_) => Err(Ended::Stalled),
        }
    }

    /// Resolves once the client's end is dropped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// What a client of a subscription reads: its messages, or first of all the status that
/// cut it off.
pub struct Subscription {
    rx: mpsc::Receiver<Item>,
    cut: Option<oneshot::Receiver<Status>>,
    done: bool,
}

/// Where the task tells a stalled client why it was cut off.
pub type CutOff = oneshot::Sender<Status>;

/// A new subscription's three parts.
pub fn channel(stall: Duration) -> (Tx, CutOff, Subscription) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (cut_tx, cut_rx) = oneshot::channel();
    (
        Tx { tx, stall },
        cut_tx,
        Subscription {
            rx,
            cut: Some(cut_rx),
            done: false,
        },
    )
}

/// The status a stalled client reads.
pub fn stalled(stall: Duration) -> Status {
    Status::resource_exhausted(format!(
        "subscriber stalled: it read nothing for {} s while its queue was full, and was cut off; subscribe again with resume_after_seq = the last seq it received",
        stall.as_secs()
    ))
}

impl Subscription {
    /// The next message; `None` once the subscription ended.
    pub async fn recv(&mut self) -> Option<Item> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next message if one is queued now (never waits); `None` when none is, or once
    /// the subscription ended (then [`Subscription::recv`] says so).
    pub fn try_recv(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if let Some(cut) = self.cut.as_mut() {
            match cut.try_recv() {
                Ok(status) => {
                    self.done = true;
                    self.rx.close();
                    return Some(Err(status));
                }
                Err(oneshot::error::TryRecvError::Closed) => self.cut = None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        self.rx.try_recv().ok()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(cut) = self.cut.as_mut() {
            match Pin::new(cut).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    // What is still queued is dropped: the client resumes from what it has.
                    self.done = true;
                    self.rx.close();
                    return Poll::Ready(Some(Err(status)));
                }
                // The task ended without cutting off: the queue ends the stream.
                Poll::Ready(Err(_)) => self.cut = None,
                Poll::Pending => {}
            }
        }
        self.rx.poll_recv(cx)
    }
}

/// What gRPC `Subscribe` streams.
impl Stream for Subscription {
    type Item = Result<pb::SubscribeAlertsResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_item(cx)
            .map(|i| i.map(|m| m.map(Msg::into_pb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(n: u64) -> Item {
        Ok(Msg::One(Box::new(pb::SubscribeAlertsResponse {
            event: Some(pb::subscribe_alerts_response::Event::Heartbeat(
                pb::Heartbeat {
                    last_seq: n,
                    server_time: None,
                },
            )),
        })))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_nobody_reads_is_a_stall_and_the_client_reads_why_first() {
        let stall = Duration::from_secs(30);
        let (tx, cut, mut sub) = channel(stall);
        for i in 0..QUEUE as u64 {
            assert_eq!(tx.send(beat(i)).await, Ok(()));
        }
        let started = tokio::time::Instant::now();
        assert_eq!(tx.send(beat(999)).await, Err(Ended::Stalled));
        assert_eq!(started.elapsed(), stall);
        cut.send(stalled(stall)).unwrap();
        let first = sub.recv().await.unwrap().unwrap_err();
        assert_eq!(first.code(), tonic::Code::ResourceExhausted);
        assert!(first.message().contains("read nothing for 30 s"));
        assert!(sub.recv().await.is_none(), "nothing after the cut-off");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_never_cut_off_and_a_normal_end_ends_the_stream() {
        let (tx, cut, mut sub) = channel(Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(m) = sub.recv().await {
                m.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            n
        });
        for i in 0..QUEUE as u64 + 50 {
            assert_eq!(tx.send(beat(i)).await, Ok(()), "message {i}");
        }
        drop((tx, cut));
        assert_eq!(reader.await.unwrap(), QUEUE + 50);
    }

    fn seq_of(m: Item) -> u64 {
        match m.unwrap().into_pb().event {
            Some(pb::subscribe_alerts_response::Event::Heartbeat(h)) => h.last_seq,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn try_recv_takes_what_is_queued_in_order_and_the_cut_off_first() {
        let (tx, cut, mut sub) = channel(Duration::from_secs(30));
        assert!(sub.try_recv().is_none(), "nothing queued");
        for i in 0..3 {
            tx.send(beat(i)).await.unwrap();
        }
        assert_eq!(seq_of(sub.try_recv().unwrap()), 0);
        assert_eq!(seq_of(sub.try_recv().unwrap()), 1);
        // A cut-off overtakes what is still queued, and nothing comes after it.
        cut.send(stalled(Duration::from_secs(30))).unwrap();
        let e = sub.try_recv().unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(sub.try_recv().is_none());
        assert!(sub.recv().await.is_none());
    }
}
