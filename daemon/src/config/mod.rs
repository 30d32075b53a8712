//! The daemon's one configuration file (TOML).
//!
//! Owns the schema: every field is documented here, unknown fields are rejected
//! (`deny_unknown_fields`), and [`Config::validate`] checks what serde cannot (references
//! between grids, duplicate ids, ranges). [`load`] turns a file into a `Config` or into the
//! full list of errors, each with the file, line and field, for `gridsight check-config`.
//!
//! Invariant: a `Config` that left [`load`] or [`Config::validate`] is internally consistent
//! (every grid parent exists, ids are unique, tokens are non-empty), so the rest of the
//! daemon never re-checks it.

pub mod cameras;
mod incidents;
mod load;
mod mapping;
pub mod noise;
pub mod rules;
pub mod security;
pub mod sensors;

use std::{collections::HashSet, net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use cameras::{CameraConfig, CameraTransport, TimestampPolicy, VideoConfig};
pub use incidents::{DepartmentConfig, IncidentsConfig, StatsConfig};
pub use load::{load, load_str, ConfigError, ConfigIssue};
pub use mapping::{FieldSource, TimeFormat, TopicMapping};
pub use noise::{
    AlertMatch, EscalationConfig, EscalationStep, FlapConfig, GroupConfig, InhibitConfig,
};
pub use rules::{Condition, Label, Pattern, RuleAction, RuleConfig, Scope, Source};
pub use security::{ApiTlsConfig, ClientCertConfig, LimitsConfig, MqttTlsConfig};
pub use sensors::SensorConfig;

use crate::domain::{GridIndex, Severity};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the daemon keeps its durable state.
    #[serde(default)]
    pub store: StoreConfig,
    /// Listening sockets of the gRPC and HTTP APIs.
    #[serde(default)]
    pub api: ApiConfig,
    /// The MQTT broker that sensors publish to. Absent: no sensor ingest.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// How events become alerts.
    #[serde(default)]
    pub correlation: CorrelationConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The governance grid: every cell, with its parent (community → town → county).
    #[serde(default)]
    pub grids: Vec<GridConfig>,
    /// Bearer tokens accepted by the APIs, each with a role (more may come from
    /// `api.tokens_file`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Client certificates accepted in place of a token (needs `api.tls.client_ca`).
    #[serde(default)]
    pub client_certs: Vec<ClientCertConfig>,
    /// How cameras are supervised (timeouts, health thresholds, analytics).
    #[serde(default)]
    pub video: VideoConfig,
    /// The street cameras (RTSP).
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Correlation rules: which evidence, in which space and time, makes which alert.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Supervision of dispatched incidents (overdue checks).
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// The figures the centre reports on (time zone, reporters' quota).
    #[serde(default)]
    pub stats: StatsConfig,
    /// The departments incidents are dispatched to; empty = any department id is accepted.
    #[serde(default)]
    pub departments: Vec<DepartmentConfig>,
    /// Sensors whose place is known (optional: unlisted sensors are accepted without a
    /// location).
    #[serde(default)]
    pub sensors: Vec<SensorConfig>,
}

/// `[store]`: the embedded SQLite store (WAL mode, batched commits).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Folder of the database file; created if missing.
    pub data_dir: PathBuf,
    /// `full` (fsync every commit: survives power loss) or `normal` (survives a process
    /// crash; a power cut may lose the last commits).
    pub synchronous: Synchronous,
    /// Most records written in one transaction (group commit).
    pub max_batch: usize,
    /// Sensor events older than this are deleted (hours).
    pub sensor_event_retention_hours: u64,
    /// Alert changes older than this are deleted (hours); a `Subscribe` that resumes from
    /// before them gets `OUT_OF_RANGE`.
    pub alert_change_retention_hours: u64,
    /// Most malformed MQTT messages kept (with their error) in the dead-letter table.
    pub dead_letter_capacity: u64,
    /// Seconds between two retention passes.
    pub retention_interval_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/gridsight"),
            synchronous: Synchronous::Full,
            max_batch: 4096,
            sensor_event_retention_hours: 24 * 30,
            alert_change_retention_hours: 24 * 7,
            dead_letter_capacity: 10_000,
            retention_interval_secs: 60,
        }
    }
}

