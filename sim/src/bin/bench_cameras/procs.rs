//! Child processes of the bench (camera farm, bare client, daemon, ffmpeg): spawned with
//! their output in a log file, killed (SIGKILL) when dropped so that every error path and
//! Ctrl-C cleans up, or stopped gracefully with SIGTERM.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use gridsight_sim::broker::tail;
use tokio::process::{Child, ChildStdout, Command};

/// A running child process, killed on drop.
pub struct Proc {
    /// What it is, for messages ("camera-farm", "ffmpeg cam0007"...).
    pub name: String,
    child: Child,
    log: PathBuf,
    pid: u32,
}

impl Proc {
    /// Spawns `bin args...` with stderr (and stdout unless `pipe_stdout`) appended to `log`.
    pub fn spawn<I, S>(
        name: &str,
        bin: &Path,
        args: I,
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(out.try_clone()?)
        };
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({})", bin.display()))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            pid,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its piped stdout (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Fails (with the log tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// Waits up to `limit` for the process to exit by itself; kills it after that.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<()> {
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; kills it after that (not an
    /// error: the bench is done with it).
    pub async fn terminate(mut self, limit: Duration) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            tracing::warn!(pid = self.pid, name = %self.name, "kill -TERM failed");
        }
        if tokio::time::timeout(limit, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(name = %self.name, "no exit within {limit:?} of SIGTERM: killed");
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// Stops many processes: one SIGTERM to all, then waits for each (killing stragglers).
pub async fn terminate_all(mut procs: Vec<Proc>, limit: Duration) -> Result<()> {
    if procs.is_empty() {
        return Ok(());
    }
    let mut kill = Command::new("kill");
    kill.arg("-TERM");
    for p in &procs {
        kill.arg(p.pid.to_string());
    }
    // Some may have exited already: kill's status is not an error.
    let _ = kill.status().await.context("running kill -TERM")?;
    let deadline = tokio::time::Instant::now() + limit;
    for p in &mut procs {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        p.wait_exit(left).await?;
    }
    Ok(())
}
