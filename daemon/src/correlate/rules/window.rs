//! Window state per (rule, anchor grid) and pattern evaluation. Pure: no clock, no I/O.
//!
//! Each group holds the matching observations of its window in arrival order (bounded by
//! [`MAX_GROUP_ITEMS`]: under a flood the oldest go first) and, for `absence` rules, the
//! pending first-condition events with their deadlines. When a rule fires, its group is
//! consumed (emptied), so a later alert needs fresh evidence.
//!
//! Rules that look around an anchor (`neighbours`, `within_m`) and open alerts keep each
//! event once, at its own grid ([`Windows::record`]); evaluating at an anchor gathers the
//! groups of the grids in reach ([`Windows::gather`]), in arrival order (every item carries
//! a sequence number, the same for the copies of one event kept at several grids), and a
//! firing consumes the items it gathered, wherever they are kept: one cluster of events
//! makes one alert, not one per grid around it.

use std::{borrow::Borrow, collections::VecDeque, sync::Arc};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{Obs, Rule};
use crate::{
    config::{Label, Pattern},
    domain::GridIndex,
};

/// Most observations one group keeps.
pub const MAX_GROUP_ITEMS: usize = 4096;

/// One matching observation in a window.
#[derive(Debug, Clone)]
struct Item {
    /// `obs.at`, kept here so that trimming the window reads no observation.
    at: i64,
    /// Arrival order across groups.
    seq: u64,
    mask: u32,
    obs: Arc<Obs>,
}

/// The state of one rule at one anchor grid.
#[derive(Debug, Default)]
struct Group {
    items: VecDeque<Item>,
    /// `absence`: (deadline, first-condition event).
    pending: Vec<(i64, Arc<Obs>)>,
    /// `count` with `distinct`, evaluated here (not gathered): how many items hold each
    /// value of the label. Its size bounds the distinct values of any subset, so most
    /// evaluations end without looking at the items.
    distinct: Option<(Label, HashMap<Box<str>, u32>)>,
    /// How many items match each of the first [`COUNTED_BITS`] conditions: `all` and
    /// `sequence` need every condition, so a group (or the groups in reach) missing one is
    /// passed over without looking at its items.
    per_bit: [u32; COUNTED_BITS],
    /// `count` of `adjacent` grids: at the last check no `min_count` of the grids held were
    /// connected. Items only leave a group in between (which splits sets, never joins
    /// them) or come through [`Group::push`], counted in `unchecked`; so with one item
    /// since, only a set holding that item's grid can be large enough now.
    scattered: bool,
    /// Items pushed since the last adjacency check.
    unchecked: u32,
}

/// Conditions whose items each group counts (a rule with more is never passed over on
/// the ones past it).
const COUNTED_BITS: usize = 8;

impl Group {
    fn count_bits(&mut self, mask: u32, add: bool) {
        for (bit, n) in self.per_bit.iter_mut().enumerate() {
            if mask & (1 << bit) != 0 {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }

    /// The conditions some item of the group matches (every one past [`COUNTED_BITS`]).
    fn present(&self) -> u32 {
        let counted = self
            .per_bit
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .fold(0u32, |m, (bit, _)| m | (1 << bit));
        counted | (u32::MAX << COUNTED_BITS)
    }

    /// Keeps the items `keep` says yes to.
    fn retain(&mut self, keep: impl FnMut(&Item) -> bool) {
        self.items.retain(keep);
        let mut per_bit = [0u32; COUNTED_BITS];
        for i in &self.items {
            for (bit, n) in per_bit.iter_mut().enumerate() {
                *n += (i.mask >> bit) & 1;
            }
        }
        self.per_bit = per_bit;
    }

    /// Drops the items before `horizon`.
    fn trim(&mut self, horizon: i64) {
        while self.items.front().is_some_and(|i| i.at < horizon) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        let Some(gone) = self.items.pop_front() else {
            return;
        };
        self.count_bits(gone.mask, false);
        if let Some((label, values)) = &mut self.distinct {
            if let Some(v) = gone.obs.label(*label) {
                if let Some(n) = values.get_mut(v) {
                    *n -= 1;
                    if *n == 0 {
                        values.remove(v);
                    }
                }
            }
        }
    }

    /// Empties the group's items.
    fn clear(&mut self) {
        self.items.clear();
        self.per_bit = [0; COUNTED_BITS];
        (self.scattered, self.unchecked) = (true, 0);
        if let Some((_, values)) = &mut self.distinct {
            values.clear();
        }
    }

    /// Appends an item (the oldest goes when the group is full).
    fn push(&mut self, seq: u64, mask: u32, obs: &Arc<Obs>) {
        if self.items.len() >= MAX_GROUP_ITEMS {
            self.pop_front();
        }
        if let Some((label, values)) = &mut self.distinct {
            if let Some(v) = obs.label(*label) {
                match values.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        values.insert(v.into(), 1);
                    }
                }
            }
        }
        self.count_bits(mask, true);
        self.unchecked = self.unchecked.saturating_add(1);
        self.items.push_back(Item {
            at: obs.at,
            seq,
            mask,
            obs: obs.clone(),
        });
    }
}

