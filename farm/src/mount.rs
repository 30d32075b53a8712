//! Mounts: their configuration, the faults they can inject, their content schedule and their
//! counters.
//!
//! A mount's content and fault live in a `tokio::sync::watch` channel, so the handle can
//! change them at runtime and every session of that mount sees the change at its next
//! frame or request (see [`Fault`] for what each fault does to new and running sessions).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::clip::{Clip, Content};

/// Seconds of media a session plays before [`Fault::TimestampJump`] jumps.
pub const TIMESTAMP_JUMP_AFTER: Duration = Duration::from_secs(1);
/// How far forward [`Fault::TimestampJump`] moves the RTP timestamp.
pub const TIMESTAMP_JUMP_BY: Duration = Duration::from_secs(3600);

/// A fault a mount injects. One at a time per mount; [`Fault::None`] is a healthy camera.
///
/// Set with [`crate::FarmHandle::set_fault`]; sessions already running pick it up at their
/// next frame or request. Durations count from when the session started playing (or from
/// when the connection was accepted, for [`Fault::DisconnectLoop`]) or from when the fault
/// was set, whichever is later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Healthy.
    #[default]
    None,
    /// The connection is accepted and closed without an answer as soon as the first request
    /// names this mount (the closest a shared listener gets to "connection refused").
    /// Setting it closes running sessions too.
    Refuse,
    /// RTSP Digest authentication (MD5, no `qop` offered, `qop=auth` accepted) on DESCRIBE,
    /// SETUP, PLAY and TEARDOWN: right credentials work, anything else gets `401` with a
    /// fresh challenge. Running sessions are not affected.
    Auth {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// DESCRIBE is read and never answered; the connection stays open.
    HangDescribe,
    /// Media stops after this long but the TCP connection stays open and RTSP requests
    /// (keepalives) are still answered. Clearing the fault resumes at a keyframe.
    StallAfter(Duration),
    /// Interleaved RTP frames carry random bytes (with the RTP version bits forced to 0,
    /// so no byte string can pass for RTP) instead of packets, at the mount's frame rate.
    GarbageRtp,
    /// The server drops the connection this long after accepting it, every time.
    DisconnectLoop(Duration),
    /// After [`TIMESTAMP_JUMP_AFTER`] of media the RTP timestamp jumps forward by
    /// [`TIMESTAMP_JUMP_BY`] once, then advances normally from there.
    TimestampJump,
    /// The stream stays alive but carries no change: at the mount's frame rate the session
    /// sends the same access unit again and again (the smallest P-frame of the `still`
    /// clip) and the RTP timestamp stops advancing. No keyframes while frozen (a session that starts frozen gets one keyframe
    /// first, so its decoder has a picture to hold). Clearing the fault resumes at a keyframe with
    /// the timestamp back on the wall clock.
    Freeze,
}

/// What a mount shows over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentSchedule {
    /// Always the same content.
    Fixed(Content),
    /// Activity bursts: `still` for the first duration, then `busy` for the second,
    /// repeating, counted from when the schedule was set (the same phase for every session
    /// of the mount). A switch restarts the new clip at its keyframe.
    Alternate {
        /// Time showing still content in each cycle.
        still: Duration,
        /// Time showing busy content in each cycle.
        busy: Duration,
    },
}

impl ContentSchedule {
    /// The content at `elapsed` since the schedule was set.
    pub fn content_at(&self, elapsed: Duration) -> Content {
        match *self {
            ContentSchedule::Fixed(c) => c,
            ContentSchedule::Alternate { still, busy } => {
                let cycle = (still + busy).as_nanos();
                if cycle == 0 || elapsed.as_nanos() % cycle < still.as_nanos() {
                    Content::Still
                } else {
                    Content::Busy
                }
            }
        }
    }
}

impl From<Content> for ContentSchedule {
    fn from(c: Content) -> Self {
        ContentSchedule::Fixed(c)
    }
}

/// Configuration of one mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountConfig {
    /// Path segment of the URL: `rtsp://host:port/<name>`. ASCII letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Frames per second (1..=120).
    pub fps: u32,
    /// What the mount shows.
    pub content: ContentSchedule,
    /// The fault it injects.
    pub fault: Fault,
}

