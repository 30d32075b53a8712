//! The rules that look around an anchor and open alerts (`neighbours`, or `within_m` on
//! `grid` / `neighbours` scope, with an `all`, `count` or `sequence` pattern).
//!
//! An event is offered to them once, not once per grid around it, and counts once per
//! rule:
//! - a `clear` match resolves the rule's alerts open at every anchor in its reach;
//! - it folds into one alert of the rule open in its reach: its own grid's first, then
//!   its neighbours' (by id), then the nearest within `within_m`; and that is all;
//! - otherwise it is kept once, at its own grid, and the rule is evaluated there, over the
//!   events kept at the grids in reach of it that are near enough ([`Windows::gather`]);
//!   a firing consumes what it gathered, so one cluster of events opens one alert and not
//!   one per grid around it.
//!
//! Invariant: only the shard owning an anchor evaluates or folds there; a shard keeps the
//! copies of events routed to it (they reach an anchor it owns) at their own grids.
//!
//! [`Windows::gather`]: crate::correlate::rules::window::Windows::gather

use crate::domain::AlertChange;
use std::{borrow::Cow, sync::Arc};

use super::rules_layer::{rule_key, write_rule_key};
use super::Engine;
use crate::correlate::open_alert::id_print;
use crate::{
    config::{Pattern, RuleAction, Scope},
    correlate::rules::{Obs, Rule},
    domain::GridIndex,
};

/// Whether rule `rule` is offered events through [`Engine::offer_spread`].
pub(super) fn gathers(rule: &Rule) -> bool {
    let c = &rule.cfg;
    c.action == RuleAction::Open
        && c.pattern != Pattern::Absence
        && (c.scope == Scope::Neighbours || (c.within_m.is_some() && c.scope == Scope::Grid))
}

impl Engine {
    /// Offers `obs` (matching `mask` of rule `ri`; `clears` when it matches a `clear`
    /// condition) to a rule that [`gathers`].
    pub(super) fn offer_spread(
        &mut self,
        rule: &Rule,
        ri: usize,
        obs: &Arc<Obs>,
        mask: u32,
        clears: bool,
        now: i64,
    ) -> Vec<AlertChange> {
        let mut out = Vec::new();
        let replaying = self.rules.replaying;
        // Whether the event folded into an alert of the rule (or, replaying, was found
        // accounted for by one): it then counts for nothing else of the rule.
        let mut folded = false;
        // The reach around all of the event's grids; with one grid (the usual case) it is
        // also the reach the evaluation below reads, so it is found once.
        let mut whole = None;
        // The grids, held apart from `self` so that an anchor borrowed from them outlives
        // the calls below that change the engine.
        let grids = self.grids.clone();
        if self.rules.alerts.any(ri) {
            let reach = whole.insert(self.reach(rule, obs, None));
            for (ix, anchor) in reach.grids(&grids) {
                // By index a bit; by id (a grid the index does not know) a lookup.
                let listed = |e: &Engine| match ix {
                    Some(ix) => e.rules.alerts.has_at(ri, ix),
                    None => e.rules.alerts.has(ri, anchor),
                };
                if !listed(self) || !self.owns(anchor) {
                    continue;
                }
                if clears && !replaying {
                    out.extend(self.clear_rule(ri, anchor, obs, now));
                }
                if folded || mask == 0 || !listed(self) {
                    continue;
                }
                if let Some(changes) = self.fold_rule_key(rule, ri, anchor, obs, now) {
                    out.extend(changes);
                    folded = true;
                }
            }
        }
        if mask == 0 || folded {
            return out;
        }
        // Own grids whose key was closed after the event (replaying): it had been
        // consumed or folded there before the restart.
        let mut done: Vec<Arc<str>> = Vec::new();
        if replaying {
            for g in &obs.grids {
                let mut key = std::mem::take(&mut self.rules.key_buf);
                write_rule_key(&mut key, rule, g, obs);
                if self.rules.closed.get(&key).is_some_and(|t| obs.at <= *t) {
                    done.push(g.clone());
                }
                self.rules.key_buf = key;
            }
        }
        let keep = obs.grids.iter().filter(|g| !done.contains(g));
        self.rules.windows.record(rule, ri, keep, mask, obs);
        for g in &obs.grids {
            if done.contains(g) || !self.owns(g) || !self.alert_conditions_hold(rule, g) {
                continue;
            }
            let read = match whole.take() {
                Some(read) if obs.grids.len() == 1 => read,
                _ => self.reach(rule, obs, Some(g)),
            };
            let ids = read.grids(&grids).map(|(_, id)| id);
            let Some(evidence) = self.rules.windows.gather(rule, ri, ids, obs, &grids) else {
                continue;
            };
            if !replaying {
                out.extend(self.fire(rule, g, rule_key(rule, g, obs), evidence, now));
            }
        }
        out
    }

