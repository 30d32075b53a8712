//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`, run by `make fuzz`), one per
//! parser of outside input. Each takes raw bytes as they arrive from outside, runs the
//! daemon's own parser and checks on them, and asserts what must hold of the answer; a
//! panic anywhere (an overflow in a debug-assertions build included) is a finding.
//!
//! - [`mqtt_message`]: topic `0x00` payload → the MQTT [`Parser`] (default tree and the
//!   example config's vendor mapping, plus one of each time format). Invariants: a reading
//!   comes out valid (known grid, valid ids, a finite reading); a reject carries one of the
//!   seven metric labels and a message.
//! - [`config_file`]: a config file → [`load_str`]. Invariants: an accepted config has no
//!   issue left; every issue of a refused one has a message, and a line that is in the file.
//! - [`grpc_request`]: a selector byte, then a protobuf message → that call's checks
//!   (Report, Subscribe, CreateSilence, Transition, List, Acknowledge, Dispatch).
//!   Invariants: an accepted request is inside its documented bounds; a refusal is a
//!   status code a client can act on, naming the field.
//! - [`ws`]: the `/ws` query `0x00` the bytes a client then sends → the query checks, then
//!   the WebSocket frame reader with the daemon's limits. Invariants: a refused query
//!   names a parameter; no message above `max_ws_message_bytes` is ever read.
//!
//! Everything the targets need is built once per process ([`OnceLock`]), so an execution
//! costs only the parse. `tests` runs every seed of `fuzz/corpus/` through the same
//! functions in `make test`.

use std::{
    io::{Read, Write},
    sync::{Arc, OnceLock},
};

use gridsight_proto::v1 as pb;
use prost::Message;

use crate::{
    api::{
        grpc::{
            check_command, check_create, check_dispatch, check_filter, expand_grids, page,
            validate_report, ApiError,
        },
        ws::{request as ws_request, WsQuery},
    },
    config::{load_str, valid_id, Config},
    domain::{GridIndex, Severity},
    incidents::StepRequest,
    sources::mqtt::payload::{self, Parser},
};

/// The example config, with one more vendor mapping (time as RFC 3339 from the payload,
/// grid and id from JSON, a threshold instead of a state).
const FIXTURE_EXTRA: &str = r#"
[[mqtt.mappings]]
topic = "vendor/+/#"
grid = "json:/g"
sensor_id = "json:/id"
kind = "topic:1"
reading = "json:/v"
alarm_above = 5.0
device_time = "json:/ts"
time_format = "rfc3339"

[[mqtt.mappings]]
topic = "ms/+/+/+"
grid = "topic:1"
sensor_id = "topic:3"
kind = "topic:2"
state = "json:/s"
device_time = "json:/t"
time_format = "unix_ms"
"#;

/// The receive time every target uses (2026-11-23T00:00:00Z).
pub const NOW_MS: i64 = 1_795_392_000_000;

struct Fixture {
    cfg: Config,
    grids: Arc<GridIndex>,
    parser: Parser,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let text = format!(
            "{}{FIXTURE_EXTRA}",
            include_str!("../../deploy/gridsight.example.toml")
        );
        let cfg = match load_str(&text, "fuzz fixture") {
            Ok(c) => c,
            Err(e) => panic!("the fuzz fixture config does not load: {e}"),
        };
        let grids = Arc::new(GridIndex::new(&cfg.grids));
        let Some(mqtt) = &cfg.mqtt else {
            panic!("the fuzz fixture config has no [mqtt]");
        };
        let parser = Parser::new(grids.clone(), &mqtt.mappings, mqtt.max_payload_bytes)
            .with_sensors(&cfg.sensors);
        Fixture { cfg, grids, parser }
    })
}

