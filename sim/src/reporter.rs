//! Grid-worker reporters: send incident reports to the daemon's `IncidentService.Report` over
//! gRPC at a given rate, with realistic categories, item codes and texts.
//!
//! Each report carries a unique idempotency key and the bearer token in
//! `authorization: Bearer <token>`. Failures are logged, counted and skipped; the reporters
//! wait for the daemon to come up and tonic's channel reconnects after it goes away.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use gridsight_proto::v1::{
    incident_service_client::IncidentServiceClient, IncidentCategory, LatLon, ReportIncidentRequest,
};
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::Endpoint,
};

use crate::{city::DemoCity, SimError};

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl BearerAuth {
    /// Fails if the token cannot be a metadata value (non-ASCII or control characters).
    pub fn new(token: &str) -> Result<BearerAuth, SimError> {
        let v = format!("Bearer {token}")
            .parse()
            .map_err(|_| SimError::InvalidConfig("token is not valid ASCII metadata".into()))?;
        Ok(BearerAuth(v))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// What the reporters send and how fast.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// E.g. `http://127.0.0.1:50051`.
    pub endpoint: String,
    /// Bearer token with the right to report.
    pub token: String,
    /// Grids reports are spread over.
    pub grids: Vec<String>,
    /// Centre `[lon, lat]` per grid, to place reports inside it; grids without one get a
    /// point near the demo city's centre.
    pub centres: HashMap<String, [f64; 2]>,
    /// Reports per second, over all reporters.
    pub rate_per_sec: f64,
    /// Share (0-1) of reports sent with a location and no `grid_id`, for the daemon to
    /// find the grid from the location.
    pub location_only_share: f64,
    /// Calls in flight at most.
    pub max_in_flight: usize,
    /// Stop after this many reports; `None` = until cancelled.
    pub max_reports: Option<u64>,
    /// Seed of the report contents (idempotency keys are unique per run regardless).
    pub seed: u64,
    /// Deadline of one call.
    pub request_timeout: Duration,
}

impl ReporterConfig {
    /// Defaults: 1 report/s, 16 in flight, 5 s per call.
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>, grids: Vec<String>) -> Self {
        ReporterConfig {
            endpoint: endpoint.into(),
            token: token.into(),
            grids,
            centres: HashMap::new(),
            rate_per_sec: 1.0,
            location_only_share: 0.0,
            max_in_flight: 16,
            max_reports: None,
            seed: 1,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Takes the centres of the city's grids (only for grids already in `grids`).
    pub fn with_city(mut self, city: &DemoCity) -> Self {
        for g in &city.grids {
            if self.grids.contains(&g.id) {
                self.centres.insert(g.id.clone(), g.centre());
            }
        }
        self
    }
}

/// What a reporter run did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReporterStats {
    /// Calls made.
    pub sent: u64,
    /// Calls that returned OK.
    pub ok: u64,
    /// Of those, answered as duplicates.
    pub duplicates: u64,
    /// Calls that failed (connection, auth, validation...).
    pub failed: u64,
    /// From start until the last call finished.
    pub elapsed: Duration,
}

const CATEGORIES: [(IncidentCategory, &str, u32); 4] = [
    (IncidentCategory::Dispute, "JF", 1),
    (IncidentCategory::CentralTask, "ZX", 2),
    (IncidentCategory::SafetyHazard, "AQ", 3),
    (IncidentCategory::PublicService, "FW", 4),
];

fn texts(c: IncidentCategory) -> &'static [&'static str] {
    match c {
        IncidentCategory::Dispute => &[
            "邻里因楼道堆物发生争执，需要调解",
            "商铺与顾客因退款纠纷，现场情绪激动",
            "Two families disputing a shared boundary wall after renovation",
            "物业与业主因停车费产生矛盾，双方在小区门口争吵",
        ],
        IncidentCategory::SafetyHazard => &[
            "电动车在楼道内充电，存在火灾隐患",
            "路边井盖松动，行人易绊倒",
            "Gas smell reported near the back entrance of the market",
            "工地围挡倾斜，大风天可能倒塌",
        ],
        IncidentCategory::CentralTask => &[
            "垃圾分类督查：小区分类桶未按要求摆放",
            "Flood-season check of the riverside embankment: one drain blocked",
            "文明城市创建：主干道沿街晾晒需整改",
        ],
        _ => &[
            "路灯不亮已有三天，请尽快维修",
            "Bus shelter glass broken at the stop by the primary school",
            "独居老人需要上门探访服务",
            "Pothole on the lane up to the tea plantation",
        ],
    }
}

