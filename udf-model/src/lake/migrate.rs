//! `vitalflow migrate`: converts, once, a data location written by an earlier vitalflow (plain Parquet
//! files named after offset ranges, batches and versions, compacted files beside their inputs) into
//! Delta Lake tables, every row exactly once and the ETL's progress kept:
//!
//! - Rows are read from every old file and de-duplicated by their source position (a compacted file
//!   and its not yet deleted inputs hold the same rows); rows of ETL batches the old checkpoint had not
//!   committed are dropped (the ETL makes them again), and of `patient_latest` and the ETL state only
//!   the newest committed version is kept.
//! - `vitals_raw` gets two commits: the rows the ETL had processed, then the rest with ingest's
//!   transactions (each partition's last landed offset), so that ingest resumes where it was and the
//!   ETL processes exactly what it had not.
//! - The old files are moved under `_pre_delta/`, untouched, for the operator to delete once satisfied.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, new_null_array};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::lake::checkpoint::{
    DeliveryCheckpoint, EtlCheckpoint, EtlTotals, save_delivery_checkpoint, save_etl_checkpoint,
};
use crate::lake::error::{LakeError, Result};
use crate::lake::format::earlier_format;
use crate::lake::location::DataLocation;
use crate::lake::names::{
    ETL_APP_ID, ETL_CHECKPOINT, ETL_STATE_TABLE, KafkaSource, alert_sink_checkpoint, batch_prefix,
};
use crate::lake::objects::{list, read, read_if_exists};
use crate::lake::parquet_file::write_data_file;
use crate::lake::table::{LakeTable, Transaction};
use crate::schema::{
    DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA, table,
};

/// Where the earlier files are moved.
pub const BACKUP_DIR: &str = "_pre_delta";

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Rows written per table.
    pub rows: BTreeMap<String, usize>,
    /// Earlier files moved under [`BACKUP_DIR`].
    pub moved_files: usize,
}

/// The earlier ETL checkpoint's fields the migration needs.
#[derive(Debug, Default, serde::Deserialize)]
struct EarlierCheckpoint {
    #[serde(default)]
    last_batch_id: i64,
    #[serde(default)]
    processed_offsets: BTreeMap<String, i64>,
    #[serde(default)]
    totals: EtlTotals,
    #[serde(default)]
    committed_at_ms: i64,
}

/// An earlier file: its path and its rows.
struct OldFile {
    name: String,
    batches: Vec<RecordBatch>,
}

