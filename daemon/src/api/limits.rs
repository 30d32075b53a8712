//! Per-token limits: how often a token may `Report` and open subscriptions (token buckets),
//! and how many subscriptions it may hold open at once.
//!
//! Owns the buckets and the open-stream counts, keyed by the credential's name (tokens
//! and client certificates of the same name share them). A refusal names the limit and
//! when to retry; it maps to `RESOURCE_EXHAUSTED` / 429 and is counted in
//! `gridsight_rate_limited_total{call,token}`. A [`StreamGuard`] gives its stream back when
//! dropped, however the stream ends. The lock is per call, never held across an await, and
//! off the correlator's path.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{config::LimitsConfig, telemetry::Metrics};

/// A call refused by a limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// Too many calls of this kind lately.
    #[error("rate limit: `{token}` may make {per_minute} {call} calls a minute (burst {burst}); retry in {retry_ms} ms")]
    Rate {
        /// The credential's name.
        token: String,
        /// `Report` or `Subscribe`.
        call: &'static str,
        /// The configured rate.
        per_minute: u32,
        /// The configured burst.
        burst: u32,
        /// When one call will be allowed again.
        retry_ms: u64,
    },
    /// Too many subscriptions open.
    #[error("`{token}` already holds {max} open subscriptions (api.limits.max_streams_per_token); close one first")]
    Streams {
        /// The credential's name.
        token: String,
        /// The configured maximum.
        max: u32,
    },
}

impl LimitError {
    /// Seconds to wait before retrying (the `Retry-After` of a 429).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            LimitError::Rate { retry_ms, .. } => retry_ms.div_ceil(1000).max(1),
            LimitError::Streams { .. } => 1,
        }
    }
}

/// The HTTP answer to a refused call: 429 with `Retry-After`.
pub fn too_many(e: &LimitError) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        [(
            axum::http::header::RETRY_AFTER,
            e.retry_after_secs().to_string(),
        )],
        format!("{e}\n"),
    )
        .into_response()
}

impl From<LimitError> for tonic::Status {
    fn from(e: LimitError) -> Self {
        tonic::Status::resource_exhausted(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Report,
    Subscribe,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits and their state.
pub struct Limits {
    cfg: LimitsConfig,
    buckets: Mutex<HashMap<(String, Call), Bucket>>,
    streams: Arc<Mutex<HashMap<String, u32>>>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// Empty buckets of `cfg`.
    pub fn new(cfg: LimitsConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            cfg,
            buckets: Mutex::default(),
            streams: Arc::default(),
            metrics,
        }
    }

    /// The configured sizes and rates.
    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    fn take(&self, token: &str, call: Call, now: Instant) -> Result<(), LimitError> {
        let (per_minute, burst, name) = match call {
            Call::Report => (self.cfg.report_per_minute, self.cfg.report_burst, "Report"),
            Call::Subscribe => (
                self.cfg.subscribe_per_minute,
                self.cfg.subscribe_burst,
                "Subscribe",
            ),
        };
        let rate = f64::from(per_minute) / 60.0;
        let cap = f64::from(burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry((token.to_string(), call)).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let retry_ms = ((1.0 - b.tokens) / rate * 1000.0).ceil() as u64;
        drop(buckets);
        self.metrics.limited(
            match call {
                Call::Report => "report",
                Call::Subscribe => "subscribe",
            },
            token,
        );
        Err(LimitError::Rate {
            token: token.to_string(),
            call: name,
            per_minute,
            burst,
            retry_ms,
        })
    }

    /// One `Report` by `token`.
    pub fn report(&self, token: &str) -> Result<(), LimitError> {
        self.take(token, Call::Report, Instant::now())
    }

    /// One subscription opened by `token`: within its open-stream maximum and its rate.
    /// The stream counts as open until the guard is dropped. The count is checked and
    /// raised under one lock, so concurrent opens never pass the maximum together.
    pub fn open_stream(&self, token: &str) -> Result<StreamGuard, LimitError> {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let open = streams.entry(token.to_string()).or_insert(0);
        if *open >= self.cfg.max_streams_per_token {
            drop(streams);
            self.metrics.limited("streams", token);
            return Err(LimitError::Streams {
                token: token.to_string(),
                max: self.cfg.max_streams_per_token,
            });
        }
        // Lock order: streams, then buckets (the only place both are held).
        self.take(token, Call::Subscribe, Instant::now())?;
        *open += 1;
        Ok(StreamGuard {
            token: token.to_string(),
            streams: self.streams.clone(),
        })
    }
}

/// An open subscription; given back on drop.
pub struct StreamGuard {
    token: String,
    streams: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = streams.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                streams.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, burst: u32, max_streams: u32) -> Limits {
        Limits::new(
            LimitsConfig {
                report_per_minute: per_minute,
                report_burst: burst,
                subscribe_per_minute: per_minute,
                subscribe_burst: burst,
                max_streams_per_token: max_streams,
                ..LimitsConfig::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limits(60, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("app", Call::Report, t0).is_ok());
        }
        let Err(LimitError::Rate { retry_ms, .. }) = l.take("app", Call::Report, t0) else {
            panic!("the fourth call at once is refused");
        };
        assert_eq!(retry_ms, 1000, "one a second at 60 a minute");
        // Another token has its own bucket; another call too.
        assert!(l.take("other", Call::Report, t0).is_ok());
        assert!(l.take("app", Call::Subscribe, t0).is_ok());
        // A second later one call more, not two.
        let t1 = t0 + std::time::Duration::from_secs(1);
        assert!(l.take("app", Call::Report, t1).is_ok());
        assert!(l.take("app", Call::Report, t1).is_err());
        assert!(l
            .metrics
            .encode()
            .contains(r#"gridsight_rate_limited_total{call="report",token="app"} 2"#));
    }

    #[test]
    fn open_streams_are_counted_until_dropped() {
        let l = limits(6000, 100, 2);
        let a = l.open_stream("wall").unwrap();
        let _b = l.open_stream("wall").unwrap();
        let refused = l.open_stream("wall").err().expect("a third is refused");
        assert!(refused
            .to_string()
            .contains("already holds 2 open subscriptions"));
        assert!(
            l.open_stream("desk").is_ok(),
            "another token is not affected"
        );
        drop(a);
        assert!(
            l.open_stream("wall").is_ok(),
            "a dropped stream frees its place"
        );
    }
}