/// The conditions the rule's pattern needs items of, all at once (`all`, `sequence`).
fn needs_every(rule: &Rule) -> Option<u32> {
    match rule.cfg.pattern {
        Pattern::All => Some(rule.event_mask()),
        Pattern::Sequence => Some(match rule.when.len() {
            n if n >= 32 => u32::MAX,
            n => (1u32 << n) - 1,
        }),
        Pattern::Count | Pattern::Absence => None,
    }
}

/// Every group of one shard.
#[derive(Debug, Default)]
pub struct Windows {
    /// Per rule index: anchor (or own grid, for rules that gather) → group.
    groups: Vec<HashMap<Arc<str>, Group>>,
    /// The next item's sequence number.
    next_seq: u64,
    /// Tests: check adjacency over every grid held, never from the new item's grid alone
    /// (the reference the incremental check is compared with).
    #[cfg(test)]
    always_full_check: bool,
}

impl Windows {
    /// Adds `obs` (matching `mask` of `rule`, index `ri`) to the group at `anchor`; returns
    /// the evidence when the rule's pattern holds now. `evaluate` tells whether the rule is
    /// evaluated here (its `source = "alert"` conditions hold, and the anchor is the event's
    /// own grid); when false the event is only recorded. `absence` rules never fire here
    /// (see [`Windows::due`]): their first event waits only at its own grid, and the second
    /// cancels the waits of every grid around it.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        rule: &Rule,
        ri: usize,
        anchor: &Arc<str>,
        mask: u32,
        obs: &Arc<Obs>,
        grids: &GridIndex,
        evaluate: bool,
    ) -> Option<Vec<Arc<Obs>>> {
        if rule.cfg.pattern == Pattern::Absence {
            self.observe_absence(rule, ri, anchor, mask, obs, grids);
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        #[cfg(test)]
        let incremental = !self.always_full_check;
        #[cfg(not(test))]
        let incremental = true;
        let group = self.group_mut(ri, anchor);
        if let (Some(label), None, Pattern::Count) =
            (rule.cfg.distinct, &group.distinct, rule.cfg.pattern)
        {
            if group.items.is_empty() {
                group.distinct = Some((label, HashMap::default()));
            }
        }
        group.trim(obs.at - rule.window_ms);
        group.push(seq, mask, obs);
        if !evaluate {
            return None;
        }
        if rule.cfg.pattern == Pattern::Count {
            // At most this many items (or distinct values) can count.
            let upper = match &group.distinct {
                Some((_, values)) => values.len(),
                None if rule.cfg.distinct.is_none() => group.items.len(),
                None => usize::MAX,
            };
            if upper < rule.cfg.min_count as usize {
                // Too few values for any connected set of `min_count` either.
                (group.scattered, group.unchecked) = (true, 0);
                return None;
            }
            // Adjacent grids: no connected set of the grids held is large enough.
            if let (true, Some((Label::Grid, values))) = (rule.cfg.adjacent, &group.distinct) {
                let min = rule.cfg.min_count as usize;
                let is_held = |g: &str| values.contains_key(g);
                // Scattered before this item alone: only its grid's set can have grown.
                let from_own = obs
                    .label(Label::Grid)
                    .filter(|g| group.scattered && group.unchecked == 1 && is_held(g));
                let connected = match from_own {
                    Some(own) if incremental => {
                        has_component_of(std::iter::once(own), is_held, grids, min)
                    }
                    _ => has_component_of(values.keys().map(|g| &**g), is_held, grids, min),
                };
                (group.scattered, group.unchecked) = (!connected, 0);
                if !connected {
                    return None;
                }
            }
        }
        if needs_every(rule).is_some_and(|need| group.present() & need != need) {
            return None;
        }
        if rule.cfg.within_m.is_none() {
            // Every item counts: the group itself, without a copy.
            return evaluate_pattern(rule, group.items.make_contiguous(), grids);
        }
        let items: Vec<&Item> = group
            .items
            .iter()
            .filter(|i| near(rule, &i.obs, obs, grids))
            .collect();
        evaluate_pattern(rule, &items, grids)
    }

    /// An `absence` rule's event at `anchor`: the second condition cancels the waits near
    /// it kept there; the first waits there if `anchor` is one of its own grids. A group is
    /// made only for a wait (most events of an absence rule cancel nothing, and an anchor
    /// around an event that is not its own gets no empty group).
    fn observe_absence(
        &mut self,
        rule: &Rule,
        ri: usize,
        anchor: &Arc<str>,
        mask: u32,
        obs: &Arc<Obs>,
        grids: &GridIndex,
    ) {
        if mask & 0b10 != 0 {
            if let Some(group) = self.groups.get_mut(ri).and_then(|m| m.get_mut(anchor)) {
                group
                    .pending
                    .retain(|(_, first)| !near(rule, first, obs, grids));
            }
        }
        if mask & 0b01 != 0 && obs.grids.iter().any(|g| g == anchor) {
            let deadline = obs.at + rule.window_ms;
            self.group_mut(ri, anchor)
                .pending
                .push((deadline, obs.clone()));
        }
    }

    /// Keeps `obs` (matching `mask` of rule `ri`) at each of `at` (its own grids), with one
    /// sequence number: for rules that gather ([`Windows::gather`]).
    pub fn record<'a>(
        &mut self,
        rule: &Rule,
        ri: usize,
        at: impl Iterator<Item = &'a Arc<str>>,
        mask: u32,
        obs: &Arc<Obs>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        for g in at {
            let group = self.group_mut(ri, g);
            group.trim(obs.at - rule.window_ms);
            group.push(seq, mask, obs);
        }
    }

    /// Evaluates rule `ri` for the event `newest` over the items kept at the grids `read`
    /// that are in its window and near it (`within_m`); when the pattern holds, consumes
    /// those items from every group read and returns the evidence.
    pub fn gather<'a>(
        &mut self,
        rule: &Rule,
        ri: usize,
        read: impl Iterator<Item = &'a Arc<str>> + Clone,
        newest: &Obs,
        grids: &GridIndex,
    ) -> Option<Vec<Arc<Obs>>> {
        let horizon = newest.at - rule.window_ms;
        let groups = self.groups.get_mut(ri)?;
        let found: Vec<&Group> = read.clone().filter_map(|g| groups.get(g)).collect();
        // Passed over without looking at the items when they cannot hold the pattern.
        if let Some(need) = needs_every(rule) {
            if found.iter().fold(0, |m, g| m | g.present()) & need != need {
                return None;
            }
        }
        if rule.cfg.pattern == Pattern::Count
            && found.iter().map(|g| g.items.len()).sum::<usize>() < rule.cfg.min_count as usize
        {
            return None;
        }
        let mut items: Vec<&Item> = Vec::new();
        for group in found {
            items.extend(
                group
                    .items
                    .iter()
                    .filter(|i| i.at >= horizon && near(rule, &i.obs, newest, grids)),
            );
        }
        items.sort_unstable_by_key(|i| i.seq);
        items.dedup_by_key(|i| i.seq);
        let fired = evaluate_pattern(rule, &items, grids)?;
        let mut used: Vec<u64> = items.iter().map(|i| i.seq).collect();
        used.sort_unstable();
        for g in read {
            if let Some(group) = groups.get_mut(g) {
                group.retain(|i| used.binary_search(&i.seq).is_err());
            }
        }
        Some(fired)
    }

    /// Empties the group (after the rule fired there).
    pub fn consume(&mut self, ri: usize, anchor: &Arc<str>) {
        if let Some(g) = self.groups.get_mut(ri).and_then(|m| m.get_mut(anchor)) {
            g.clear();
        }
    }

    /// `absence` events whose deadline passed at `now`: (rule index, anchor, event).
    /// Only the groups of `rules`' absence rules are walked (no other rule waits), not
    /// every group of every rule at each tick.
    pub fn due(&mut self, now: i64, rules: &[Rule]) -> Vec<(usize, Arc<str>, Arc<Obs>)> {
        let mut out = Vec::new();
        let waiting = |ri: usize| {
            rules
                .get(ri)
                .is_some_and(|r| r.cfg.pattern == Pattern::Absence)
        };
        let all = (self.groups.iter_mut().enumerate()).filter(|(ri, _)| waiting(*ri));
        for (ri, (anchor, g)) in all.flat_map(|(ri, m)| m.iter_mut().map(move |e| (ri, e))) {
            g.pending.retain(|(deadline, obs)| {
                if *deadline <= now {
                    out.push((ri, anchor.clone(), obs.clone()));
                    false
                } else {
                    true
                }
            });
        }
        out.sort_by_key(|(_, _, o)| o.at);
        out
    }

    /// Drops observations older than their rule's window, and empty groups.
    pub fn sweep(&mut self, now: i64, rules: &[Rule]) {
        self.groups.truncate(rules.len());
        for (rule, groups) in rules.iter().zip(&mut self.groups) {
            let horizon = now - rule.window_ms;
            groups.retain(|_, g| {
                g.trim(horizon);
                !g.items.is_empty() || !g.pending.is_empty()
            });
        }
    }

    /// Keeps the groups of rules that survive a reload, renumbered by `map` (old index →
    /// new index, `None` for a rule removed or changed).
    pub fn renumber(&mut self, map: &[Option<usize>]) {
        let old = std::mem::take(&mut self.groups);
        for (ri, groups) in old.into_iter().enumerate() {
            if let Some(Some(new)) = map.get(ri) {
                if self.groups.len() <= *new {
                    self.groups.resize_with(*new + 1, HashMap::default);
                }
                self.groups[*new] = groups;
            }
        }
    }

    /// The group of rule `ri` at `grid`, made when missing.
    fn group_mut(&mut self, ri: usize, grid: &Arc<str>) -> &mut Group {
        if self.groups.len() <= ri {
            self.groups.resize_with(ri + 1, HashMap::default);
        }
        self.groups[ri].entry(grid.clone()).or_default()
    }

    /// Observations and pending deadlines held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|m| m.values())
            .map(|g| g.items.len() + g.pending.len())
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `o` is near enough to `newest` for the rule (`within_m`; always without it).
fn near(rule: &Rule, o: &Obs, newest: &Obs, grids: &GridIndex) -> bool {
    let Some(m) = rule.cfg.within_m else {
        return true;
    };
    match (o.place(grids), newest.place(grids)) {
        (Some(a), Some(b)) => GridIndex::distance_m(a, b) <= m,
        _ => false,
    }
}

