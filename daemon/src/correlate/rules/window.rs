//! Window state per (rule, anchor grid) and pattern evaluation. Pure: no clock, no I/O.
//!
//! Each group holds the matching observations of its window in arrival order (bounded by
//! [`MAX_GROUP_ITEMS`]: under a flood the oldest go first) and, for `absence` rules, the
//! pending first-condition events with their deadlines. When a rule fires, its group is
//! consumed (emptied), so a later alert needs fresh evidence.

use std::{collections::VecDeque, sync::Arc};

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
    mask: u32,
    obs: Arc<Obs>,
}

/// The state of one rule at one anchor grid.
#[derive(Debug, Default)]
struct Group {
    items: VecDeque<Item>,
    /// `absence`: (deadline, first-condition event).
    pending: Vec<(i64, Arc<Obs>)>,
}

/// Every group of one shard.
#[derive(Debug, Default)]
pub struct Windows {
    groups: HashMap<(usize, Arc<str>), Group>,
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
        let group = self.groups.entry((ri, anchor.clone())).or_default();
        let horizon = obs.at - rule.window_ms;
        while group.items.front().is_some_and(|i| i.at < horizon) {
            group.items.pop_front();
        }
        if rule.cfg.pattern == Pattern::Absence {
            if mask & 0b10 != 0 {
                let near = |o: &Obs| near(rule, o, obs, grids);
                group.pending.retain(|(_, first)| !near(first));
            }
            if mask & 0b01 != 0 && obs.grids.iter().any(|g| g == anchor) {
                group.pending.push((obs.at + rule.window_ms, obs.clone()));
            }
            return None;
        }
        if group.items.len() >= MAX_GROUP_ITEMS {
            group.items.pop_front();
        }
        group.items.push_back(Item {
            at: obs.at,
            mask,
            obs: obs.clone(),
        });
        if !evaluate {
            return None;
        }
        // Without `within_m` every item counts: the group itself, without a copy.
        let near_items: Vec<Item>;
        let items: &[Item] = if rule.cfg.within_m.is_some() {
            near_items = group
                .items
                .iter()
                .filter(|i| near(rule, &i.obs, obs, grids))
                .cloned()
                .collect();
            &near_items
        } else {
            group.items.make_contiguous()
        };
        match rule.cfg.pattern {
            Pattern::All => all(rule, items),
            Pattern::Count => count(rule, items, grids),
            Pattern::Sequence => sequence(rule, items),
            Pattern::Absence => None,
        }
    }

    /// Empties the group (after the rule fired there).
    pub fn consume(&mut self, ri: usize, anchor: &Arc<str>) {
        if let Some(g) = self.groups.get_mut(&(ri, anchor.clone())) {
            g.items.clear();
        }
    }

    /// `absence` events whose deadline passed at `now`: (rule index, anchor, event).
    pub fn due(&mut self, now: i64) -> Vec<(usize, Arc<str>, Arc<Obs>)> {
        let mut out = Vec::new();
        for ((ri, anchor), g) in &mut self.groups {
            g.pending.retain(|(deadline, obs)| {
                if *deadline <= now {
                    out.push((*ri, anchor.clone(), obs.clone()));
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
        self.groups.retain(|(ri, _), g| {
            let Some(rule) = rules.get(*ri) else {
                return false;
            };
            let horizon = now - rule.window_ms;
            while g.items.front().is_some_and(|i| i.at < horizon) {
                g.items.pop_front();
            }
            !g.items.is_empty() || !g.pending.is_empty()
        });
    }

    /// Keeps the groups of rules that survive a reload, renumbered by `map` (old index →
    /// new index, `None` for a rule removed or changed).
    pub fn renumber(&mut self, map: &[Option<usize>]) {
        let old = std::mem::take(&mut self.groups);
        for ((ri, anchor), g) in old {
            if let Some(Some(new)) = map.get(ri) {
                self.groups.insert((*new, anchor), g);
            }
        }
    }

    /// Observations and pending deadlines held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.groups
            .values()
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

/// `all`: the newest item of every event condition.
fn all(rule: &Rule, items: &[Item]) -> Option<Vec<Arc<Obs>>> {
    let need = rule.event_mask();
    let mut out: Vec<Arc<Obs>> = Vec::new();
    let mut got = 0u32;
    for bit in 0..rule.when.len() {
        if need & (1 << bit) == 0 {
            continue;
        }
        let newest = items.iter().rev().find(|i| i.mask & (1 << bit) != 0)?;
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
fn count(rule: &Rule, items: &[Item], grids: &GridIndex) -> Option<Vec<Arc<Obs>>> {
    let min = rule.cfg.min_count as usize;
    let Some(label) = rule.cfg.distinct else {
        if items.len() < min {
            return None;
        }
        let skip = items
            .len()
            .saturating_sub(super::super::engine::MAX_EVIDENCE);
        return Some(items[skip..].iter().map(|i| i.obs.clone()).collect());
    };
    // The newest item per distinct value, in order of first appearance.
    let mut by_value: Vec<(&str, Arc<Obs>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for i in items {
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
        let component = largest_component(&by_value, grids);
        by_value.retain(|(g, _)| component.contains(g));
    }
    (by_value.len() >= min).then(|| {
        let mut out: Vec<Arc<Obs>> = by_value.into_iter().map(|(_, o)| o).collect();
        out.sort_by_key(|o| o.at);
        out
    })
}

/// The largest set of the grids that are connected through shared borders.
fn largest_component<'a>(by_grid: &[(&'a str, Arc<Obs>)], grids: &GridIndex) -> HashSet<&'a str> {
    let all: HashSet<&str> = by_grid.iter().map(|(g, _)| *g).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut best: HashSet<&str> = HashSet::new();
    for (start, _) in by_grid {
        if seen.contains(start) {
            continue;
        }
        let mut component = HashSet::new();
        let mut stack = vec![*start];
        while let Some(g) = stack.pop() {
            if !seen.insert(g) {
                continue;
            }
            component.insert(g);
            for n in grids.neighbours(g) {
                if let Some(m) = all.get(&**n) {
                    if !seen.contains(m) {
                        stack.push(m);
                    }
                }
            }
        }
        if component.len() > best.len() {
            best = component;
        }
    }
    best
}

/// `sequence`: the conditions in order, earliest match of each after the previous one.
fn sequence(rule: &Rule, items: &[Item]) -> Option<Vec<Arc<Obs>>> {
    let n = rule.when.len();
    let mut chain = Vec::with_capacity(n);
    for i in items {
        if i.mask & (1 << chain.len()) != 0 {
            chain.push(i.obs.clone());
            if chain.len() == n {
                return Some(chain);
            }
        }
    }
    None
}
