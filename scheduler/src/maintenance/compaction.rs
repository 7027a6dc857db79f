//! Compaction is Delta Lake's OPTIMIZE, and removing what it replaced is VACUUM. Ingest's one file per
//! flush and the ETL's one file per micro-batch are merged into files of `compaction.target_file_mb`;
//! a query sees the snapshot before or after the OPTIMIZE commit, never both sets of files.
//!
//! Replaced files are deleted by VACUUM once they were removed more than `compaction.grace_seconds`
//! ago (queries planned before the commit still read them), and never before the ETL has read the
//! `vitals_raw` commits that added them: the retention reaches back to the oldest commit the ETL has
//! not processed. VACUUM runs in full mode, so it also deletes files a crashed writer left uncommitted.
//!
//! Tables committed several times a second would otherwise keep a log entry per commit for Delta's two
//! days (hundreds of thousands of small objects, listed by every snapshot load): their log is trimmed
//! to `compaction.log_retention_minutes`, behind a checkpoint, never past what the ETL still reads.

use std::time::Duration;

use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, load_etl_checkpoint};
use vitalflow_udf_model::lake::names::ETL_STATE_TABLE;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use crate::config::CompactionConfig;
use crate::error::Result;

/// Tables compacted: those written a file per flush or per micro-batch, the audit log (a file per
/// flush of each front door), and the alert keeper's (a file per change of `alert_events`; `alerts`,
/// one file rewritten each time, is never OPTIMIZEd, only vacuumed).
const COMPACTED: [&str; 8] = [
    table::VITALS_RAW,
    table::PATIENT_MOVEMENTS,
    table::VITALS_CLEAN,
    table::DEAD_LETTERS,
    table::RISK_ALERTS,
    table::ALERT_EVENTS,
    table::ALERTS,
    table::AUDIT_LOG,
];

/// Tables whose every version replaces the last (one file rewritten per micro-batch): never OPTIMIZEd,
/// but the files each commit replaced must be vacuumed or they pile up.
const REPLACED: [&str; 2] = [table::PATIENT_LATEST, ETL_STATE_TABLE];

/// Tables with a commit per flush or micro-batch whose log is trimmed to `compaction.log_retention_minutes`
/// (the audit log commits up to once a second per front door; nothing reads it by version).
/// The alert tables are left to Delta's own clean-up: they commit only when alerts change, and their
/// sinks resume from versions the log must still hold.
const LOG_TRIMMED: [&str; 7] = [
    table::VITALS_RAW,
    table::PATIENT_MOVEMENTS,
    table::VITALS_CLEAN,
    table::DEAD_LETTERS,
    table::PATIENT_LATEST,
    ETL_STATE_TABLE,
    table::AUDIT_LOG,
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
    /// Log entries (commits, checkpoints) older than the log retention that were deleted.
    pub deleted_log_entries: usize,
}

/// One pass over every table: OPTIMIZE where at least `min_files` files are smaller than the target,
/// VACUUM, and the log trimmed to its retention.
pub async fn compact_once(location: &DataLocation, config: &CompactionConfig) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    let checkpoint = load_etl_checkpoint(location).await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    for name in COMPACTED.into_iter().chain(REPLACED) {
        let Some(mut lake_table) = LakeTable::open(location, name, None).await? else { continue };
        // Read before OPTIMIZE adds a commit of its own.
        let unprocessed_since = match name {
            table::VITALS_RAW => unprocessed_since(&lake_table, &checkpoint).await?,
            _ => None,
        };
        let small = lake_table.files().iter().filter(|f| f.size < config.target_bytes()).count();
        if COMPACTED.contains(&name) && small >= config.min_files {
            let optimized = lake_table.optimize(config.target_bytes()).await?;
            report.merged_files += optimized.added;
            report.replaced_files += optimized.removed;
        }
        let mut retention = Duration::from_secs(config.grace_seconds);
        if let Some(since_ms) = unprocessed_since {
            let lag_ms = now_ms.saturating_sub(since_ms).max(0) as u64;
            retention = retention.max(Duration::from_millis(lag_ms));
        }
        report.deleted_files += lake_table.vacuum(retention).await?;
        if config.log_retention_minutes > 0 && LOG_TRIMMED.contains(&name) {
            let cutoff_ms = now_ms.saturating_sub(config.log_retention_minutes.saturating_mul(60_000) as i64);
            let keep_from = first_version_still_read(name, &checkpoint, lake_table.version());
            report.deleted_log_entries += lake_table.trim_log(keep_from, cutoff_ms).await?;
        }
    }
    Ok(report)
}

/// The first version of `name` the ETL may still read by version: the `vitals_raw` commits after its
/// checkpoint, and the state snapshots pending batches re-run from.
fn first_version_still_read(name: &str, checkpoint: &EtlCheckpoint, latest: i64) -> i64 {
    let pending_state = checkpoint.pending_batches().map(|p| p.state_version).min();
    match name {
        table::VITALS_RAW => latest.min(checkpoint.raw_version + 1),
        ETL_STATE_TABLE => pending_state.map_or(latest, |v| latest.min(v)),
        _ => latest,
    }
}

/// When the oldest `vitals_raw` commit the ETL has not processed was made (ms since the epoch);
/// `None` when it has processed everything.
pub(crate) async fn oldest_unprocessed_commit(location: &DataLocation) -> Result<Option<i64>> {
    let checkpoint = load_etl_checkpoint(location).await?;
    let Some(raw) = LakeTable::open(location, table::VITALS_RAW, None).await? else { return Ok(None) };
    unprocessed_since(&raw, &checkpoint).await
}

/// When the oldest commit of `raw` (`vitals_raw`) after `checkpoint` was made; `None` when there is none.
async fn unprocessed_since(raw: &LakeTable, checkpoint: &EtlCheckpoint) -> Result<Option<i64>> {
    if raw.version() <= checkpoint.raw_version {
        return Ok(None);
    }
    // A commit whose time cannot be read counts as made now: nothing after it is touched.
    Ok(Some(
        raw.commit_time(checkpoint.raw_version + 1).await?.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
    ))
}