/// The rule's pattern over `items` (in arrival order; the items themselves or references
/// to them): the evidence when it holds.
fn evaluate_pattern<I: Borrow<Item>>(
    rule: &Rule,
    items: &[I],
    grids: &GridIndex,
) -> Option<Vec<Arc<Obs>>> {
    match rule.cfg.pattern {
        Pattern::All => all(rule, items),
        Pattern::Count => count(rule, items, grids),
        Pattern::Sequence => sequence(rule, items),
        Pattern::Absence => None,
    }
}

/// `all`: the newest item of every event condition.
fn all<I: Borrow<Item>>(rule: &Rule, items: &[I]) -> Option<Vec<Arc<Obs>>> {
    let need = rule.event_mask();
    let mut out: Vec<Arc<Obs>> = Vec::new();
    let mut got = 0u32;
    for bit in 0..rule.when.len() {
        if need & (1 << bit) == 0 {
            continue;
        }
        let newest = items
            .iter()
            .map(Borrow::borrow)
            .rev()
            .find(|i| i.mask & (1 << bit) != 0)?;
        got |= 1 << bit;
        if !out.iter().any(|o| Arc::ptr_eq(o, &newest.obs)) {
            out.push(newest.obs.clone());
        }
    }
    (got == need).then(|| {
        out.sort_by_key(|o| o.at);
        out
    })
}

