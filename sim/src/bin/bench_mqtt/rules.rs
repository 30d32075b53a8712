//! `--rules-file` and `--compare-rules`: the daemon's drain with a rule set on, against the
//! same daemon without it, in the same script run.
//!
//! The rules file (`[[rules]]` tables) is appended to the rendered daemon config. With
//! `--compare-rules`, each round runs two QoS 1 daemon phases, one without the rules and
//! one with them (the order alternating per round, so neither always runs second), each
//! with a fresh data directory (a daemon with rules replays the journal of its longest
//! window at start: a store left by an earlier phase would be charged to it). The figure
//! is the ratio of the drain rates, rules ÷ no rules, per round, and its median.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, Result};
use gridsight_sim::{
    broker::MosquittoBroker,
    load::{self, Messages},
    probe, DemoCity,
};

use crate::{client_id, daemon_phase, report::rate, Args};

/// The config template with the rules file appended.
pub fn with_rules(template: &str, rules_file: &Path) -> Result<String> {
    let rules = std::fs::read_to_string(rules_file)
        .with_context(|| format!("reading {}", rules_file.display()))?;
    let count = rules.lines().filter(|l| l.trim() == "[[rules]]").count();
    println!(
        "rules: {count} [[rules]] from {} appended to the daemon config",
        rules_file.display()
    );
    Ok(format!(
        "{template}\n\n# --rules-file {}\n{rules}",
        rules_file.display()
    ))
}

/// One daemon phase's figures.
struct Phase {
    /// Spawn → N acknowledged, and first acknowledged → N, msg/s.
    from_spawn: f64,
    from_first: f64,
    /// Alerts opened and alert changes committed when the drain ended.
    opened: f64,
    changes: f64,
}

/// Alternates daemon phases without and with the rules for `--rounds` rounds at QoS 1 and
/// prints each round and the median ratio.
pub async fn compare(
    args: &Args,
    broker: &MosquittoBroker,
    template: &str,
    rules_template: &str,
    city: &DemoCity,
    dir: &Path,
    messages: &Messages,
) -> Result<()> {
    let rounds = args.rounds.max(1);
    let mut ratios = Vec::new();
    let mut ratios_first = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair: [Option<Phase>; 2] = [None, None];
        for rules_on in order {
            let (label, text) = if rules_on {
                ("rules", rules_template)
            } else {
                ("no-rules", template)
            };
            let tag = format!("{label}-r{round}");
            let phase = phase(args, broker, text, city, dir, messages, &tag).await?;
            println!(
                "qos 1 round {round}: daemon {label:<8} drained {} at {:.0} msg/s from spawn ({:.0} from the first message); alerts opened {:.0}, alert changes {:.0}",
                args.messages, phase.from_spawn, phase.from_first, phase.opened, phase.changes
            );
            pair[usize::from(rules_on)] = Some(phase);
        }
        if let [Some(off), Some(on)] = pair {
            let (ratio, first) = (
                on.from_spawn / off.from_spawn,
                on.from_first / off.from_first,
            );
            println!(
                "RESULT rules round={round} no_rules={:.0} rules={:.0} ratio={ratio:.3} ratio_from_first={first:.3} opened_no_rules={:.0} opened_rules={:.0}",
                off.from_spawn, on.from_spawn, off.opened, on.opened
            );
            ratios.push(ratio);
            ratios_first.push(first);
        }
    }
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let ratio = median(ratios);
    println!(
        "RESULT median rules qos=1 rounds={rounds} ratio={ratio:.3} ratio_from_first={:.3} ratio_min={lo:.3} ratio_max={hi:.3}",
        median(ratios_first)
    );
    println!(
        "RESULT target drain with rules >= 0.9 x without: {} ({ratio:.3})",
        if ratio >= 0.9 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// One QoS 1 daemon phase with config `text`, its data in a directory of its own that is
/// removed afterwards.
async fn phase(
    args: &Args,
    broker: &MosquittoBroker,
    text: &str,
    city: &DemoCity,
    dir: &Path,
    messages: &Messages,
    tag: &str,
) -> Result<Phase> {
    let limit = Duration::from_secs(args.timeout_secs);
    let (run, d, _grpc, http) =
        daemon_phase(args, broker, text, city, dir, 1, messages.clone(), tag).await?;
    let metrics = probe::http_get(
        SocketAddr::from(([127, 0, 0, 1], http)),
        "/metrics",
        Some(&args.token),
        Duration::from_secs(5),
    )
    .await?;
    let value = |name: &str| probe::metric_value(&metrics.body, name).unwrap_or(0.0);
    let phase = Phase {
        from_spawn: rate(args.messages, run.reached),
        from_first: rate(args.messages, run.reached.saturating_sub(run.first)),
        opened: value("gridsight_alerts_opened_total"),
        changes: value("gridsight_alert_changes_total"),
    };
    d.terminate(Duration::from_secs(30)).await?;
    load::clear_session(broker.host(), broker.port(), &client_id("daemon", 1), limit).await?;
    if !args.keep_temp {
        let data = dir.join(format!("data-qos1-{tag}"));
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    Ok(phase)
}
