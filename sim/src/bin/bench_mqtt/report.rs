//! Printing of the bench's figures: a table per QoS and one-line `RESULT` records that
//! scripts can grep.

use std::time::Duration;

use gridsight_sim::{load::DrainReport, LatencyReport};

use crate::daemon::CounterRun;

/// One QoS level's figures.
pub struct Row {
    pub qos: u8,
    pub bare: DrainReport,
    pub daemon: Option<CounterRun>,
}

/// Messages per second.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// The table and `RESULT qos=...` lines.
pub fn print_table(n: u64, rows: &[Row]) {
    println!();
    println!(
        "{:<4} {:>14} {:>16} {:>20} {:>8} {:>12}",
        "QoS", "bare msg/s", "daemon msg/s", "daemon msg/s", "ratio", "ratio"
    );
    println!(
        "{:<4} {:>14} {:>16} {:>20} {:>8} {:>12}",
        "", "(connect→N)", "(spawn→N)", "(first count→N)", "", "(first→N)"
    );
    for r in rows {
        let bare = rate(n, r.bare.elapsed);
        match r.daemon {
            Some(d) => {
                let from_spawn = rate(n, d.reached);
                let from_first = rate(n, d.reached.saturating_sub(d.first));
                println!(
                    "{:<4} {bare:>14.0} {from_spawn:>16.0} {from_first:>20.0} {:>8.3} {:>12.3}",
                    r.qos,
                    from_spawn / bare,
                    from_first / bare
                );
            }
            None => println!(
                "{:<4} {bare:>14.0} {:>16} {:>20} {:>8} {:>12}",
                r.qos, "-", "-", "-", "-"
            ),
        }
    }
    println!();
    for r in rows {
        let bare = rate(n, r.bare.elapsed);
        let first_ms = r.bare.first_after.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        match r.daemon {
            Some(d) => {
                let from_spawn = rate(n, d.reached);
                let from_first = rate(n, d.reached.saturating_sub(d.first));
                println!(
                    "RESULT qos={} bare={bare:.0} daemon={from_spawn:.0} ratio={:.3} daemon_from_first={from_first:.0} ratio_from_first={:.3} bare_first_ms={first_ms:.1} daemon_first_ms={:.1}",
                    r.qos,
                    from_spawn / bare,
                    from_first / bare,
                    d.first.as_secs_f64() * 1000.0
                );
            }
            None => println!(
                "RESULT qos={} bare={bare:.0} bare_first_ms={first_ms:.1}",
                r.qos
            ),
        }
    }
}

/// The latency figures and the `RESULT latency ...` line.
pub fn print_latency(rep: &LatencyReport) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p99, max) = (
        ms(rep.quantile(0.5)),
        ms(rep.quantile(0.99)),
        ms(rep.quantile(1.0)),
    );
    let achieved = rate(rep.published, rep.publish_time);
    println!(
        "latency: {} messages in {:.2} s ({achieved:.0} msg/s achieved, worst lag behind schedule {:.1} ms)",
        rep.published,
        rep.publish_time.as_secs_f64(),
        ms(rep.max_lag)
    );
    println!(
        "latency: {} alarms, {} matched OPENED ({} only in other changes); p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        rep.alarms, rep.matched, rep.other_kinds
    );
    let q = |v: &[i64], f: f64| -> i64 {
        if v.is_empty() {
            return 0;
        }
        v[((v.len() as f64 * f).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let (b, d) = (&rep.to_daemon_ms, &rep.in_daemon_ms);
    println!(
        "latency split (wall clock, ms): publish→daemon received p50 {} p99 {} max {}; daemon received→subscriber p50 {} p99 {} max {}",
        q(b, 0.5), q(b, 0.99), q(b, 1.0), q(d, 0.5), q(d, 0.99), q(d, 1.0)
    );
    println!(
        "RESULT latency p50_ms={p50:.1} p99_ms={p99:.1} max_ms={max:.1} matched={} alarms={} achieved_rate={achieved:.0} to_daemon_p99_ms={} in_daemon_p99_ms={}",
        rep.matched, rep.alarms, q(b, 0.99), q(d, 0.99)
    );
}

/// The cumulative buckets (upper bound, count) of `gridsight_alert_latency_seconds` in a
/// `/metrics` text.
fn latency_buckets(metrics: &str) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("gridsight_alert_latency_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        if let Ok(c) = count.trim().parse::<f64>() {
            buckets.push((le, c));
        }
    }
    buckets
}

