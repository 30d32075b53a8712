//! Held-back alert updates: the repeats that only fold into an open alert.
//!
//! A fold (count, last_seen, evidence) does not send the alert each time. The alert is held
//! here and falls due `correlation.update_interval_ms` after its last change went out; it
//! is then sent once, in its latest state. Any other change of the alert (raise, merge,
//! resolve...) goes out at once and carries the folds before it: the held entry is then
//! stale (the alert's version moved on) and is dropped when it falls due.
//!
//! Invariants: one entry per alert id; every entry has at least one heap slot at or before
//! its due time (stale slots are skipped), so `take_due` never misses one.

use std::{cmp::Reverse, collections::BinaryHeap};

use foldhash::HashMap;

/// One held alert.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The alert's version at its latest fold (it is sent only if still at it).
    version: u64,
    /// When its last change went out (ms).
    sent: i64,
}

/// The held alerts of one engine, by due time.
#[derive(Debug, Default)]
pub struct Held {
    entries: HashMap<String, Entry>,
    /// (due, order of holding, id); may hold stale slots.
    due: BinaryHeap<Reverse<(i64, u64, String)>>,
    order: u64,
}

impl Held {
    /// Holds alert `id`, folded into at `version`, whose last change went out at `sent`.
    pub fn hold(&mut self, id: &str, version: u64, sent: i64, interval: i64) {
        match self.entries.get_mut(id) {
            Some(e) if e.version == version => return,
            Some(e) => *e = Entry { version, sent },
            None => {
                self.entries.insert(id.to_string(), Entry { version, sent });
            }
        }
        self.order += 1;
        self.due.push(Reverse((
            sent.saturating_add(interval),
            self.order,
            id.to_string(),
        )));
    }

    /// Whether nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether something falls due at `now` (cheap: one look at the heap).
    pub fn any_due(&self, now: i64) -> bool {
        self.due.peek().is_some_and(|Reverse((t, ..))| *t <= now)
    }

    /// The alerts due at `now`, with the version each was held at, in the order they fell
    /// due; they are no longer held.
    pub fn take_due(&mut self, now: i64, interval: i64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _, _))) = self.due.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, _, id))) = self.due.pop() else {
                break;
            };
            let Some(e) = self.entries.get(&id).copied() else {
                continue;
            };
            if e.sent.saturating_add(interval) <= now {
                self.entries.remove(&id);
                out.push((id, e.version));
            }
        }
        out
    }

    /// Every held alert, due or not, in the order they would fall due.
    pub fn take_all(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::with_capacity(self.entries.len());
        while let Some(Reverse((_, _, id))) = self.due.pop() {
            if let Some(e) = self.entries.remove(&id) {
                out.push((id, e.version));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_falls_due_an_interval_after_its_last_change_and_only_once() {
        let mut h = Held::default();
        h.hold("a", 1, 1_000, 1_000);
        h.hold("a", 1, 1_000, 1_000);
        h.hold("b", 3, 500, 1_000);
        assert!(!h.any_due(1_400));
        assert!(h.take_due(1_400, 1_000).is_empty());
        assert_eq!(h.take_due(1_500, 1_000), vec![("b".to_string(), 3)]);
        assert_eq!(h.take_due(2_000, 1_000), vec![("a".to_string(), 1)]);
        assert!(h.is_empty());
        assert!(h.take_due(9_000, 1_000).is_empty());
    }

    #[test]
    fn a_change_sent_in_between_pushes_the_due_time_back() {
        let mut h = Held::default();
        h.hold("a", 1, 1_000, 1_000);
        // A raise went out at 1,800 (version 2), then another fold.
        h.hold("a", 2, 1_800, 1_000);
        assert!(h.take_due(2_000, 1_000).is_empty(), "the old slot is stale");
        assert_eq!(h.take_due(2_800, 1_000), vec![("a".to_string(), 2)]);
    }

    #[test]
    fn take_all_empties_everything() {
        let mut h = Held::default();
        h.hold("a", 1, 5_000, 1_000);
        h.hold("b", 1, 1_000, 1_000);
        assert_eq!(
            h.take_all(),
            vec![("b".to_string(), 1), ("a".to_string(), 1)]
        );
        assert!(h.is_empty());
    }
}
