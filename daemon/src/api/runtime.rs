//! Where the APIs run: gRPC, HTTP, the WebSockets, the alert fan-out and every
//! subscription's task. With `api.nice` above 0 they get a runtime of their own whose
//! threads run at that niceness, so that when the cores are short the kernel gives them
//! to ingest, correlation and the store first: 1,000 subscribers cost the daemon about a
//! quarter more CPU (mostly one TCP send per change per subscriber), and without this the
//! sensors' backlog would drain that much slower. The subscribers get their changes a
//! little later instead, never fewer (a feed that fills up catches up from the change log).
//! With `api.nice = 0` the APIs run on the daemon's own runtime, as equals.
//!
//! Invariants: the runtime outlives every task spawned on it (the daemon joins them before
//! dropping it); dropping it never blocks (`shutdown_background`), so it may be dropped in
//! async code. Niceness is per thread on Linux (`setpriority(PRIO_PROCESS, tid)`), and a
//! thread the runtime starts later (a blocking-pool thread for a store read) gets it too.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::{Handle, Runtime};

/// The APIs' runtime: a handle to spawn on, and the runtime itself when it is their own.
pub struct ApiRuntime {
    handle: Handle,
    own: Option<Runtime>,
}

/// Whether a thread already failed to lower its priority (logged once).
static NICE_FAILED: AtomicBool = AtomicBool::new(false);

impl ApiRuntime {
    /// A runtime of threads at `nice` (1–19), or the current one when `nice` is 0. Must
    /// be called within a runtime.
    pub fn start(nice: u8) -> std::io::Result<ApiRuntime> {
        if nice == 0 {
            return Ok(ApiRuntime {
                handle: Handle::current(),
                own: None,
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("gridsight-api")
            .on_thread_start(move || set_nice(nice))
            .build()?;
        Ok(ApiRuntime {
            handle: rt.handle().clone(),
            own: Some(rt),
        })
    }

    /// Where API tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Whether the APIs have threads of their own.
    #[cfg(test)]
    fn is_own(&self) -> bool {
        self.own.is_some()
    }

    /// Moves `listener` to this runtime's reactor, so that its connections are served by
    /// this runtime's threads alone.
    pub fn adopt(
        &self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<tokio::net::TcpListener> {
        if self.own.is_none() {
            return Ok(listener);
        }
        let std = listener.into_std()?;
        let _in = self.handle.enter();
        tokio::net::TcpListener::from_std(std)
    }
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority to `nice` (a failure is logged once: the thread
/// then runs at the daemon's priority, which is only slower for ingest under load).
fn set_nice(nice: u8) {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
    let res = unsafe {
        let tid = libc::gettid();
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            libc::c_int::from(nice),
        )
    };
    if res != 0 && !NICE_FAILED.swap(true, Ordering::Relaxed) {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the API threads' priority (api.nice): they run at the daemon's");
    }
}

/// The niceness of the calling thread.
#[cfg(test)]
fn current_nice() -> i32 {
    // SAFETY: as in `set_nice`.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn api_tasks_run_on_threads_of_the_configured_niceness() {
        let base = current_nice();
        let api = ApiRuntime::start(7).unwrap();
        assert!(api.is_own());
        let on_api = api.handle().spawn(async { current_nice() }).await.unwrap();
        assert_eq!(on_api, (base + 7).min(19), "a worker thread");
        let blocking = api.handle().spawn_blocking(current_nice).await.unwrap();
        assert_eq!(blocking, (base + 7).min(19), "a blocking-pool thread");
        assert_eq!(current_nice(), base, "the daemon's own threads keep theirs");
        // Dropped in async code without blocking or panicking.
        drop(api);
    }

    #[tokio::test]
    async fn nice_zero_is_the_daemons_own_runtime() {
        let api = ApiRuntime::start(0).unwrap();
        assert!(!api.is_own());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = api.adopt(listener).unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn an_adopted_listener_accepts_on_the_api_threads() {
        let api = ApiRuntime::start(3).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = api.adopt(listener).unwrap();
        let accepted = api.handle().spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            std::thread::current().name().map(str::to_string)
        });
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(accepted.await.unwrap().as_deref(), Some("gridsight-api"));
    }
}