/// `count`: `min_count` items, or distinct label values (adjacent grids when asked).
fn count<I: Borrow<Item>>(rule: &Rule, items: &[I], grids: &GridIndex) -> Option<Vec<Arc<Obs>>> {
    let min = rule.cfg.min_count as usize;
    let Some(label) = rule.cfg.distinct else {
        if items.len() < min {
            return None;
        }
        let skip = items
            .len()
            .saturating_sub(super::super::engine::MAX_EVIDENCE);
        return Some(
            items[skip..]
                .iter()
                .map(|i| i.borrow().obs.clone())
                .collect(),
        );
    };
    // The newest item per distinct value, in order of first appearance.
    let mut by_value: Vec<(&str, Arc<Obs>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for i in items.iter().map(Borrow::borrow) {
        let Some(v) = i.obs.label(label) else {
            continue;
        };
        match index.get(v) {
            Some(&slot) => by_value[slot].1 = i.obs.clone(),
            None => {
                index.insert(v, by_value.len());
                by_value.push((v, i.obs.clone()));
            }
        }
    }
    // Not enough values even before adjacency: no need to look further.
    if by_value.len() < min {
        return None;
    }
    if rule.cfg.adjacent && label == Label::Grid {
        let held: Vec<&str> = by_value.iter().map(|(g, _)| *g).collect();
        let component = largest_component(&held, grids);
        by_value.retain(|(g, _)| component.contains(g));
    }
    (by_value.len() >= min).then(|| {
        let mut out: Vec<Arc<Obs>> = by_value.into_iter().map(|(_, o)| o).collect();
        out.sort_by_key(|o| o.at);
        out
    })
}

/// The largest set of the grids that are connected through shared borders.
fn largest_component<'a>(held: &[&'a str], grids: &'a GridIndex) -> HashSet<&'a str> {
    let all: HashSet<&str> = held.iter().copied().collect();
    let mut best = HashSet::new();
    components(
        held.iter().copied(),
        |g| all.contains(g),
        grids,
        usize::MAX,
        |component| {
            if component.len() > best.len() {
                best = component.clone();
            }
        },
    );
    best
}

