//! Engine benchmark: in-process correlation throughput on a synthetic county (10,000
//! communities, 10,000 cameras, 40,000 sensors) with the 50 rules of
//! `deploy/bench/rules-50.toml`, against the same events through an engine without rules
//! (the base layer alone), in the same process, rounds alternating.
//!
//! `make bench-engine` (or `cargo bench -p gridsight --bench engine`). Events are generated
//! before the timed loop; each run builds a fresh engine and feeds it the events the way a
//! shard does (`is_repeat`, `on_sensor` / `on_camera` / `on_incident`, `note`) on one
//! thread, calling `tick` once per simulated second. The first `ENGINE_BENCH_WARMUP`
//! events (default: as many as are timed) are fed untimed, so that the timed events meet
//! the steady state of a daemon that has been running: its sensors known, its spatial
//! answers cached, windows and alerts open (`ENGINE_BENCH_WARMUP=0` measures a fresh engine,
//! as the benches before the eleventh session did). Lines starting with `RESULT` are the
//! ones to grep.
//!
//! Two event mixes are measured, one after the other ([`county::Mix`]): `day`, a busy day
//! at DESIGN.md's scale (1 % alarms, one report a second), on which the target
//! (≥ 1M events/s per core with the 50 rules, "a realistic event mix") is judged; and
//! `storm` (5 % alarms, 100 reports and 200 cameras going down or up a second), far beyond
//! that scale, printed as a stress figure against the same 1M.
//!
//! Knobs:
//! - `ENGINE_BENCH_MIX=day` (or `storm`) measures one mix alone (default: both);
//! - `ENGINE_BENCH_EVENTS` (default 200,000 timed: 10 s of simulated time, which keeps the
//!   whole bench near a minute) and `ENGINE_BENCH_ROUNDS` (default 5) scale it;
//! - `ENGINE_BENCH_BATCH` (default 64) is the most readings one batch holds;
//! - `ENGINE_BENCH_BREAKDOWN=0` skips the last pass, which times every call and counts its
//!   allocations by kind of event (a counting global allocator wraps the daemon's one in
//!   every pass);
//! - `ENGINE_BENCH_ONLY=baseline` (or `rules`) runs one configuration alone, for a
//!   profiler (`callgrind --toggle-collect=engine::measured` counts the timed part alone);
//! - `ENGINE_BENCH_PER_RULE=1` then runs each rule alone and prints what it adds to the
//!   baseline, costliest first; `ENGINE_BENCH_RULES=id,id` keeps only the rules named;
//! - `ENGINE_BENCH_PREFETCH=0` feeds the readings without the prefetches a shard makes
//!   (`Engine::prefetch_batch`, `Engine::prefetch_next`), to see what they save.
//!
//! Under `cargo test` (no `--bench` argument) the defaults are 20,000 events and one round:
//! a smoke run, not a measurement.

#[path = "engine/county.rs"]
mod county;

use std::{
    alloc::{GlobalAlloc, Layout},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use gridsight::{
    config::{CorrelationConfig, RuleConfig},
    correlate::{engine::Engine, rules::RuleSet},
    domain::AlertChange,
    store::Ids,
};
use gridsight_proto::v1 as pb;

use county::{County, Event, Kind, Mix, Timed, RATE, T0};

/// The daemon's allocator ([`gridsight::Allocator`]), counting allocations (one relaxed add
/// each: a few ns next to the allocation itself, and the same in both configurations).
struct Counting;

static INNER: gridsight::Allocator = mimalloc::MiMalloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the daemon's allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The rule set of both benches.
const RULES: &str = include_str!("../../deploy/bench/rules-50.toml");
/// The target of the issue: events per second on one core, with the rules.
const TARGET: f64 = 1_000_000.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn load_rules() -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<RuleConfig>,
    }
    let file: File = toml::from_str(RULES).expect("deploy/bench/rules-50.toml parses");
    let errs = gridsight::config::rules::validate(&file.rules, 2);
    assert!(errs.is_empty(), "deploy/bench/rules-50.toml: {errs:?}");
    // `ENGINE_BENCH_RULES=id,id` keeps only those rules (for a profiler).
    match std::env::var("ENGINE_BENCH_RULES") {
        Ok(ids) if !ids.is_empty() => {
            let keep: Vec<&str> = ids.split(',').collect();
            file.rules
                .into_iter()
                .filter(|r| keep.contains(&r.id.as_str()))
                .collect()
        }
        _ => file.rules,
    }
}