/// Splits at the first `0x00` (which neither an MQTT topic nor a URL holds).
fn split0(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// An MQTT message: topic, `0x00`, payload.
pub fn mqtt_message(data: &[u8]) {
    let f = fixture();
    let (topic, payload) = split0(data);
    // The broker client hands the ingest a UTF-8 topic; anything else never reaches it.
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    match f.parser.parse(topic, payload, NOW_MS) {
        Ok(ev) => {
            assert!(f.grids.contains(&ev.grid_id), "unknown grid accepted");
            assert!(valid_id(&ev.grid_id) && valid_id(&ev.kind) && valid_id(&ev.sensor_id));
            assert!(ev.reading.is_none_or(f64::is_finite), "reading not finite");
            assert_eq!(ev.receive_ms, NOW_MS);
        }
        Err(rej) => {
            assert!(
                payload::REASONS.contains(&rej.reason),
                "label {}",
                rej.reason
            );
            assert!(!rej.error.is_empty(), "a reject without a message");
        }
    }
}

/// A config file's bytes.
pub fn config_file(data: &[u8]) {
    // `load` reads the file as UTF-8 text and refuses anything else before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(text, "fuzz.toml") {
        Ok(cfg) => {
            let left = cfg.validate();
            assert!(left.is_empty(), "accepted with issues: {left:?}");
        }
        Err(crate::config::ConfigError::Invalid { issues, .. }) => {
            assert!(!issues.is_empty(), "refused without an issue");
            let lines = text.lines().count().max(1);
            for i in &issues {
                assert!(!i.message.is_empty(), "an issue without a message: {i:?}");
                if let Some(l) = i.line {
                    assert!((1..=lines + 1).contains(&l), "line {l} of {lines}: {i:?}");
                }
            }
        }
        Err(e) => panic!("load_str failed other than Invalid: {e}"),
    }
}

/// A refusal must be a status a client can act on, naming the field when it is a field.
fn refused(e: ApiError) {
    match &e {
        ApiError::InvalidArgument { field, message } => {
            assert!(!field.is_empty() && !message.is_empty(), "{e:?}");
        }
        ApiError::OutOfRange(m) => assert!(!m.is_empty()),
        other => panic!("a check refused with {other:?}"),
    }
    let status = tonic::Status::from(e);
    assert!(!status.message().is_empty());
}

/// A selector byte (which call), then that call's request as protobuf.
pub fn grpc_request(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let departments = &f.cfg.departments;
    match which % 8 {
        0 => {
            let Ok(mut r) = pb::ReportIncidentRequest::decode(body) else {
                return;
            };
            match validate_report(&mut r, &f.grids) {
                Ok(()) => {
                    assert!(f.grids.contains(&r.grid_id));
                    assert!(!r.idempotency_key.is_empty() && r.description.len() <= 4000);
                    assert!(r.photo_urls.len() <= 10);
                    if let Some(l) = &r.location {
                        assert!(l.lat.abs() <= 90.0 && l.lon.abs() <= 180.0);
                    }
                }
                Err(e) => refused(e),
            }
        }
        1 => {
            let Ok(r) = pb::SubscribeAlertsRequest::decode(body) else {
                return;
            };
            match check_filter(&r, &f.grids, 10, 1_000) {
                Ok(_) => {
                    assert!(r.resume_after_seq == 0 || (10..=1_000).contains(&r.resume_after_seq));
                    assert!(r.grid_ids.iter().all(|g| f.grids.contains(g)));
                }
                Err(e) => refused(e),
            }
        }
        2 => {
            let Ok(r) = pb::CreateSilenceRequest::decode(body) else {
                return;
            };
            match check_create(&r, &f.grids, NOW_MS) {
                Ok(s) => {
                    let at = |t: &Option<prost_types::Timestamp>| {
                        t.as_ref().map(gridsight_proto::millis_from_ts)
                    };
                    let (Some(starts), Some(ends)) = (at(&s.starts_at), at(&s.ends_at)) else {
                        panic!("a silence without its times: {s:?}");
                    };
                    assert!(ends > NOW_MS && ends > starts, "{s:?}");
                    assert!(ends - starts <= 7 * 24 * 3600 * 1000);
                }
                Err(e) => refused(e),
            }
        }
        3 => {
            let Ok(r) = pb::TransitionIncidentRequest::decode(body) else {
                return;
            };
            match StepRequest::from_pb(&r, departments, NOW_MS) {
                Ok(step) => {
                    if let Some(d) = step.deadline_ms {
                        assert!(d > NOW_MS, "a deadline in the past: {step:?}");
                    }
                }
                Err(e) => refused(e.into()),
            }
        }
        4 => {
            let Ok(r) = pb::ListAlertsRequest::decode(body) else {
                return;
            };
            if r.min_severity != 0 && Severity::from_pb(r.min_severity).is_none() {
                return;
            }
            match expand_grids(&f.grids, &r.grid_ids, "grid_ids") {
                Ok(Some(all)) => assert!(all.iter().all(|g| f.grids.contains(g))),
                Ok(None) => assert!(r.grid_ids.is_empty()),
                Err(e) => return refused(e),
            }
            match page(r.page_size, &r.page_token) {
                Ok(p) => assert!((1..=1000).contains(&p.size) && p.before >= 0),
                Err(e) => refused(e),
            }
        }
        5 => {
            let Ok(r) = pb::AcknowledgeAlertRequest::decode(body) else {
                return;
            };
            if let Err(e) = check_command(&r.id, r.expected_version, &r.note, false) {
                refused(e)
            }
        }
        6 => {
            let Ok(r) = pb::AddAlertNoteRequest::decode(body) else {
                return;
            };
            if let Err(e) = check_command(&r.id, 0, &r.text, true) {
                refused(e)
            }
        }
        _ => {
            let Ok(r) = pb::DispatchAlertRequest::decode(body) else {
                return;
            };
            let deadline = r.deadline.as_ref().map(gridsight_proto::millis_from_ts);
            match check_dispatch(
                &r.id,
                r.expected_version,
                r.department,
                deadline,
                r.note,
                departments,
                NOW_MS,
            ) {
                Ok(step) => {
                    assert!(departments.iter().any(|d| d.id == step.department));
                    assert!(step.deadline_ms.is_none_or(|d| d > NOW_MS));
                }
                Err(e) => refused(e),
            }
        }
    }
}

