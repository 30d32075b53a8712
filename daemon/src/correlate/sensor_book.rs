//! What one engine keeps of every sensor it has heard from ([`SensorTrack`]), found by the
//! sensor's id. Every reading looks its sensor up here first (redelivery, flap state), so
//! this lookup is the hottest of the engine: a county has tens of thousands of sensors and
//! a reading lands on any of them, out of cache.
//!
//! Layout: an open-addressed table from a 64-bit fingerprint of the id to a slot, and the
//! tracks in a vector, each with its id inline when short (the comparison that confirms a
//! slot reads the track it is about to use, not another heap block). Two ids with one
//! fingerprint are both kept exactly: the second goes to `collided`, keyed by the id itself.
//!
//! The table is our own (linear probing, at most half full) so that the bucket of an id is
//! an address known before the lookup: a shard handling a batch of readings prefetches the
//! buckets of the batch ([`SensorBook::prefetch_bucket`]) and, one reading ahead, the track
//! ([`SensorBook::prefetch_track`]), so the two cache misses of a lookup overlap the work
//! on the reading before it.
//!
//! Invariants: `index` and `collided` point at distinct slots of `tracks`; the track in a
//! slot carries the id it was found by; tracks are never removed; `index` is at most half
//! full and its length a power of two.

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

/// An empty bucket of [`Index`].
const EMPTY: u32 = u32::MAX;

/// Fingerprint → slot, open-addressed (linear probing).
#[derive(Debug, Default)]
struct Index {
    /// (fingerprint, slot); slot [`EMPTY`] when free. Empty, or a power of two long.
    buckets: Vec<(u64, u32)>,
    len: usize,
}

impl Index {
    fn home(&self, fp: u64) -> usize {
        // The low bits of foldhash's output are as good as its high ones.
        (fp as usize) & (self.buckets.len().wrapping_sub(1))
    }

    fn get(&self, fp: u64) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.buckets.len() - 1;
        let mut i = self.home(fp);
        loop {
            let (f, slot) = self.buckets[i];
            if slot == EMPTY {
                return None;
            }
            if f == fp {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `fp → slot`; returns the slot already there for `fp`, if any (then unchanged).
    fn insert(&mut self, fp: u64, slot: u32) -> Option<u32> {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        let mask = self.buckets.len() - 1;
        let mut i = self.home(fp);
        loop {
            let (f, s) = self.buckets[i];
            if s == EMPTY {
                self.buckets[i] = (fp, slot);
                self.len += 1;
                return None;
            }
            if f == fp {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(64);
        let old = std::mem::replace(&mut self.buckets, vec![(0, EMPTY); size]);
        self.len = 0;
        for (fp, slot) in old.into_iter().filter(|b| b.1 != EMPTY) {
            self.insert(fp, slot);
        }
    }

    fn bucket_addr(&self, fp: u64) -> Option<*const u8> {
        self.buckets
            .get(self.home(fp))
            .map(|b| std::ptr::from_ref(b).cast())
    }
}

/// Asks the CPU to bring the cache line at `p` in; never reads it (no effect off x86_64).
#[inline]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults or reads into the program, whatever
    // the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The tracks of every sensor heard from, by id.
#[derive(Debug, Default)]
pub struct SensorBook {
    /// Fingerprint of the id → slot.
    index: Index,
    /// Ids whose fingerprint another id had first → slot.
    collided: HashMap<String, u32>,
    tracks: Vec<(SensorId, SensorTrack)>,
    /// Bumped whenever the grids change: a track's remembered grid index is good only for
    /// the generation it was found in.
    grids_generation: u32,
}

fn fingerprint(id: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x73656e73).hash_one(id)
}

impl SensorBook {
    fn slot(&self, id: &str) -> Option<usize> {
        let slot = self.index.get(fingerprint(id))? as usize;
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
        if self.index.insert(fingerprint(id), n).is_some() {
            self.collided.insert(id.to_string(), n);
        }
        slot
    }

    /// Brings the table bucket of `id` into the cache (the first of a lookup's two misses).
    pub fn prefetch_bucket(&self, id: &str) {
        if let Some(p) = self.index.bucket_addr(fingerprint(id)) {
            prefetch(p);
        }
    }

    /// Brings the track of `id` into the cache, when known (the second miss; cheap once
    /// [`SensorBook::prefetch_bucket`] brought its bucket in).
    pub fn prefetch_track(&self, id: &str) {
        let Some(slot) = self.index.get(fingerprint(id)) else {
            return;
        };
        if let Some(t) = self.tracks.get(slot as usize) {
            let p: *const u8 = std::ptr::from_ref(t).cast();
            prefetch(p);
            prefetch(p.wrapping_add(64));
        }
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

    /// The generation of the grids (see [`SensorBook::grids_changed`]).
    pub fn grids_generation(&self) -> u32 {
        self.grids_generation
    }

    /// The grids were replaced: every remembered grid index is stale.
    pub fn grids_changed(&mut self) {
        self.grids_generation = self.grids_generation.wrapping_add(1);
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
    fn thousands_of_ids_are_found_after_the_table_grows() {
        let mut b = SensorBook::default();
        b.prefetch_bucket("none yet");
        b.prefetch_track("none yet");
        for i in 0..10_000i64 {
            b.track(&format!("sensor-{i}")).sig =
                Some((i, crate::domain::SensorState::Normal, None));
        }
        assert_eq!(b.len(), 10_000);
        assert!(
            b.index.buckets.len().is_power_of_two() && b.index.len * 2 <= b.index.buckets.len()
        );
        for i in 0..10_000i64 {
            let id = format!("sensor-{i}");
            b.prefetch_bucket(&id);
            b.prefetch_track(&id);
            assert_eq!(b.get(&id).and_then(|t| t.sig).map(|s| s.0), Some(i), "{id}");
        }
        assert!(b.get("sensor-10000").is_none());
    }

    #[test]
    fn two_ids_with_one_fingerprint_are_both_kept() {
        // "b" is made to find the slot of "a" by its fingerprint.
        let mut b = SensorBook::default();
        b.track("a");
        assert_eq!(b.index.insert(fingerprint("b"), 0), None);
        b.track("b").keyed = true;
        assert_eq!(b.len(), 2);
        assert!(!b.track("a").keyed);
        assert!(b.get("b").is_some_and(|t| t.keyed));
    }
}