/// Resident set size of this process, MiB (from /proc; 0 where there is none).
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Run {
    elapsed: Duration,
    /// Allocations (and reallocations) during the timed loop.
    allocs: u64,
    opened: u64,
    rule_opened: u64,
    changes: u64,
    open_at_end: usize,
    /// Items in the rule windows at the end, and the most seen at a tick.
    window_items: (usize, usize),
    rss_before: f64,
    rss_after: f64,
    /// Per [`Kind`] (then ticks): time spent, calls and allocations, when timed per event.
    per_kind: Vec<(Duration, u64, u64)>,
}

impl Run {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn tally(&mut self, changes: &[AlertChange]) {
        self.changes += changes.len() as u64;
        for a in changes
            .iter()
            .filter(|c| c.kind == pb::ChangeKind::Opened as i32)
            .filter_map(|c| c.alert.as_ref())
        {
            self.opened += 1;
            self.rule_opened += u64::from(!a.rule_id.is_empty());
        }
    }
}

/// Slots of [`Run::per_kind`] after the kinds of event.
const TICK_SLOT: usize = Kind::ALL.len();
const BATCH_END_SLOT: usize = Kind::ALL.len() + 1;

/// Where a feed stands between calls: the next tick, the readings in the open batch, the
/// time of the last event.
struct Feed {
    next_tick: i64,
    in_batch: usize,
    last_at: i64,
    batch: usize,
    prefetch: bool,
}

/// Builds a fresh engine, feeds it the first `warm` events untimed (so that it is measured
/// in the steady state a running daemon is in: sensors known, spatial answers cached,
/// windows and alerts open), then times the rest; with `per_kind`, times each call (the
/// clock's own cost, ~25 ns a reading, is then included).
fn run(
    county: &County,
    rules: &Arc<RuleSet>,
    events: &[Timed],
    warm: usize,
    per_kind: bool,
    batch: usize,
) -> Run {
    let mut e = Engine::new(CorrelationConfig::default(), Arc::new(Ids::default()));
    e.set_grids(county.grids.clone());
    e.set_rules(rules.clone());
    e.set_cameras(county.cameras.clone());
    let mut feed = Feed {
        next_tick: T0 + 1000,
        in_batch: 0,
        last_at: T0,
        batch,
        prefetch: env_or("ENGINE_BENCH_PREFETCH", 1) != 0,
    };
    let warm = warm.min(events.len());
    let mut untimed = Run {
        per_kind: vec![(Duration::ZERO, 0, 0); BATCH_END_SLOT + 1],
        ..Run::default()
    };
    feed.events(&mut e, &mut untimed, events, 0..warm, false);
    let mut out = Run {
        rss_before: rss_mib(),
        per_kind: vec![(Duration::ZERO, 0, 0); BATCH_END_SLOT + 1],
        ..Run::default()
    };
    measured(&mut feed, &mut e, &mut out, events, warm, per_kind);
    out.open_at_end = e.open_count();
    out.window_items.0 = e.rule_window_items();
    out.rss_after = rss_mib();
    drop(e);
    out
}

/// The timed part of [`run`]: the events from `from` on (a function of its own, so that
/// `callgrind --toggle-collect=engine::measured` counts it alone).
#[inline(never)]
fn measured(
    feed: &mut Feed,
    e: &mut Engine,
    out: &mut Run,
    events: &[Timed],
    from: usize,
    per_kind: bool,
) {
    let allocs = allocations();
    let started = Instant::now();
    feed.events(e, out, events, from..events.len(), per_kind);
    out.elapsed = started.elapsed();
    out.allocs = allocations() - allocs;
}