/// SQLite `synchronous` setting.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit.
    Full,
    /// fsync at WAL checkpoints only.
    Normal,
}

/// `[api]`: listening sockets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// gRPC (IncidentService, AlertService, health, reflection).
    pub grpc_listen: SocketAddr,
    /// HTTP (dashboard, /metrics, /healthz, /readyz, JSON reads).
    pub http_listen: SocketAddr,
    /// Seconds between heartbeats on an alert subscription.
    pub heartbeat_secs: u64,
    /// TLS on both listeners. Required unless `plaintext = true`.
    pub tls: Option<ApiTlsConfig>,
    /// Serve gRPC and HTTP without TLS: only for a demo or a closed test network. A config
    /// file must choose: `[api.tls]` or `plaintext = true`.
    pub plaintext: bool,
    /// A TOML file of more `[[tokens]]` (relative to this file), re-read on SIGHUP, so
    /// that tokens are rotated without touching the main config.
    pub tokens_file: Option<PathBuf>,
    /// Request sizes and per-token rates.
    pub limits: LimitsConfig,
    /// Niceness (0–19) of the APIs' threads (gRPC, HTTP, WebSockets, the alert fan-out):
    /// above 0, when the cores are short, ingest and correlation get them first and
    /// subscribers get their changes a little later (never fewer); with idle cores it
    /// changes nothing. 0: the APIs run on the daemon's threads, as equals.
    pub nice: u8,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            heartbeat_secs: 5,
            tls: None,
            plaintext: false,
            tokens_file: None,
            limits: LimitsConfig::default(),
            nice: 15,
        }
    }
}

/// `[mqtt]`: the broker the sensor fleet publishes to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; the persistent session on the broker is keyed by it.
    pub client_id: String,
    /// Optional user name.
    pub username: Option<String>,
    /// Optional password (never logged).
    pub password: Option<String>,
    /// Keep-alive interval (seconds).
    pub keep_alive_secs: u64,
    /// Subscription QoS: 1 (at least once; acknowledged only once durable) or 0.
    pub qos: u8,
    /// Subscribe to the default topic tree `gridsight/sensors/{grid}/{kind}/{sensor_id}`.
    pub default_topics: bool,
    /// Payloads larger than this are rejected as `oversized` (bytes).
    pub max_payload_bytes: usize,
    /// First reconnect delay after the broker went away (milliseconds); doubles up to
    /// `reconnect_max_ms`, with jitter.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay (milliseconds).
    pub reconnect_max_ms: u64,
    /// Vendors' own topics and payload fields.
    pub mappings: Vec<TopicMapping>,
    /// Publish every alert change (muted alerts excepted) to
    /// `{alert_topic_prefix}/{grid}/{severity}`, QoS 1, not retained.
    pub publish_alerts: bool,
    /// Topic prefix of published alerts: no wildcards (`+`, `#`), no trailing `/`.
    pub alert_topic_prefix: String,
    /// TLS to the broker (every connection: ingest and publishers). Required unless
    /// `plaintext = true`.
    pub tls: Option<MqttTlsConfig>,
    /// Talk to the broker without TLS (a broker on the same host or a closed network).
    pub plaintext: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "gridsight".into(),
            username: None,
            password: None,
            keep_alive_secs: 30,
            qos: 1,
            default_topics: true,
            max_payload_bytes: 16 * 1024,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            mappings: Vec::new(),
            publish_alerts: true,
            alert_topic_prefix: "gridsight/alerts".into(),
            tls: None,
            plaintext: false,
        }
    }
}