/// Converts `location` (see the module docs); `source` is the Kafka cluster and topic ingest reads,
/// whose positions are recorded. Refuses a location that is not of the earlier format.
pub async fn migrate(location: &DataLocation, source: &KafkaSource) -> Result<MigrationReport> {
    let Some(found) = earlier_format(location).await? else {
        return Err(LakeError::Location {
            url: location.url().to_string(),
            reason: "nothing to migrate: no table of the earlier format here".into(),
        });
    };
    tracing::info!(%found, "Migrating the earlier format to Delta Lake tables.");
    let checkpoint: EarlierCheckpoint = match read_if_exists(location, &location.path(ETL_CHECKPOINT)).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| LakeError::Checkpoint { path: ETL_CHECKPOINT.into(), reason: e.to_string() })?,
        None => EarlierCheckpoint::default(),
    };
    let committed = checkpoint.last_batch_id;
    let mut report = MigrationReport::default();
    // Read everything first: nothing is moved before every old file has been read.
    let mut old = BTreeMap::new();
    for dir in [
        table::VITALS_RAW,
        table::VITALS_CLEAN,
        table::DEAD_LETTERS,
        table::RISK_ALERTS,
        table::PATIENT_LATEST,
        ETL_STATE_TABLE,
    ] {
        old.insert(dir, read_old_files(location, dir).await?);
    }
    report.moved_files = move_aside(location, &old).await?;

    // vitals_raw: processed rows, then the rest with ingest's positions.
    let raw = rows_of(&old[table::VITALS_RAW], &VITALS_RAW_SCHEMA, |_| true)?;
    let raw = dedupe(&raw, &["source_topic", "source_partition", "source_offset"])?;
    let processed = mask(&raw, |topic, partition, offset| {
        checkpoint.processed_offsets.get(&format!("{topic}/{partition}")).is_some_and(|done| offset <= *done)
    })?;
    let (done, todo) = split(&raw, &processed)?;
    let mut vitals_raw = LakeTable::open_or_create(location, table::VITALS_RAW, &VITALS_RAW_SCHEMA).await?;
    if done.num_rows() > 0 {
        vitals_raw.append_batches("migrated-processed", std::slice::from_ref(&done), vec![]).await?;
    }
    let raw_version = vitals_raw.version();
    let positions = last_offsets(&raw, &source.topic)?;
    let txns: Vec<Transaction> = positions.iter().map(|(p, last)| Transaction::new(source.app_id(*p), *last)).collect();
    if todo.num_rows() > 0 || !txns.is_empty() {
        // A file per partition, named by it like ingest's: the ETL's partition groups each take their own.
        let mut files = Vec::new();
        let partitions: BTreeSet<i32> =
            column::<Int32Array>(&todo, "source_partition")?.values().iter().copied().collect();
        for partition in partitions {
            let of_partition =
                filter_record_batch(&todo, &mask(&todo, |_, p, _| p == partition)?).map_err(arrow_err)?;
            files.push(
                write_data_file(location, table::VITALS_RAW, &format!("migrated-p{partition}"), &[of_partition])
                    .await?,
            );
        }
        vitals_raw.append(&files, txns).await?;
    }
    report.rows.insert(table::VITALS_RAW.into(), raw.num_rows());

    // dead_letters: ingest's, and the ETL's of committed batches.
    let letters = rows_of(&old[table::DEAD_LETTERS], &DEAD_LETTERS_SCHEMA, |name| {
        name.strip_prefix("etl-batch-")
            .and_then(|r| r.strip_suffix(".parquet"))
            .and_then(|id| id.parse::<i64>().ok())
            .is_none_or(|id| id <= committed)
    })?;
    let letters = dedupe(&letters, &["stage", "source_topic", "source_partition", "source_offset"])?;
    let ingest_letters = {
        let stage = column::<StringArray>(&letters, "stage")?;
        let keep: arrow::array::BooleanArray =
            (0..letters.num_rows()).map(|i| Some(stage.value(i) == "ingest")).collect();
        filter_record_batch(&letters, &keep).map_err(arrow_err)?
    };
    let letter_txns: Vec<Transaction> = last_offsets(&ingest_letters, &source.topic)?
        .iter()
        .map(|(p, last)| Transaction::new(source.app_id(*p), *last))
        .collect();
    commit_rows(location, table::DEAD_LETTERS, &DEAD_LETTERS_SCHEMA, letters, letter_txns, false, &mut report).await?;

    // The ETL's tables, as of its last committed batch.
    let etl_txn = || vec![Transaction::new(ETL_APP_ID, committed)];
    let of_committed = |schema: &SchemaRef, dir: &str| -> Result<RecordBatch> {
        let batch = rows_of(&old[dir], schema, |_| true)?;
        let ids = column::<Int64Array>(&batch, "etl_batch_id")?;
        let keep: arrow::array::BooleanArray = (0..batch.num_rows()).map(|i| Some(ids.value(i) <= committed)).collect();
        let batch = filter_record_batch(&batch, &keep).map_err(arrow_err)?;
        dedupe(&batch, &["source_topic", "source_partition", "source_offset"])
    };
    let clean = of_committed(&VITALS_CLEAN_SCHEMA, table::VITALS_CLEAN)?;
    commit_rows(location, table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA, clean, etl_txn(), false, &mut report).await?;
    let alerts = of_committed(&RISK_ALERTS_SCHEMA, table::RISK_ALERTS)?;
    commit_rows(location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA, alerts, etl_txn(), false, &mut report).await?;
    for dir in [table::PATIENT_LATEST, ETL_STATE_TABLE] {
        let newest = newest_version(&old[dir], committed);
        let batch = rows_of(&newest, &PATIENT_LATEST_SCHEMA, |_| true)?;
        commit_rows(location, dir, &PATIENT_LATEST_SCHEMA, batch, etl_txn(), true, &mut report).await?;
    }

    let alerts_version = LakeTable::open(location, table::RISK_ALERTS, None).await?.map_or(-1, |t| t.version());
    for sink in ["kafka", "webhook"] {
        let path = location.path(&format!("{BACKUP_DIR}/{}", alert_sink_checkpoint(sink)));
        if let Some(bytes) = read_if_exists(location, &path).await? {
            let earlier: DeliveryCheckpoint = serde_json::from_slice(&bytes)
                .map_err(|e| LakeError::Checkpoint { path: path.to_string(), reason: e.to_string() })?;
            // Batches up to the committed one are in the migrated table: the sink goes on after them.
            let at = DeliveryCheckpoint { last_batch_id: earlier.last_batch_id, alerts_version };
            save_delivery_checkpoint(location, sink, at).await?;
        }
    }
    let next = EtlCheckpoint {
        last_batch_id: committed,
        raw_version,
        pending: None,
        totals: checkpoint.totals,
        committed_at_ms: checkpoint.committed_at_ms,
        ..EtlCheckpoint::default()
    };
    save_etl_checkpoint(location, &next).await?;
    Ok(report)
}

