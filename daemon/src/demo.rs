//! `gridsight demo`: the daemon on a built-in demo city, with nothing to set up.
//!
//! Starts an embedded MQTT broker (rumqttd) on a free or given port, generates the demo
//! city (county → towns → communities with polygons, their sensors, and cameras served by
//! the built-in camera farm), fresh tokens for
//! each role, a store in a temporary (or given) folder, then runs the real daemon
//! ([`crate::app::run`]) on it with a sensor fleet publishing over MQTT, grid workers
//! reporting over gRPC and an operator desk bot moving their reports along the lifecycle
//! (some left to go overdue). Prints the URLs and tokens to use.
//!
//! The spatial model is in play: every sensor is listed with its location (inside its
//! community, checked at validation), cameras are given only a location and placed in
//! their community by the daemon, and a quarter of the reports carry a location but no
//! grid, which the daemon finds.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, TcpListener},
    path::PathBuf,
    time::Duration,
};

use gridsight_sim::{
    city::DemoCity, desk::DeskConfig, fleet::FleetConfig, reporter::ReporterConfig,
};
use tokio_util::sync::CancellationToken;

use crate::{
    app,
    config::{
        CameraConfig, Config, DepartmentConfig, GridConfig, MqttConfig, Role, SensorConfig,
        StoreConfig, TokenConfig,
    },
};

/// The demo's departments: (id, name).
const DEPARTMENTS: [(&str, &str); 5] = [
    ("fire", "Fire brigade"),
    ("transport", "Transport bureau"),
    ("environment", "Environment bureau"),
    ("police", "Police station"),
    ("urban", "Urban management"),
];

