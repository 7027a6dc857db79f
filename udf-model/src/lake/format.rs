//! The format of a data location. Tables are Delta Lake tables; a location written by an earlier
//! vitalflow (plain Parquet files named after offset ranges and batches, and its own checkpoints) is
//! refused at start-up with the command that converts it, never read or written in a mix of both.

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;
use crate::lake::names::{ETL_CHECKPOINT, ETL_STATE_TABLE};
use crate::lake::objects::{list, read_if_exists};
use crate::schema::table;

/// Directories of the earlier format: the tables and the ETL's versioned state.
const EARLIER_DIRS: [&str; 6] = [
    table::VITALS_RAW,
    table::VITALS_CLEAN,
    table::DEAD_LETTERS,
    table::RISK_ALERTS,
    table::PATIENT_LATEST,
    ETL_STATE_TABLE,
];

/// What of the earlier format a location holds, if anything: the first table directory with Parquet
/// files and no Delta log, or an ETL checkpoint of the earlier kind.
pub async fn earlier_format(location: &DataLocation) -> Result<Option<String>> {
    for dir in EARLIER_DIRS {
        let objects = list(location, &location.path(dir)).await?;
        let has_log = objects.iter().any(|m| m.location.as_ref().contains("/_delta_log/"));
        if !has_log && objects.iter().any(|m| m.location.as_ref().ends_with(".parquet")) {
            return Ok(Some(format!("{dir}/ holds Parquet files without a Delta log")));
        }
    }
    let checkpoint = read_if_exists(location, &location.path(ETL_CHECKPOINT)).await?;
    if checkpoint.is_some_and(|bytes| String::from_utf8_lossy(&bytes).contains("\"processed_offsets\"")) {
        return Ok(Some(format!("{ETL_CHECKPOINT} is of the earlier kind")));
    }
    Ok(None)
}

/// Refuses a location of the earlier format, naming what was found and the command that converts it.
pub async fn ensure_current_format(location: &DataLocation) -> Result<()> {
    match earlier_format(location).await? {
        None => Ok(()),
        Some(found) => Err(LakeError::EarlierFormat { url: location.url().to_string(), found }),
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;

    use super::*;

    #[tokio::test]
    async fn an_earlier_location_is_refused_and_a_delta_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        ensure_current_format(&location).await.unwrap();
        let schema = crate::schema::VITALS_RAW_SCHEMA.clone();
        crate::lake::table::LakeTable::open_or_create(&location, table::VITALS_RAW, &schema).await.unwrap();
        let batch = arrow::record_batch::RecordBatch::new_empty(schema);
        crate::lake::write_data_file(&location, table::VITALS_RAW, "x", &[batch]).await.unwrap();
        ensure_current_format(&location).await.unwrap();

        let old = location.path("vitals_clean/batch-000000000001.parquet");
        location.store().put(&old, bytes::Bytes::from_static(b"PAR1").into()).await.unwrap();
        let refused = ensure_current_format(&location).await.unwrap_err().to_string();
        assert!(refused.contains("vitals_clean/") && refused.contains("vitalflow migrate"), "{refused}");
    }
}