/// Every Parquet file under `dir` (outside any Delta log), read whole.
async fn read_old_files(location: &DataLocation, dir: &str) -> Result<Vec<OldFile>> {
    let mut files = Vec::new();
    for meta in list(location, &location.path(dir)).await? {
        let path = meta.location.as_ref();
        if !path.ends_with(".parquet") || path.contains("/_delta_log/") {
            continue;
        }
        let bytes = read(location, &meta.location).await?;
        let parquet_err = |source| LakeError::Parquet { path: path.to_string(), source };
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_err)?.build().map_err(parquet_err)?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| parquet_err(e.into()))?;
        files.push(OldFile { name: meta.location.filename().unwrap_or_default().to_string(), batches });
    }
    Ok(files)
}

/// Moves every object of the earlier format (the table directories and the checkpoints) under
/// [`BACKUP_DIR`]; returns how many.
async fn move_aside(location: &DataLocation, old: &BTreeMap<&str, Vec<OldFile>>) -> Result<usize> {
    let mut moved = 0;
    let mut dirs: Vec<&str> = old.keys().copied().collect();
    dirs.push("_checkpoints");
    for dir in dirs {
        for meta in list(location, &location.path(dir)).await? {
            let relative =
                meta.location.as_ref().strip_prefix(location.path("").as_ref()).unwrap_or(meta.location.as_ref());
            let to = location.path(&format!("{BACKUP_DIR}/{}", relative.trim_start_matches('/')));
            location
                .store()
                .rename(&meta.location, &to)
                .await
                .map_err(|source| LakeError::store("rename", &meta.location, source))?;
            moved += 1;
        }
    }
    Ok(moved)
}

/// The rows of `files` whose name passes `keep`, in `schema` (columns matched by name; a column the
/// older file lacks is NULL).
fn rows_of(files: &[OldFile], schema: &SchemaRef, keep: impl Fn(&str) -> bool) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    for file in files.iter().filter(|f| keep(&f.name)) {
        for batch in &file.batches {
            let columns = schema
                .fields()
                .iter()
                .map(|field| match batch.column_by_name(field.name()) {
                    Some(c) => cast(c, field.data_type()).map_err(arrow_err),
                    None => Ok(new_null_array(field.data_type(), batch.num_rows())),
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)?);
        }
    }
    concat_batches(schema, &batches).map_err(arrow_err)
}

/// `batch` without rows whose `key` columns repeat an earlier row's.
fn dedupe(batch: &RecordBatch, key: &[&str]) -> Result<RecordBatch> {
    let columns = key
        .iter()
        .map(|k| {
            batch
                .column_by_name(k)
                .ok_or_else(|| missing(k))
                .and_then(|c| cast(c, &arrow::datatypes::DataType::Utf8).map_err(arrow_err))
        })
        .collect::<Result<Vec<_>>>()?;
    let strings: Vec<&StringArray> = columns.iter().filter_map(|c| c.as_any().downcast_ref::<StringArray>()).collect();
    let mut seen = HashSet::new();
    let keep: arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|i| Some(seen.insert(strings.iter().map(|s| s.value(i).to_string()).collect::<Vec<_>>())))
        .collect();
    filter_record_batch(batch, &keep).map_err(arrow_err)
}