/// `[correlation]`: single-source alerts, the built-in join, sharding and noise control.
/// The rules themselves are `[[rules]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Number of correlator shards; 0 = one per CPU core. Events are routed by grid.
    pub shards: usize,
    /// Grids are routed to shards by their ancestor at this depth (0 = the top grid, 1 =
    /// towns under a county): rules whose scope stays at or below it never cross shards.
    /// Events a rule needs on another shard are copied there.
    pub partition_tier: usize,
    /// Capacity of each shard's input channel (events block when it is full).
    pub shard_queue: usize,
    /// The built-in join: a sensor alarm and an incident in the same grid within this many
    /// seconds become one alert (0 = off; leave joining to `[[rules]]`).
    pub window_secs: u64,
    /// A sensor alarm's alert is resolved (by `gridsight`) when the sensor reports normal.
    pub sensor_clear_on_normal: bool,
    /// Repeats that only fold into an open alert (count, last_seen, evidence) send its
    /// update at most once per this many ms; the update sent holds every fold made before
    /// it. Opening, resolving, raising and every other change go out at once (0 = send
    /// every repeat).
    pub update_interval_ms: u64,
    /// Flap suppression for sensors that toggle.
    pub flap: FlapConfig,
    /// Inhibition: open alerts that mute the alerts they explain.
    pub inhibit: Vec<InhibitConfig>,
    /// Escalation chains for alerts nobody acknowledges.
    pub escalation: Vec<EscalationConfig>,
    /// Grouping: related alerts under one group alert.
    pub groups: Vec<GroupConfig>,
    /// Severity of an alert opened by a sensor alarm, per sensor kind.
    pub sensor_severity: std::collections::BTreeMap<String, Severity>,
    /// Severity of an alert opened by a sensor alarm of a kind not listed above.
    pub default_sensor_severity: Severity,
    /// Severity of an alert opened by an incident report.
    pub incident_severity: Severity,
    /// How many steps a correlated alert (sensor alarm + incident) is raised above the more
    /// severe of the two.
    pub correlated_raise: u8,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        let mut sensor_severity = std::collections::BTreeMap::new();
        sensor_severity.insert("smoke".to_string(), Severity::Major);
        sensor_severity.insert("gas".to_string(), Severity::Major);
        sensor_severity.insert("water_level".to_string(), Severity::Minor);
        sensor_severity.insert("manhole_cover".to_string(), Severity::Minor);
        Self {
            shards: 0,
            partition_tier: 1,
            shard_queue: 4096,
            window_secs: 120,
            sensor_clear_on_normal: false,
            update_interval_ms: 1000,
            flap: FlapConfig::default(),
            inhibit: Vec::new(),
            escalation: Vec::new(),
            groups: Vec::new(),
            sensor_severity,
            default_sensor_severity: Severity::Minor,
            incident_severity: Severity::Minor,
            correlated_raise: 1,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json` (one JSON object per line); `--log-json` overrides.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `gridsight=debug,info`; `RUST_LOG` overrides.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[[grids]]`: one cell of the governance network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// Unique id, used in MQTT topics and the API (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The enclosing grid (town for a community, county for a town); none at the top.
    #[serde(default)]
    pub parent: Option<String>,
    /// Outline as `[lon, lat]` points (at least three; the ring closes itself); may be
    /// empty for upper tiers, which are then never found by a point lookup.
    #[serde(default)]
    pub polygon: Vec<[f64; 2]>,
}

/// `[[tokens]]`: an API bearer token, given as its SHA-256 (`token_sha256`, what a
/// production config holds: `gridsight new-token` makes one) or in plain (`token`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in audit fields such as `acknowledged_by`).
    pub name: String,
    /// The secret sent as `authorization: Bearer <token>`; at least 16 characters.
    #[serde(default)]
    pub token: Option<String>,
    /// The secret's SHA-256 as 64 hex digits: the config never holds the token itself.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// What it may do.
    pub role: Role,
}

impl TokenConfig {
    /// A token given in plain.
    pub fn plain(name: impl Into<String>, token: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            token: Some(token.into()),
            token_sha256: None,
            role,
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only: Get, List, Subscribe, dashboard, metrics.
    Viewer,
    /// Read, act on alerts (acknowledge, resolve), move incidents along their lifecycle,
    /// and create or expire silences.
    Operator,
    /// Report incidents only (the grid workers' app).
    Reporter,
    /// Read, report incidents, act on alerts and move incidents (other systems).
    Integrator,
}

impl Config {
    /// Checks what serde cannot. Returns every problem as (field path, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        self.validate_with(&GridIndex::new(&self.grids))
    }