/// Options of `gridsight demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder of the store; default: a temporary folder removed at exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address the APIs and the broker listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// Port of the embedded MQTT broker (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub mqtt_port: u16,
    /// gRPC port (0 = any free port).
    #[arg(long, default_value_t = 50051)]
    pub grpc_port: u16,
    /// HTTP port of the dashboard and metrics (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Towns in the demo county.
    #[arg(long, default_value_t = 6)]
    pub towns: usize,
    /// Communities per town.
    #[arg(long, default_value_t = 8)]
    pub communities: usize,
    /// Sensors per community.
    #[arg(long, default_value_t = 4)]
    pub sensors: usize,
    /// Sensor messages per second over the whole fleet (0 = no fleet).
    #[arg(long, default_value_t = 40.0)]
    pub sensor_rate: f64,
    /// Incident reports per second over all reporters (0 = no reporters).
    #[arg(long, default_value_t = 0.2)]
    pub report_rate: f64,
    /// Cameras per community, served by the built-in camera farm (0 = no cameras).
    #[arg(long, default_value_t = 1)]
    pub cameras: usize,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A folder or socket could not be had.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The embedded broker did not come up.
    #[error("embedded MQTT broker: {0}")]
    Broker(String),
    /// The daemon failed.
    #[error(transparent)]
    App(#[from] app::AppError),
    /// The camera farm did not start.
    #[error("camera farm: {0}")]
    Farm(#[from] gridsight_farm::FarmError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

fn token() -> String {
    crate::config::security::new_token()
}

/// Runs the demo until `cancel`.
pub async fn run(args: DemoArgs, cancel: CancellationToken) -> Result<(), DemoError> {
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(io("temporary data folder"))?),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("gridsight-demo-data"));
    let mqtt_port = match args.mqtt_port {
        0 => TcpListener::bind((args.listen, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io("a free port for the MQTT broker"))?,
        p => p,
    };
    start_broker(SocketAddr::new(args.listen, mqtt_port)).await?;

    let city = DemoCity::generate(2026, args.towns, args.communities, args.sensors);
    let tokens: Vec<TokenConfig> = [
        ("wall", Role::Viewer),
        ("desk", Role::Operator),
        ("grid-app", Role::Reporter),
        ("integrator", Role::Integrator),
    ]
    .into_iter()
    .map(|(name, role)| TokenConfig::plain(name, token(), role))
    .collect();
    let tok = |role: Role| {
        tokens
            .iter()
            .find(|t| t.role == role)
            .and_then(|t| t.token.clone())
            .unwrap_or_default()
    };
    let (farm, cameras) = start_cameras(&city, args.cameras).await?;
    let shipped = shipped_rules().map_err(DemoError::Broker)?;
    let cfg = Config {
        cameras,
        correlation: shipped.correlation,
        rules: shipped.rules,
        store: StoreConfig {
            data_dir: data_dir.clone(),
            ..StoreConfig::default()
        },
        api: crate::config::ApiConfig {
            grpc_listen: SocketAddr::new(args.listen, args.grpc_port),
            http_listen: SocketAddr::new(args.listen, args.http_port),
            // The demo city is one machine's loopback: no certificates to make.
            plaintext: true,
            ..Default::default()
        },
        mqtt: Some(MqttConfig {
            host: args.listen.to_string(),
            port: mqtt_port,
            client_id: "gridsight-demo".into(),
            plaintext: true,
            ..MqttConfig::default()
        }),
        grids: city
            .grids
            .iter()
            .map(|g| GridConfig {
                id: g.id.clone(),
                name: g.name.clone(),
                parent: g.parent.clone(),
                polygon: g.polygon.clone(),
            })
            .collect(),
        tokens: tokens.clone(),
        departments: DEPARTMENTS
            .iter()
            .map(|(id, name)| DepartmentConfig {
                id: id.to_string(),
                name: name.to_string(),
            })
            .collect(),
        sensors: city
            .sensors
            .iter()
            .map(|s| SensorConfig {
                id: s.id.clone(),
                grid: s.grid_id.clone(),
                kind: Some(s.kind.clone()),
                name: None,
                location: [s.lon, s.lat],
            })
            .collect(),
        ..Config::default()
    };
    if let Some(problem) = cfg.validate().into_iter().next() {
        return Err(DemoError::Broker(format!(
            "demo config invalid: {}: {}",
            problem.0, problem.1
        )));
    }

    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let daemon = tokio::spawn(app::run(cfg, None, cancel.clone(), move |b| {
        let _ = bound_tx.send(b);
    }));
    let Ok(bound) = bound_rx.await else {
        return match daemon.await {
            Ok(Err(e)) => Err(e.into()),
            _ => Err(DemoError::Broker(
                "the daemon stopped before it was ready".into(),
            )),
        };
    };
    let viewer = tok(Role::Viewer);
    // The banner goes out in one write, and a closed stdout (a supervisor that stopped
    // reading) never stops the demo.
    let mut banner = String::new();
    macro_rules! outln {
        () => { banner.push('\n') };
        ($($arg:tt)*) => {{ banner.push_str(&format!($($arg)*)); banner.push('\n'); }};
    }
    outln!();
    outln!(
        "gridsight demo is running: {} grids, {} sensors, {} cameras",
        city.grids.len(),
        city.sensors.len(),
        farm.as_ref().map(|f| f.mounts().len()).unwrap_or(0)
    );
    outln!();
    outln!("  Dashboard:  http://{}/?token={viewer}", bound.http);
    outln!(
        "  Desk:       http://{}/?token={}  (the same page with an operator's token: acknowledge, dispatch, notes, resolve)",
        bound.http,
        tok(Role::Operator)
    );
    outln!(
        "  Metrics:    curl -H 'authorization: Bearer {viewer}' http://{}/metrics",
        bound.http
    );
    outln!(
        "  gRPC:       {}  (gridsight.v1, with health and reflection)",
        bound.grpc
    );
    outln!(
        "  Figures:    curl -H 'authorization: Bearer {viewer}' 'http://{}/api/stats?by_grid=true'",
        bound.http
    );
    outln!(
        "  MQTT:       {}:{mqtt_port}  topic gridsight/sensors/{{grid}}/{{kind}}/{{sensor_id}}",
        args.listen
    );
    outln!("  Store:      {}", data_dir.display());
    if let Some(f) = &farm {
        outln!(
            "  Cameras:    rtsp://{}/<camera>  (the farm: one busy now and then, one refusing, one frozen)",
            f.addr()
        );
        outln!(
            "  Snapshot:   curl -o cam.jpg -H 'authorization: Bearer {viewer}' http://{}/snapshot/{}.jpg",
            bound.http,
            f.mounts().first().map(String::as_str).unwrap_or("cam")
        );
    }
    outln!();
    outln!("  Tokens (authorization: Bearer <token>):");
    for t in &tokens {
        outln!(
            "    {:<11} {:<11} {}",
            t.role.as_str(),
            t.name,
            t.token.as_deref().unwrap_or_default()
        );
    }
    outln!();
    outln!("  Try: mosquitto_pub -p {mqtt_port} -t gridsight/sensors/{}/smoke/smk-test -m '{{\"device_time\": {}, \"state\": \"alarm\", \"reading\": 0.9}}'",
        city.communities().next().map(|g| g.id.as_str()).unwrap_or("county"),
        crate::domain::now_ms());
    outln!("  Stop: Ctrl-C (drains and exits)");
    outln!();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|_| out.flush());
    }

    let sims = cancel.child_token();
    if args.sensor_rate > 0.0 {
        let mut fleet = FleetConfig::new(args.listen.to_string(), mqtt_port);
        fleet.rate_per_sec = args.sensor_rate;
        fleet.client_id = "gridsight-demo-fleet".into();
        let sensors = city.sensors.clone();
        let c = sims.clone();
        tokio::spawn(async move {
            if let Err(e) = gridsight_sim::run_fleet(fleet, sensors, c).await {
                tracing::warn!(error = %e, "demo sensor fleet stopped");
            }
        });
    }
    if args.report_rate > 0.0 {
        let grids: Vec<String> = city.communities().map(|g| g.id.clone()).collect();
        let centres: HashMap<String, [f64; 2]> = city
            .communities()
            .map(|g| (g.id.clone(), g.centre()))
            .collect();
        let mut rc =
            ReporterConfig::new(format!("http://{}", bound.grpc), tok(Role::Reporter), grids);
        rc.rate_per_sec = args.report_rate;
        rc.centres = centres;
        rc.location_only_share = 0.25;
        let c = sims.clone();
        tokio::spawn(async move {
            if let Err(e) = gridsight_sim::run_reporters_with(rc, c).await {
                tracing::warn!(error = %e, "demo reporters stopped");
            }
        });
        let desk = DeskConfig::new(
            format!("http://{}", bound.grpc),
            tok(Role::Operator),
            DEPARTMENTS.iter().map(|(id, _)| id.to_string()).collect(),
        );
        let c = sims.clone();
        tokio::spawn(async move {
            if let Err(e) = gridsight_sim::run_desk(desk, c).await {
                tracing::warn!(error = %e, "demo desk stopped");
            }
        });
    }
    let result = daemon.await;
    sims.cancel();
    if let Some(f) = farm {
        f.shutdown().await;
    }
    drop(temp);
    match result {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(DemoError::Broker(format!("daemon task: {e}"))),
    }
}

