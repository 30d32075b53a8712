//! Flapping cameras, for soak runs: every mount alternates `up` healthy and `down` faulty,
//! each with its own phase (spread evenly over one cycle), so that at any moment about
//! `down / (up + down)` of the mounts are down and the drops come one by one, as on a real
//! street network, not all at once.
//!
//! A down mount does one of two things, so that both ways a camera fails are exercised:
//! even-numbered mounts refuse (their running sessions close; new connections are closed
//! unanswered), odd-numbered mounts accept and drop every connection [`DROP_AFTER`] after
//! accepting it (a session plays for a moment, then breaks, again and again).
//!
//! Invariant: [`Flapper::stop`] leaves every mount it touched healthy ([`Fault::None`]).

use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::mount::Fault;
use crate::server::FarmHandle;

/// How long an odd-numbered down mount lets a connection live.
pub const DROP_AFTER: Duration = Duration::from_secs(1);

/// The flap cycle of every mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flap {
    /// Time healthy in each cycle.
    pub up: Duration,
    /// Time faulty in each cycle.
    pub down: Duration,
}

impl FromStr for Flap {
    type Err = String;

    /// `UP:DOWN` in seconds, e.g. `20:10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("flap {s:?} is not UP:DOWN in seconds (e.g. 20:10)");
        let (up, down) = s.split_once(':').ok_or_else(bad)?;
        let secs = |v: &str| -> Result<Duration, String> {
            let x: f64 = v.trim().parse().map_err(|_| bad())?;
            if !(x.is_finite() && x > 0.0 && x < 86_400.0) {
                return Err(format!("flap {s:?}: each part must be > 0 and < 1 day"));
            }
            Ok(Duration::from_secs_f64(x))
        };
        Ok(Flap {
            up: secs(up)?,
            down: secs(down)?,
        })
    }
}

impl Flap {
    /// Whether mount number `index` (0-based) of `count` is down `elapsed` after flapping
    /// started. Mount `index` is shifted by `index / count` of a cycle.
    pub fn is_down(&self, index: usize, count: usize, elapsed: Duration) -> bool {
        let period = (self.up + self.down).as_nanos();
        let offset = period * index as u128 / count.max(1) as u128;
        (elapsed.as_nanos() + offset) % period >= self.up.as_nanos()
    }

    /// The fault of mount number `index` while it is down.
    pub fn down_fault(index: usize) -> Fault {
        if index.is_multiple_of(2) {
            Fault::Refuse
        } else {
            Fault::DisconnectLoop(DROP_AFTER)
        }
    }
}

/// Drives one farm's mounts through their flap cycles.
#[derive(Debug)]
pub struct Flapper {
    flap: Flap,
    mounts: Vec<String>,
    down: Vec<bool>,
    started: Instant,
    /// Up→down transitions so far.
    pub drops: u64,
}

impl Flapper {
    /// Starts flapping `mounts` (in this order: the index sets phase and kind) now.
    pub fn new(flap: Flap, mounts: Vec<String>) -> Self {
        let down = vec![false; mounts.len()];
        Flapper {
            flap,
            mounts,
            down,
            started: Instant::now(),
            drops: 0,
        }
    }

    /// Applies the schedule at `now`: sets the fault of every mount whose state changed.
    /// Call a few times a second.
    pub fn tick(&mut self, farm: &FarmHandle, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        let n = self.mounts.len();
        for (i, name) in self.mounts.iter().enumerate() {
            let down = self.flap.is_down(i, n, elapsed);
            if down == self.down[i] {
                continue;
            }
            let fault = if down {
                self.drops += 1;
                Flap::down_fault(i)
            } else {
                Fault::None
            };
            // The names came from the farm itself: a miss is a bug in the caller.
            if let Err(e) = farm.set_fault(name, fault) {
                tracing::warn!(error = %e, "flap: cannot set the fault");
            }
            self.down[i] = down;
        }
    }

    /// Ends flapping: every mount that is down becomes healthy.
    pub fn stop(self, farm: &FarmHandle) {
        for (name, down) in self.mounts.iter().zip(self.down) {
            if down {
                if let Err(e) = farm.set_fault(name, Fault::None) {
                    tracing::warn!(error = %e, "flap: cannot clear the fault");
                }
            }
        }
    }

    /// Mounts down right now.
    pub fn down_now(&self) -> usize {
        self.down.iter().filter(|d| **d).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn parses_up_down() {
        let f: Flap = "20:10".parse().unwrap();
        assert_eq!((f.up, f.down), (secs(20.0), secs(10.0)));
        let f: Flap = "0.5:1.5".parse().unwrap();
        assert_eq!((f.up, f.down), (secs(0.5), secs(1.5)));
        for bad in ["20", "a:1", "0:10", "10:-1", "1:inf", ""] {
            let e = bad.parse::<Flap>().unwrap_err();
            assert!(e.contains("flap"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_mount_follows_its_cycle() {
        let f: Flap = "20:10".parse().unwrap();
        assert!(!f.is_down(0, 1, secs(0.0)));
        assert!(!f.is_down(0, 1, secs(19.9)));
        assert!(f.is_down(0, 1, secs(20.0)));
        assert!(f.is_down(0, 1, secs(29.9)));
        assert!(!f.is_down(0, 1, secs(30.0)));
        assert!(f.is_down(0, 1, secs(50.0)));
    }

    #[test]
    fn phases_spread_the_drops() {
        // 300 mounts, 20 s up / 10 s down: about a third are down at any moment, and
        // every mount goes down exactly once per cycle.
        let f: Flap = "20:10".parse().unwrap();
        let n = 300;
        for t in [0.0, 3.3, 12.0, 29.0, 61.7] {
            let down = (0..n).filter(|&i| f.is_down(i, n, secs(t))).count();
            assert!((95..=105).contains(&down), "{down} down at {t} s");
        }
        for i in [0, 1, 150, 299] {
            let mut transitions = 0;
            let mut was = f.is_down(i, n, secs(0.0));
            for step in 1..=300 {
                let now = f.is_down(i, n, secs(step as f64 * 0.1));
                if now && !was {
                    transitions += 1;
                }
                was = now;
            }
            assert!(
                transitions <= 1,
                "mount {i}: {transitions} drops in one cycle"
            );
        }
        assert_eq!(Flap::down_fault(0), Fault::Refuse);
        assert_eq!(Flap::down_fault(1), Fault::DisconnectLoop(DROP_AFTER));
    }
}
