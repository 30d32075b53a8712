//! Compressed-domain video analytics: an activity score and freeze detection from frame
//! sizes and timestamps only, never decoding a picture. Pure: time is passed in.
//!
//! **Activity.** A P-frame's size says how much of the picture changed. Sizes depend on the
//! frame's position in the GOP (the first P-frames after a keyframe are often larger), so
//! each position bucket keeps its own *quiet baseline*: it follows a smaller frame quickly
//! and a larger one slowly (minutes), so it settles on the camera's own quiet level. The
//! score is a short moving average of `size / baseline`: about 1 on a quiet scene, several
//! times that while people or cars move.
//!
//! **Freeze.** An encoder fed the same picture emits skip-only P-frames of a few bytes (and
//! identical keyframes); a stuck camera may also stop advancing its RTP timestamps. The
//! picture is frozen when, for the configured time, no P-frame was bigger than the
//! threshold and no keyframe differed from the previous one, or the timestamps stood still.
//! Real cameras carry sensor noise and a clock overlay, so a quiet street is not frozen.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Position buckets of a P-frame within its GOP: 1, 2, 3, 4, 5–8, 9–16, 17–32, 33+.
const BUCKETS: usize = 8;
/// How fast a baseline follows a smaller frame (per frame).
const DOWN: f64 = 0.2;
/// How fast it follows a larger one (per frame: ≈2 minutes at 15 fps).
const UP: f64 = 0.0005;
/// Weight of the newest frame in the score's moving average.
const SCORE_ALPHA: f64 = 0.25;
/// Frames seen in a bucket before its baseline is trusted.
const WARMUP: u32 = 8;

fn bucket(pos: u32) -> usize {
    match pos {
        0 | 1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        5..=8 => 4,
        9..=16 => 5,
        17..=32 => 6,
        _ => 7,
    }
}

/// The activity score of one camera.
#[derive(Debug, Clone, Default)]
pub struct ActivityMeter {
    pos: u32,
    baseline: [f64; BUCKETS],
    seen: [u32; BUCKETS],
    score: f64,
}

impl ActivityMeter {
    /// One frame of `size` bytes; returns the score after it.
    pub fn on_frame(&mut self, size: usize, keyframe: bool) -> f64 {
        if keyframe {
            self.pos = 0;
            return self.score;
        }
        self.pos = self.pos.saturating_add(1);
        let b = bucket(self.pos);
        let x = (size as f64).max(1.0);
        if self.seen[b] == 0 {
            self.baseline[b] = x;
        }
        self.seen[b] = self.seen[b].saturating_add(1);
        let base = self.baseline[b];
        let rate = if x < base { DOWN } else { UP };
        self.baseline[b] = base + rate * (x - base);
        if self.seen[b] >= WARMUP {
            let ratio = x / base.max(1.0);
            self.score = if self.score == 0.0 {
                ratio
            } else {
                self.score + SCORE_ALPHA * (ratio - self.score)
            };
        }
        self.score
    }

    /// The current score (0 until warmed up; about 1 on the quiet baseline).
    pub fn score(&self) -> f64 {
        self.score
    }
}

/// Freeze detection of one camera.
#[derive(Debug, Clone)]
pub struct FreezeDetector {
    max_pframe_bytes: usize,
    last_change: Option<Instant>,
    last_ts_advance: Option<Instant>,
    last_ts: Option<i64>,
    /// The previous keyframe (shared with the registry: no copy).
    last_key: Option<Bytes>,
}

impl FreezeDetector {
    /// A detector that calls P-frames of at most `max_pframe_bytes` "no change".
    pub fn new(max_pframe_bytes: usize) -> Self {
        Self {
            max_pframe_bytes,
            last_change: None,
            last_ts_advance: None,
            last_ts: None,
            last_key: None,
        }
    }

    /// One frame: its size, whether it is a keyframe (and its bytes), its RTP timestamp.
    pub fn on_frame(&mut self, now: Instant, size: usize, keyframe: Option<&Bytes>, ts: i64) {
        let changed = match keyframe {
            // Keyframes of a live picture differ in length almost always; the bytes are
            // compared only when the lengths match.
            Some(data) => self.last_key.replace(data.clone()).as_ref() != Some(data),
            None => size > self.max_pframe_bytes,
        };
        if changed || self.last_change.is_none() {
            self.last_change = Some(now);
        }
        if self.last_ts.is_none_or(|prev| ts > prev) || self.last_ts_advance.is_none() {
            self.last_ts_advance = Some(now);
        }
        self.last_ts = Some(ts);
    }