/// Whether some `min` of the `held` grids (`is_held` answers for any grid) are connected
/// through shared borders. The search stops as soon as it has found that many, so in a
/// storm it reads a few grids, not every grid held.
fn has_component_of<'a>(
    held: impl Iterator<Item = &'a str>,
    is_held: impl Fn(&str) -> bool,
    grids: &'a GridIndex,
    min: usize,
) -> bool {
    components(held, is_held, grids, min, |_| {})
}

/// Calls `each` with each set of the held grids connected through shared borders, started
/// from `starts` (held grids; `is_held` answers for their neighbours); stops and answers
/// true as soon as a set reaches `enough` grids.
fn components<'a>(
    starts: impl Iterator<Item = &'a str>,
    is_held: impl Fn(&str) -> bool,
    grids: &'a GridIndex,
    enough: usize,
    mut each: impl FnMut(&HashSet<&'a str>),
) -> bool {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut component = HashSet::new();
    let mut stack = Vec::new();
    for start in starts {
        if seen.contains(start) {
            continue;
        }
        component.clear();
        stack.push(start);
        while let Some(g) = stack.pop() {
            if !seen.insert(g) {
                continue;
            }
            component.insert(g);
            if component.len() >= enough {
                return true;
            }
            for n in grids.neighbours(g) {
                let n: &'a str = n;
                if is_held(n) && !seen.contains(n) {
                    stack.push(n);
                }
            }
        }
        each(&component);
    }
    false
}

