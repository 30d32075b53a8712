//! The book of silences: the ones not yet ended, held in memory, and the one path that
//! creates or expires them.
//!
//! Invariants:
//! - a silence enters the book, and an expiry leaves it, only once the record is durable;
//! - every change is followed, under the same lock, by sending the whole book to every
//!   correlator shard (`Router::set_silences`), so shards get the sets in the order they
//!   were made and an alarm that arrives after `Create` answered OK is matched against it;
//! - the book is loaded from the store before the sources start, and every minute the
//!   ended silences are dropped and the book is sent again (the shards also match on time,
//!   so a silence stops muting at its `ends_at` whether or not the minute has passed);
//! - every create and expire logs one line on the `audit` target: who, what, the matcher
//!   and the comment.

use std::{sync::Arc, time::Duration};

use gridsight_proto::{ts_from_millis, v1 as pb};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::{
    correlate::{
        silence::{has_ended, is_active},
        Router, SilenceSet,
    },
    domain::now_ms,
    store::{read, Record, Store, StoreError},
    telemetry::Metrics,
};

/// How often ended silences are dropped and the set sent again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Shared handle to the book: cheap to clone.
#[derive(Clone)]
pub struct SilenceBook {
    live: Arc<Mutex<Vec<pb::Silence>>>,
    store: Store,
    router: Router,
    metrics: Arc<Metrics>,
}

impl SilenceBook {
    /// Loads the silences not yet ended from the store and sends them to the shards.
    pub async fn load(
        store: Store,
        router: Router,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let now = now_ms();
        let live = store
            .read(move |c| read::silences(c, false, now, u32::MAX))
            .await?;
        tracing::info!(silences = live.len(), "silences loaded");
        let book = Self {
            live: Arc::new(Mutex::new(live)),
            store,
            router,
            metrics,
        };
        let live = book.live.lock().await;
        // A closed router means the daemon is already stopping: nothing to mute.
        let _ = book.send(&live, now).await;
        drop(live);
        Ok(book)
    }

    /// Stores `s` under a new id, then mutes with it; returns it as stored.
    pub async fn create(&self, mut s: pb::Silence) -> Result<pb::Silence, ApiError> {
        let mut live = self.live.lock().await;
        s.id = self.store.ids.next_silence();
        self.store
            .write_and_wait(vec![Record::Silence(s.clone())])
            .await?;
        self.metrics.silences_created.inc();
        tracing::info!(
            target: "audit",
            action = "silence.create",
            who = %s.created_by,
            silence = %s.id,
            matcher = %describe(s.matcher.as_ref()),
            starts_at = %s.starts_at.unwrap_or_default(),
            ends_at = %s.ends_at.unwrap_or_default(),
            comment = %s.comment,
            "silence created"
        );
        live.push(s.clone());
        self.send(&live, now_ms()).await?;
        Ok(s)
    }

    /// Ends silence `id` now, on behalf of `who`; returns it as stored.
    pub async fn expire(&self, id: &str, who: &str) -> Result<pb::Silence, ApiError> {
        let mut live = self.live.lock().await;
        let known = match live.iter().find(|s| s.id == id) {
            Some(s) => Some(s.clone()),
            None => {
                let id = id.to_string();
                self.store.read(move |c| read::get_silence(c, &id)).await?
            }
        };
        let mut s = known.ok_or_else(|| ApiError::NotFound(format!("silence {id} not found")))?;
        let now = now_ms();
        if has_ended(&s, now) {
            return Err(ApiError::FailedPrecondition(format!(
                "silence {id} has already ended"
            )));
        }
        s.expired_by = who.to_string();
        s.expired_at = Some(ts_from_millis(now));
        self.store
            .write_and_wait(vec![Record::Silence(s.clone())])
            .await?;
        self.metrics.silences_expired.inc();
        tracing::info!(
            target: "audit",
            action = "silence.expire",
            who = %who,
            silence = %s.id,
            matcher = %describe(s.matcher.as_ref()),
            comment = %s.comment,
            "silence expired"
        );
        live.retain(|x| x.id != s.id);
        self.send(&live, now).await?;
        Ok(s)
    }

    /// Drops the ended silences and sends the book to the shards again.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let mut live = self.live.lock().await;
        let now = now_ms();
        let before = live.len();
        live.retain(|s| !has_ended(s, now));
        if live.len() < before {
            tracing::info!(ended = before - live.len(), "silences ended");
        }
        self.send(&live, now).await
    }

    /// Refreshes every [`REFRESH_EVERY`] until `cancel`.
    pub async fn run_refresh(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.refresh().await.is_err() {
                return;
            }
        }
    }

    async fn send(&self, live: &[pb::Silence], now: i64) -> Result<(), ApiError> {
        let active = live.iter().filter(|s| is_active(s, now)).count();
        self.metrics.silences_active.set(active as i64);
        self.router
            .set_silences(Arc::new(SilenceSet::new(live.to_vec())))
            .await?;
        Ok(())
    }
}

/// The set fields of a matcher, for the audit log: `grid_id=a-1 max_severity=minor`.
pub fn describe(m: Option<&pb::SilenceMatcher>) -> String {
    let Some(m) = m else {
        return String::new();
    };
    let mut parts = Vec::new();
    for (name, value) in [
        ("grid_id", m.grid_id.as_str()),
        ("rule_id", m.rule_id.as_str()),
        ("dedup_key_prefix", m.dedup_key_prefix.as_str()),
    ] {
        if !value.is_empty() {
            parts.push(format!("{name}={value:?}"));
        }
    }
    if let Ok(sev) = pb::Severity::try_from(m.max_severity) {
        if sev != pb::Severity::Unspecified {
            parts.push(format!(
                "max_severity={}",
                sev.as_str_name().to_ascii_lowercase()
            ));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_only_the_set_fields() {
        let m = pb::SilenceMatcher {
            grid_id: "a-1".into(),
            max_severity: pb::Severity::Minor as i32,
            ..Default::default()
        };
        assert_eq!(describe(Some(&m)), r#"grid_id="a-1" max_severity=minor"#);
        assert_eq!(describe(None), "");
    }
}
