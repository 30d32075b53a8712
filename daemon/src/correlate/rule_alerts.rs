//! The open rule alerts of one engine, by rule (its index in the current [`RuleSet`]) and
//! anchor grid: what a `clear` event resolves, what a quiet rule times out, and the cheap
//! test the hot path makes before it builds a rule key ("has this rule an alert open at
//! this anchor?").
//!
//! Invariant: an alert is listed under (rule, anchor) exactly while it is open in the
//! engine with that `rule_id` and `grid_id`, its rule is in the current set, and its
//! de-duplication key is one the rule makes there (for a rule without labels, the alert
//! listed is the one its key leads to). Rule indices change on reload, so
//! [`RuleAlerts::rebuild`] lists the open alerts again against the new set (alerts of a
//! removed rule are listed again if the rule comes back; those of a rule whose labels
//! changed are not).
//!
//! Beside the map, each rule has one bit per grid of the [`GridIndex`] (by its index) set
//! exactly while the rule has an alert listed at that grid: the test a normal reading
//! makes ("has a clearing rule an alert open at my grid's parent?") is a bit, not a
//! string lookup. Indices change when the grids do: [`RuleAlerts::reindex`] then.
//!
//! [`RuleSet`]: super::rules::RuleSet

use std::{borrow::Borrow, hash::Hash, sync::Arc};

use foldhash::HashMap;

use gridsight_proto::v1 as pb;

use super::rules::RuleSet;
use crate::domain::GridIndex;

/// Open rule alerts by (rule index, anchor).
#[derive(Debug, Default)]
pub struct RuleAlerts {
    /// Per rule index: anchor → ids of its open alerts there (one per de-duplication key).
    by_rule: Vec<HashMap<Arc<str>, Vec<String>>>,
    /// Per rule index: how many alerts are listed.
    counts: Vec<usize>,
    /// Per rule index: one bit per grid index, set while an alert is listed there.
    open_at: Vec<Vec<u64>>,
}

fn set_bit(bits: &mut Vec<u64>, ix: usize, on: bool) {
    let (word, bit) = (ix / 64, 1u64 << (ix % 64));
    if word >= bits.len() {
        if !on {
            return;
        }
        bits.resize(word + 1, 0);
    }
    if on {
        bits[word] |= bit;
    } else {
        bits[word] &= !bit;
    }
}

