//! The media clock of one playing session: which access unit goes out at which tick, with
//! which RTP timestamp, and how faults and content changes bend that.
//!
//! Pure logic, no I/O: the session asks [`Player::tick`] what to send and does the sending.
//! Frame `k` is due at `started + k / fps` and carries RTP timestamp `base + k * 90000 / fps`
//! (plus any [`crate::Fault::TimestampJump`] offset), so timestamps follow the wall clock
//! even if a slow socket makes the session skip ticks. The clip position advances by one
//! access unit per frame actually sent, so a skipped tick never breaks the reference chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clip::{Clip, Content};
use crate::mount::{Fault, MountState, Settings, TIMESTAMP_JUMP_AFTER, TIMESTAMP_JUMP_BY};
use crate::rtp::{self, CLOCK_RATE};

/// What to send at a tick.
#[derive(Debug)]
pub enum Out {
    /// Nothing (stalled).
    Nothing,
    /// One interleaved frame of random bytes of this length.
    Garbage(usize),
    /// Access unit `index` of `clip`, with this RTP timestamp.
    Frame {
        /// The clip.
        clip: Arc<Clip>,
        /// Index into `clip.frames`.
        index: usize,
        /// RTP timestamp.
        ts: u32,
    },
}

/// Per-session playback state.
#[derive(Debug)]
pub struct Player {
    fps: u32,
    started: Instant,
    /// Index of the next tick.
    next: u64,
    ts_base: u32,
    content: Content,
    /// Next access unit of the current clip.
    pos: usize,
    stall_at: Option<Instant>,
    stalled: bool,
    frozen_ts: Option<u32>,
    garbage: bool,
    jump_at: Option<Instant>,
    jumped: bool,
    jump_offset: u32,
    last_ts: u32,
    /// Whether any access unit went out yet (a session always starts with a keyframe).
    sent_any: bool,
}

impl Player {
    /// A player starting now at a keyframe, with a random timestamp base.
    pub fn new(fps: u32, content: Content, now: Instant) -> Self {
        let ts_base = rand::random();
        Player {
            fps: fps.max(1),
            started: now,
            next: 0,
            ts_base,
            content,
            pos: 0,
            stall_at: None,
            stalled: false,
            frozen_ts: None,
            garbage: false,
            jump_at: None,
            jumped: false,
            jump_offset: 0,
            last_ts: ts_base,
            sent_any: false,
        }
    }

    /// RTP timestamp of the first frame (for `RTP-Info`).
    pub fn ts_base(&self) -> u32 {
        self.ts_base
    }

    fn tick_time(&self, k: u64) -> Instant {
        self.started + Duration::from_nanos(k.saturating_mul(1_000_000_000) / u64::from(self.fps))
    }

    /// When the next frame is due; `None` while stalled.
    pub fn next_due(&self) -> Option<Instant> {
        (!self.stalled).then(|| self.tick_time(self.next))
    }

    /// The index of the first tick due at or after `now`.
    fn tick_at_or_after(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_nanos();
        let fps = u128::from(self.fps);
        (elapsed * fps).div_ceil(1_000_000_000) as u64
    }

    /// Takes in the mount's current fault (at start and whenever it changes).
    pub fn apply(&mut self, settings: &Settings, now: Instant) {
        let since = self.started.max(settings.fault_since);
        self.stall_at = match settings.fault {
            Fault::StallAfter(d) => Some(since + d),
            _ => None,
        };
        if self.stalled && self.stall_at.is_none() {
            self.stalled = false;
            self.restart_at_keyframe(now);
        }
        match (&settings.fault, self.frozen_ts) {
            (Fault::Freeze, None) => self.frozen_ts = Some(self.last_ts),
            (Fault::Freeze, Some(_)) => {}
            (_, Some(_)) => {
                self.frozen_ts = None;
                self.pos = 0;
            }
            (_, None) => {}
        }
        let garbage = settings.fault == Fault::GarbageRtp;
        if self.garbage && !garbage {
            self.pos = 0;
        }
        self.garbage = garbage;
        self.jump_at = match settings.fault {
            Fault::TimestampJump if !self.jumped => Some(since + TIMESTAMP_JUMP_AFTER),
            _ => None,
        };
    }

    fn restart_at_keyframe(&mut self, now: Instant) {
        self.pos = 0;
        self.next = self.next.max(self.tick_at_or_after(now));
    }