/// Which rows' source position passes `keep(topic, partition, offset)`.
fn mask(batch: &RecordBatch, keep: impl Fn(&str, i32, i64) -> bool) -> Result<arrow::array::BooleanArray> {
    let topic = column::<StringArray>(batch, "source_topic")?;
    let partition = column::<Int32Array>(batch, "source_partition")?;
    let offset = column::<Int64Array>(batch, "source_offset")?;
    Ok((0..batch.num_rows()).map(|i| Some(keep(topic.value(i), partition.value(i), offset.value(i)))).collect())
}

/// The rows `mask` selects, and the others.
fn split(batch: &RecordBatch, mask: &arrow::array::BooleanArray) -> Result<(RecordBatch, RecordBatch)> {
    let inverse = arrow::compute::not(mask).map_err(arrow_err)?;
    Ok((filter_record_batch(batch, mask).map_err(arrow_err)?, filter_record_batch(batch, &inverse).map_err(arrow_err)?))
}

/// Per partition of `topic`, the last source offset in `batch`.
fn last_offsets(batch: &RecordBatch, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let topics = column::<StringArray>(batch, "source_topic")?;
    let partition = column::<Int32Array>(batch, "source_partition")?;
    let offset = column::<Int64Array>(batch, "source_offset")?;
    let mut last = BTreeMap::new();
    for i in (0..batch.num_rows()).filter(|&i| topics.value(i) == topic) {
        let entry = last.entry(partition.value(i)).or_insert(offset.value(i));
        *entry = (*entry).max(offset.value(i));
    }
    Ok(last)
}

/// The newest `v-<id>.parquet` file at or below batch `committed`.
fn newest_version(files: &[OldFile], committed: i64) -> Vec<OldFile> {
    let id = |f: &OldFile| {
        f.name.strip_prefix("v-").and_then(|r| r.strip_suffix(".parquet")).and_then(|v| v.parse::<i64>().ok())
    };
    let newest = files.iter().filter_map(|f| id(f).filter(|v| *v <= committed)).max();
    files
        .iter()
        .filter(|f| newest.is_some() && id(f) == newest)
        .map(|f| OldFile { name: f.name.clone(), batches: f.batches.clone() })
        .collect()
}

async fn commit_rows(
    location: &DataLocation,
    name: &str,
    schema: &SchemaRef,
    batch: RecordBatch,
    txns: Vec<Transaction>,
    replace: bool,
    report: &mut MigrationReport,
) -> Result<()> {
    let mut table = LakeTable::open_or_create(location, name, schema).await?;
    report.rows.insert(name.to_string(), batch.num_rows());
    if batch.num_rows() == 0 && txns.is_empty() {
        return Ok(());
    }
    let batches = if batch.num_rows() > 0 { vec![batch] } else { vec![] };
    let prefix = format!("migrated-{}", batch_prefix(0));
    match (replace, batches.is_empty()) {
        (_, true) => table.append(&[], txns).await?,
        (true, false) => table.replace_batches(&prefix, &batches, txns).await?,
        (false, false) => table.append_batches(&prefix, &batches, txns).await?,
    };
    Ok(())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| missing(name))
}

fn missing(name: &str) -> LakeError {
    LakeError::Migration { reason: format!("the earlier rows lack the column {name}") }
}

