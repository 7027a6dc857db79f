//! Compaction is Delta Lake's OPTIMIZE, and removing what it replaced is VACUUM. Ingest's one file per
//! flush and the ETL's one file per micro-batch are merged into files of `compaction.target_file_mb`;
//! a query sees the snapshot before or after the OPTIMIZE commit, never both sets of files.
//!
//! Replaced files are deleted by VACUUM once they were removed more than `compaction.grace_seconds`
//! ago (queries planned before the commit still read them), and never before the ETL has read the
//! `vitals_raw` commits that added them: the retention reaches back to the oldest commit the ETL has
//! not processed. VACUUM runs in full mode, so it also deletes files a crashed writer left uncommitted.

use std::time::Duration;

use vitalflow_udf_model::lake::checkpoint::load_etl_checkpoint;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use crate::config::CompactionConfig;
use crate::error::Result;

/// Tables compacted: those written a file per flush or per micro-batch, and the alert keeper's (a file per
/// change of `alert_events`; `alerts`, one file rewritten each time, is never OPTIMIZEd, only vacuumed).
const COMPACTED: [&str; 6] = [
    table::VITALS_RAW,
    table::VITALS_CLEAN,
    table::DEAD_LETTERS,
    table::RISK_ALERTS,
    table::ALERT_EVENTS,
    table::ALERTS,
];

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Files written by OPTIMIZE, each replacing several.
    pub merged_files: usize,
    /// Files those replaced (out of every new snapshot, deleted by a later VACUUM).
    pub replaced_files: usize,
    /// Files VACUUM deleted.
    pub deleted_files: usize,
}

/// One pass over every compacted table: OPTIMIZE where at least `min_files` files are smaller than
/// the target, then VACUUM.
pub async fn compact_once(location: &DataLocation, config: &CompactionConfig) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let unprocessed_since = oldest_unprocessed_commit(location).await?;
    for name in COMPACTED {
        let Some(mut lake_table) = LakeTable::open(location, name, None).await? else { continue };
        let small = lake_table.files().iter().filter(|f| f.size < config.target_bytes()).count();
        if small >= config.min_files {
            let optimized = lake_table.optimize(config.target_bytes()).await?;
            report.merged_files += optimized.added;
            report.replaced_files += optimized.removed;
        }
        let mut retention = Duration::from_secs(config.grace_seconds);
        if name == table::VITALS_RAW
            && let Some(since_ms) = unprocessed_since
        {
            let lag_ms = chrono::Utc::now().timestamp_millis().saturating_sub(since_ms).max(0) as u64;
            retention = retention.max(Duration::from_millis(lag_ms));
        }
        report.deleted_files += lake_table.vacuum(retention).await?;
    }
    Ok(report)
}

/// When the oldest `vitals_raw` commit the ETL has not processed was made (ms since the epoch);
/// `None` when it has processed everything.
pub(crate) async fn oldest_unprocessed_commit(location: &DataLocation) -> Result<Option<i64>> {
    let checkpoint = load_etl_checkpoint(location).await?;
    let Some(raw) = LakeTable::open(location, table::VITALS_RAW, None).await? else { return Ok(None) };
    if raw.version() <= checkpoint.raw_version {
        return Ok(None);
    }
    // A commit whose time cannot be read counts as made now: nothing after it is touched.
    Ok(Some(
        raw.commit_time(checkpoint.raw_version + 1).await?.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
    ))
}
