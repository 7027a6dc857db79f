//! What every long-running command does around its service: load the model, open the data location,
//! turn SIGINT/SIGTERM into a shutdown token and write the ready file. Used by `commands`, `up` and the
//! benchmarks; it imports none of them.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;

use crate::config::VitalflowConfig;

/// The configured model, or the one compiled into the binary.
pub fn load_model(config: &VitalflowConfig) -> anyhow::Result<Arc<RiskForest>> {
    let forest = if config.model.path.is_empty() {
        RiskForest::bundled().context("loading the bundled model")?
    } else {
        // The error names the file and what is wrong with it.
        RiskForest::load(Path::new(&config.model.path))?
    };
    Ok(Arc::new(forest))
}

/// The configured data location (`storage.data_url`), opened.
pub fn open_data(config: &VitalflowConfig) -> anyhow::Result<DataLocation> {
    DataLocation::open_with_options(&config.storage.data_url, &config.storage.options)
        .context("opening the data location")
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(error = %error, "Cannot listen for SIGTERM; Ctrl-C only.");
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("Shutting down.");
        cancel.cancel();
    });
    token
}

/// Writes `value` as JSON to `path` atomically (a reader never sees half a file).
pub fn write_ready_file(path: Option<&Path>, value: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(value)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs a binary's main future on the runtime every vitalflow binary uses and turns its result into the
/// exit code (`name: error` on stderr when it failed).
pub fn block_on(name: &str, main: impl std::future::Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    // DataFusion's planner and plan (de)serialization recurse per node and expression; the ETL's
    // plan needs more than tokio's 2 MiB worker stacks (debug builds overflow them).
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(16 * 1024 * 1024).build() {
            Ok(rt) => rt,
            Err(error) => {
                eprintln!("{name}: cannot start the async runtime: {error}");
                return std::process::ExitCode::FAILURE;
            }
        };
    let result = runtime.block_on(main);
    // A blocking call still inside a client library (a Kafka poll) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
