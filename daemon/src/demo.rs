//! `gridsight demo`: a built-in city (being written).

use tokio_util::sync::CancellationToken;

/// Demo options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Demo errors.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {}

/// Runs the demo.
pub async fn run(_args: DemoArgs, _cancel: CancellationToken) -> Result<(), DemoError> {
    Ok(())
}
