//! `--fanout`: the daemon's QoS 1 drain with 1,000 gRPC and 50 WebSocket subscribers
//! reading its alert stream, against the same drain with nobody subscribed, in the same
//! run.
//!
//! Each round runs the two phases (the order alternating per round), each on a fresh
//! daemon and data directory with the same backlog:
//!
//! 1. the daemon's broker session is made and the backlog published into it;
//! 2. the broker stops (SIGTERM: it saves the session and its queue) and the daemon
//!    starts, finding no broker (it retries every 50 to 100 ms);
//! 3. (fan-out phase) every subscriber connects and reads its snapshot;
//! 4. the broker starts again on the same port with the saved queue; the drain is timed
//!    from when it listens until the daemon has acknowledged the whole backlog (its
//!    `gridsight_mqtt_messages_acked_total`);
//! 5. (fan-out phase) the bench waits until every change has reached every subscriber that
//!    watches its grid, and checks the counts: each community has exactly
//!    `grpc_subscribers / communities` gRPC subscribers and each town
//!    `ws_subscribers / towns` walls, so the sums must be those multiples of the daemon's
//!    `gridsight_alert_changes_total`.
//!
//! The daemon config is the bench template with every alarm reading made a change
//! (`correlation.update_interval_ms = 0`, so the change rate follows `--alarm-ratio`),
//! a quick reconnect (`mqtt.reconnect_min_ms = 50`, `reconnect_max_ms = 100`), 50
//! department tokens (the gRPC subscribers' 20 each) and a wall token.
//! The figures: drain rate with ÷ without subscribers (target ≥ 0.9), the change rate the
//! subscribers were served, the daemon's CPU time per message in both phases, this
//! process's CPU (the subscribers' share of the cores), and how long after the drain the
//! last change reached its subscribers, and how long the daemon took to answer the bench's
//! `GET /metrics` polls during the drain (an API call while it works). The subscribers
//! stand for machines elsewhere: they run at `--subscriber-nice` (19), so they use what
//! CPU the daemon and the broker leave; `--subscriber-nice 0` shows them competing as
//! equals. `--api-nice N` sets the daemon's `api.nice` (its APIs' threads' niceness; 0 =
//! as equals with ingest).

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gridsight_sim::{
    broker::{free_port, MosquittoBroker},
    load::{self, Messages},
    probe, procstat, DemoCity, GridLevel,
};
use rumqttc::QoS;

use crate::{
    client_id,
    daemon::{self, Daemon, Placeholders},
    subscribers::{Crowd, Plan},
    Args, FILTER,
};

/// Department tokens; gRPC subscriber i uses token i % DEPARTMENTS.
const DEPARTMENTS: usize = 50;

/// The template with the fan-out settings and tokens added; `api_nice`, when given, is
/// the daemon's `api.nice` (else its default).
pub fn config(template: &str, api_nice: Option<u8>) -> Result<String> {
    if !template.contains("\n[mqtt]\n") {
        bail!("the daemon config template has no [mqtt] table");
    }
    let template = match api_nice {
        Some(n) if template.contains("\n[api]\n") => template.replacen(
            "\n[api]\n",
            &format!("\n[api]\n# --api-nice\nnice = {n}\n"),
            1,
        ),
        Some(_) => bail!("the daemon config template has no [api] table"),
        None => template.to_string(),
    };
    let template = template.replacen(
        "\n[mqtt]\n",
        "\n[mqtt]\n# --fanout: the broker comes back within the timed drain\nreconnect_min_ms = 50\nreconnect_max_ms = 100\n",
        1,
    );
    let mut out = format!(
        "{template}\n\n# --fanout: every alarm reading is a change; department and wall tokens\n[correlation]\nupdate_interval_ms = 0\n\n"
    );
    for d in 0..DEPARTMENTS {
        out.push_str(&format!(
            "[[tokens]]\nname = \"dept-{d:02}\"\ntoken = \"{}\"\nrole = \"viewer\"\n\n",
            dept_token(d)
        ));
    }
    out.push_str(&format!(
        "[[tokens]]\nname = \"wall\"\ntoken = \"{WALL_TOKEN}\"\nrole = \"viewer\"\n"
    ));
    Ok(out)
}

const WALL_TOKEN: &str = "bench-wall-token-0123456789";

fn dept_token(d: usize) -> String {
    format!("bench-dept-{d:02}-token-0123456789")
}

/// Subscriber i of the gRPC ones watches community i % C; WebSocket j watches town j % T.
fn plan(args: &Args, city: &DemoCity) -> Result<Plan> {
    let communities: Vec<&str> = city.communities().map(|g| g.id.as_str()).collect();
    let towns: Vec<&str> = city
        .grids
        .iter()
        .filter(|g| g.level == GridLevel::Town)
        .map(|g| g.id.as_str())
        .collect();
    if communities.is_empty() || towns.is_empty() {
        bail!("the city has no communities or towns");
    }
    Ok(Plan {
        grpc: (0..args.grpc_subscribers)
            .map(|i| {
                (
                    dept_token(i % DEPARTMENTS),
                    communities[i % communities.len()].to_string(),
                )
            })
            .collect(),
        ws: (0..args.ws_subscribers)
            .map(|j| (WALL_TOKEN.to_string(), towns[j % towns.len()].to_string()))
            .collect(),
    })
}