    /// Decides what to send for the due tick and advances; call when [`Player::next_due`]
    /// has passed.
    pub fn tick(&mut self, mount: &MountState, settings: &Settings, now: Instant) -> Out {
        let k = self.next;
        let due = self.tick_time(k);
        // Skip ticks we are too late for (slow socket, overloaded machine).
        self.next = (k + 1).max(self.tick_at_or_after(now));
        if self.stall_at.is_some_and(|t| due >= t) {
            self.stalled = true;
            return Out::Nothing;
        }
        if self.garbage {
            return Out::Garbage(rand::random_range(64..=rtp::MAX_PAYLOAD));
        }
        if let Some(ts) = self.frozen_ts.filter(|_| self.sent_any) {
            let clip = mount.still.clone();
            let index = clip.smallest_delta_frame();
            return Out::Frame { clip, index, ts };
        }
        if !self.jumped && self.jump_at.is_some_and(|t| due >= t) {
            self.jumped = true;
            self.jump_at = None;
            self.jump_offset = (TIMESTAMP_JUMP_BY.as_secs() as u32).wrapping_mul(CLOCK_RATE);
        }
        let content = settings
            .content
            .content_at(due.saturating_duration_since(settings.content_since));
        if content != self.content {
            self.content = content;
            self.pos = 0;
        }
        let clip = mount.clip(content).clone();
        let index = self.pos % clip.frames.len().max(1);
        self.pos = index + 1;
        let ts = rtp::timestamp(self.ts_base, k, self.fps).wrapping_add(self.jump_offset);
        let ts = self.frozen_ts.unwrap_or(ts);
        self.last_ts = ts;
        self.sent_any = true;
        Out::Frame { clip, index, ts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::{ClipSpec, Frame};
    use crate::mount::{ContentSchedule, MountConfig};
    use bytes::Bytes;

    fn clip(content: Content) -> Arc<Clip> {
        let f = |key: bool, n: usize| Frame {
            nals: vec![Bytes::from(vec![if key { 0x65 } else { 0x41 }; n])],
            keyframe: key,
        };
        Arc::new(Clip {
            spec: ClipSpec::new(content, 64, 64, 10),
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
            pps: Bytes::from_static(&[0x68, 0xce]),
            frames: vec![
                f(true, 100),
                f(false, 10),
                f(false, 5),
                f(true, 100),
                f(false, 7),
            ],
        })
    }

    fn mount(fault: Fault) -> MountState {
        let cfg = MountConfig::new("m", 10).with_fault(fault);
        MountState::new(&cfg, clip(Content::Still), clip(Content::Busy))
    }

    fn run(p: &mut Player, m: &MountState, n: usize) -> Vec<(usize, u32)> {
        let s = m.settings.borrow().clone();
        (0..n)
            .filter_map(|_| {
                let due = p.next_due()?;
                match p.tick(m, &s, due) {
                    Out::Frame { index, ts, .. } => Some((index, ts)),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn healthy_paces_and_loops() {
        let m = mount(Fault::None);
        let t0 = Instant::now();
        let mut p = Player::new(10, Content::Still, t0);
        p.apply(&m.settings.borrow(), t0);
        assert_eq!(p.next_due(), Some(t0));
        let out = run(&mut p, &m, 7);
        let idx: Vec<usize> = out.iter().map(|o| o.0).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 0, 1]);
        assert_eq!(out[1].1.wrapping_sub(out[0].1), 9000);
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(700)));
    }

    #[test]
    fn late_ticks_are_skipped_but_timestamps_follow_the_clock() {
        let m = mount(Fault::None);
        let t0 = Instant::now();
        let mut p = Player::new(10, Content::Still, t0);
        let s = m.settings.borrow().clone();
        let _ = p.tick(&m, &s, t0);
        // Half a second late.
        let _ = p.tick(&m, &s, t0 + Duration::from_millis(550));
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(600)));
        let Out::Frame { index, ts, .. } = p.tick(&m, &s, t0 + Duration::from_millis(600)) else {
            panic!()
        };
        assert_eq!(index, 2, "clip advances one frame per frame sent");
        assert_eq!(ts.wrapping_sub(p.ts_base()), 6 * 9000);
    }

    #[test]
    fn stall_freeze_jump() {
        let m = mount(Fault::StallAfter(Duration::from_millis(300)));
        let t0 = Instant::now();
        let mut p = Player::new(10, Content::Still, t0);
        p.apply(&m.settings.borrow(), t0);
        assert_eq!(run(&mut p, &m, 10).len(), 3);
        assert_eq!(p.next_due(), None);

        let m = mount(Fault::Freeze);
        let t0 = Instant::now();
        let mut p = Player::new(10, Content::Still, t0);
        p.apply(&m.settings.borrow(), t0);
        let out = run(&mut p, &m, 4);
        assert_eq!(
            out[0],
            (0, p.ts_base()),
            "a frozen session still starts with a keyframe"
        );
        assert!(out[1..].iter().all(|&(i, ts)| i == 2 && ts == p.ts_base()));

        let m = mount(Fault::TimestampJump);
        let t0 = Instant::now();
        let mut p = Player::new(10, Content::Still, t0);
        p.apply(&m.settings.borrow(), t0);
        let out = run(&mut p, &m, 13);
        let deltas: Vec<u32> = out
            .windows(2)
            .map(|w| w[1].1.wrapping_sub(w[0].1))
            .collect();
        assert_eq!(deltas.iter().filter(|&&d| d == 9000).count(), 11);
        assert_eq!(deltas[9], 9000 + 3600 * 90_000);
    }

    #[test]
    fn content_switch_restarts_at_keyframe() {
        let t0 = Instant::now();
        let m = mount(Fault::None);
        m.settings.send_modify(|s| {
            s.content = ContentSchedule::Alternate {
                still: Duration::from_millis(200),
                busy: Duration::from_millis(200),
            };
            s.content_since = t0;
        });
        let mut p = Player::new(10, Content::Still, t0);
        let idx: Vec<usize> = run(&mut p, &m, 6).iter().map(|o| o.0).collect();
        assert_eq!(idx, vec![0, 1, 0, 1, 0, 1]);
    }
}
