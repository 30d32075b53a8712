//! CPU and memory of processes from `/proc`: CPU is utime + stime (`/proc/PID/stat`) over a
//! window, in % of one core; memory is the largest sum of `VmRSS` (`/proc/PID/status`) and
//! of `Pss` (`/proc/PID/smaps_rollup`, shared pages split between the processes that map
//! them) seen by the samples of the window. The whole machine's busy time
//! (`/proc/stat`) is recorded too, to show how noisy the window was.

use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did the process exit?)"))?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the
    // last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after the ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {} of /proc/{pid}/stat", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// A `Key:   1234 kB` line of a `/proc` file, in KiB.
fn kib_field(path: &str, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in {path}"))
}

/// Resident set size of a process, KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of a process, KiB (0 where smaps_rollup is not readable).
pub fn pss_kib(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:").unwrap_or(0)
}

/// Busy and total jiffies of the whole machine (all cores) from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Usage of a group of processes over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU of the group, % of one core.
    pub cpu_pct: f64,
    /// Largest summed RSS seen, MiB.
    pub rss_mib: f64,
    /// Largest summed PSS seen, MiB.
    pub pss_mib: f64,
    /// Length of the window, seconds.
    pub secs: f64,
    /// The whole machine's busy time over the window, % of one core (200 = both cores).
    pub machine_busy_pct: f64,
    /// 1-minute load average at the end of the window.
    pub loadavg: f64,
}

/// An open measurement window over a group of processes.
pub struct Window {
    pids: Vec<u32>,
    ticks0: u64,
    machine0: (u64, u64),
    t0: Instant,
    max_rss_kib: u64,
    max_pss_kib: u64,
    pss: bool,
}

impl Window {
    /// Starts a window now. `pss`: also sample PSS (costs a page-table walk per process).
    pub fn start(pids: &[u32], pss: bool) -> Result<Window> {
        let mut ticks0 = 0;
        for &pid in pids {
            ticks0 += cpu_ticks(pid)?;
        }
        let mut w = Window {
            pids: pids.to_vec(),
            ticks0,
            machine0: machine_jiffies(),
            t0: Instant::now(),
            max_rss_kib: 0,
            max_pss_kib: 0,
            pss,
        };
        w.sample()?;
        Ok(w)
    }

    /// Records the group's memory now; fails if a process has exited.
    pub fn sample(&mut self) -> Result<()> {
        let mut rss = 0;
        let mut pss = 0;
        for &pid in &self.pids {
            rss += rss_kib(pid)?;
            if self.pss {
                pss += pss_kib(pid);
            }
        }
        self.max_rss_kib = self.max_rss_kib.max(rss);
        self.max_pss_kib = self.max_pss_kib.max(pss);
        Ok(())
    }

    /// Ends the window (taking a last memory sample).
    pub fn finish(mut self) -> Result<Usage> {
        self.sample()?;
        let mut ticks = 0;
        for &pid in &self.pids {
            ticks += cpu_ticks(pid)?;
        }
        let secs = self.t0.elapsed().as_secs_f64();
        if secs <= 0.0 {
            bail!("empty measurement window");
        }
        let (busy1, total1) = machine_jiffies();
        let (busy0, total0) = self.machine0;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine_busy_pct = if total1 > total0 {
            (busy1 - busy0) as f64 / (total1 - total0) as f64 * 100.0 * cores
        } else {
            0.0
        };
        Ok(Usage {
            cpu_pct: (ticks - self.ticks0) as f64 / clock_ticks() / secs * 100.0,
            rss_mib: self.max_rss_kib as f64 / 1024.0,
            pss_mib: self.max_pss_kib as f64 / 1024.0,
            secs,
            machine_busy_pct,
            loadavg: loadavg(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        cpu_ticks(me).unwrap();
        let w = Window::start(&[me], true).unwrap();
        let u = w.finish().unwrap();
        assert!(u.rss_mib > 0.0 && u.pss_mib > 0.0);
    }
}