impl MountConfig {
    /// A healthy mount showing still content.
    pub fn new(name: impl Into<String>, fps: u32) -> Self {
        MountConfig {
            name: name.into(),
            fps,
            content: ContentSchedule::Fixed(Content::Still),
            fault: Fault::None,
        }
    }

    /// Sets the content schedule.
    pub fn with_content(mut self, content: impl Into<ContentSchedule>) -> Self {
        self.content = content.into();
        self
    }

    /// Sets the fault.
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.name.is_empty() || self.name.len() > 128 || !self.name.chars().all(ok_char) {
            return Err(format!("bad mount name {:?}", self.name));
        }
        if !(1..=120).contains(&self.fps) {
            return Err(format!(
                "mount {}: fps {} not in 1..=120",
                self.name, self.fps
            ));
        }
        Ok(())
    }
}

/// Counters of one mount, as seen by [`crate::FarmHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountStats {
    /// Connections whose first request named this mount.
    pub connections: u64,
    /// Sessions that reached PLAY.
    pub sessions_opened: u64,
    /// Sessions playing right now.
    pub active_sessions: i64,
    /// Valid access units sent (frozen repeats included, garbage not).
    pub frames_sent: u64,
    /// Interleaved garbage frames sent under [`Fault::GarbageRtp`].
    pub garbage_sent: u64,
    /// Bytes written to sockets for media (interleaved headers included).
    pub media_bytes: u64,
    /// Requests answered `401`.
    pub auth_failures: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub active_sessions: AtomicI64,
    pub frames_sent: AtomicU64,
    pub garbage_sent: AtomicU64,
    pub media_bytes: AtomicU64,
    pub auth_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> MountStats {
        let r = Ordering::Relaxed;
        MountStats {
            connections: self.connections.load(r),
            sessions_opened: self.sessions_opened.load(r),
            active_sessions: self.active_sessions.load(r),
            frames_sent: self.frames_sent.load(r),
            garbage_sent: self.garbage_sent.load(r),
            media_bytes: self.media_bytes.load(r),
            auth_failures: self.auth_failures.load(r),
        }
    }
}

/// What sessions watch: the mount's current content and fault.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub content: ContentSchedule,
    /// When `content` was set (the schedule's phase origin).
    pub content_since: Instant,
    pub fault: Fault,
    /// When `fault` was set.
    pub fault_since: Instant,
}

/// A mount at runtime.
#[derive(Debug)]
pub(crate) struct MountState {
    pub name: String,
    pub fps: u32,
    pub still: Arc<Clip>,
    pub busy: Arc<Clip>,
    pub settings: watch::Sender<Settings>,
    pub counters: Counters,
}

impl MountState {
    pub(crate) fn new(cfg: &MountConfig, still: Arc<Clip>, busy: Arc<Clip>) -> Self {
        let now = Instant::now();
        MountState {
            name: cfg.name.clone(),
            fps: cfg.fps,
            still,
            busy,
            settings: watch::Sender::new(Settings {
                content: cfg.content,
                content_since: now,
                fault: cfg.fault.clone(),
                fault_since: now,
            }),
            counters: Counters::default(),
        }
    }

    pub(crate) fn clip(&self, content: Content) -> &Arc<Clip> {
        match content {
            Content::Still => &self.still,
            Content::Busy => &self.busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_schedule() {
        let s = ContentSchedule::Alternate {
            still: Duration::from_secs(2),
            busy: Duration::from_secs(1),
        };
        assert_eq!(s.content_at(Duration::ZERO), Content::Still);
        assert_eq!(s.content_at(Duration::from_millis(1999)), Content::Still);
        assert_eq!(s.content_at(Duration::from_millis(2000)), Content::Busy);
        assert_eq!(s.content_at(Duration::from_millis(3000)), Content::Still);
    }

    #[test]
    fn validates_names_and_fps() {
        assert!(MountConfig::new("cam0001", 15).validate().is_ok());
        assert!(MountConfig::new("cam/1", 15).validate().is_err());
        assert!(MountConfig::new("", 15).validate().is_err());
        assert!(MountConfig::new("cam", 0).validate().is_err());
    }
}
