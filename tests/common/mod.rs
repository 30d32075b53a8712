//! Test harness for the end-to-end tests: a real Mosquitto on a free port, the real
//! `gridsight` binary with a generated config, gRPC clients with tokens, MQTT publishing,
//! and HTTP reads. Every wait is on a condition with a deadline, never a fixed sleep.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gridsight_proto::v1 as pb;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tonic::transport::Channel;

pub mod city;
pub mod tls;

pub const VIEWER: &str = "viewer-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";
pub const REPORTER: &str = "reporter-token-0123456789";
pub const INTEGRATOR: &str = "integrator-token-0123456789";

/// Distinct readings stored from sensors whose id starts with `prefix` (tests number
/// their messages in the reading, so redeliveries count once).
pub fn distinct_stored(data_dir: &Path, prefix: &str) -> u64 {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("gridsight.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the daemon's database");
    conn.query_row(
        "SELECT COUNT(DISTINCT reading) FROM sensor_events WHERE sensor_id LIKE ?1",
        [format!("{prefix}%")],
        |r| r.get::<_, i64>(0),
    )
    .expect("count") as u64
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match try_wait_for(timeout, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `f` every 20 ms until it returns `Some`; `None` after `timeout` (for a test that
/// explains the failure itself).
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A Debian `mosquitto` started for one test.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A broker whose only listener speaks TLS with `pki`'s server certificate.
    pub fn start_tls(pki: &tls::Pki) -> Self {
        // `user root`: a broker started as root keeps reading the test's key files (in a
        // 0700 temp folder) instead of dropping to the `mosquitto` user.
        Self::start_with(&format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nuser root\n",
            pki.dir.join("ca.crt").display(),
            pki.dir.join("server.crt").display(),
            pki.dir.join("server.key").display()
        ))
    }

    /// A broker with `listener_conf` lines right after its `listener` line.
    pub fn start_with(listener_conf: &str) -> Self {
        Self::start_conf(listener_conf, false)
    }

    /// A broker that keeps its sessions and queued messages on disk across a restart
    /// ([`Mosquitto::restart_graceful`]), as a production broker does
    /// (`deploy/mosquitto/gridsight.conf`).
    pub fn start_persistent() -> Self {
        Self::start_conf("", true)
    }

    /// A broker run on the whole config `text`, which listens on `port`.
    pub fn start_conf_text(text: &str, port: u16) -> Self {
        Self::run_in(tempfile::tempdir().expect("tempdir"), text, port)
    }

    /// Writes `text` as the config in `dir` and starts the broker on it.
    fn run_in(dir: tempfile::TempDir, text: &str, port: u16) -> Self {
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Self::spawn(&conf, port);
        Mosquitto {
            port,
            child,
            conf,
            _dir: dir,
        }
    }

    fn start_conf(listener_conf: &str, persistent: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let persistence = if persistent {
            // `user root`: a broker started as root otherwise drops to the `mosquitto`
            // user, which cannot write its database into the test's 0700 temp folder.
            format!(
                "persistence true\npersistence_location {}/\nuser root\n",
                dir.path().display()
            )
        } else {
            "persistence false\n".to_string()
        };
        let text = format!(
            "listener {port} 127.0.0.1\n{listener_conf}allow_anonymous true\n{persistence}max_inflight_messages 1000\nmax_queued_messages 0\n"
        );
        Self::run_in(dir, &text, port)
    }

    fn spawn(conf: &Path, port: u16) -> Child {
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/mosquitto (make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_open(port) {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::yield_now();
        }
        child
    }

    /// Stops the broker (SIGKILL) and starts it again on the same port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.conf, self.port);
    }

    /// Stops the broker as `systemctl restart` does (SIGTERM: a persistent broker saves its
    /// sessions), waits for it to exit, and starts it again on the same port.
    pub fn restart_graceful(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.conf, self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to put in the daemon's config.
#[derive(Clone)]
pub struct DaemonOpts {
    pub mqtt_port: Option<u16>,
    pub qos: u8,
    pub client_id: String,
    pub window_secs: u64,
    pub heartbeat_secs: u64,
    pub extra_store: String,
    /// `store.synchronous`: `normal` (fast; enough for a process crash), or `full` for a
    /// test of what survives the disk itself failing.
    pub synchronous: &'static str,
    /// Lines added to `[correlation]` (`sensor_clear_on_normal = true`...).
    pub extra_correlation: String,
    /// The `[[grids]]` of the config; [`GRIDS`] unless a test needs another map.
    pub grids: String,
    /// Appended to the config: `[video]`, `[[cameras]]`...
    pub extra: String,
    /// Lines added to `[api]` (`tokens_file = ...`); `[api.limits]` and the like go in
    /// `extra`.
    pub extra_api: String,
    /// TLS on the APIs: `plaintext = false`, and `[api.tls]` must come in `extra`.
    pub api_tls: bool,
    /// TLS to the broker: `plaintext = false`, and `[mqtt.tls]` must come in `extra`.
    pub mqtt_tls: bool,
}

impl DaemonOpts {
    pub fn new(mqtt_port: Option<u16>) -> Self {
        Self {
            mqtt_port,
            qos: 1,
            client_id: format!("gridsight-test-{}", free_port()),
            window_secs: 120,
            heartbeat_secs: 1,
            extra_store: String::new(),
            synchronous: "normal",
            extra_correlation: String::new(),
            grids: GRIDS.to_string(),
            extra: String::new(),
            extra_api: String::new(),
            api_tls: false,
            mqtt_tls: false,
        }
    }
}

/// Deadlines checked every second (supervision alerts CRITICAL), and two departments:
/// `fire` (Fire brigade) and `transport` (Transport bureau).
pub const SUPERVISED_DEPARTMENTS: &str = r#"
[incidents]
overdue_check_secs = 1
supervision_severity = "critical"

[[departments]]
id = "fire"
name = "Fire brigade"

[[departments]]
id = "transport"
name = "Transport bureau"
"#;

/// The grids every test config has: a county, two towns, three communities.
pub const GRIDS: &str = r#"
[[grids]]
id = "county"
name = "County"
[[grids]]
id = "town-a"
name = "Town A"
parent = "county"
[[grids]]
id = "town-b"
name = "Town B"
parent = "county"
[[grids]]
id = "a-1"
name = "Community A1"
parent = "town-a"
[[grids]]
id = "a-2"
name = "Community A2"
parent = "town-a"
[[grids]]
id = "b-1"
name = "Community B1"
parent = "town-b"
"#;

/// The real `gridsight` binary, running.
pub struct Daemon {
    pub grpc: String,
    pub http: u16,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    pub stderr_log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gridsight")
}

pub fn write_config(dir: &Path, o: &DaemonOpts) -> PathBuf {
    let grpc_port = free_port();
    let http_port = free_port();
    let mqtt = match o.mqtt_port {
        Some(p) => format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {p}\nplaintext = {}\nclient_id = \"{}\"\nqos = {}\nreconnect_min_ms = 50\nreconnect_max_ms = 500\n",
            !o.mqtt_tls, o.client_id, o.qos
        ),
        None => String::new(),
    };
    let text = format!(
        r#"[store]
data_dir = "{data}"
synchronous = "{synchronous}"
{extra_store}
[api]
grpc_listen = "127.0.0.1:{grpc_port}"
http_listen = "127.0.0.1:{http_port}"
heartbeat_secs = {hb}
plaintext = {api_plain}
{extra_api}

{mqtt}
[correlation]
shards = 2
window_secs = {window}
{extra_correlation}

[[tokens]]
name = "wall"
token = "{VIEWER}"
role = "viewer"
[[tokens]]
name = "desk-1"
token = "{OPERATOR}"
role = "operator"
[[tokens]]
name = "app"
token = "{REPORTER}"
role = "reporter"
[[tokens]]
name = "city-brain"
token = "{INTEGRATOR}"
role = "integrator"
{grids}
{extra}"#,
        extra = o.extra,
        extra_api = o.extra_api,
        api_plain = !o.api_tls,
        grids = o.grids,
        extra_correlation = o.extra_correlation,
        data = dir.join("data").display(),
        extra_store = o.extra_store,
        synchronous = o.synchronous,
        hb = o.heartbeat_secs,
        window = o.window_secs,
    );
    let path = dir.join("gridsight.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

impl Daemon {
    /// Starts the binary on `config` and waits until it is ready (and subscribed to MQTT).
    /// A listen port another test took between [`free_port`] and the daemon's bind is
    /// replaced in the config, and the daemon started again (at most three times).
    pub async fn start(config: &Path) -> Self {
        Self::start_with_env(config, &[]).await
    }

    /// [`Daemon::start`] with these environment variables set for the daemon.
    pub async fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let d = Self::launch(config, env).await;
        let port = d.http;
        wait_for("daemon /readyz", Duration::from_secs(15), || async move {
            (http_get(port, "/readyz", None).0 == 200).then_some(())
        })
        .await;
        d
    }

    /// [`Daemon::start`] of a daemon serving TLS with `pki`'s certificate: ready once
    /// `/readyz` answers 200 over HTTPS.
    pub async fn start_tls(config: &Path, pki: &tls::Pki) -> Self {
        let d = Self::launch(config, &[]).await;
        let port = d.http;
        wait_for(
            "daemon /readyz over TLS",
            Duration::from_secs(15),
            || async move {
                let ok = pki
                    .https(port, "GET /readyz HTTP/1.0\r\n\r\n", None)
                    .is_ok_and(|(code, _)| code == 200);
                ok.then_some(())
            },
        )
        .await;
        d
    }

    /// Starts the binary and reads the addresses it prints (not waiting for readiness).
    pub async fn launch(config: &Path, env: &[(&str, &str)]) -> Self {
        let dir = config.parent().expect("config dir").to_path_buf();
        let mut attempt = 0;
        let (child, line, stderr_log) = loop {
            attempt += 1;
            let stderr_log = dir.join(format!("daemon-{}.log", free_port()));
            let mut child = Command::new(binary())
                .arg("run")
                .arg("--config")
                .arg(config)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr_log).expect("log file"))
                .spawn()
                .expect("start gridsight");
            let stdout = child.stdout.take().expect("stdout");
            let line = tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            })
            .await
            .expect("join")
            .expect("read stdout");
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            if line.is_empty() && attempt < 3 && log.contains("in use") {
                let _ = child.wait();
                let text = std::fs::read_to_string(config).expect("config");
                let fresh: Vec<String> = text
                    .lines()
                    .map(|l| match l.split_once(" = \"127.0.0.1:") {
                        Some((key, _)) if key == "grpc_listen" || key == "http_listen" => {
                            format!("{key} = \"127.0.0.1:{}\"", free_port())
                        }
                        _ => l.to_string(),
                    })
                    .collect();
                std::fs::write(config, fresh.join("\n") + "\n").expect("rewrite config");
                continue;
            }
            break (child, line, stderr_log);
        };
        let addrs = line.trim().strip_prefix("gridsight: ").unwrap_or_else(|| {
            panic!(
                "daemon did not start: {line:?}\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            )
        });
        let mut grpc = String::new();
        let mut http = 0;
        for part in addrs.split_whitespace() {
            if let Some(a) = part.strip_prefix("grpc=") {
                grpc = format!("http://{a}");
            }
            if let Some(a) = part.strip_prefix("http=") {
                http = a
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("http port");
            }
        }
        Daemon {
            grpc,
            http,
            data_dir: dir.join("data"),
            config: config.to_path_buf(),
            child: Some(child),
            stderr_log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// SIGTERM; returns the exit code and how long the exit took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let status = self.child.take().expect("running").wait().expect("wait");
        (status.code(), started.elapsed())
    }

    /// Sends SIGTERM without waiting.
    pub fn send_term(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
    }

    /// The exit code once the process has exited, polling until `within`; `None` if it runs on.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Option<i32>> {
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status.code());
            }
            if started.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no drain.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .expect("uri")
            .connect()
            .await
            .expect("connect gRPC")
    }

    pub async fn alerts(&self) -> pb::alert_service_client::AlertServiceClient<Channel> {
        pb::alert_service_client::AlertServiceClient::new(self.channel().await)
    }

    /// An unfiltered `Subscribe` as a viewer, from its snapshot on.
    pub async fn subscribe_all(&self) -> tonic::Streaming<pb::SubscribeAlertsResponse> {
        self.alerts()
            .await
            .subscribe(req(pb::SubscribeAlertsRequest::default(), VIEWER))
            .await
            .expect("subscribe")
            .into_inner()
    }

    pub async fn cameras(&self) -> pb::camera_service_client::CameraServiceClient<Channel> {
        pb::camera_service_client::CameraServiceClient::new(self.channel().await)
    }

    pub async fn incidents(&self) -> pb::incident_service_client::IncidentServiceClient<Channel> {
        pb::incident_service_client::IncidentServiceClient::new(self.channel().await)
    }

    /// The value of a Prometheus sample line, e.g. `gridsight_mqtt_messages_acked_total`.
    pub fn metric(&self, sample: &str) -> f64 {
        let (code, body) = http_get(self.http, "/metrics", Some(VIEWER));
        assert_eq!(code, 200, "metrics: {body}");
        sample_value(&body, sample)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A request with a bearer token.
pub fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    r
}

