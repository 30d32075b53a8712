//! `bench-mqtt`: how fast the daemon drains MQTT compared with a bare rumqttc subscriber,
//! both against the same Mosquitto process, and (optionally) alarm → alert latency.
//!
//! For each QoS: N messages are published (4 QoS 1 publishers, every PubAck awaited) while
//! the subscriber is offline with a persistent session; then the timer starts, the
//! subscriber connects and drains its queue. The bare subscriber is a rumqttc client; the
//! daemon is `gridsight run --config FILE`, timed from spawn until its Prometheus counter
//! reaches N. Run `bench-mqtt --help` for the options.
//!
//! With `--rules-file FILE` its `[[rules]]` are appended to the daemon config; with
//! `--compare-rules` as well, the bench instead alternates QoS 1 daemon phases without and
//! with the rules and reports the ratio of their drain rates (see `bench_mqtt/rules.rs`).
//!
//! With `--fanout`, it alternates QoS 1 daemon phases with and without 1,000 gRPC and 50
//! WebSocket subscribers on the alert stream and reports the ratio of their drain rates
//! (see `bench_mqtt/fanout.rs`).

#[path = "bench_mqtt/daemon.rs"]
mod daemon;
#[path = "bench_mqtt/fanout.rs"]
mod fanout;
#[path = "bench_mqtt/report.rs"]
mod report;
#[path = "bench_mqtt/rules.rs"]
mod rules;
#[path = "bench_mqtt/subscribers.rs"]
mod subscribers;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Parser};
use gridsight_sim::{
    broker::{free_port, MosquittoBroker, BENCH_SETTINGS},
    load::{self, DrainReport, Messages},
    run_latency, DemoCity, LatencyConfig,
};
use rumqttc::QoS;

use daemon::{CounterRun, Daemon, Placeholders};
use report::{print_table, rate, Row};

/// Topic filter every subscriber uses.
const FILTER: &str = "gridsight/sensors/#";