    /// [`Config::validate`] with the grid index already built from `self.grids`.
    pub fn validate_with(&self, index: &GridIndex) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let mut ids = HashSet::new();
        for (i, g) in self.grids.iter().enumerate() {
            check_id("grid", &g.id, format!("grids[{i}].id"), &mut ids, &mut errs);
            if matches!(g.polygon.len(), 1 | 2) {
                errs.push((
                    format!("grids[{i}].polygon"),
                    "needs at least 3 points (or none)".into(),
                ));
            }
            for (j, p) in g.polygon.iter().enumerate() {
                if !valid_lon_lat(*p) {
                    errs.push((
                        format!("grids[{i}].polygon[{j}]"),
                        "point is not a [lon, lat] pair in range".into(),
                    ));
                }
            }
        }
        for (i, g) in self.grids.iter().enumerate() {
            if let Some(p) = &g.parent {
                if !ids.contains(p.as_str()) {
                    errs.push((format!("grids[{i}].parent"), format!("unknown grid `{p}`")));
                }
            }
        }
        if errs.is_empty() {
            if let Some(cycle) = crate::domain::GridIndex::find_cycle(&self.grids) {
                errs.push((
                    "grids".into(),
                    format!("parent chain loops through `{cycle}`"),
                ));
            }
        }
        security::validate(self, &mut errs);
        errs.extend(cameras::validate(&self.video, &self.cameras, index));
        errs.extend(sensors::validate(&self.sensors, index));
        errs.extend(rules::validate(&self.rules, index.max_depth()));
        let rule_ids: Vec<&str> = self.rules.iter().map(|r| r.id.as_str()).collect();
        errs.extend(noise::validate(
            &self.correlation.inhibit,
            &self.correlation.escalation,
            &rule_ids,
        ));
        errs.extend(noise::validate_groups(
            &self.correlation.groups,
            self.correlation.partition_tier,
        ));
        errs.extend(incidents::validate(
            &self.incidents,
            &self.stats,
            &self.departments,
        ));
        if self.api.nice > 19 {
            errs.push(("api.nice".into(), "must be 0 to 19".into()));
        }
        if self.store.max_batch == 0 {
            errs.push(("store.max_batch".into(), "must be at least 1".into()));
        }
        if self.correlation.shard_queue == 0 {
            errs.push((
                "correlation.shard_queue".into(),
                "must be at least 1".into(),
            ));
        }
        if let Some(m) = &self.mqtt {
            if m.qos > 1 {
                errs.push(("mqtt.qos".into(), "must be 0 or 1".into()));
            }
            if m.client_id.is_empty() {
                errs.push(("mqtt.client_id".into(), "must not be empty".into()));
            }
            if m.reconnect_min_ms == 0 || m.reconnect_min_ms > m.reconnect_max_ms {
                errs.push((
                    "mqtt.reconnect_min_ms".into(),
                    "must be at least 1 and at most reconnect_max_ms".into(),
                ));
            }
            let p = &m.alert_topic_prefix;
            if p.is_empty() || p.ends_with('/') || p.contains(['+', '#', '\0']) {
                errs.push((
                    "mqtt.alert_topic_prefix".into(),
                    "must be a topic without wildcards (`+`, `#`) or a trailing `/`".into(),
                ));
            }
            for (i, map) in m.mappings.iter().enumerate() {
                for (field, msg) in map.validate() {
                    errs.push((format!("mqtt.mappings[{i}].{field}"), msg));
                }
            }
        }
        errs
    }
}

/// Whether `s` can be a grid, sensor or camera id.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks the id of a `what` (grid, camera, sensor) at `field`: valid, and not already
/// in `seen` (ids of the same list); adds it to `seen`.
fn check_id<'a>(
    what: &str,
    id: &'a str,
    field: String,
    seen: &mut HashSet<&'a str>,
    errs: &mut Vec<(String, String)>,
) {
    if !valid_id(id) {
        errs.push((
            field.clone(),
            format!("`{id}` is not a valid {what} id (1-64 of letters, digits, `-`, `_`, `.`)"),
        ));
    }
    if !seen.insert(id) {
        errs.push((field, format!("duplicate {what} id `{id}`")));
    }
}

