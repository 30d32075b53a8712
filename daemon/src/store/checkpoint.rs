//! WAL checkpoints on their own thread and connection.
//!
//! The writer connection runs with `wal_autocheckpoint = 0`, so a commit never pays for
//! copying the WAL back into the database (that stall was the tail of the commit latency).
//! This thread runs a PASSIVE checkpoint (it never blocks the writer or readers) every
//! [`INTERVAL`], and a TRUNCATE checkpoint when the store closes.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::Connection;

/// Time between two checkpoints.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// The running checkpoint thread.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Runs a last, truncating checkpoint and ends the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Starts the checkpoint thread on the database at `path`.
pub fn spawn(path: PathBuf) -> std::io::Result<Checkpointer> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || run(&path, &flag))?;
    Ok(Checkpointer { stop, thread })
}

fn run(path: &PathBuf, stop: &AtomicBool) {
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpoint connection failed; the WAL will grow until restart");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(INTERVAL);
        let mode = if stop.load(Ordering::Acquire) {
            "TRUNCATE"
        } else {
            "PASSIVE"
        };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, mode, "WAL checkpoint failed");
        }
    }
}
