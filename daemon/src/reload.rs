//! Reload on SIGHUP: re-reads the config file (and its token file), and when it is valid,
//! swaps the credentials (tokens and client certificates: a rotated token works for the
//! next call, a removed one no longer does), re-reads the TLS certificate and key (a
//! renewed certificate is served to new connections), sets the new rules, makes the
//! running cameras match its `[[cameras]]` (started, stopped, restarted when changed; the
//! others untouched) and tells the correlator who covers which grid now. An invalid file
//! is logged with every error, counted (`gridsight_config_reloads_total{reason="invalid"}`)
//! and changes nothing. Listen addresses, the store and the broker are read at start only.

use std::{path::PathBuf, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{
    api::auth::Auth,
    correlate::Router,
    sources::rtsp::{camera_rules, Supervisor},
    telemetry::{Metrics, ReasonLabel},
    tls::ServerTls,
};

/// What a reload changes besides cameras and rules.
pub struct Reloadable {
    /// The credentials.
    pub auth: Auth,
    /// The APIs' certificates (when TLS is on).
    pub tls: Option<Arc<ServerTls>>,
    /// Counts reloads.
    pub metrics: Arc<Metrics>,
}

fn count(metrics: &Metrics, reason: &str) {
    metrics
        .config_reloads
        .get_or_create(&ReasonLabel {
            reason: reason.to_string(),
        })
        .inc();
}

/// Runs until `cancel`, then hands the supervisor back for its shutdown.
pub async fn reload_loop(
    mut supervisor: Supervisor,
    path: Option<PathBuf>,
    router: Router,
    reloadable: Reloadable,
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
                count(&reloadable.metrics, "invalid");
                crate::systemd::reloaded("reload refused: invalid config (see the log)");
                continue;
            }
        };
        if let (Some(tls), Some(tls_cfg)) = (&reloadable.tls, &cfg.api.tls) {
            if let Err(e) = tls.reload(tls_cfg) {
                tracing::error!(error = %e, "SIGHUP: config not reloaded (TLS)");
                count(&reloadable.metrics, "invalid");
                crate::systemd::reloaded("reload refused: TLS certificate (see the log)");
                continue;
            }
        }
        reloadable.auth.reload(&cfg.tokens, &cfg.client_certs);
        tracing::info!(
            tokens = cfg.tokens.len(),
            client_certs = cfg.client_certs.len(),
            "SIGHUP: credentials reloaded"
        );
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
        count(&reloadable.metrics, "ok");
        crate::systemd::reloaded(&format!(
            "reloaded: {} cameras, {} rules",
            cfg.cameras.len(),
            cfg.rules.len()
        ));
    }
}
