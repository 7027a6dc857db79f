//! Keeping the lake small and bounded while the pipeline runs: compaction (Delta OPTIMIZE, then VACUUM)
//! merges small files, retention (Delta DELETE) drops rows older than `retention.days` and audit
//! entries older than `retention.audit_days`. Both run beside the ETL driver, one pass at a time, and
//! never change what a query sees except by the rows retention is configured to drop.

pub mod compaction;
pub mod retention;

use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::lake::DataLocation;

use crate::config::{CompactionConfig, RetentionConfig};
use crate::maintenance::compaction::{CompactionReport, compact_once};

/// Runs compaction and retention every `compaction.interval_seconds` until `shutdown`; a failed pass is
/// logged and the next one starts from what the store holds.
pub async fn run(
    location: DataLocation,
    compaction: CompactionConfig,
    retention: RetentionConfig,
    shutdown: CancellationToken,
) {
    let interval = std::time::Duration::from_secs(compaction.interval_seconds);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        if compaction.enabled {
            match compact_once(&location, &compaction).await {
                Ok(report) if report != CompactionReport::default() => tracing::info!(?report, "Compaction pass."),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "Compaction pass failed; the next pass retries."),
            }
        }
        if retention.days > 0 || retention.audit_days > 0 {
            match retention::expire_once(&location, &retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(
                    deleted,
                    days = retention.days,
                    audit_days = retention.audit_days,
                    "Retention pass deleted old rows."
                ),
                Err(error) => tracing::warn!(error = %error, "Retention pass failed; the next pass retries."),
            }
        }
    }
}