/// A random report for `grid_id`, placed within about 200 m of `centre` (or near the demo
/// city's centre without one).
pub fn random_report(
    rng: &mut impl Rng,
    key: String,
    grid_id: &str,
    centre: Option<[f64; 2]>,
) -> ReportIncidentRequest {
    let (category, prefix, code) = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    let description = texts(category)
        .choose(rng)
        .copied()
        .unwrap_or("巡查发现问题");
    let ([lon, lat], jitter) = match centre {
        Some(c) => (c, 0.002),
        None => ([119.68, 30.64], 0.05),
    };
    let photo_urls = if rng.random_bool(0.3) {
        vec![format!("https://photos.gridsight.invalid/{key}.jpg")]
    } else {
        Vec::new()
    };
    ReportIncidentRequest {
        category: category as i32,
        item_code: format!("{prefix}-{code:02}{:02}", rng.random_range(1..=12)),
        description: description.to_string(),
        grid_id: grid_id.to_string(),
        location: Some(LatLon {
            lon: lon + rng.random_range(-jitter..=jitter),
            lat: lat + rng.random_range(-jitter..=jitter),
        }),
        reporter_id: format!("rep-{:04}", rng.random_range(1..=3000)),
        photo_urls,
        idempotency_key: key,
    }
}

/// Sends reports for `grids` at `rate_per_sec` until `cancel` fires (see
/// [`run_reporters_with`]).
pub async fn run_reporters(
    endpoint: String,
    token: String,
    grids: Vec<String>,
    rate_per_sec: f64,
    cancel: CancellationToken,
) -> Result<ReporterStats, SimError> {
    let mut cfg = ReporterConfig::new(endpoint, token, grids);
    cfg.rate_per_sec = rate_per_sec;
    run_reporters_with(cfg, cancel).await
}

/// Waits for the daemon to accept connections, then sends reports until `cancel` fires or
/// `max_reports` were sent, and waits for the calls in flight. Only a bad configuration is
/// an error; failed calls are counted.
pub async fn run_reporters_with(
    cfg: ReporterConfig,
    cancel: CancellationToken,
) -> Result<ReporterStats, SimError> {
    if cfg.grids.is_empty() {
        return Err(SimError::InvalidConfig("reporters: no grids".into()));
    }
    if cfg.rate_per_sec.is_nan() || cfg.rate_per_sec <= 0.0 {
        return Err(SimError::InvalidConfig(
            "reporters: rate_per_sec must be > 0".into(),
        ));
    }
    if !(0.0..=1.0).contains(&cfg.location_only_share) {
        return Err(SimError::InvalidConfig(
            "reporters: location_only_share must be in 0-1".into(),
        ));
    }
    let auth = BearerAuth::new(&cfg.token)?;
    let endpoint = endpoint(&cfg.endpoint, cfg.request_timeout)?;
    let start = Instant::now();
    let mut stats = ReporterStats::default();
    let Some(channel) = connect_with_retry(&endpoint, &cfg.endpoint, &cancel).await else {
        return Ok(stats);
    };
    let client = IncidentServiceClient::with_interceptor(channel, auth);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let run_id: u64 = rand::rng().random();
    let mut calls = JoinSet::new();
    let mut streak = 0u64;
    let sending = Instant::now();
    while cfg.max_reports.is_none_or(|max| stats.sent < max) && !cancel.is_cancelled() {
        let due = sending + Duration::from_secs_f64(stats.sent as f64 / cfg.rate_per_sec);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = cancel.cancelled() => break,
        }
        while calls.len() >= cfg.max_in_flight.max(1) {
            if let Some(done) = calls.join_next().await {
                tally(done, &mut stats, &mut streak);
            }
        }
        let grid = &cfg.grids[rng.random_range(0..cfg.grids.len())];
        let key = format!("sim-{run_id:016x}-{:08}", stats.sent);
        let mut req = random_report(&mut rng, key, grid, cfg.centres.get(grid).copied());
        if cfg.location_only_share > 0.0 && rng.random_bool(cfg.location_only_share) {
            req.grid_id.clear();
        }
        let mut client = client.clone();
        calls.spawn(async move { client.report(req).await.map(|r| r.into_inner().duplicate) });
        stats.sent += 1;
    }
    while let Some(done) = calls.join_next().await {
        tally(done, &mut stats, &mut streak);
    }
    stats.elapsed = start.elapsed();
    tracing::info!(?stats, "reporters stopped");
    Ok(stats)
}