#[derive(Debug, Parser)]
#[command(
    name = "bench-mqtt",
    about = "MQTT drain rate of the gridsight daemon vs a bare rumqttc subscriber"
)]
struct Args {
    /// Messages per phase.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// The daemon binary.
    #[arg(long, default_value = "target/release/gridsight")]
    daemon: PathBuf,
    /// Daemon config template with {MQTT_PORT} {GRPC_PORT} {HTTP_PORT} {DATA_DIR} {QOS}
    /// {CLIENT_ID} (and optionally {GRIDS_TOML}) placeholders.
    #[arg(long, default_value = "deploy/bench/daemon.toml.tmpl")]
    daemon_config_template: PathBuf,
    /// Measure the bare subscriber only (no daemon, no latency phase).
    #[arg(long)]
    only_baseline: bool,
    /// QoS levels to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0u8, 1])]
    qos: Vec<u8>,
    /// Run the latency phase after QoS 1 (`--latency false` to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    latency: bool,
    /// Length of the latency phase, seconds.
    #[arg(long, default_value_t = 10.0)]
    latency_secs: f64,
    /// Seconds to let the daemon settle (finish checkpointing the drained backlog) before
    /// the latency phase, so that it measures steady state.
    #[arg(long, default_value_t = 5.0)]
    latency_settle_secs: f64,
    /// Rounds per QoS level, bare and daemon alternating; the median ratio is reported
    /// (these machines are noisy).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Publish rate of the latency phase; default half the measured daemon QoS 1 rate,
    /// capped at `--latency-max-rate`.
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Cap of the default latency rate: what one Mosquitto carries live at QoS 1 on these
    /// machines with room to spare (FACTS: 38k-68k msg/s drained, less when paced live).
    #[arg(long, default_value_t = 20_000.0)]
    latency_max_rate: f64,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Demo city: towns.
    #[arg(long, default_value_t = 8)]
    towns: usize,
    /// Demo city: communities per town.
    #[arg(long, default_value_t = 10)]
    communities: usize,
    /// Demo city: sensors per community.
    #[arg(long, default_value_t = 4)]
    sensors: usize,
    /// Share of alarm messages.
    #[arg(long, default_value_t = 0.01)]
    alarm_ratio: f64,
    /// Seed of the city and the readings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The Mosquitto binary.
    #[arg(long, default_value = gridsight_sim::broker::DEFAULT_MOSQUITTO)]
    mosquitto: PathBuf,
    /// Bearer token for /metrics, /readyz and gRPC.
    #[arg(long, default_value = "bench-viewer-token-0123456789")]
    token: String,
    /// Counter that reaches N at QoS 0.
    #[arg(long, default_value = "gridsight_mqtt_messages_stored_total")]
    metric_qos0: String,
    /// Counter that reaches N at QoS 1.
    #[arg(long, default_value = "gridsight_mqtt_messages_acked_total")]
    metric_qos1: String,
    /// Deadline of each publish or drain, seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Keep the temporary directory (configs, daemon data and logs) and print its path.
    #[arg(long)]
    keep_temp: bool,
    /// A file of `[[rules]]` tables appended to the daemon config (e.g.
    /// deploy/bench/rules-50.toml).
    #[arg(long)]
    rules_file: Option<PathBuf>,
    /// With --rules-file: per round, a QoS 1 daemon without the rules and one with them
    /// (no bare subscriber, no latency phase); prints the median ratio rules ÷ no rules.
    #[arg(long, requires = "rules_file", conflicts_with = "only_baseline")]
    compare_rules: bool,
    /// Per round, a QoS 1 daemon phase with `--grpc-subscribers` gRPC and `--ws-subscribers`
    /// WebSocket subscribers on its alert stream and one without (no bare subscriber, no
    /// latency phase); prints the median ratio of the drain rates, with ÷ without.
    #[arg(long, conflicts_with_all = ["only_baseline", "compare_rules", "rules_file"])]
    fanout: bool,
    /// With --fanout: gRPC subscribers, each watching one community.
    #[arg(long, default_value_t = 1000)]
    grpc_subscribers: usize,
    /// With --fanout: WebSocket subscribers, each watching one town.
    #[arg(long, default_value_t = 50)]
    ws_subscribers: usize,
    /// With --fanout: the nice value of the subscribers' threads (they stand for machines
    /// elsewhere; 19 lets them use only the CPU the daemon and the broker leave).
    #[arg(long, default_value_t = 19)]
    subscriber_nice: i32,
    /// With --fanout: the daemon's `api.nice` (its APIs' threads' niceness; 0 = as equals
    /// with ingest); without it, the daemon's default.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=19))]
    api_nice: Option<u8>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // On Ctrl-C the work future is dropped, which kills the broker and daemon children.
    tokio::select! {
        r = bench(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

async fn bench(args: &Args) -> Result<()> {
    if args.messages == 0 || args.qos.is_empty() || args.qos.iter().any(|q| *q > 1) {
        bail!("--messages must be > 0 and --qos a list of 0 and/or 1");
    }
    let template = if args.only_baseline {
        String::new()
    } else {
        if !args.daemon.is_file() {
            bail!(
                "daemon binary {} not found (build it with cargo build --release)",
                args.daemon.display()
            );
        }
        std::fs::read_to_string(&args.daemon_config_template)
            .with_context(|| format!("reading {}", args.daemon_config_template.display()))?
    };
    let tmp = tempfile::Builder::new()
        .prefix("gridsight-bench-")
        .tempdir()?;
    // With --keep-temp the directory survives errors too (its logs explain them).
    let (dir, _cleanup) = if args.keep_temp {
        let kept = tmp.keep();
        println!("temporary files in {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_path_buf(), Some(tmp))
    };
    // --fanout pauses the broker (saving its queues) while the daemon and its subscribers
    // start.
    let mut broker = if args.fanout {
        MosquittoBroker::start_persistent(&args.mosquitto).await?
    } else {
        MosquittoBroker::start_with(&args.mosquitto, BENCH_SETTINGS).await?
    };
    let city = DemoCity::generate(args.seed, args.towns, args.communities, args.sensors);
    let messages = load::demo_messages(&city, args.messages as usize, args.alarm_ratio, args.seed);
    let avg = messages.iter().map(|(_, p)| p.len()).sum::<usize>() / messages.len().max(1);
    println!(
        "bench-mqtt: mosquitto on 127.0.0.1:{} (pid {:?}), {} messages/phase on {} sensors, payload ~{avg} B, {} publishers",
        broker.port(),
        broker.pid(),
        args.messages,
        city.sensors.len(),
        args.publishers
    );

    if args.fanout {
        fanout::compare(args, &mut broker, &template, &city, &dir, &messages).await?;
        broker.stop().await?;
        return Ok(());
    }
    if args.compare_rules {
        if let Some(path) = &args.rules_file {
            let with = rules::with_rules(&template, path)?;
            rules::compare(args, &broker, &template, &with, &city, &dir, &messages).await?;
        }
        broker.stop().await?;
        return Ok(());
    }
    let template = match &args.rules_file {
        Some(path) if !args.only_baseline => rules::with_rules(&template, path)?,
        _ => template,
    };

    let limit = Duration::from_secs(args.timeout_secs);
    // QoS 1 last: its daemon stays up for the latency phase and must not see other phases.
    let mut levels = args.qos.clone();
    levels.sort_unstable();
    levels.dedup();
    let mut rows = Vec::new();
    let mut running: Option<(Daemon, u16, u16)> = None;
    let rounds = args.rounds.max(1);
    for &qos in &levels {
        for round in 1..=rounds {
            let bare = baseline(args, &broker, qos, messages.clone(), limit).await?;
            println!(
                "qos {qos} round {round}: bare subscriber drained {} in {:.3} s",
                bare.received,
                bare.elapsed.as_secs_f64()
            );
            let mut daemon = None;
            if !args.only_baseline {
                let (run, d, grpc, http) = daemon_phase(
                    args,
                    &broker,
                    &template,
                    &city,
                    &dir,
                    qos,
                    messages.clone(),
                    "",
                )
                .await?;
                println!(
                "qos {qos} round {round}: daemon drained {} in {:.3} s from spawn (first count at {:.3} s, {} metrics polls)",
                args.messages,
                run.reached.as_secs_f64(),
                run.first.as_secs_f64(),
                run.polls
            );
                daemon = Some(run);
                let keep = qos == 1 && args.latency && round == rounds;
                if keep {
                    if let Some((old, ..)) = running.replace((d, grpc, http)) {
                        old.terminate(Duration::from_secs(30)).await?;
                    }
                } else {
                    d.terminate(Duration::from_secs(30)).await?;
                    load::clear_session(
                        broker.host(),
                        broker.port(),
                        &client_id("daemon", qos),
                        limit,
                    )
                    .await?;
                }
            }
            rows.push(Row { qos, bare, daemon });
        }
    }
    print_table(args.messages, &rows);
    report::print_medians(args.messages, &rows);

    if let Some((d, grpc, http)) = running {
        let rate = match (
            args.latency_rate,
            rows.iter().find(|r| r.qos == 1).and_then(|r| r.daemon),
        ) {
            (Some(r), _) => r,
            (None, Some(run)) => {
                let half = rate(args.messages, run.reached) / 2.0;
                if half > args.latency_max_rate {
                    println!(
                        "latency: half the daemon rate is {half:.0} msg/s, above what the broker carries live; capped at {:.0}",
                        args.latency_max_rate
                    );
                }
                half.min(args.latency_max_rate)
            }
            (None, None) => 1000.0,
        };
        println!(
            "latency: settling {} s, then publishing at {rate:.0} msg/s for {} s, one alarm in 50",
            args.latency_settle_secs, args.latency_secs
        );
        tokio::time::sleep(Duration::from_secs_f64(args.latency_settle_secs.max(0.0))).await;
        let scrape = || {
            gridsight_sim::probe::http_get(
                SocketAddr::from(([127, 0, 0, 1], http)),
                "/metrics",
                Some(&args.token),
                Duration::from_secs(5),
            )
        };
        let metrics_before = scrape().await?;
        let cfg = LatencyConfig {
            mqtt_host: broker.host().to_string(),
            mqtt_port: broker.port(),
            grpc_endpoint: format!("http://127.0.0.1:{grpc}"),
            token: args.token.clone(),
            rate_per_sec: rate,
            duration: Duration::from_secs_f64(args.latency_secs.max(0.1)),
            alarm_every: 50,
            publishers: args.publishers,
            settle: Duration::from_secs(10),
        };
        let rep = run_latency(&cfg, &city)
            .await
            .with_context(|| format!("latency phase; daemon log:\n{}", d.log_tail(20)))?;
        report::print_latency(&rep);
        let metrics = scrape().await?;
        report::print_daemon_latency(&metrics_before.body, &metrics.body);
        d.terminate(Duration::from_secs(30)).await?;
    } else if args.latency && !args.only_baseline {
        println!("latency: skipped (needs QoS 1 in --qos)");
    }

    broker.stop().await?;
    Ok(())
}

fn client_id(who: &str, qos: u8) -> String {
    format!("bench-{who}-qos{qos}")
}

fn qos_of(qos: u8) -> QoS {
    if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Phase (a): persistent rumqttc session, publish N while it is offline, time its drain.
async fn baseline(
    args: &Args,
    broker: &MosquittoBroker,
    qos: u8,
    msgs: Messages,
    limit: Duration,
) -> Result<DrainReport> {
    let (host, port) = (broker.host(), broker.port());
    let id = client_id("bare", qos);
    load::clear_session(host, port, &id, limit).await?;
    load::prepare_session(host, port, &id, FILTER, qos_of(qos), limit).await?;
    let n = msgs.len() as u64;
    let publ = load::publish_all(
        host,
        port,
        &format!("bench-pub-bare{qos}"),
        msgs,
        args.publishers,
        limit,
    )
    .await?;
    tracing::info!(?publ, "published for the bare subscriber");
    let drain = load::drain_session(host, port, &id, n, limit)
        .await
        .with_context(|| format!("bare drain; broker log:\n{}", broker.log_tail(10)))?;
    // Drop the session so the next phases' messages are not queued for it too.
    load::clear_session(host, port, &id, limit).await?;
    Ok(drain)
}

/// Phase (b): the daemon creates its session, stops, N are published, then it is timed from
/// a fresh spawn until its counter reaches N. Returns the still-running daemon and its gRPC
/// and HTTP ports. A non-empty `tag` names its config, log and data directory (which are
/// otherwise per QoS, kept from round to round).
#[allow(clippy::too_many_arguments)]
async fn daemon_phase(
    args: &Args,
    broker: &MosquittoBroker,
    template: &str,
    city: &DemoCity,
    dir: &Path,
    qos: u8,
    msgs: Messages,
    tag: &str,
) -> Result<(CounterRun, Daemon, u16, u16)> {
    let limit = Duration::from_secs(args.timeout_secs);
    let (host, port) = (broker.host(), broker.port());
    let id = client_id("daemon", qos);
    load::clear_session(host, port, &id, limit).await?;
    let (grpc, http_port) = (free_port()?, free_port()?);
    let name = if tag.is_empty() {
        format!("qos{qos}")
    } else {
        format!("qos{qos}-{tag}")
    };
    let data_dir = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&data_dir)?;
    let text = daemon::render_config(
        template,
        &Placeholders {
            mqtt_port: port,
            grpc_port: grpc,
            http_port,
            data_dir: &data_dir,
            qos,
            client_id: &id,
            grids_toml: &city.grids_toml(),
        },
    )?;
    let config = dir.join(format!("daemon-{name}.toml"));
    std::fs::write(&config, text)?;
    let log = dir.join(format!("daemon-{name}.log"));
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));

    let mut first = Daemon::spawn(&args.daemon, &config, &log)?;
    let ready = first
        .wait_ready(http, &args.token, Duration::from_secs(60))
        .await?;
    tracing::info!(
        ?ready,
        "daemon ready; stopping it to queue messages for its session"
    );
    first.terminate(Duration::from_secs(30)).await?;

    let publ = load::publish_all(
        host,
        port,
        &format!("bench-pub-daemon{qos}"),
        msgs,
        args.publishers,
        limit,
    )
    .await?;
    tracing::info!(?publ, "published for the daemon");

    let metric = if qos == 0 {
        &args.metric_qos0
    } else {
        &args.metric_qos1
    };
    let mut d = Daemon::spawn(&args.daemon, &config, &log)?;
    let run = daemon::wait_counter(&mut d, http, &args.token, metric, args.messages, limit).await?;
    Ok((run, d, grpc, http_port))
}