/// Starts the camera farm with `per_community` cameras in every community: most show a
/// quiet street, every fifth has bursts of activity, one refuses connections and one is
/// frozen, so the wall has something to show. Returns the farm and the cameras' config.
async fn start_cameras(
    city: &DemoCity,
    per_community: usize,
) -> Result<(Option<gridsight_farm::FarmHandle>, Vec<CameraConfig>), DemoError> {
    use gridsight_farm::{ContentSchedule, Farm, FarmConfig, Fault, MountConfig};
    if per_community == 0 {
        return Ok((None, Vec::new()));
    }
    let mut mounts = Vec::new();
    let mut placed = Vec::new();
    for (i, g) in city.communities().enumerate() {
        for k in 1..=per_community {
            let id = format!("cam-{}-{k}", g.id);
            let n = mounts.len();
            let mut m = MountConfig::new(id.clone(), 15);
            if n % 5 == 3 {
                m = m.with_content(ContentSchedule::Alternate {
                    still: Duration::from_secs(40),
                    busy: Duration::from_secs(15),
                });
            }
            if n == 7 {
                m = m.with_fault(Fault::Refuse);
            }
            if n == 12 {
                m = m.with_fault(Fault::Freeze);
            }
            mounts.push(m);
            placed.push((id, g.centre(), i));
        }
    }
    let farm = Farm::start(FarmConfig::new(mounts)).await?;
    let cameras = placed
        .into_iter()
        .map(|(id, centre, i)| CameraConfig {
            url: farm.url(&id),
            name: format!("Community {} camera", i + 1),
            id,
            username: None,
            password: None,
            // No grids: the daemon places the camera in the community its location lies in.
            location: Some(centre),
            grids: Vec::new(),
            expected_fps: 15.0,
            transport: Default::default(),
            timestamp_policy: Default::default(),
            max_timestamp_jump_secs: None,
            enabled: true,
        })
        .collect();
    Ok((Some(farm), cameras))
}

/// Starts rumqttd on `addr` in its own thread and waits until it accepts connections.
async fn start_broker(addr: SocketAddr) -> Result<(), DemoError> {
    let text = format!(
        r#"id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "demo"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 65536
max_inflight_count = 1000
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|e| DemoError::Broker(e.to_string()))?;
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(io("broker thread"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DemoError::Broker(format!("did not listen on {addr}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shipped rule set (`deploy/rules.toml`): the worked examples the demo runs with.
pub const SHIPPED_RULES: &str = include_str!("../../deploy/rules.toml");

/// The `[correlation]` and `[[rules]]` of [`SHIPPED_RULES`].
pub fn shipped_rules() -> Result<Config, String> {
    toml::from_str(SHIPPED_RULES).map_err(|e| format!("deploy/rules.toml: {e}"))
}