impl Feed {
    /// Feeds `events[range]` the way a shard does, tallying into `out`. Consecutive
    /// readings go in batches of up to `batch`, as a shard gets them from the MQTT ingest
    /// (one batch per socket read); a camera event, a report, a tick or the end of the
    /// range ends the batch, as a separate shard message would.
    fn events(
        &mut self,
        e: &mut Engine,
        out: &mut Run,
        events: &[Timed],
        range: std::ops::Range<usize>,
        per_kind: bool,
    ) {
        // Runs `f` on the engine, tallies its changes, and times it into `slot`.
        let step = |e: &mut Engine,
                    out: &mut Run,
                    slot: usize,
                    f: &mut dyn FnMut(&mut Engine) -> Vec<AlertChange>| {
            let t = per_kind.then(|| (Instant::now(), allocations()));
            let changes = f(e);
            e.note(&changes);
            out.tally(&changes);
            drop(changes);
            if let Some((t, a)) = t {
                let slot = &mut out.per_kind[slot];
                slot.0 += t.elapsed();
                slot.1 += 1;
                slot.2 += allocations() - a;
            }
        };
        let end = range.end;
        for i in range {
            let ev = &events[i];
            let is_reading = matches!(ev.event, Event::Sensor(..));
            if self.in_batch > 0
                && (!is_reading || self.in_batch >= self.batch || ev.at >= self.next_tick)
            {
                let last_at = self.last_at;
                step(e, out, BATCH_END_SLOT, &mut |e| e.end_batch(last_at));
                self.in_batch = 0;
            }
            if ev.at >= self.next_tick {
                let now = self.next_tick;
                step(e, out, TICK_SLOT, &mut |e| e.tick(now));
                self.next_tick += 1000;
                if per_kind {
                    // Counting walks every window: only in the pass that times each call.
                    out.window_items.1 = out.window_items.1.max(e.rule_window_items());
                }
            }
            // The readings of this batch, as the shard has them (see `ShardMsg::Sensors`).
            let (next_tick, room) = (self.next_tick, self.batch - self.in_batch);
            let batch_readings = || {
                events[i..end]
                    .iter()
                    .take(room)
                    .take_while(|n| n.at < next_tick)
                    .map_while(|n| match &n.event {
                        Event::Sensor(_, r) => Some(r),
                        _ => None,
                    })
            };
            if is_reading && self.in_batch == 0 {
                e.begin_batch();
                if self.prefetch {
                    e.prefetch_batch(batch_readings());
                }
            }
            if is_reading && self.prefetch {
                if let Some(next) = batch_readings().nth(1) {
                    e.prefetch_next(next);
                }
            }
            self.in_batch += usize::from(is_reading);
            step(e, out, ev.kind as usize, &mut |e| match &ev.event {
                Event::Sensor(id, reading) => {
                    if e.is_repeat(reading) {
                        Vec::new()
                    } else {
                        e.on_sensor(*id, reading)
                    }
                }
                Event::Camera(c) => e.on_camera(c, ev.at),
                Event::Report(inc) => e.on_incident(inc.clone(), ev.at).1,
            });
            self.last_at = ev.at;
        }
        if self.in_batch > 0 {
            let last_at = self.last_at;
            step(e, out, BATCH_END_SLOT, &mut |e| e.end_batch(last_at));
            self.in_batch = 0;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), x| {
        (lo.min(*x), hi.max(*x))
    })
}

fn print_run(label: &str, round: usize, n: usize, r: &Run) {
    println!(
        "round {round} {label:<8} {:>7.3} s {:>10.0} events/s {:>6.1} allocs/event  opened {:>6} (rules {:>5})  changes {:>7}  open at end {:>6}  RSS {:.0} → {:.0} MiB",
        r.elapsed.as_secs_f64(),
        r.rate(n),
        r.allocs as f64 / n as f64,
        r.opened,
        r.rule_opened,
        r.changes,
        r.open_at_end,
        r.rss_before,
        r.rss_after
    );
}