    /// A new connection: forget the previous stream.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_pframe_bytes);
    }

    /// Whether the picture has been frozen for `after` at `now` (false before any frame).
    pub fn frozen(&self, now: Instant, after: Duration) -> bool {
        let stale = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) >= after);
        stale(self.last_change) || stale(self.last_ts_advance)
    }

    /// Why it is frozen, for the event's detail.
    pub fn reason(&self, now: Instant) -> String {
        let ago = |t: Option<Instant>| t.map(|t| now.duration_since(t).as_secs_f64());
        match (ago(self.last_change), ago(self.last_ts_advance)) {
            (_, Some(ts)) if ts >= ago(self.last_change).unwrap_or(0.0) && ts > 1.0 => {
                format!("RTP timestamps stalled for {ts:.1} s")
            }
            (Some(c), _) => format!("no picture change for {c:.1} s"),
            _ => "frozen".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 30-frame GOP: a keyframe, then P-frames of `p` bytes (a little noise).
    fn gop(m: &mut ActivityMeter, p: usize) -> f64 {
        m.on_frame(20_000, true);
        let mut s = 0.0;
        for i in 0..29 {
            s = m.on_frame(p + (i % 3) * 10, false);
        }
        s
    }

    #[test]
    fn quiet_scene_scores_about_one_and_busy_scene_raises_it() {
        let mut m = ActivityMeter::default();
        let mut quiet = 0.0;
        for _ in 0..40 {
            quiet = gop(&mut m, 400);
        }
        assert!((0.8..1.5).contains(&quiet), "quiet score {quiet}");
        let busy = gop(&mut m, 4_000);
        assert!(busy > 5.0, "busy score {busy}");
        // Back to quiet: the score falls within a GOP.
        let after = gop(&mut m, 400);
        assert!(after < 1.5, "after {after}");
    }

    #[test]
    fn gop_position_is_normalised() {
        // An encoder whose first P-frame after a keyframe is always 5x bigger is not "busy".
        let mut m = ActivityMeter::default();
        let mut s = 0.0;
        for _ in 0..40 {
            m.on_frame(20_000, true);
            m.on_frame(2_000, false);
            for _ in 0..28 {
                s = m.on_frame(400, false);
            }
        }
        assert!(s < 1.5, "score {s}");
    }

    #[test]
    fn skip_frames_and_identical_keyframes_freeze() {
        let t0 = Instant::now();
        let mut f = FreezeDetector::new(64);
        let after = Duration::from_secs(3);
        let key = Bytes::from(vec![7u8; 5000]);
        for i in 0..150u64 {
            let now = t0 + Duration::from_millis(i * 66);
            let k = (i % 30 == 0).then_some(&key);
            f.on_frame(now, if k.is_some() { 5000 } else { 12 }, k, i as i64 * 6000);
        }
        let end = t0 + Duration::from_millis(150 * 66);
        assert!(f.frozen(end, after));
        assert!(
            f.reason(end).contains("no picture change"),
            "{}",
            f.reason(end)
        );
    }

    #[test]
    fn keyframes_of_equal_length_but_other_bytes_are_a_change() {
        let t0 = Instant::now();
        let mut f = FreezeDetector::new(64);
        for i in 0..150u64 {
            let now = t0 + Duration::from_millis(i * 66);
            // Skip-sized P-frames, but every keyframe differs (same length).
            let key = (i % 30 == 0).then(|| Bytes::from(vec![(i / 30) as u8; 5000]));
            f.on_frame(
                now,
                if key.is_some() { 5000 } else { 12 },
                key.as_ref(),
                i as i64 * 6000,
            );
        }
        let end = t0 + Duration::from_millis(150 * 66);
        assert!(!f.frozen(end, Duration::from_secs(3)));
    }

    #[test]
    fn noisy_quiet_scene_is_not_frozen_and_stalled_timestamps_are() {
        let t0 = Instant::now();
        let after = Duration::from_secs(3);
        let mut f = FreezeDetector::new(64);
        for i in 0..150u64 {
            f.on_frame(
                t0 + Duration::from_millis(i * 66),
                300,
                None,
                i as i64 * 6000,
            );
        }
        let end = t0 + Duration::from_millis(150 * 66);
        assert!(!f.frozen(end, after));
        let mut g = FreezeDetector::new(64);
        for i in 0..150u64 {
            g.on_frame(t0 + Duration::from_millis(i * 66), 300, None, 42);
        }
        assert!(g.frozen(end, after));
        assert!(g.reason(end).contains("timestamps"), "{}", g.reason(end));
    }
}
