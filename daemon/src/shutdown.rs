//! The one root shutdown: the first SIGTERM (or SIGINT) cancels the root token, so every
//! stage drains; a second one exits the process at once.

use tokio_util::sync::CancellationToken;

/// Exit code of a forced exit on the second signal.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Watches SIGTERM and SIGINT: cancels `root` on the first, exits on the second.
pub fn watch_signals(root: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let got = tokio::select! {
                v = term.recv() => v.is_some(),
                v = int.recv() => v.is_some(),
            };
            if !got {
                return;
            }
            if first {
                tracing::info!("signal received: draining (send it again to exit now)");
                root.cancel();
                first = false;
            } else {
                tracing::warn!("second signal: exiting now");
                std::process::exit(FORCED_EXIT_CODE);
            }
        }
    });
    Ok(())
}