/// `sequence`: the conditions in order, earliest match of each after the previous one.
fn sequence<I: Borrow<Item>>(rule: &Rule, items: &[I]) -> Option<Vec<Arc<Obs>>> {
    let n = rule.when.len();
    let mut chain = Vec::with_capacity(n);
    for i in items.iter().map(Borrow::borrow) {
        if i.mask & (1 << chain.len()) != 0 {
            chain.push(i.obs.clone());
            if chain.len() == n {
                return Some(chain);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::rules::{tests::sensor, RuleSet};
    use crate::domain::SensorState;

    /// A rule set of the one rule `text` (a `[[rules]]` entry without its header).
    fn one_rule(text: &str) -> RuleSet {
        let cfg: crate::config::RuleConfig = toml::from_str(text).expect("rule parses");
        RuleSet::new(&[cfg])
    }

    #[test]
    fn the_adjacency_check_from_the_new_grid_alone_answers_as_the_full_one() {
        let set = one_rule(
            r#"
id = "spread"
title = "t"
severity = "major"
pattern = "count"
min_count = 3
distinct = "grid"
adjacent = true
scope = "parent"
window_secs = 20
[[when]]
source = "sensor"
kind = "smoke"
"#,
        );
        let rule = &set.rules[0];
        let grids = GridIndex::new(&crate::correlate::rules::tests::city());
        let anchor: Arc<str> = Arc::from("town-a");
        let names: Vec<String> = (0..9).map(|i| format!("a{}{}", i / 3, i % 3)).collect();
        let (mut fired, mut quiet) = (0, 0);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            let mut incremental = Windows::default();
            let mut full = Windows {
                always_full_check: true,
                ..Windows::default()
            };
            let mut at = 0;
            for step in 0..60 {
                at += next(6_000) as i64;
                let grid = &names[next(9) as usize];
                let ev = sensor(&format!("s-{step}"), "smoke", grid, SensorState::Alarm, at);
                let obs = Arc::new(Obs::sensor(0, &ev));
                let evaluate = next(5) != 0;
                let ids = |w: &mut Windows| {
                    w.observe(rule, 0, &anchor, 1, &obs, &grids, evaluate)
                        .map(|ev| ev.iter().map(|o| o.id.clone()).collect::<Vec<_>>())
                };
                let (a, b) = (ids(&mut incremental), ids(&mut full));
                assert_eq!(a, b, "step {step} at {at} ms, grid {grid}");
                if a.is_some() {
                    fired += 1;
                    incremental.consume(0, &anchor);
                    full.consume(0, &anchor);
                } else if evaluate {
                    quiet += 1;
                }
            }
        }
        // Both answers were asked for many times.
        assert!(fired > 300 && quiet > 3_000, "fired {fired}, quiet {quiet}");
    }

    #[test]
    fn the_early_answer_on_connected_grids_agrees_with_the_largest_component() {
        let grids = GridIndex::new(&crate::correlate::rules::tests::city());
        let names: Vec<String> = (0..9).map(|i| format!("a{}{}", i / 3, i % 3)).collect();
        let mut sizes = std::collections::BTreeSet::new();
        for subset in 0u32..(1 << 9) {
            let held: Vec<&str> = (0..9)
                .filter(|i| subset & (1 << i) != 0)
                .map(|i| names[i].as_str())
                .collect();
            let largest = largest_component(&held, &grids).len();
            sizes.insert(largest);
            for min in 1..=10 {
                assert_eq!(
                    has_component_of(held.iter().copied(), |g| held.contains(&g), &grids, min),
                    largest >= min,
                    "{held:?}, at least {min}"
                );
            }
        }
        // The 3 x 3 block has components of every size, so every answer was asked for.
        assert_eq!(sizes, (0..=9).collect());
    }

    #[test]
    fn distinct_values_are_counted_as_items_come_and_go() {
        let set = one_rule(
            r#"
id = "two-sensors"
title = "t"
severity = "major"
pattern = "count"
min_count = 2
distinct = "sensor"
window_secs = 60
[[when]]
source = "sensor"
kind = "smoke"
"#,
        );
        let rule = &set.rules[0];
        let grids = GridIndex::default();
        let anchor: Arc<str> = Arc::from("g1");
        let mut w = Windows::default();
        let offer = |w: &mut Windows, id: &str, at: i64| {
            let ev = sensor(id, "smoke", "g1", SensorState::Alarm, at);
            let obs = Arc::new(Obs::sensor(0, &ev));
            w.observe(rule, 0, &anchor, 1, &obs, &grids, true)
                .map(|ev| ev.iter().map(|o| o.id.clone()).collect::<Vec<_>>())
        };
        // One sensor, however often, is one value.
        for t in 0..3 {
            assert_eq!(offer(&mut w, "s-a", t * 1_000), None);
        }
        assert_eq!(
            offer(&mut w, "s-b", 10_000),
            Some(vec!["s-a".into(), "s-b".into()])
        );
        w.consume(0, &anchor);
        // Consumed: s-b again is one value; after the window, s-a's items are gone.
        assert_eq!(offer(&mut w, "s-b", 20_000), None);
        assert_eq!(offer(&mut w, "s-c", 90_000), None);
        assert_eq!(
            offer(&mut w, "s-d", 91_000),
            Some(vec!["s-c".into(), "s-d".into()])
        );
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn a_group_knows_which_conditions_its_items_match() {
        let ev = sensor("s-1", "smoke", "g1", SensorState::Alarm, 0);
        let obs = Arc::new(Obs::sensor(0, &ev));
        let mut g = Group::default();
        let high = u32::MAX << COUNTED_BITS;
        assert_eq!(g.present(), high);
        g.push(1, 0b001, &obs);
        g.push(2, 0b100, &obs);
        g.push(3, 0b101, &obs);
        assert_eq!(g.present(), high | 0b101);
        g.pop_front();
        assert_eq!(g.present(), high | 0b101);
        g.retain(|i| i.seq != 3);
        assert_eq!(g.present(), high | 0b100);
        g.clear();
        assert_eq!(g.present(), high);
        // Under a flood the oldest go first, and their conditions with them.
        g.push(0, 0b010, &obs);
        for seq in 1..=MAX_GROUP_ITEMS as u64 {
            g.push(seq, 0b001, &obs);
        }
        assert_eq!(g.present(), high | 0b001);
    }

    #[test]
    fn an_absence_rule_waits_at_its_own_grid_and_cancels_without_making_groups() {
        use crate::correlate::rules::tests::camera;
        use gridsight_proto::v1::CameraEventKind as K;
        let set = one_rule(
            r#"
id = "unattended"
title = "t"
severity = "major"
pattern = "absence"
scope = "neighbours"
window_secs = 300
[[when]]
source = "sensor"
kind = "manhole_cover"
[[when]]
source = "camera"
event = "activity"
"#,
        );
        let rule = &set.rules[0];
        let grids = GridIndex::default();
        let (own, next): (Arc<str>, Arc<str>) = (Arc::from("g1"), Arc::from("g2"));
        let mut w = Windows::default();
        // Activity around two anchors, with nothing waiting: no group is made.
        let activity = Arc::new(Obs::camera(&camera("c1", "g2", K::Activity, 3.0, 0), 0));
        for anchor in [&own, &next] {
            assert!(w
                .observe(rule, 0, anchor, 0b10, &activity, &grids, true)
                .is_none());
        }
        assert_eq!(w.groups.iter().map(HashMap::len).sum::<usize>(), 0);
        // The alarm, offered at its own grid and at a neighbour, waits at its own grid only.
        let ev = sensor("mh-1", "manhole_cover", "g1", SensorState::Alarm, 1_000);
        let alarm = Arc::new(Obs::sensor(0, &ev));
        for anchor in [&own, &next] {
            assert!(w
                .observe(rule, 0, anchor, 0b01, &alarm, &grids, true)
                .is_none());
        }
        assert_eq!(w.len(), 1);
        assert_eq!(w.groups.iter().map(HashMap::len).sum::<usize>(), 1);
        // Activity offered at the alarm's grid cancels the wait; at 400 s nothing is due.
        let later = Arc::new(Obs::camera(
            &camera("c1", "g2", K::Activity, 3.0, 9_000),
            9_000,
        ));
        w.observe(rule, 0, &own, 0b10, &later, &grids, true);
        assert!(w.is_empty());
        let rules = std::slice::from_ref(rule);
        assert!(w.due(400_000, rules).is_empty());
        // Without the activity, the wait falls due at 301 s.
        w.observe(rule, 0, &own, 0b01, &alarm, &grids, true);
        assert!(w.due(300_999, rules).is_empty());
        let due = w.due(301_000, rules);
        assert_eq!(due.len(), 1);
        assert_eq!(&*due[0].1, "g1");
        // A wait kept across a reload that moves the rule from index 0 to 2 falls due
        // there (`due` walks only the absence rules of the new set).
        w.observe(rule, 0, &own, 0b01, &alarm, &grids, true);
        w.renumber(&[Some(2)]);
        let moved = [set.rules[0].clone(), set.rules[0].clone(), rule.clone()];
        let mut counting = set.rules[0].clone();
        counting.cfg.pattern = Pattern::Count;
        let not_absence = [moved[0].clone(), moved[1].clone(), counting];
        assert!(
            w.due(301_000, &not_absence).is_empty(),
            "only absence rules wait"
        );
        let due = w.due(301_000, &moved);
        assert_eq!(due.len(), 1, "the wait moved with its rule");
        assert_eq!((due[0].0, &*due[0].1), (2, "g1"));
        // A rule dropped by the reload takes its waits along.
        w.observe(rule, 2, &own, 0b01, &alarm, &grids, true);
        w.renumber(&[None, None, None]);
        assert!(w.due(301_000, &moved).is_empty());
        assert!(w.is_empty());
    }
}
