//! Delta Lake's table operations vitalflow's maintenance runs: OPTIMIZE (compaction), VACUUM (deleting
//! files no snapshot within the retention needs), DELETE (retention by time) and the clean-up of expired
//! log entries. Each is one commit, or none, through delta-rs.

use std::num::NonZeroU64;
use std::time::Duration;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit};
use deltalake_core::operations::vacuum::VacuumMode;

use crate::lake::error::{LakeError, Result};
use crate::lake::table::LakeTable;

/// What OPTIMIZE did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optimized {
    /// Files written.
    pub added: usize,
    /// Files they replace.
    pub removed: usize,
}

impl LakeTable {
    /// Merges small files into files of about `target_bytes` (Delta OPTIMIZE, bin-packing); the
    /// commit adds and removes without changing data, so readers of changes skip it.
    pub async fn optimize(&mut self, target_bytes: u64) -> Result<Optimized> {
        let target = NonZeroU64::new(target_bytes).unwrap_or(NonZeroU64::MIN);
        let (_, metrics) = self
            .delta_table()
            .await?
            .optimize()
            .with_target_size(target)
            .await
            .map_err(LakeError::delta(self.name(), "optimizing"))?;
        self.refresh().await?;
        Ok(Optimized { added: metrics.num_files_added as usize, removed: metrics.num_files_removed as usize })
    }

    /// Deletes data files no snapshot of the last `retention` needs, and files never committed (a
    /// crashed writer's) older than it (Delta VACUUM, full mode); returns how many went.
    pub async fn vacuum(&mut self, retention: Duration) -> Result<usize> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = self
            .delta_table()
            .await?
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Full)
            .await
            .map_err(LakeError::delta(self.name(), "vacuuming"))?;
        self.refresh().await?;
        Ok(metrics.files_deleted.len())
    }

    /// Deletes the log entries (commits and checkpoints) written before `cutoff_ms` (ms since the epoch)
    /// that lie before a checkpoint no later than `keep_from`, so that every version from `keep_from` on
    /// stays readable whatever its age; returns how many went. Delta's own clean-up runs only with a
    /// checkpoint and keeps the log for `delta.logRetentionDuration`, blind to how far readers have come.
    pub async fn trim_log(&self, keep_from: i64, cutoff_ms: i64) -> Result<usize> {
        let keep_from = keep_from.clamp(0, self.version()) as u64;
        deltalake_core::protocol::checkpoints::cleanup_expired_logs_for(
            keep_from,
            self.log_store().as_ref(),
            cutoff_ms,
            None,
        )
        .await
        .map_err(LakeError::delta(self.name(), "trimming the log"))
    }

    /// Deletes the rows whose `time_column` is before `cutoff_ms` (ms since the epoch; Delta DELETE);
    /// returns how many went.
    pub async fn delete_before(&mut self, time_column: &str, cutoff_ms: i64) -> Result<usize> {
        if self.files().is_empty() {
            return Ok(0);
        }
        let cutoff = lit(ScalarValue::TimestampMicrosecond(Some(cutoff_ms.saturating_mul(1000)), Some("UTC".into())));
        let (_, metrics) = self
            .delta_table()
            .await?
            .delete()
            .with_predicate(col(time_column).lt(cutoff))
            .await
            .map_err(LakeError::delta(self.name(), "deleting expired rows"))?;
        self.refresh().await?;
        Ok(metrics.num_deleted_rows.unwrap_or(0))
    }
}