    /// The grids in reach of `obs` under `rule`: around each of its grids (or only `at`),
    /// its neighbours (`neighbours`) and the grids of the same depth within `within_m` of
    /// where it happened. Not de-duplicated. By index when the index knows every grid of
    /// the event (always, but for an event naming a grid the config does not have).
    fn reach(&mut self, rule: &Rule, obs: &Obs, at: Option<&Arc<str>>) -> Reach {
        let place = rule
            .cfg
            .within_m
            .and_then(|m| Some((m, obs.place(&self.grids)?)));
        let own = at
            .into_iter()
            .chain(obs.grids.iter().filter(|_| at.is_none()));
        let neighbours = rule.cfg.scope == Scope::Neighbours;
        let grids = &*self.grids;
        if obs.indexed_grids {
            // Room for a grid, its neighbours and what lies within a few hundred metres,
            // made once (growing it step by step was ~2 % of the rules' time).
            let mut out: Vec<u32> = Vec::with_capacity(32);
            for ix in own.filter_map(|g| grids.index_of(g)) {
                out.extend(u32::try_from(ix).ok());
                if neighbours {
                    out.extend_from_slice(grids.neighbour_indices(ix));
                }
                if let Some((m, point)) = place {
                    let depth = grids.depth_at(ix);
                    out.extend_from_slice(&self.rules.near.grids_within(grids, point, m, depth));
                }
            }
            return Reach::Indices(out);
        }
        let mut out: Vec<Arc<str>> = Vec::with_capacity(32);
        for g in own {
            out.push(g.clone());
            if neighbours {
                out.extend(grids.neighbours(g).iter().cloned());
            }
            if let Some((m, point)) = place {
                let depth = grids.depth(g);
                let found = self.rules.near.grids_within(grids, point, m, depth);
                out.extend(
                    found
                        .iter()
                        .filter_map(|&ix| grids.shared_at(ix as usize))
                        .cloned(),
                );
            }
        }
        Reach::Ids(out)
    }

    /// Folds `obs` into the rule's alert at `anchor` for the event's key, if one is open
    /// (`Some` then, with the changes: none when replaying or when the event already
    /// folded into that alert).
    pub(super) fn fold_rule_key(
        &mut self,
        rule: &Rule,
        ri: usize,
        anchor: &Arc<str>,
        obs: &Arc<Obs>,
        now: i64,
    ) -> Option<Vec<AlertChange>> {
        let replaying = self.rules.replaying;
        if !replaying && rule.cfg.labels.is_empty() {
            // The one key of the rule here: its listed alert, without building the key.
            let id = self.rules.alerts.first(ri, anchor)?;
            let print = id_print(id);
            if self.rules.touched.contains(&print) {
                return Some(Vec::new());
            }
            self.rules.touched.push(print);
            let id = id.clone();
            return Some(self.fold(&id, Cow::Borrowed(&obs.evidence), now, None));
        }
        let mut key = std::mem::take(&mut self.rules.key_buf);
        write_rule_key(&mut key, rule, anchor, obs);
        let closed = replaying && self.rules.closed.get(&key).is_some_and(|t| obs.at <= *t);
        let found = if closed { None } else { self.resolve_key(&key) };
        self.rules.key_buf = key;
        if closed {
            return Some(Vec::new());
        }
        let id = found?;
        let print = id_print(&id);
        if replaying || self.rules.touched.contains(&print) {
            return Some(Vec::new());
        }
        self.rules.touched.push(print);
        Some(self.fold(&id, Cow::Borrowed(&obs.evidence), now, None))
    }
}

/// The grids in reach of an event ([`Engine::reach`]): grid indices (nothing hashed or
/// reference-counted per grid; "has the rule an alert open there" is a bit), or shared ids
/// when the event names a grid the index does not know.
enum Reach {
    Indices(Vec<u32>),
    Ids(Vec<Arc<str>>),
}

impl Reach {
    /// Each grid: its index when it has one, and its shared id.
    fn grids<'a>(
        &'a self,
        grids: &'a GridIndex,
    ) -> impl Iterator<Item = (Option<usize>, &'a Arc<str>)> + Clone + 'a {
        let len = match self {
            Reach::Indices(v) => v.len(),
            Reach::Ids(v) => v.len(),
        };
        (0..len).filter_map(move |i| match self {
            Reach::Indices(v) => {
                let ix = v[i] as usize;
                Some((Some(ix), grids.shared_at(ix)?))
            }
            Reach::Ids(v) => Some((None, &v[i])),
        })
    }
}

#[cfg(test)]
#[path = "engine_spread_tests.rs"]
mod tests;