/// One phase's figures.
struct Phase {
    /// Gate open → backlog acknowledged.
    drain: Duration,
    /// Alert changes committed during the drain.
    changes: f64,
    /// Daemon CPU seconds (user + system) during the drain.
    cpu: f64,
    /// This process's CPU seconds during the drain (the subscribers, the gate).
    own_cpu: f64,
    /// Drain end → every change at every subscriber (fan-out phase only).
    delivered_after: Option<Duration>,
    /// How long `GET /metrics` took to answer during the drain: median, slowest.
    answered: (Duration, Duration),
}

/// Alternates phases without and with subscribers for `--rounds` rounds; prints each and
/// the median ratio.
pub async fn compare(
    args: &Args,
    broker: &mut MosquittoBroker,
    template: &str,
    city: &DemoCity,
    dir: &Path,
    messages: &Messages,
) -> Result<()> {
    let plan = plan(args, city)?;
    let towns = city
        .grids
        .iter()
        .filter(|g| g.level == GridLevel::Town)
        .count();
    let communities = city.communities().count();
    // Exact counts only when every grid has the same number of subscribers.
    let per_community = args
        .grpc_subscribers
        .is_multiple_of(communities)
        .then(|| args.grpc_subscribers / communities);
    let per_town = args
        .ws_subscribers
        .is_multiple_of(towns)
        .then(|| args.ws_subscribers / towns);
    println!(
        "fan-out: {} gRPC subscribers (one community each, {communities} communities), {} WebSockets (one town each, {towns} towns)",
        args.grpc_subscribers, args.ws_subscribers
    );
    let text = config(template, args.api_nice)?;
    if let Some(n) = args.api_nice {
        println!("fan-out: the daemon's api.nice = {n}");
    }
    let n = args.messages;
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for round in 1..=args.rounds.max(1) {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair: [Option<Phase>; 2] = [None, None];
        for with in order {
            let label = if with { "fan-out" } else { "alone" };
            let tag = format!("{label}-r{round}");
            let crowd = with.then_some((&plan, per_community, per_town));
            let p = phase(args, broker, &text, city, dir, messages, &tag, crowd).await?;
            let secs = p.drain.as_secs_f64();
            println!(
                "round {round}: daemon {label:<7} drained {n} in {secs:.3} s = {:.0} msg/s; {:.0} alert changes = {:.0} changes/s; daemon CPU {:.2} s = {:.1} µs/msg; bench CPU {:.2} s; GET /metrics answered in {:.0} ms median, {:.0} ms at most{}",
                n as f64 / secs,
                p.changes,
                p.changes / secs,
                p.cpu,
                p.cpu * 1e6 / n as f64,
                p.own_cpu,
                p.answered.0.as_secs_f64() * 1000.0,
                p.answered.1.as_secs_f64() * 1000.0,
                p.delivered_after.map_or(String::new(), |d| format!(
                    "; every change at its subscribers {:.0} ms after the drain",
                    d.as_secs_f64() * 1000.0
                ))
            );
            pair[usize::from(with)] = Some(p);
        }
        if let [Some(alone), Some(fan)] = pair {
            let ratio = alone.drain.as_secs_f64() / fan.drain.as_secs_f64();
            let cpu = fan.cpu / alone.cpu.max(1e-9);
            println!(
                "RESULT fanout round={round} alone={:.0} fanout={:.0} ratio={ratio:.3} changes_per_s={:.0} cpu_ratio={cpu:.3}",
                n as f64 / alone.drain.as_secs_f64(),
                n as f64 / fan.drain.as_secs_f64(),
                fan.changes / fan.drain.as_secs_f64()
            );
            ratios.push(ratio);
            cpu_ratios.push(cpu);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    let ratio = median(ratios);
    println!(
        "RESULT median fanout rounds={} ratio={ratio:.3} ratio_min={lo:.3} ratio_max={hi:.3} cpu_ratio={:.3}",
        args.rounds.max(1),
        median(cpu_ratios)
    );
    println!(
        "RESULT target drain with subscribers >= 0.9 x without: {} ({ratio:.3})",
        if ratio >= 0.9 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// One phase on a fresh daemon; `crowd` (the plan and the exact multiples to check) for
/// the fan-out phase.
#[allow(clippy::too_many_arguments)]
async fn phase(
    args: &Args,
    broker: &mut MosquittoBroker,
    text: &str,
    city: &DemoCity,
    dir: &Path,
    messages: &Messages,
    tag: &str,
    crowd: Option<(&Plan, Option<usize>, Option<usize>)>,
) -> Result<Phase> {
    let limit = Duration::from_secs(args.timeout_secs);
    let (host, port) = (broker.host(), broker.port());
    let id = client_id("daemon", 1);
    load::clear_session(host, port, &id, limit).await?;
    load::prepare_session(host, port, &id, FILTER, QoS::AtLeastOnce, limit).await?;
    load::publish_all(
        host,
        port,
        "bench-pub-fanout",
        messages.clone(),
        args.publishers,
        limit,
    )
    .await?;

    broker
        .pause()
        .await
        .context("stopping the broker with the backlog queued")?;

    let (grpc_port, http_port) = (free_port()?, free_port()?);
    let data = dir.join(format!("data-{tag}"));
    std::fs::create_dir_all(&data)?;
    let config = dir.join(format!("daemon-{tag}.toml"));
    std::fs::write(
        &config,
        daemon::render_config(
            text,
            &Placeholders {
                mqtt_port: port,
                grpc_port,
                http_port,
                data_dir: &data,
                qos: 1,
                client_id: &id,
                grids_toml: &city.grids_toml(),
            },
        )?,
    )?;
    let mut d = Daemon::spawn(
        &args.daemon,
        &config,
        &dir.join(format!("daemon-{tag}.log")),
    )?;
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    let grpc = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    d.wait_listening(http, Duration::from_secs(60)).await?;
    let subscribers = match crowd {
        Some((plan, ..)) => Some(
            Crowd::connect(grpc, http, plan, args.subscriber_nice)
                .await
                .with_context(|| format!("subscribers; daemon log:\n{}", d.log_tail(20)))?,
        ),
        None => None,
    };
    broker.resume().await.context("starting the broker again")?;
    let started = Instant::now();
    let cpu0 = d.cpu_secs()?;
    let own0 = own_cpu()?;
    let run = daemon::wait_counter(
        &mut d,
        http,
        &args.token,
        &args.metric_qos1,
        args.messages,
        limit,
    )
    .await?;
    let done = Instant::now();
    let cpu = d.cpu_secs()? - cpu0;
    let own_cpu = own_cpu()? - own0;
    let drain = done - started;
    tracing::info!(?run, "drained");
    let changes = metric(http, &args.token, "gridsight_alert_changes_total").await?;

    let delivered_after = match (&subscribers, crowd) {
        (Some(s), Some((_, per_community, per_town))) => {
            Some(delivered(s, http, &args.token, per_community, per_town, done).await?)
        }
        _ => None,
    };
    if let Some(s) = subscribers {
        let ended = s.totals.ended.load(std::sync::atomic::Ordering::Relaxed);
        if ended > 0 {
            bail!(
                "{ended} subscribers' streams ended during the phase; daemon log:\n{}",
                d.log_tail(20)
            );
        }
        s.close().await;
    }
    d.terminate(Duration::from_secs(30)).await?;
    load::clear_session(host, port, &id, limit).await?;
    if !args.keep_temp {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    Ok(Phase {
        drain,
        changes,
        cpu,
        own_cpu,
        delivered_after,
        answered: (run.poll_median, run.poll_max),
    })
}

/// Waits until the subscribers hold every change (the daemon's change counter no longer
/// moving), checks the sums, and returns how long after `since` that was.
async fn delivered(
    crowd: &Crowd,
    http: SocketAddr,
    token: &str,
    per_community: Option<usize>,
    per_town: Option<usize>,
    since: Instant,
) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let changes = metric(http, token, "gridsight_alert_changes_total").await? as u64;
        let (grpc, ws) = crowd.changes();
        let want = |k: Option<usize>| k.map(|k| changes * k as u64);
        let grpc_done = want(per_community).map_or(grpc > 0, |w| grpc >= w);
        let ws_done = want(per_town).map_or(ws > 0, |w| ws >= w);
        if grpc_done && ws_done {
            let at = since.elapsed();
            // Nothing more may come (a change counted twice would show here).
            let again = metric(http, token, "gridsight_alert_changes_total").await? as u64;
            let (g2, w2) = crowd.changes();
            if again == changes {
                for (what, got, k) in [("gRPC", g2, per_community), ("WebSocket", w2, per_town)] {
                    if let Some(w) = want(k) {
                        if got != w {
                            bail!("{what} subscribers received {got} changes, expected {w} ({changes} changes × {})", k.unwrap_or(0));
                        }
                    }
                }
                let lagged = metric(http, token, "gridsight_fanout_lagged_total").await?;
                let cut = metric(http, token, "gridsight_subscribers_cut_total").await?;
                println!(
                    "  delivered: {g2} changes over gRPC, {w2} over WebSockets, for {changes} alert changes ({lagged} changes caught up from the change log after a full queue, {cut} subscribers cut off)"
                );
                return Ok(at);
            }
        }
        if Instant::now() >= deadline {
            bail!("subscribers hold {grpc} (gRPC) and {ws} (WebSocket) changes of {changes} after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds this process has used.
fn own_cpu() -> Result<f64> {
    Ok(procstat::cpu_ticks(std::process::id())? as f64 / procstat::clock_ticks())
}

async fn metric(http: SocketAddr, token: &str, name: &str) -> Result<f64> {
    let r = probe::http_get(http, "/metrics", Some(token), Duration::from_secs(5)).await?;
    if r.status != 200 {
        bail!("GET /metrics answered {}", r.status);
    }
    Ok(probe::metric_value(&r.body, name).unwrap_or(0.0))
}
