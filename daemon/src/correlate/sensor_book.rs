//! What one engine keeps of every sensor it has heard from ([`SensorTrack`]), found by the
//! sensor's id. Every reading looks its sensor up here first (redelivery, flap state), so
//! this lookup is the hottest of the engine: a county has tens of thousands of sensors and
//! a reading lands on any of them, out of cache.
//!
//! Layout: a small map from a 64-bit fingerprint of the id to a slot, and the tracks in a
//! vector, each with its id inline when short (the comparison that confirms a slot reads
//! the track it is about to use, not another heap block). Two ids with one fingerprint are
//! both kept exactly: the second goes to `collided`, keyed by the id itself.
//!
//! Invariants: `index` and `collided` point at distinct slots of `tracks`; the track in a
//! slot carries the id it was found by; tracks are never removed.

use std::hash::BuildHasher;

use foldhash::HashMap;

use super::engine::noise_layer::SensorTrack;

/// A sensor id, inline when it fits (most do).
#[derive(Debug, Clone)]
enum SensorId {
    Inline { len: u8, bytes: [u8; 31] },
    Heap(Box<str>),
}

impl SensorId {
    fn new(id: &str) -> Self {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= 31 => {
                let mut bytes = [0u8; 31];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(id.into()),
        }
    }

    fn is(&self, id: &str) -> bool {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize] == id.as_bytes(),
            Self::Heap(s) => &**s == id,
        }
    }
}

/// The tracks of every sensor heard from, by id.
#[derive(Debug, Default)]
pub struct SensorBook {
    /// Fingerprint of the id → slot.
    index: HashMap<u64, u32>,
    /// Ids whose fingerprint another id had first → slot.
    collided: HashMap<String, u32>,
    tracks: Vec<(SensorId, SensorTrack)>,
}

fn fingerprint(id: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x73656e73).hash_one(id)
}

impl SensorBook {
    fn slot(&self, id: &str) -> Option<usize> {
        let slot = *self.index.get(&fingerprint(id))? as usize;
        if self.tracks[slot].0.is(id) {
            return Some(slot);
        }
        self.collided.get(id).map(|s| *s as usize)
    }

    /// The sensor's track, made when it is new.
    pub fn track(&mut self, id: &str) -> &mut SensorTrack {
        let slot = match self.slot(id) {
            Some(s) => s,
            None => self.add(id),
        };
        &mut self.tracks[slot].1
    }

    fn add(&mut self, id: &str) -> usize {
        let slot = self.tracks.len();
        self.tracks
            .push((SensorId::new(id), SensorTrack::default()));
        let n = slot as u32;
        // Taken by another id with the same fingerprint: kept by the id itself.
        if let Some(other) = self.index.insert(fingerprint(id), n) {
            self.index.insert(fingerprint(id), other);
            self.collided.insert(id.to_string(), n);
        }
        slot
    }

    /// The sensor's track, if it was heard from.
    pub fn get(&self, id: &str) -> Option<&SensorTrack> {
        self.slot(id).map(|s| &self.tracks[s].1)
    }

    /// [`SensorBook::get`], to change it.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut SensorTrack> {
        let slot = self.slot(id)?;
        Some(&mut self.tracks[slot].1)
    }

    /// How many sensors were heard from.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tracks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_has_its_own_track_short_or_long() {
        let mut b = SensorBook::default();
        let long = "x".repeat(80);
        for (i, id) in ["s-1", "s-2", "", &long].into_iter().enumerate() {
            b.track(id).sig = Some((i as i64, crate::domain::SensorState::Normal, None));
        }
        assert_eq!(b.len(), 4);
        for (i, id) in ["s-1", "s-2", "", &long].into_iter().enumerate() {
            assert_eq!(b.get(id).and_then(|t| t.sig).map(|s| s.0), Some(i as i64));
        }
        assert!(b.get("s-3").is_none());
        assert!(b.get(&"x".repeat(79)).is_none());
    }

    #[test]
    fn two_ids_with_one_fingerprint_are_both_kept() {
        // "b" is made to find the slot of "a" by its fingerprint.
        let mut b = SensorBook::default();
        b.track("a");
        b.index.insert(fingerprint("b"), 0);
        b.track("b").keyed = true;
        assert_eq!(b.len(), 2);
        assert!(!b.track("a").keyed);
        assert!(b.get("b").is_some_and(|t| t.keyed));
    }
}