fn print_breakdown(label: &str, r: &Run) {
    println!(
        "RESULT windows {label} items_at_end={} peak_at_a_tick={}",
        r.window_items.0, r.window_items.1
    );
    let total: Duration = r.per_kind.iter().map(|(d, ..)| *d).sum();
    for (i, (d, calls, allocs)) in r.per_kind.iter().enumerate() {
        let name = match Kind::ALL.get(i) {
            Some(k) => k.name(),
            None if i == TICK_SLOT => "tick (1/s)",
            None => "batch end (held-back updates)",
        };
        let per = (*calls).max(1) as f64;
        let ns = d.as_nanos() as f64 / per;
        let share = d.as_secs_f64() / total.as_secs_f64().max(1e-9) * 100.0;
        println!(
            "RESULT breakdown {label} kind=\"{name}\" calls={calls} ns_per_call={ns:.0} allocs_per_call={:.1} share_pct={share:.1}",
            *allocs as f64 / per
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` (a smoke run in `make test`) does not,
    // and then a short run shows the bench works without measuring anything.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (events_default, rounds_default) = if measuring { (200_000, 5) } else { (20_000, 1) };
    let n = env_or("ENGINE_BENCH_EVENTS", events_default).max(1);
    let rounds = env_or("ENGINE_BENCH_ROUNDS", rounds_default).max(1);
    let warm = env_or("ENGINE_BENCH_WARMUP", n);
    let mixes = match std::env::var("ENGINE_BENCH_MIX").as_deref() {
        Err(_) | Ok("") | Ok("both") => vec![Mix::DAY, Mix::STORM],
        Ok(name) => match Mix::named(name) {
            Some(mix) => vec![mix],
            None => {
                eprintln!("ENGINE_BENCH_MIX={name}: not a mix (day, storm or both)");
                std::process::exit(2);
            }
        },
    };
    let rss_start = rss_mib();
    let built = Instant::now();
    let county = County::build();
    let rule_cfgs = load_rules();
    let with_rules = Arc::new(RuleSet::new(&rule_cfgs));
    println!(
        "engine bench: {} grids (1 county, 100 towns, 10,000 communities), {} cameras, {} sensors, {} rules; built in {:.1} s; RSS {rss_start:.0} MiB at start",
        county.grids.len(),
        county.cameras.by_grid.len(),
        county.sensor_count(),
        with_rules.rules.len(),
        built.elapsed().as_secs_f64()
    );
    let bench = Bench {
        county: &county,
        rule_cfgs: &rule_cfgs,
        with_rules,
        n,
        warm,
        rounds,
    };
    for mix in &mixes {
        bench.mix(mix);
    }
}

/// What every mix is measured with.
struct Bench<'a> {
    county: &'a County,
    rule_cfgs: &'a [RuleConfig],
    with_rules: Arc<RuleSet>,
    /// Events timed.
    n: usize,
    /// Events fed untimed before.
    warm: usize,
    rounds: usize,
}

impl Bench<'_> {
    /// The rounds, the report and the optional passes of one mix.
    fn mix(&self, mix: &Mix) {
        let (n, warm) = (self.n, self.warm);
        let breakdown = env_or("ENGINE_BENCH_BREAKDOWN", 1) != 0;
        let only = std::env::var("ENGINE_BENCH_ONLY").unwrap_or_default();
        let batch = env_or("ENGINE_BENCH_BATCH", 64).max(1);
        let no_rules = Arc::new(RuleSet::new(&[]));
        let events = county::events(self.county, warm + n, 7, mix);
        let mut shares = [0usize; Kind::ALL.len()];
        for ev in &events[warm..] {
            shares[ev.kind as usize] += 1;
        }
        let shares: Vec<String> = Kind::ALL
            .iter()
            .map(|k| {
                let share = shares[*k as usize] as f64 / n as f64 * 100.0;
                format!("{} {share:.2}%", k.name())
            })
            .collect();
        println!();
        println!(
            "mix {}: {n} events timed over {:.1} s of simulated time ({RATE}/s) after {warm} untimed ({:.1} s) on the same engine, readings in batches of up to {batch}, tick once a simulated second; {}",
            mix.name,
            n as f64 / RATE as f64,
            warm as f64 / RATE as f64,
            shares.join(", ")
        );
        println!("RSS: {:.0} MiB with the county and the events", rss_mib());

        let mut base_runs = Vec::new();
        let mut rule_runs = Vec::new();
        for round in 1..=self.rounds {
            // Alternate the order, so that neither always runs on a warmer (or colder) machine.
            let order = if round % 2 == 1 {
                [false, true]
            } else {
                [true, false]
            };
            for rules_on in order {
                if !only.is_empty() && only != ["baseline", "rules"][usize::from(rules_on)] {
                    continue;
                }
                let (label, set) = if rules_on {
                    ("rules", &self.with_rules)
                } else {
                    ("baseline", &no_rules)
                };
                let r = run(self.county, set, &events, warm, false, batch);
                print_run(label, round, n, &r);
                if rules_on {
                    rule_runs.push(r);
                } else {
                    base_runs.push(r);
                }
            }
        }

        report(mix, n, &base_runs, &rule_runs);
        if env_or("ENGINE_BENCH_PER_RULE", 0) != 0 {
            per_rule(
                self.county,
                self.rule_cfgs,
                &events,
                warm,
                batch,
                &base_runs,
            );
        }
        if breakdown {
            // One more run of each, timing every call: where the time goes, by kind of event.
            if only != "rules" {
                print_breakdown(
                    &format!("baseline mix={}", mix.name),
                    &run(self.county, &no_rules, &events, warm, true, batch),
                );
            }
            if only != "baseline" {
                print_breakdown(
                    &format!("rules mix={}", mix.name),
                    &run(self.county, &self.with_rules, &events, warm, true, batch),
                );
            }
        }
    }
}

/// Each rule alone over the same events: what it adds to the base layer, costliest first.
fn per_rule(
    county: &County,
    cfgs: &[RuleConfig],
    events: &[Timed],
    warm: usize,
    batch: usize,
    base: &[Run],
) {
    let base_s = median(base.iter().map(|r| r.elapsed.as_secs_f64()).collect());
    let mut costs: Vec<(f64, &str, u64)> = cfgs
        .iter()
        .map(|cfg| {
            let set = Arc::new(RuleSet::new(std::slice::from_ref(cfg)));
            let r = run(county, &set, events, warm, false, batch);
            (
                r.elapsed.as_secs_f64() - base_s,
                cfg.id.as_str(),
                r.rule_opened,
            )
        })
        .collect();
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = (events.len() - warm.min(events.len())) as f64;
    for (extra, id, opened) in costs {
        println!(
            "RESULT per_rule rule={id} extra_ns_per_event={:.0} rule_alerts_opened={opened}",
            extra * 1e9 / n
        );
    }
}

/// The `RESULT` lines of the rounds of `mix`: medians, the ratio, alerts, memory and the
/// target. The issue sets the target for "a realistic event mix": [`Mix::DAY`]; the storm's
/// figure is printed against the same 1M, as a stress figure.
fn report(mix: &Mix, n: usize, base_runs: &[Run], rule_runs: &[Run]) {
    let m = mix.name;
    let rates = |runs: &[Run]| runs.iter().map(|r| r.rate(n)).collect::<Vec<f64>>();
    let (base, rules) = (rates(base_runs), rates(rule_runs));
    for (label, v, runs) in [("baseline", &base, base_runs), ("rules", &rules, rule_runs)] {
        let Some(first) = runs.first() else {
            continue;
        };
        let (lo, hi) = min_max(v);
        println!(
            "RESULT engine mix={m} {label} events_per_s={:.0} min={lo:.0} max={hi:.0} allocs_per_event={:.1} rounds={} events={n}",
            median(v.clone()),
            first.allocs as f64 / n as f64,
            runs.len()
        );
    }
    let (Some(b0), Some(r0)) = (base_runs.first(), rule_runs.first()) else {
        return;
    };
    let ratios: Vec<f64> = rules.iter().zip(&base).map(|(r, b)| r / b).collect();
    let (lo, hi) = min_max(&ratios);
    println!(
        "RESULT engine mix={m} ratio rules/baseline={:.3} min={lo:.3} max={hi:.3} (per round, same events)",
        median(ratios.clone())
    );
    println!(
        "RESULT engine mix={m} alerts baseline_opened={} rules_opened={} rule_alerts_opened={} baseline_changes={} rules_changes={} open_at_end_baseline={} open_at_end_rules={}",
        b0.opened, r0.opened, r0.rule_opened, b0.changes, r0.changes, b0.open_at_end, r0.open_at_end
    );
    let peak = |runs: &[Run]| runs.iter().map(|r| r.rss_after).fold(0.0, f64::max);
    println!(
        "RESULT engine mix={m} rss_mib events_loaded={:.0} baseline_after_max={:.0} rules_after_max={:.0}",
        b0.rss_before,
        peak(base_runs),
        peak(rule_runs)
    );
    let rate = median(rules);
    let verdict = if rate >= TARGET { "met" } else { "MISSED" };
    if *mix == Mix::DAY {
        println!(
            "RESULT target >= 1M events/s per core with 50 rules, realistic mix (day): {verdict} ({rate:.0} events/s, {:.0} ns/event)",
            1e9 / rate
        );
    } else {
        println!(
            "RESULT stress mix={m} against 1M events/s per core with 50 rules: {verdict} ({rate:.0} events/s, {:.0} ns/event)",
            1e9 / rate
        );
    }
}