fn arrow_err(e: arrow::error::ArrowError) -> LakeError {
    LakeError::Migration { reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow::array::TimestampNanosecondArray;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::lake::landed::resume_positions;

    /// Rows of `schema` at `offsets` of partition 0 of topic `t`, with `etl_batch_id` `batch`.
    fn rows(schema: &SchemaRef, offsets: std::ops::RangeInclusive<i64>, batch: i64) -> RecordBatch {
        let n = offsets.clone().count();
        let columns = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "source_topic" | "stage" | "patient_id" | "model_version" | "alert_id" => {
                        Arc::new(StringArray::from(vec![if f.name() == "source_topic" { "t" } else { "ingest" }; n]))
                    }
                    "source_partition" => Arc::new(Int32Array::from(vec![0; n])),
                    "source_offset" => Arc::new(Int64Array::from_iter_values(offsets.clone())),
                    "etl_batch_id" => Arc::new(Int64Array::from(vec![batch; n])),
                    _ if matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)) => Arc::new(
                        TimestampNanosecondArray::from(vec![1_795_000_000_000_000_000; n]).with_timezone("UTC"),
                    ),
                    _ if f.is_nullable() => new_null_array(f.data_type(), n),
                    _ => cast(&(Arc::new(Int64Array::from_iter_values(offsets.clone())) as ArrayRef), f.data_type())
                        .unwrap(),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    async fn put_old(location: &DataLocation, relative: &str, batch: RecordBatch) {
        let mut buf = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        location.store().put(&location.path(relative), PutPayload::from(buf)).await.unwrap();
    }

    #[tokio::test]
    async fn an_earlier_location_becomes_delta_tables_with_every_row_once_and_progress_kept() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        // Two landed ranges and the compacted file covering both (its inputs not yet deleted), one more range.
        put_old(
            &location,
            "vitals_raw/date=2026-11-24/hour=10/t-p0-00000000000000000000-00000000000000000004.parquet",
            rows(&VITALS_RAW_SCHEMA, 0..=4, 0),
        )
        .await;
        put_old(
            &location,
            "vitals_raw/date=2026-11-24/hour=10/t-p0-00000000000000000005-00000000000000000009.parquet",
            rows(&VITALS_RAW_SCHEMA, 5..=9, 0),
        )
        .await;
        put_old(
            &location,
            "vitals_raw/date=2026-11-24/hour=10/t-p0-00000000000000000000-00000000000000000009.parquet",
            rows(&VITALS_RAW_SCHEMA, 0..=9, 0),
        )
        .await;
        put_old(
            &location,
            "vitals_raw/date=2026-11-24/hour=10/t-p0-00000000000000000010-00000000000000000014.parquet",
            rows(&VITALS_RAW_SCHEMA, 10..=14, 0),
        )
        .await;
        put_old(
            &location,
            "dead_letters/ingest-t-p0-00000000000000000003-00000000000000000003.parquet",
            rows(&DEAD_LETTERS_SCHEMA, 15..=15, 0),
        )
        .await;
        // Batch 1 committed (offsets 0..=9), batch 2 written but not committed.
        put_old(&location, "vitals_clean/batch-000000000001.parquet", rows(&VITALS_CLEAN_SCHEMA, 0..=9, 1)).await;
        put_old(&location, "vitals_clean/batch-000000000002.parquet", rows(&VITALS_CLEAN_SCHEMA, 10..=14, 2)).await;
        put_old(&location, "patient_latest/v-000000000001.parquet", rows(&PATIENT_LATEST_SCHEMA, 9..=9, 1)).await;
        put_old(&location, "patient_latest/v-000000000002.parquet", rows(&PATIENT_LATEST_SCHEMA, 14..=14, 2)).await;
        let checkpoint =
            r#"{"last_batch_id":1,"processed_offsets":{"t/0":9},"totals":{"rows_out":10,"rejected":0,"alerts":0}}"#;
        location.store().put(&location.path(ETL_CHECKPOINT), PutPayload::from(checkpoint)).await.unwrap();

        let source = KafkaSource { cluster_id: "c1".into(), topic: "t".into(), topic_id: String::new() };
        let report = migrate(&location, &source).await.unwrap();
        assert_eq!(report.rows[table::VITALS_RAW], 15);
        assert_eq!(report.rows[table::VITALS_CLEAN], 10);
        assert_eq!(report.moved_files, 10);
        assert_eq!(earlier_format(&location).await.unwrap(), None);

        let raw = LakeTable::open(&location, table::VITALS_RAW, None).await.unwrap().unwrap();
        assert_eq!(raw.row_count(), 15);
        // Ingest resumes after offset 14; dead letters recorded their position too.
        assert_eq!(resume_positions(&raw, &source, &BTreeSet::from([0])).await.unwrap(), BTreeMap::from([(0, 15)]));
        // The ETL reads exactly the rows it had not processed.
        let etl = crate::lake::checkpoint::load_etl_checkpoint(&location).await.unwrap();
        assert_eq!((etl.last_batch_id, etl.totals.rows_out), (1, 10));
        let todo = raw.added_since(etl.raw_version, 100).await.unwrap();
        assert_eq!(todo.len(), 1);
        let latest = LakeTable::open(&location, table::PATIENT_LATEST, None).await.unwrap().unwrap();
        assert_eq!(latest.row_count(), 1);
        // Asked again: nothing to migrate.
        assert!(migrate(&location, &source).await.is_err());
    }
}