/// The client's side of a WebSocket, read from the fuzz input; what the server writes
/// goes nowhere.
struct ClientBytes<'a>(&'a [u8]);

impl Read for ClientBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ClientBytes<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The largest message the fixture lets a WebSocket client send.
fn max_ws_message() -> usize {
    fixture().cfg.api.limits.max_ws_message_bytes
}

/// `/ws`: the query string, `0x00`, then the bytes the client sends after the upgrade.
pub fn ws(data: &[u8]) {
    let f = fixture();
    let (query, frames) = split0(data);
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    // What axum's `Query` extractor does with the request's query string.
    if let Ok(q) = serde_urlencoded::from_str::<WsQuery>(query) {
        match ws_request(&q) {
            Ok(r) => match check_filter(&r, &f.grids, 10, 1_000) {
                Ok(_) => {}
                Err(e) => refused(e),
            },
            Err((param, message)) => {
                assert!(
                    ["resume_after", "min_severity", "exclude_muted"].contains(&param.as_str()),
                    "{param}"
                );
                assert!(!message.is_empty());
            }
        }
    }
    // After the upgrade: the frame reader, with the limits `api::ws` sets.
    read_client(frames, max_ws_message());
}

/// Reads the client's messages from `frames` with a limit of `max` bytes, as `api::ws`
/// sets it; returns how many were read (each asserted to be within the limit).
fn read_client(frames: &[u8], max: usize) -> usize {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let mut socket = tungstenite::WebSocket::from_raw_socket(
        ClientBytes(frames),
        tungstenite::protocol::Role::Server,
        Some(config),
    );
    let mut n = 0;
    while let Ok(msg) = socket.read() {
        assert!(msg.len() <= max, "a {} byte message read", msg.len());
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed of `fuzz/corpus/{target}` (and every crash fixed since, kept there) runs
    /// through its target without a panic.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{path:?} panics {target}");
            n += 1;
        }
        assert!(n >= 5, "only {n} seeds in {dir:?}");
    }

    #[test]
    fn the_mqtt_seeds_pass() {
        replay("mqtt_message", mqtt_message);
    }

    #[test]
    fn the_config_seeds_pass() {
        replay("config_file", config_file);
    }

    #[test]
    fn the_grpc_seeds_pass() {
        replay("grpc_request", grpc_request);
    }

    #[test]
    fn the_ws_seeds_pass() {
        replay("ws", ws);
    }

    /// A masked binary frame of `len` zero bytes (mask 0, so the payload is as sent).
    fn binary_frame(len: usize) -> Vec<u8> {
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.resize(frame.len() + len, 0);
        frame
    }

    #[test]
    fn a_message_above_the_limit_is_never_read() {
        let max = max_ws_message();
        assert_eq!(read_client(&binary_frame(max), max), 1);
        assert_eq!(read_client(&binary_frame(max + 1), max), 0);
        let mut two = binary_frame(10);
        two.extend(binary_frame(max + 1));
        assert_eq!(
            read_client(&two, max),
            1,
            "the reader stops at the oversized one"
        );
    }
}
