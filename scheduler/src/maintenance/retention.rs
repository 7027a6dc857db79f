//! Retention: rows older than `retention.days` are deleted with Delta Lake's DELETE, table by table,
//! by the time they were landed (`ingest_time`; `dead_letter_time` for dead letters; `vitals_clean`,
//! which keeps no landing time, by `event_time`), and `audit_log` entries older than
//! `retention.audit_days` by their `time`. One commit per table: a query sees the rows before or after
//! it. Never rows the ETL has not processed: the cut-off stays an hour before the oldest `vitals_raw`
//! commit the ETL has yet to read. The files DELETE replaced are deleted by the next compaction pass's
//! VACUUM.

use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use crate::config::RetentionConfig;
use crate::error::Result;
use crate::maintenance::compaction::oldest_unprocessed_commit;

/// Tables retention applies to, with the column that says when a row was landed.
const RETAINED: [(&str, &str); 3] = [
    (table::VITALS_RAW, "ingest_time"),
    (table::VITALS_CLEAN, "event_time"),
    (table::DEAD_LETTERS, "dead_letter_time"),
];

/// How far before the oldest commit the ETL has not read the cut-off stays.
const UNPROCESSED_MARGIN_MS: i64 = 3_600_000;

/// One retention pass (the data tables after `days`, the audit log after `audit_days`; 0 skips
/// either); returns how many rows were deleted.
pub async fn expire_once(location: &DataLocation, config: &RetentionConfig) -> Result<usize> {
    let mut deleted = 0;
    if config.days > 0 {
        deleted += expire_before(location, days_ago_ms(config.days)).await?;
    }
    if config.audit_days > 0 {
        deleted += expire_audit_before(location, days_ago_ms(config.audit_days)).await?;
    }
    Ok(deleted)
}

/// The time `days` days ago, in ms since the epoch.
fn days_ago_ms(days: u64) -> i64 {
    let days = i64::try_from(days).unwrap_or(i64::MAX).min(365_000);
    (chrono::Utc::now() - chrono::Duration::days(days)).timestamp_millis()
}

/// Deletes the `audit_log` entries of queries started before `cutoff_ms` (ms since the epoch); returns
/// how many went. The front doors' appends go on meanwhile: they are blind appends, which Delta's
/// conflict check lets this DELETE commit beside.
pub async fn expire_audit_before(location: &DataLocation, cutoff_ms: i64) -> Result<usize> {
    match LakeTable::open(location, table::AUDIT_LOG, None).await? {
        Some(mut audit) => Ok(audit.delete_before("time", cutoff_ms).await?),
        None => Ok(0),
    }
}

/// Deletes rows landed before `cutoff_ms` (ms since the epoch), except what the ETL has yet to read;
/// returns how many rows were deleted.
pub async fn expire_before(location: &DataLocation, cutoff_ms: i64) -> Result<usize> {
    let mut cutoff_ms = cutoff_ms;
    if let Some(unprocessed) = oldest_unprocessed_commit(location).await? {
        // A row's ingest_time is set when its flush starts, seconds before the commit: an hour's
        // margin keeps every row of the commits the ETL has not read.
        cutoff_ms = cutoff_ms.min(unprocessed - UNPROCESSED_MARGIN_MS);
    }
    let mut deleted = 0;
    for (name, time_column) in RETAINED {
        if let Some(mut lake_table) = LakeTable::open(location, name, None).await? {
            deleted += lake_table.delete_before(time_column, cutoff_ms).await?;
        }
    }
    Ok(deleted)
}