/// Counts one finished call; logs the first failure of a streak and every 100th after it.
fn tally(
    done: Result<Result<bool, tonic::Status>, tokio::task::JoinError>,
    stats: &mut ReporterStats,
    streak: &mut u64,
) {
    match done {
        Ok(Ok(duplicate)) => {
            stats.ok += 1;
            stats.duplicates += u64::from(duplicate);
            *streak = 0;
        }
        Ok(Err(status)) => {
            stats.failed += 1;
            *streak += 1;
            if *streak % 100 == 1 {
                tracing::warn!(code = ?status.code(), message = status.message(), failed = stats.failed, "report failed");
            }
        }
        Err(e) => {
            stats.failed += 1;
            tracing::warn!(error = %e, "report task failed");
        }
    }
}

/// The daemon's gRPC endpoint: 3 s to connect, `request_timeout` per call.
pub(crate) fn endpoint(uri: &str, request_timeout: Duration) -> Result<Endpoint, SimError> {
    Ok(Endpoint::from_shared(uri.to_string())
        .map_err(|source| SimError::InvalidEndpoint {
            endpoint: uri.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(3))
        .timeout(request_timeout))
}

/// Connects, retrying with backoff (0.2 s doubling to 5 s) until it works; `None` when
/// cancelled first.
pub(crate) async fn connect_with_retry(
    endpoint: &Endpoint,
    uri: &str,
    cancel: &CancellationToken,
) -> Option<tonic::transport::Channel> {
    let mut backoff = Duration::from_millis(200);
    let mut attempts = 0u32;
    loop {
        let attempt = tokio::select! {
            r = endpoint.connect() => r,
            _ = cancel.cancelled() => return None,
        };
        match attempt {
            Ok(ch) => {
                tracing::info!(endpoint = uri, attempts, "reporters connected");
                return Some(ch);
            }
            Err(e) => {
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(10) {
                    tracing::warn!(endpoint = uri, error = %e, attempts, "daemon not reachable yet; retrying");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_complete_and_plausible() {
        let mut rng = StdRng::seed_from_u64(3);
        for i in 0..200 {
            let r = random_report(
                &mut rng,
                format!("k{i}"),
                "town-01-c01",
                Some([119.7, 30.6]),
            );
            assert_eq!(r.idempotency_key, format!("k{i}"));
            let cat = IncidentCategory::try_from(r.category).expect("known category");
            assert_ne!(cat, IncidentCategory::Unspecified);
            assert_eq!(r.item_code.len(), 7, "{}", r.item_code);
            assert!(r.reporter_id.starts_with("rep-") && r.reporter_id.len() == 8);
            assert!(!r.description.is_empty());
            let loc = r.location.expect("location");
            assert!((loc.lon - 119.7).abs() <= 0.002 && (loc.lat - 30.6).abs() <= 0.002);
        }
        assert!(BearerAuth::new("ok-token").is_ok());
        assert!(BearerAuth::new("bad\ntoken").is_err());
    }

    #[tokio::test]
    async fn bad_config_is_an_error_and_cancel_ends_the_wait() {
        let cancel = CancellationToken::new();
        let r = run_reporters(
            "not a uri".into(),
            "t".into(),
            vec!["g".into()],
            1.0,
            cancel.clone(),
        )
        .await;
        assert!(matches!(r, Err(SimError::InvalidEndpoint { .. })), "{r:?}");
        let r = run_reporters(
            "http://127.0.0.1:1".into(),
            "t".into(),
            vec![],
            1.0,
            cancel.clone(),
        )
        .await;
        assert!(matches!(r, Err(SimError::InvalidConfig(_))), "{r:?}");
        // Nothing listens on port 1: the reporters keep retrying until cancelled.
        let port = crate::broker::free_port().expect("port");
        let run = tokio::spawn(run_reporters(
            format!("http://127.0.0.1:{port}"),
            "t".into(),
            vec!["g".into()],
            5.0,
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!run.is_finished());
        cancel.cancel();
        let stats = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("ends")
            .expect("join")
            .expect("ok");
        assert_eq!(stats.sent, 0);
    }
}