/// The daemon's own view of the latency phase: its `gridsight_alert_latency_seconds`
/// histogram (the alert's time to its change durable and on the bus) in `after` less what
/// it held in `before` (the backlog drain's changes, whose readings were queued at the
/// broker for seconds), as the bucket bounds holding p50 and p99.
pub fn print_daemon_latency(before: &str, after: &str) {
    let Some((total, p50, p99)) = daemon_latency(before, after) else {
        println!("latency (daemon): no gridsight_alert_latency_seconds in /metrics");
        return;
    };
    println!(
        "latency (daemon, arrival→durable and streamed, {total} changes): p50 ≤ {p50} ms, p99 ≤ {p99} ms"
    );
    println!("RESULT daemon_latency p50_le_ms={p50} p99_le_ms={p99}");
}

/// The changes the histogram gained from `before` to `after`, and the upper bounds (ms) of
/// the buckets that hold their p50 and p99 (infinite: past the last bound).
fn daemon_latency(before: &str, after: &str) -> Option<(f64, f64, f64)> {
    let earlier = latency_buckets(before);
    let buckets: Vec<(f64, f64)> = latency_buckets(after)
        .into_iter()
        .map(|(le, c)| {
            let had = earlier
                .iter()
                .find(|(l, _)| l == &le)
                .map_or(0.0, |(_, c)| *c);
            (le, c - had)
        })
        .collect();
    let &(_, total) = buckets.last()?;
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| le * 1000.0)
            .unwrap_or(f64::INFINITY)
    };
    Some((total, bound(0.5), bound(0.99)))
}

/// The median over rounds of each QoS level's ratios, and its `RESULT median ...` line.
pub fn print_medians(n: u64, rows: &[Row]) {
    let mut levels: Vec<u8> = rows.iter().map(|r| r.qos).collect();
    levels.dedup();
    for qos in levels {
        let mut spawn = Vec::new();
        let mut first = Vec::new();
        for r in rows.iter().filter(|r| r.qos == qos) {
            if let Some(d) = r.daemon {
                let bare = rate(n, r.bare.elapsed);
                spawn.push(rate(n, d.reached) / bare);
                first.push(rate(n, d.reached.saturating_sub(d.first)) / bare);
            }
        }
        if spawn.is_empty() {
            continue;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (lo, hi) = (
            spawn.iter().copied().fold(f64::INFINITY, f64::min),
            spawn.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "RESULT median qos={qos} rounds={} ratio={:.3} ratio_from_first={:.3} ratio_min={lo:.3} ratio_max={hi:.3}",
            spawn.len(),
            median(&mut spawn),
            median(&mut first)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(counts: [u64; 4]) -> String {
        let les = ["0.001", "0.05", "1", "+Inf"];
        les.iter()
            .zip(counts)
            .map(|(le, c)| format!("gridsight_alert_latency_seconds_bucket{{le=\"{le}\"}} {c}\n"))
            .collect()
    }

    #[test]
    fn the_daemons_latency_is_what_the_phase_added_not_the_backlog_before_it() {
        // The drain left 700 changes past the last bound; the phase added 1000, 985 of
        // them within 1 ms and the rest within 50 ms.
        let before = histogram([0, 0, 0, 700]);
        let after = histogram([985, 1000, 1000, 1700]);
        assert_eq!(daemon_latency(&before, &after), Some((1000.0, 1.0, 50.0)));
        // Over everything since the start, p99 would be past the last bound.
        let (total, _, p99) = daemon_latency("", &after).unwrap();
        assert_eq!((total, p99), (1700.0, f64::INFINITY));
        assert_eq!(daemon_latency("", "no histogram"), None);
    }
}
