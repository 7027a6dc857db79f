//! Compaction and retention on real Parquet files, read back through an in-process DataFusion context
//! (the same runtime the scheduler plans Ballista jobs with): counts hold at every step a kill -9 could
//! stop at, ingest resumes where it should, and retention keeps what the ETL has not processed.

// A test's helpers may unwrap too: a failed unwrap fails the test, with the value in the message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use object_store::ObjectStoreExt;
use vitalflow_scheduler::CompactionConfig;
use vitalflow_scheduler::catalog::session::local_context;
use vitalflow_scheduler::maintenance::compaction::compact_once;
use vitalflow_scheduler::maintenance::retention::expire_before;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::landed::resume_positions;
use vitalflow_udf_model::lake::names::{range_file, vitals_raw_file};
use vitalflow_udf_model::lake::write_parquet;
use vitalflow_udf_model::schema::{DEAD_LETTERS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA};

/// Rows of `schema` whose required columns derive from `offsets` (so source_offset is the offset).
fn rows(schema: &SchemaRef, offsets: std::ops::RangeInclusive<i64>) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(offsets));
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            if f.is_nullable() {
                arrow::array::new_null_array(f.data_type(), ids.len())
            } else {
                cast(&ids, f.data_type()).unwrap()
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

async fn put(location: &DataLocation, relative: &str, batch: RecordBatch) {
    write_parquet(location, &location.path(relative), &[batch]).await.unwrap();
}

async fn files(location: &DataLocation, table: &str) -> BTreeSet<String> {
    let listed: Vec<_> =
        futures::TryStreamExt::try_collect(location.store().list(Some(&location.path(table)))).await.unwrap();
    listed.into_iter().filter_map(|m| m.location.filename().map(str::to_string)).collect()
}

async fn counts(location: &DataLocation) -> Vec<(i64, i64)> {
    let ctx = local_context(location, &Arc::new(RiskForest::bundled().unwrap())).unwrap();
    let mut out = Vec::new();
    for table in ["vitals_raw", "vitals_clean", "dead_letters"] {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {table}) AS n, (SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset FROM {table}) AS d) AS distinct_n"
        );
        let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let column = |i: usize| batches[0].column(i).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
        out.push((column(0), column(1)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_never_loses_or_doubles_a_row_and_keeps_resume_points() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    // Partition 0: 20 ranges of 5 offsets; the ETL processed the first 16. Two hours, so two folders.
    for i in 0..20i64 {
        let (first, last) = (i * 5, i * 5 + 4);
        let hour_ms = if i < 10 { 0 } else { 3_600_000 };
        put(&location, &vitals_raw_file("t", 0, first, last, hour_ms), rows(&VITALS_RAW_SCHEMA, first..=last)).await;
    }
    // Partition 1: 3 ranges (1000..1014 so that offsets differ from partition 0's), all processed.
    for i in 0..3i64 {
        let (first, last) = (1000 + i * 5, 1000 + i * 5 + 4);
        put(&location, &vitals_raw_file("t", 1, first, last, 0), rows(&VITALS_RAW_SCHEMA, first..=last)).await;
    }
    // vitals_clean: batches 1..=10 of 3 rows; 8 committed. dead_letters: one ingest file.
    for id in 1..=10i64 {
        put(
            &location,
            &format!("vitals_clean/batch-{id:012}.parquet"),
            rows(&VITALS_CLEAN_SCHEMA, id * 10..=id * 10 + 2),
        )
        .await;
    }
    put(&location, &range_file("dead_letters", "ingest-", "t", 0, 5, 5), rows(&DEAD_LETTERS_SCHEMA, 5..=5)).await;
    let checkpoint = r#"{"last_batch_id":8,"processed_offsets":{"t/0":79,"t/1":1014}}"#;
    location.store().put(&location.path("_checkpoints/etl.json"), bytes::Bytes::from(checkpoint).into()).await.unwrap();

    let before = counts(&location).await;
    assert_eq!(before, vec![(115, 115), (30, 30), (1, 1)]);
    let resume_before = resume_positions(&location, "t", &BTreeSet::from([0, 1])).await.unwrap();
    assert_eq!(resume_before, BTreeMap::from([(0, 100), (1, 1015)]));

    let config = CompactionConfig { min_files: 3, grace_seconds: 0, ..CompactionConfig::default() };
    let first = compact_once(&location, &config).await.unwrap();
    // p0: folder hour 0 holds ranges 0..=9 (all processed), hour 1 ranges 10..=15 processed; p1: 3; clean: 8.
    assert_eq!((first.merged_files, first.replaced_files, first.deleted_files), (4, 10 + 6 + 3 + 8, 0));
    // The moment a kill -9 could stop at: merged files written, inputs still there, nothing doubled.
    assert_eq!(files(&location, "vitals_raw").await.len(), 23 + 3);
    assert_eq!(counts(&location).await, before);
    assert_eq!(resume_positions(&location, "t", &BTreeSet::from([0, 1])).await.unwrap(), resume_before);
    assert!(files(&location, "vitals_clean").await.contains("batch-000000000001-000000000008.parquet"));
    assert!(files(&location, "vitals_raw").await.contains("t-p0-00000000000000000000-00000000000000000049.parquet"));

    // A pass deleting only part of the inputs (killed half-way): still the same rows.
    location.store().delete(&location.path(&vitals_raw_file("t", 0, 0, 4, 0))).await.unwrap();
    assert_eq!(counts(&location).await, before);

    // The next pass deletes the inputs once the grace period is over; nothing new to merge.
    let second = compact_once(&location, &config).await.unwrap();
    assert_eq!((second.merged_files, second.deleted_files), (0, 10 + 6 + 3 + 8 - 1));
    assert_eq!(files(&location, "vitals_raw").await.len(), 3 + 4);
    assert_eq!(files(&location, "vitals_clean").await.len(), 3);
    assert_eq!(counts(&location).await, before);
    assert_eq!(resume_positions(&location, "t", &BTreeSet::from([0, 1])).await.unwrap(), resume_before);

    // Retention of everything written so far: only what the ETL has processed or committed goes, and
    // partition 1's newest range stays as an empty file, so ingest still resumes after it.
    let expired = expire_before(&location, chrono::Utc::now() + chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(expired, 2 + 1 + 1 + 1);
    assert_eq!(counts(&location).await, vec![(20, 20), (6, 6), (0, 0)]);
    assert_eq!(resume_positions(&location, "t", &BTreeSet::from([0, 1])).await.unwrap(), resume_before);
    assert_eq!(
        files(&location, "vitals_clean").await,
        BTreeSet::from(["batch-000000000009.parquet".to_string(), "batch-000000000010.parquet".to_string()])
    );
}
