//! The camera farm process and the bare client: `camera-farm` on a free port (its counter
//! log line tells how many sessions it serves), and the `farm_load` example (bare retina
//! sessions, no decode) whose stdout says when all sessions are open and how many frames
//! arrived.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gridsight_sim::broker::free_port;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

use crate::procs::Proc;

/// A running farm.
pub struct Farm {
    pub proc: Proc,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Farm {
    /// Starts `camera-farm` with `mounts` mounts (and the flap cycle `flap`, `UP:DOWN`, armed
    /// for [`Farm::signal_flap`]) and waits (up to 5 minutes: the first run encodes its
    /// clips) until it accepts connections.
    pub async fn start(
        bin: &Path,
        mounts: usize,
        fps: u32,
        content: &str,
        flap: Option<&str>,
        dir: &Path,
    ) -> Result<Farm> {
        let port = free_port()?;
        let log = dir.join("farm.log");
        let mut args = vec![
            "--mounts".to_string(),
            mounts.to_string(),
            "--fps".into(),
            fps.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--content".into(),
            content.into(),
            "--stats-every".into(),
            "5".into(),
        ];
        if let Some(f) = flap {
            args.extend(["--flap".into(), f.to_string()]);
        }
        let mut proc = Proc::spawn("camera-farm", bin, args, &log, false)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            proc.check_alive()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Farm { proc, port, log });
            }
            if Instant::now() >= deadline {
                bail!(
                    "camera-farm does not listen after 5 minutes:\n{}",
                    proc.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the flapping, or stops it (every mount healthy again): SIGUSR1.
    pub fn signal_flap(&mut self) -> Result<()> {
        self.proc.check_alive()?;
        let pid = i32::try_from(self.proc.pid()).context("pid out of range")?;
        // SAFETY: kill(2) with a pid of our own live child and a valid signal number.
        if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
            bail!(
                "SIGUSR1 to camera-farm: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Sessions and frames sent, from the farm's latest counters line (every 5 s).
    pub fn counters(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = strip_ansi(text.lines().rev().find(|l| l.contains("counters"))?);
        let field = |k: &str| -> Option<u64> {
            let at = line.find(&format!("{k}="))? + k.len() + 1;
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        Some((field("active")?, field("frames")?))
    }
}

/// The text without ANSI escape sequences (tracing colours its fields).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running bare client.
pub struct BareClient {
    pub proc: Proc,
    lines: Lines<BufReader<ChildStdout>>,
}

impl BareClient {
    /// Starts `farm_load` with `sessions` sessions on mounts 1..=sessions, measuring for
    /// `secs` once they are open.
    pub fn start(
        bin: &Path,
        port: u16,
        sessions: usize,
        secs: f64,
        dir: &Path,
    ) -> Result<BareClient> {
        let log = dir.join(format!("bare-{sessions}.log"));
        let args = [
            "--base".to_string(),
            format!("rtsp://127.0.0.1:{port}"),
            "--sessions".into(),
            sessions.to_string(),
            "--mounts".into(),
            sessions.to_string(),
            "--batch".into(),
            "20".into(),
            "--secs".into(),
            (secs.ceil() as u64).to_string(),
        ];
        let mut proc = Proc::spawn("farm_load", bin, args, &log, true)?;
        let out = proc.take_stdout().context("farm_load stdout")?;
        Ok(BareClient {
            proc,
            lines: BufReader::new(out).lines(),
        })
    }

    /// Waits for the stdout line containing `prefix` (within `limit`).
    pub async fn wait_line(&mut self, prefix: &str, limit: Duration) -> Result<String> {
        let work = async {
            while let Some(line) = self.lines.next_line().await? {
                if line.contains(prefix) {
                    return Ok(line);
                }
            }
            bail!("farm_load ended without a {prefix:?} line")
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r.with_context(|| format!("farm_load log:\n{}", self.proc.log_tail(10))),
            Err(_) => bail!(
                "no {prefix:?} line from farm_load within {limit:?}; log:\n{}",
                self.proc.log_tail(10)
            ),
        }
    }
}

/// Frames/s and errors of farm_load's result line
/// (`N frames in T s = R frames/s (P per session per s), E errors`).
pub fn parse_result(line: &str) -> (f64, u64) {
    let rate = line
        .split_once(" = ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let errors = line
        .rsplit_once(", ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (rate, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_farm_load_and_counters() {
        let (r, e) = parse_result(
            "900000 frames in 62.0 s = 14516 frames/s (7.26 per session per s), 3 errors",
        );
        assert_eq!((r, e), (14516.0, 3));
        assert_eq!(
            strip_ansi("\u{1b}[3mactive\u{1b}[0m\u{1b}[2m=\u{1b}[0m2000"),
            "active=2000"
        );
    }
}