/// Whether `[lon, lat]` are finite degrees in range.
pub fn valid_lon_lat([lon, lat]: [f64; 2]) -> bool {
    (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/gridsight.example.toml");

    #[test]
    fn example_config_parses_and_validates() {
        let cfg = load_str(EXAMPLE, "gridsight.example.toml").expect("example config is valid");
        assert!(cfg.grids.len() >= 3);
        assert!(cfg.mqtt.is_some());
        assert_eq!(cfg.tokens.len(), 4);
        assert_eq!(cfg.cameras.len(), 2);
        assert_eq!(cfg.departments.len(), 3);
        assert_eq!(cfg.stats.utc_offset_minutes, 480);
        assert_eq!(
            cfg.mqtt.as_ref().map(|m| m.alert_topic_prefix.as_str()),
            Some("gridsight/alerts")
        );
        assert_eq!(cfg.cameras[0].expected_fps, 25.0);
        assert_eq!(
            cfg.cameras[1].grids,
            vec!["town-01-c01".to_string()],
            "placed"
        );
        assert_eq!(cfg.sensors.len(), 1);
        assert_eq!(
            cfg.cameras[0].redacted_url(),
            "rtsp://10.20.0.11:554/Streaming/Channels/101"
        );
    }

    #[test]
    fn the_shipped_rules_load_with_the_example_grids() {
        let text = format!("{EXAMPLE}\n{}", include_str!("../../../deploy/rules.toml"));
        // The example's own [correlation] is replaced by the shipped one.
        let text = text.replacen("[correlation]", "[correlation_example]", 1);
        let text = strip_table(&text, "[correlation_example]");
        let cfg = load_str(&text, "example+rules.toml").expect("shipped rules are valid");
        assert_eq!(cfg.rules.len(), 6);
        assert_eq!(cfg.correlation.window_secs, 0);
        assert_eq!(cfg.correlation.escalation[0].steps.len(), 2);
        assert_eq!(cfg.correlation.groups[0].min_members, 3);
    }

    /// `text` without the table starting at the `header` line (up to the next header).
    fn strip_table(text: &str, header: &str) -> String {
        let mut out = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.trim() == header {
                skipping = true;
                continue;
            }
            if skipping && line.starts_with('[') && !line.starts_with("[correlation.") {
                skipping = false;
            }
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn every_error_is_reported_with_line_and_field() {
        let text = r#"
[store]
data_dir = "/tmp/x"
max_batchx = 3

[[grids]]
id = "A"
name = "a"
parent = "nowhere"

[[grids]]
id = "B"
name = 7

[[tokens]]
name = "t"
token = "short"
role = "viewer"
"#;
        let err = load_str(text, "bad.toml").unwrap_err();
        let issues = err.issues();
        let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
        assert!(fields.contains(&"store.max_batchx"), "{fields:?}");
        assert!(fields.contains(&"grids[1].name"), "{fields:?}");
        let line_of = |f: &str| issues.iter().find(|i| i.field == f).map(|i| i.line);
        assert_eq!(line_of("store.max_batchx"), Some(Some(4)));
        assert_eq!(line_of("grids[1].name"), Some(Some(13)));
        let shown = err.to_string();
        assert!(shown.contains("bad.toml:4"), "{shown}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = r#"
[[grids]]
id = "A"
name = "a"
parent = "nowhere"

[[grids]]
id = "A"
name = "b"

[[tokens]]
name = "t"
token = "short"
role = "viewer"

[api]
plaintext = true
"#;
        let err = load_str(text, "bad.toml").unwrap_err();
        let fields: Vec<_> = err.issues().iter().map(|i| i.field.clone()).collect();
        assert_eq!(
            fields,
            vec!["grids[0].parent", "grids[1].id", "tokens[0].token"],
            "{err}"
        );
        assert_eq!(err.issues()[0].line, Some(5));
        assert_eq!(err.issues()[1].line, Some(8));
    }

    /// `[api] plaintext = true`: what every config must choose (or `[api.tls]`).
    const PLAIN: &str = "\n[api]\nplaintext = true\n";

    #[test]
    fn api_nice_is_0_to_19_and_15_unless_set() {
        let cfg = load_str(PLAIN, "plain.toml").unwrap();
        assert_eq!(cfg.api.nice, 15);
        let cfg = load_str(&format!("{PLAIN}nice = 0\n"), "zero.toml").unwrap();
        assert_eq!(cfg.api.nice, 0);
        let err = load_str(&format!("{PLAIN}nice = 20\n"), "nice.toml").unwrap_err();
        let issues = err.issues();
        assert_eq!(issues.len(), 1, "{err}");
        assert_eq!(issues[0].field, "api.nice");
        assert!(issues[0].message.contains("0 to 19"), "{err}");
        // Negative (a higher priority than ingest) is not a u8: refused by the parser.
        let err = load_str(&format!("{PLAIN}nice = -5\n"), "neg.toml").unwrap_err();
        assert_eq!(err.issues()[0].field, "api.nice", "{err}");
    }

    const PLACED: &str = r#"
[[grids]]
id = "c1"
name = "c1"
polygon = [[120.0, 30.0], [120.01, 30.0], [120.01, 30.01], [120.0, 30.01]]

[[grids]]
id = "c2"
name = "c2"
polygon = [[120.01, 30.0], [120.02, 30.0], [120.02, 30.01], [120.01, 30.01]]
"#;

    #[test]
    fn a_sensor_outside_its_grid_is_named_with_its_line() {
        let text = format!(
            "{PLACED}
[[sensors]]
id = \"s1\"
grid = \"c1\"
location = [120.005, 30.005]

[[sensors]]
id = \"s2\"
grid = \"c1\"
location = [120.015, 30.005]
{PLAIN}"
        );
        let err = load_str(&text, "s.toml").unwrap_err();
        let issues = err.issues();
        assert_eq!(issues.len(), 1, "{err}");
        assert_eq!(issues[0].field, "sensors[1].location");
        assert_eq!(issues[0].line, Some(20));
        assert!(issues[0].message.contains("outside grid `c1`"), "{err}");
    }

    #[test]
    fn sections_of_a_file_that_does_not_parse_are_each_checked() {
        let text = format!(
            "{PLACED}
[[sensors]]
id = \"s1\"
grid = \"c1\"
location = \"here\"

[[cameras]]
id = \"cam\"
url = \"rtsp://h/p\"
location = [120.015, 30.005]

[video]
open_timeout_secs = 1.0
{PLAIN}"
        );
        let err = load_str(&text, "s.toml").unwrap_err();
        let fields: Vec<_> = err.issues().iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, vec!["sensors[0].location"], "{err}");
        let fixed = text.replace("\"here\"", "[120.001, 30.001]");
        let cfg = load_str(&fixed, "s.toml").expect("valid");
        assert_eq!(cfg.cameras[0].grids, vec!["c2".to_string()]);
    }

    #[test]
    fn alert_topic_prefix_may_not_hold_wildcards() {
        for bad in ["", "gridsight/alerts/", "gridsight/+/alerts", "alerts/#"] {
            let text = format!("[mqtt]\nplaintext = true\nalert_topic_prefix = {bad:?}\n{PLAIN}");
            let err = load_str(&text, "m.toml").unwrap_err();
            assert_eq!(err.issues()[0].field, "mqtt.alert_topic_prefix", "{bad:?}");
        }
        let ok = load_str(
            &format!("[mqtt]\nplaintext = true\nalert_topic_prefix = \"city/alerts\"\n{PLAIN}"),
            "m.toml",
        );
        assert!(ok.is_ok_and(|c| c.mqtt.is_some_and(|m| m.publish_alerts)));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = load_str("[store\nx=1", "s.toml").unwrap_err();
        assert_eq!(err.issues()[0].line, Some(1));
    }
}
