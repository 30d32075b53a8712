//! Camera reload on SIGHUP: re-reads the config file, and when it is valid, makes the
//! running cameras match its `[[cameras]]` (started, stopped, restarted when changed; the
//! others untouched) and tells the correlator who covers which grid now. An invalid file
//! is logged with every error and changes nothing.

use std::{path::PathBuf, sync::Arc};

use tokio_util::sync::CancellationToken;

use super::{camera_rules, Supervisor};
use crate::correlate::Router;

/// Runs until `cancel`, then hands the supervisor back for its shutdown.
pub async fn reload_loop(
    mut supervisor: Supervisor,
    path: Option<PathBuf>,
    router: Router,
    cancel: CancellationToken,
) -> Supervisor {
    let Some(path) = path else {
        cancel.cancelled().await;
        return supervisor;
    };
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: camera reload disabled");
            cancel.cancelled().await;
            return supervisor;
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return supervisor,
            got = hup.recv() => if got.is_none() { cancel.cancelled().await; return supervisor; },
        }
        crate::systemd::reloading();
        let cfg = match crate::config::load(&path) {
            Ok(cfg) => cfg,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: config not reloaded");
                crate::systemd::reloaded("reload refused: invalid config (see the log)");
                continue;
            }
        };
        if router
            .set_cameras(camera_rules(&cfg.video, &cfg.cameras))
            .await
            .is_err()
        {
            return supervisor;
        }
        let rules = Arc::new(crate::correlate::rules::RuleSet::new(&cfg.rules));
        if router.set_rules(rules).await.is_err() {
            return supervisor;
        }
        tracing::info!(rules = cfg.rules.len(), "SIGHUP: rules reloaded");
        let (started, stopped) = supervisor.reconcile(&cfg.cameras).await;
        tracing::info!(
            cameras = cfg.cameras.len(),
            started,
            stopped,
            "SIGHUP: cameras reloaded"
        );
        crate::systemd::reloaded(&format!(
            "reloaded: {} cameras, {} rules",
            cfg.cameras.len(),
            cfg.rules.len()
        ));
    }
}