/// Sends `request` (an HTTP/1.0 request, whole) and reads the answer to the end: its
/// status code and body (0 and empty when nothing answers).
fn http_exchange(port: u16, request: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.write_all(request.as_bytes());
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    parse_http(&buf)
}

/// The status code and body of an HTTP answer (0 and empty when it is none).
pub fn parse_http(answer: &str) -> (u16, String) {
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of `sample` (name and labels, as exposed) in a `/metrics` text; 0 if absent.
pub fn sample_value(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A dispute reported in `a-1` with idempotency key `key`.
pub fn dispute_report(key: &str) -> pb::ReportIncidentRequest {
    pb::ReportIncidentRequest {
        idempotency_key: key.into(),
        category: pb::IncidentCategory::Dispute as i32,
        item_code: "JF-0102".into(),
        description: "Neighbours arguing over a parking space".into(),
        grid_id: "a-1".into(),
        location: Some(pb::LatLon {
            lat: 30.6,
            lon: 119.7,
        }),
        reporter_id: "rep-7".into(),
        photo_urls: vec![],
    }
}

/// `GET path` over plain HTTP/1.0; returns the status code and body.
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    http_exchange(
        port,
        &format!("GET {path} HTTP/1.0\r\nhost: localhost\r\n{auth}\r\n"),
    )
}

/// A POST of a JSON `body` with a bearer `token`: the status and the body (0 and empty
/// when nothing answers).
pub fn http_post(port: u16, path: &str, token: &str, body: &str) -> (u16, String) {
    http_exchange(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// GET returning the status code and the body's bytes (for pictures).
pub fn http_get_bytes(port: u16, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let _ = write!(s, "GET {path} HTTP/1.0\r\nhost: localhost\r\n{auth}\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let head = String::from_utf8_lossy(&buf[..split.unwrap_or(buf.len())]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = split.map(|i| buf[i + 4..].to_vec()).unwrap_or_default();
    (code, body)
}

/// The default-tree topic of a sensor.
pub fn topic(grid: &str, kind: &str, sensor: &str) -> String {
    format!("gridsight/sensors/{grid}/{kind}/{sensor}")
}

/// A default payload.
pub fn payload(device_ms: i64, state: &str, reading: f64) -> Vec<u8> {
    format!(r#"{{"device_time": {device_ms}, "state": "{state}", "reading": {reading}}}"#)
        .into_bytes()
}

/// Publishes messages at QoS 1 and waits until the broker acknowledged every one.
pub async fn publish_all(port: u16, msgs: Vec<(String, Vec<u8>)>) {
    let mut opts = MqttOptions::new(format!("pub-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(500)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 1024);
    let n = msgs.len();
    let sender = tokio::spawn(async move {
        for (t, p) in msgs {
            client
                .publish(t, QoS::AtLeastOnce, false, p)
                .await
                .expect("publish");
        }
        client
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < n {
        assert!(
            Instant::now() < deadline,
            "broker acknowledged {acked} of {n}"
        );
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher connection: {e}"),
            Err(_) => {}
        }
    }
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
}

/// The next message of a subscription, waiting until `deadline`; on time-out panics with
/// `what()`.
pub async fn next_message(
    stream: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    deadline: Instant,
    what: impl FnOnce() -> String,
) -> pb::SubscribeAlertsResponse {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, stream.message()).await {
        Ok(msg) => msg.expect("stream status").expect("stream ended"),
        Err(_) => panic!("{}", what()),
    }
}

/// Reads a subscription until `pred` holds for a change, skipping heartbeats; returns
/// every change read (snapshot ones included).
pub async fn read_until(
    stream: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    timeout: Duration,
    mut pred: impl FnMut(&pb::AlertChange) -> bool,
) -> Vec<pb::AlertChange> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let msg = next_message(stream, deadline, || {
            format!("timed out; changes so far: {seen:#?}")
        })
        .await;
        if let Some(pb::subscribe_alerts_response::Event::Change(c)) = msg.event {
            let done = pred(&c);
            seen.push(c);
            if done {
                return seen;
            }
        }
    }
}

/// A sensor id of an alert's evidence, if any.
pub fn sensors_of(a: &pb::Alert) -> Vec<String> {
    a.evidence
        .iter()
        .filter_map(|e| match &e.item {
            Some(pb::evidence::Item::SensorEvent(s)) => Some(s.sensor_id.clone()),
            _ => None,
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads a fresh subscription's snapshot: the open alerts and the cursor after them.
pub async fn read_snapshot(
    stream: &mut tonic::Streaming<pb::SubscribeAlertsResponse>,
    timeout: Duration,
) -> (Vec<pb::Alert>, u64) {
    let mut alerts = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let msg = next_message(stream, deadline, || "timed out reading the snapshot".into()).await;
        match msg.event {
            Some(pb::subscribe_alerts_response::Event::Change(c)) => {
                assert_eq!(
                    c.kind,
                    pb::ChangeKind::Snapshot as i32,
                    "only snapshot items before snapshot_end"
                );
                alerts.extend(c.alert);
            }
            Some(pb::subscribe_alerts_response::Event::SnapshotEnd(e)) => {
                assert_eq!(e.open_alerts as usize, alerts.len());
                return (alerts, e.cursor);
            }
            _ => {}
        }
    }
}

/// How long a camera may take to reach a status under [`VIDEO`]'s timings.
pub const CAMERA_WAIT: Duration = Duration::from_secs(25);

/// Short supervision times, so camera faults and activity show within seconds.
pub const VIDEO: &str = r#"
[video]
open_timeout_secs = 2.0
frame_timeout_secs = 2.0
offline_after_secs = 3.0
freeze_after_secs = 3.0
rate_window_secs = 3.0
reconnect_min_ms = 200
reconnect_max_ms = 1000
degraded_reconnects_per_hour = 3
monitor_interval_ms = 100
activity_threshold = 3.0
"#;

/// A `[[cameras]]` entry covering `grid`.
pub fn camera_toml(id: &str, url: &str, grid: &str) -> String {
    format!(
        "[[cameras]]\nid = \"{id}\"\nname = \"Camera {id}\"\nurl = \"{url}\"\ngrids = [\"{grid}\"]\nexpected_fps = 15.0\nlocation = [120.1, 30.2]\n"
    )
}

/// `CameraService.Get`.
pub async fn camera(d: &Daemon, id: &str) -> pb::Camera {
    d.cameras()
        .await
        .get(req(pb::GetCameraRequest { id: id.into() }, VIEWER))
        .await
        .expect("get camera")
        .into_inner()
}

/// A camera's status as the API shows it.
pub fn status(c: &pb::Camera) -> pb::CameraStatus {
    c.health
        .as_ref()
        .and_then(|h| pb::CameraStatus::try_from(h.status).ok())
        .unwrap_or(pb::CameraStatus::Unspecified)
}

/// Waits until camera `id` is in status `want`; returns it.
pub async fn wait_status(d: &Daemon, id: &str, want: pb::CameraStatus) -> pb::Camera {
    wait_for(
        &format!("camera {id} to be {want:?}"),
        CAMERA_WAIT,
        || async {
            let c = d
                .cameras()
                .await
                .get(req(pb::GetCameraRequest { id: id.into() }, VIEWER))
                .await
                .ok()?
                .into_inner();
            (status(&c) == want).then_some(c)
        },
    )
    .await
}