impl RuleAlerts {
    /// Lists the open rule alerts of `open` against `set` (at start and on reload).
    pub fn rebuild<'a>(
        &mut self,
        set: &RuleSet,
        grids: &GridIndex,
        open: impl Iterator<Item = &'a pb::Alert>,
    ) {
        self.by_rule = vec![HashMap::default(); set.rules.len()];
        self.counts = vec![0; set.rules.len()];
        self.open_at = vec![Vec::new(); set.rules.len()];
        let mut listed: Vec<&pb::Alert> = open.filter(|a| !a.rule_id.is_empty()).collect();
        // In a stable order (by id).
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        for a in listed {
            let Some(ri) = set.position(&a.rule_id) else {
                continue;
            };
            let plain = format!("rule/{}/{}", a.rule_id, a.grid_id);
            let fits = match set.rules[ri].cfg.labels.is_empty() {
                true => a.dedup_key == plain,
                false => a
                    .dedup_key
                    .strip_prefix(&plain)
                    .is_some_and(|rest| rest.starts_with('/')),
            };
            if fits {
                self.add(ri, grids, &a.grid_id, a.id.clone());
            }
        }
    }

    /// Sets the grid bits again from the listed anchors (the grids changed).
    pub fn reindex(&mut self, grids: &GridIndex) {
        for (map, bits) in self.by_rule.iter().zip(self.open_at.iter_mut()) {
            bits.clear();
            for ix in map.keys().filter_map(|a| grids.index_of(a)) {
                set_bit(bits, ix, true);
            }
        }
    }

    /// Lists alert `id` of rule `ri` at `anchor`.
    pub fn add(&mut self, ri: usize, grids: &GridIndex, anchor: &str, id: String) {
        let (Some(map), Some(count)) = (self.by_rule.get_mut(ri), self.counts.get_mut(ri)) else {
            return;
        };
        match map.get_mut(anchor) {
            Some(ids) => ids.push(id),
            None => {
                // The index's own `Arc`: a lookup by the same `Arc` is a pointer compare.
                let key = grids.shared(anchor).cloned();
                map.insert(key.unwrap_or_else(|| Arc::from(anchor)), vec![id]);
                if let (Some(bits), Some(ix)) = (self.open_at.get_mut(ri), grids.index_of(anchor)) {
                    set_bit(bits, ix, true);
                }
            }
        }
        *count += 1;
    }

    /// Clears the bit of `anchor` for rule `ri` (nothing is listed there any more).
    fn unmark(&mut self, ri: usize, grids: &GridIndex, anchor: &str) {
        if let (Some(bits), Some(ix)) = (self.open_at.get_mut(ri), grids.index_of(anchor)) {
            set_bit(bits, ix, false);
        }
    }

    /// Unlists alert `id` of rule `ri` at `anchor`; whether it was listed.
    pub fn remove<Q>(&mut self, ri: usize, grids: &GridIndex, anchor: &Q, id: &str) -> bool
    where
        Q: ?Sized + Hash + Eq + AsRef<str>,
        Arc<str>: Borrow<Q>,
    {
        let Some(map) = self.by_rule.get_mut(ri) else {
            return false;
        };
        let Some(ids) = map.get_mut(anchor) else {
            return false;
        };
        let before = ids.len();
        ids.retain(|x| x != id);
        let gone = before - ids.len();
        if ids.is_empty() {
            map.remove(anchor);
            self.unmark(ri, grids, anchor.as_ref());
        }
        if let Some(c) = self.counts.get_mut(ri) {
            *c = c.saturating_sub(gone);
        }
        gone > 0
    }

    /// Unlists and returns every alert of rule `ri` at `anchor`.
    pub fn take<Q>(&mut self, ri: usize, grids: &GridIndex, anchor: &Q) -> Vec<String>
    where
        Q: ?Sized + Hash + Eq + AsRef<str>,
        Arc<str>: Borrow<Q>,
    {
        let ids = self
            .by_rule
            .get_mut(ri)
            .and_then(|m| m.remove(anchor))
            .unwrap_or_default();
        self.unmark(ri, grids, anchor.as_ref());
        if let Some(c) = self.counts.get_mut(ri) {
            *c = c.saturating_sub(ids.len());
        }
        ids
    }

    /// The alerts of rule `ri` open at `anchor`.
    #[cfg(test)]
    pub fn at(&self, ri: usize, anchor: &str) -> &[String] {
        self.by_rule
            .get(ri)
            .and_then(|m| m.get(anchor))
            .map_or(&[], |ids| ids.as_slice())
    }

    /// The first alert of rule `ri` open at `anchor` (for a rule without labels, the
    /// only one).
    pub fn first<Q>(&self, ri: usize, anchor: &Q) -> Option<&String>
    where
        Q: ?Sized + Hash + Eq,
        Arc<str>: Borrow<Q>,
    {
        self.by_rule.get(ri)?.get(anchor)?.first()
    }

    /// Whether rule `ri` has an alert open at `anchor`. Asked with the grid index's own
    /// `Arc` (as anchors are), a hit compares pointers, not the ids' bytes; a `&str` works
    /// too.
    pub fn has<Q>(&self, ri: usize, anchor: &Q) -> bool
    where
        Q: ?Sized + Hash + Eq,
        Arc<str>: Borrow<Q>,
    {
        self.counts.get(ri).is_some_and(|c| *c > 0)
            && self.by_rule.get(ri).is_some_and(|m| m.contains_key(anchor))
    }

    /// Whether rule `ri` has an alert open at the grid with index `ix`.
    pub fn has_at(&self, ri: usize, ix: usize) -> bool {
        self.open_at
            .get(ri)
            .and_then(|bits| bits.get(ix / 64))
            .is_some_and(|w| w & (1u64 << (ix % 64)) != 0)
    }

    /// Whether rule `ri` has any alert open.
    pub fn any(&self, ri: usize) -> bool {
        self.counts.get(ri).is_some_and(|c| *c > 0)
    }

    /// Every listed alert: (rule index, alert id).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &String)> + '_ {
        self.by_rule
            .iter()
            .enumerate()
            .flat_map(|(ri, m)| m.values().flatten().map(move |id| (ri, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleConfig;

    fn set(ids: &[&str]) -> RuleSet {
        let cfgs: Vec<RuleConfig> = ids
            .iter()
            .map(|id| {
                toml::from_str(&format!(
                    "id = \"{id}\"\ntitle = \"t\"\nseverity = \"major\"\nwindow_secs = 60\n[[when]]\nsource = \"sensor\"\nkind = \"smoke\"\n"
                ))
                .expect("rule parses")
            })
            .collect();
        RuleSet::new(&cfgs)
    }

    fn alert(id: &str, rule: &str, grid: &str) -> pb::Alert {
        pb::Alert {
            id: id.into(),
            rule_id: rule.into(),
            grid_id: grid.into(),
            dedup_key: format!("rule/{rule}/{grid}"),
            ..Default::default()
        }
    }

    fn grids(ids: &[&str]) -> GridIndex {
        let cfgs: Vec<crate::config::GridConfig> = ids
            .iter()
            .map(|id| crate::config::GridConfig {
                id: id.to_string(),
                name: id.to_string(),
                parent: None,
                polygon: Vec::new(),
            })
            .collect();
        GridIndex::new(&cfgs)
    }

    #[test]
    fn alerts_are_listed_by_rule_and_anchor_and_relisted_on_reload() {
        let g = grids(&["G1", "G2"]);
        let (g1, g2) = (0, 1);
        let mut r = RuleAlerts::default();
        let open = [
            alert("A-1", "b", "G1"),
            alert("A-2", "b", "G1"),
            alert("A-3", "a", "G2"),
            alert("A-4", "", "G1"),
            // Made when rule "b" had labels: not what it makes now.
            pb::Alert {
                dedup_key: "rule/b/G1/camera=c1".into(),
                ..alert("A-5", "b", "G1")
            },
        ];
        r.rebuild(&set(&["a", "b"]), &g, open.iter());
        assert_eq!(r.at(1, "G1"), ["A-1", "A-2"]);
        assert!(r.has(0, "G2") && !r.has(0, "G1") && !r.has(1, "G2"));
        assert!(r.has_at(0, g2) && !r.has_at(0, g1) && !r.has_at(1, g2) && r.has_at(1, g1));
        assert!(r.remove(1, &g, "G1", "A-1"));
        assert!(!r.remove(1, &g, "G1", "A-1"));
        // One alert is still listed at G1: its bit stays.
        assert!(r.has_at(1, g1));
        assert_eq!(r.take(1, &g, "G1"), ["A-2"]);
        assert!(!r.has_at(1, g1));
        assert!(!r.any(1) && r.any(0));
        // Rule "a" removed, then back: its alert is found again.
        r.rebuild(&set(&["b"]), &g, open.iter());
        assert!(!r.has(0, "G2") && !r.has_at(0, g2));
        r.rebuild(&set(&["b", "a"]), &g, open.iter());
        assert_eq!(r.at(1, "G2"), ["A-3"]);
        assert!(r.has_at(1, g2) && r.has_at(0, g1));
        assert_eq!(r.iter().count(), 3);
    }

    #[test]
    fn the_grid_bits_follow_the_grids_when_they_change() {
        let mut r = RuleAlerts::default();
        let open = [alert("A-1", "a", "G2")];
        r.rebuild(&set(&["a"]), &grids(&["G1", "G2"]), open.iter());
        assert!(r.has_at(0, 1) && !r.has_at(0, 0));
        // The grids are reloaded in another order: G2 is now index 0.
        let moved = grids(&["G2", "G1"]);
        r.reindex(&moved);
        assert!(r.has_at(0, 0) && !r.has_at(0, 1));
        // A grid far past the first word of bits.
        let many: Vec<String> = (0..200).map(|i| format!("G{i}")).collect();
        let ids: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        let big = grids(&ids);
        r.add(0, &big, "G130", "A-2".into());
        assert!(r.has_at(0, 130) && !r.has_at(0, 129) && !r.has_at(0, 5000));
        assert!(r.remove(0, &big, "G130", "A-2"));
        assert!(!r.has_at(0, 130));
    }
}
