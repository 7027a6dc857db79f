//! Retention: files written more than `retention.days` ago are deleted, table by table, never what
//! the ETL has not processed or committed. Each deletion stands alone, so a pass killed half-way
//! leaves a consistent table and the next pass finishes the work. Files go oldest first, so a
//! compacted file's inputs (older than it) go before it and never reappear.
//!
//! The newest `vitals_raw` range of each partition is ingest's resume point: instead of deleting it,
//! its rows are dropped by replacing it with an empty file of the same name (one atomic put).

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use object_store::ObjectMeta;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::LandedRange;
use vitalflow_udf_model::lake::checkpoint::load_etl_checkpoint;
use vitalflow_udf_model::lake::objects::{delete, list_parquet, read};
use vitalflow_udf_model::lake::write_parquet;
use vitalflow_udf_model::schema::{VITALS_RAW_SCHEMA, table};

use crate::config::RetentionConfig;
use crate::error::Result;
use crate::maintenance::settled::Settled;

/// Tables retention applies to, and what must hold before one of their files may go (`None`: nothing,
/// e.g. dead letters). Hook: `risk_alerts` joins here with `Some(Settled::CommittedBatch)`.
const RETAINED: [(&str, Option<Settled>); 3] = [
    (table::VITALS_RAW, Some(Settled::ProcessedRange)),
    (table::VITALS_CLEAN, Some(Settled::CommittedBatch)),
    (table::DEAD_LETTERS, None),
];

/// One retention pass; returns how many files were deleted or emptied.
pub async fn expire_once(location: &DataLocation, config: &RetentionConfig) -> Result<usize> {
    if config.days == 0 {
        return Ok(0);
    }
    let days = i64::try_from(config.days).unwrap_or(i64::MAX).min(365_000);
    expire_before(location, Utc::now() - chrono::Duration::days(days)).await
}

/// Deletes (or empties, for resume points) the settled files written before `cutoff`.
pub async fn expire_before(location: &DataLocation, cutoff: DateTime<Utc>) -> Result<usize> {
    let checkpoint = load_etl_checkpoint(location).await?;
    let mut expired = 0;
    for (name, settled) in RETAINED {
        let files = list_parquet(location, name).await?;
        let resume_points = if name == table::VITALS_RAW { newest_ranges(&files) } else { Vec::new() };
        let mut old: Vec<ObjectMeta> = files
            .into_iter()
            .filter(|m| m.last_modified < cutoff && settled.is_none_or(|s| s.holds(&m.location, &checkpoint)))
            .collect();
        old.sort_by_key(|m| m.last_modified);
        for meta in old {
            if resume_points.contains(&meta.location) {
                if empty_in_place(location, &meta.location).await? {
                    expired += 1;
                }
            } else {
                delete(location, &meta.location).await?;
                expired += 1;
            }
        }
    }
    Ok(expired)
}

/// The file holding the last landed offset of each topic partition.
fn newest_ranges(files: &[ObjectMeta]) -> Vec<Path> {
    let mut newest: BTreeMap<(String, i32), (i64, i64, &Path)> = BTreeMap::new();
    for meta in files {
        let Some(r) = meta.location.filename().and_then(LandedRange::parse) else { continue };
        let entry = newest.entry((r.topic.clone(), r.partition)).or_insert((r.last, r.first, &meta.location));
        // The widest file ending at the last offset: a compacted file rather than an input it hides.
        if (r.last, -r.first) > (entry.0, -entry.1) {
            *entry = (r.last, r.first, &meta.location);
        }
    }
    newest.into_values().map(|(_, _, p)| p.clone()).collect()
}

/// Replaces a `vitals_raw` file by an empty one of the same name; `false` when it was empty already.
async fn empty_in_place(location: &DataLocation, path: &Path) -> Result<bool> {
    let bytes = read(location, path).await?;
    let rows =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map(|b| b.metadata().file_metadata().num_rows()).unwrap_or(1);
    if rows == 0 {
        return Ok(false);
    }
    write_parquet(location, path, &[RecordBatch::new_empty(VITALS_RAW_SCHEMA.clone())]).await?;
    Ok(true)
}
