//! Compaction (Delta OPTIMIZE and VACUUM) and retention (Delta DELETE) on real tables, read back
//! through an in-process DataFusion context (the same tables the scheduler plans Ballista jobs with):
//! counts hold before and after each commit, ingest's resume points stay, retention keeps what the ETL
//! has not processed, and a busy table's log is trimmed without losing a version still read.

// A test's helpers may unwrap too: a failed unwrap fails the test, with the value in the message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use vitalflow_scheduler::CompactionConfig;
use vitalflow_scheduler::catalog::session::local_context;
use vitalflow_scheduler::maintenance::compaction::compact_once;
use vitalflow_scheduler::maintenance::retention::expire_before;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, save_etl_checkpoint};
use vitalflow_udf_model::lake::landed::resume_positions;
use vitalflow_udf_model::lake::names::{KafkaSource, batch_prefix};
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable, write_data_file};
use vitalflow_udf_model::schema::{DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA};

/// Rows of `schema` whose required columns derive from `offsets` (so source_offset is the offset);
/// times (`ingest_time`, ...) are `time_ns`.
fn rows(schema: &SchemaRef, offsets: std::ops::RangeInclusive<i64>, time_ns: i64) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(offsets));
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            if matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)) {
                Arc::new(TimestampNanosecondArray::from(vec![time_ns; ids.len()]).with_timezone("UTC")) as ArrayRef
            } else if f.is_nullable() {
                arrow::array::new_null_array(f.data_type(), ids.len())
            } else {
                cast(&ids, f.data_type()).unwrap()
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// Commits `batch` to `table` with the transaction `(app, version)`, as ingest or the ETL does.
async fn commit(location: &DataLocation, table: &str, schema: &SchemaRef, batch: RecordBatch, app: &str, version: i64) {
    let mut t = LakeTable::open_or_create(location, table, schema).await.unwrap();
    let file = write_data_file(location, table, "f", &[batch]).await.unwrap();
    t.append(&[file], vec![Transaction::new(app, version)]).await.unwrap();
}

async fn snapshot_files(location: &DataLocation, table: &str) -> usize {
    LakeTable::open(location, table, None).await.unwrap().unwrap().files().len()
}

async fn objects(location: &DataLocation, table: &str) -> usize {
    let listed: Vec<_> =
        futures::TryStreamExt::try_collect(location.store().list(Some(&location.path(table)))).await.unwrap();
    listed
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet") && !m.location.as_ref().contains("_delta_log"))
        .count()
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

const DAY_NS: i64 = 86_400_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_retention_never_lose_or_double_a_row_and_keep_resume_points() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let source = KafkaSource { cluster_id: "c".into(), topic: "t".into(), topic_id: String::new() };
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // Partition 0: 20 flushes of 5 offsets, the first 10 landed 3 days ago; partition 1: 3 flushes.
    for i in 0..20i64 {
        let (first, last) = (i * 5, i * 5 + 4);
        let time = if i < 10 { now_ns - 3 * DAY_NS } else { now_ns };
        commit(
            &location,
            "vitals_raw",
            &VITALS_RAW_SCHEMA,
            rows(&VITALS_RAW_SCHEMA, first..=last, time),
            &source.app_id(0),
            last,
        )
        .await;
    }
    for i in 0..3i64 {
        let (first, last) = (1000 + i * 5, 1000 + i * 5 + 4);
        commit(
            &location,
            "vitals_raw",
            &VITALS_RAW_SCHEMA,
            rows(&VITALS_RAW_SCHEMA, first..=last, now_ns),
            &source.app_id(1),
            last,
        )
        .await;
    }
    // vitals_clean: batches 1..=10 of 3 rows, the first 5 three days old. dead_letters: one old row.
    for id in 1..=10i64 {
        let time = if id <= 5 { now_ns - 3 * DAY_NS } else { now_ns };
        commit(
            &location,
            "vitals_clean",
            &VITALS_CLEAN_SCHEMA,
            rows(&VITALS_CLEAN_SCHEMA, id * 10..=id * 10 + 2, time),
            "etl",
            id,
        )
        .await;
    }
    commit(
        &location,
        "dead_letters",
        &DEAD_LETTERS_SCHEMA,
        rows(&DEAD_LETTERS_SCHEMA, 5..=5, now_ns - 3 * DAY_NS),
        &source.app_id(0),
        5,
    )
    .await;

    let before = counts(&location).await;
    assert_eq!(before, vec![(115, 115), (30, 30), (1, 1)]);
    let partitions = BTreeSet::from([0, 1]);
    let raw = LakeTable::open(&location, "vitals_raw", None).await.unwrap().unwrap();
    let resume_before = resume_positions(&raw, &source, &partitions).await.unwrap();
    assert_eq!(resume_before, BTreeMap::from([(0, 100), (1, 1015)]));
    // The ETL has read every vitals_raw version.
    let processed = EtlCheckpoint { last_batch_id: 10, raw_version: raw.version(), ..EtlCheckpoint::default() };
    save_etl_checkpoint(&location, &processed).await.unwrap();

    let config = CompactionConfig { min_files: 3, grace_seconds: 0, ..CompactionConfig::default() };
    let first = compact_once(&location, &config).await.unwrap();
    assert_eq!((first.merged_files, first.replaced_files), (2, 23 + 10));
    // Replaced files are out of the snapshot and, past the grace period, deleted; rows unchanged.
    assert_eq!(
        (snapshot_files(&location, "vitals_raw").await, snapshot_files(&location, "vitals_clean").await),
        (1, 1)
    );
    assert_eq!((objects(&location, "vitals_raw").await, objects(&location, "vitals_clean").await), (1, 1));
    assert_eq!(counts(&location).await, before);
    let raw = LakeTable::open(&location, "vitals_raw", None).await.unwrap().unwrap();
    assert_eq!(resume_positions(&raw, &source, &partitions).await.unwrap(), resume_before);
    // Compaction adds no data: the ETL reads nothing new.
    assert!(raw.added_since(processed.raw_version, 100).await.unwrap().is_empty());

    // A flush landed after the ETL's last read is kept by retention whatever the cut-off: asked to
    // drop everything, it drops what was landed more than an hour before that flush.
    commit(
        &location,
        "vitals_raw",
        &VITALS_RAW_SCHEMA,
        rows(&VITALS_RAW_SCHEMA, 100..=104, now_ns),
        &source.app_id(0),
        104,
    )
    .await;
    let expired = expire_before(&location, now_ns / 1_000_000 + DAY_NS / 1_000_000).await.unwrap();
    assert_eq!(expired, 50 + 15 + 1);
    assert_eq!(counts(&location).await, vec![(70, 70), (15, 15), (0, 0)]);
    let raw = LakeTable::open(&location, "vitals_raw", None).await.unwrap().unwrap();
    assert_eq!(resume_positions(&raw, &source, &partitions).await.unwrap(), BTreeMap::from([(0, 105), (1, 1015)]));
}

/// The versions of the log objects under `table`'s Delta log whose name ends in `suffix`: commits
/// (`.json`) or checkpoints (`.checkpoint.parquet`).
fn log_versions(dir: &std::path::Path, table: &str, suffix: &str) -> BTreeSet<i64> {
    std::fs::read_dir(dir.join(table).join("_delta_log"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(suffix)?.parse().ok()))
        .collect()
}

fn log_commits(dir: &std::path::Path, table: &str) -> BTreeSet<i64> {
    log_versions(dir, table, ".json")
}

/// Makes every object of `table`'s Delta log look two hours old.
fn age_log(dir: &std::path::Path, table: &str) {
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7_200);
    for entry in std::fs::read_dir(dir.join(table).join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::File::options().append(true).open(&path).unwrap().set_modified(two_hours_ago).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_tables_log_is_trimmed_behind_a_checkpoint_never_past_what_the_etl_reads() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let source = KafkaSource { cluster_id: "c".into(), topic: "t".into(), topic_id: String::new() };
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // 120 flushes (Delta writes a checkpoint every 50 versions); the ETL has read all but the last 60.
    for offset in 0..120i64 {
        let batch = rows(&VITALS_RAW_SCHEMA, offset..=offset, now_ns);
        commit(&location, "vitals_raw", &VITALS_RAW_SCHEMA, batch, &source.app_id(0), offset).await;
    }
    // patient_latest: replaced by each of 5 micro-batches.
    let mut latest = LakeTable::open_or_create(&location, "patient_latest", &PATIENT_LATEST_SCHEMA).await.unwrap();
    for id in 1..=5i64 {
        let batch = rows(&PATIENT_LATEST_SCHEMA, id..=id + 2, now_ns);
        latest.replace_batches(&batch_prefix(id), &[batch], vec![Transaction::new("etl", id)]).await.unwrap();
    }
    let raw = LakeTable::open(&location, "vitals_raw", None).await.unwrap().unwrap();
    let unread_from = raw.version() - 59;
    let processed = EtlCheckpoint { raw_version: unread_from - 1, ..EtlCheckpoint::default() };
    save_etl_checkpoint(&location, &processed).await.unwrap();
    let commits_before = log_commits(dir.path(), "vitals_raw");
    assert_eq!(commits_before.len() as i64, raw.version() + 1);

    let config = CompactionConfig { min_files: 3, grace_seconds: 0, log_retention_minutes: 60, ..Default::default() };
    // A log younger than its retention stays whole; the replaced patient_latest files go.
    let young = compact_once(&location, &config).await.unwrap();
    assert_eq!(young.deleted_log_entries, 0);
    assert!(log_commits(dir.path(), "vitals_raw").is_superset(&commits_before));
    assert_eq!(objects(&location, "patient_latest").await, 1);
    assert_eq!(snapshot_files(&location, "patient_latest").await, 1);

    // Aged past it: the commits before the last checkpoint at or before the first unread version go,
    // and every version from there on is still read.
    age_log(dir.path(), "vitals_raw");
    // Delta checkpoints every 50 commits: the second lies after the first unread version.
    let checkpoints = log_versions(dir.path(), "vitals_raw", ".checkpoint.parquet");
    assert_eq!(checkpoints.len(), 2, "{checkpoints:?}");
    let aged = compact_once(&location, &config).await.unwrap();
    let kept = log_commits(dir.path(), "vitals_raw");
    let checkpoint_kept = *checkpoints.range(..=unread_from).next_back().expect("Delta wrote a checkpoint");
    assert_eq!(kept.first().copied(), Some(checkpoint_kept), "{kept:?}");
    assert_eq!(aged.deleted_log_entries as i64, checkpoint_kept);
    let raw = LakeTable::open(&location, "vitals_raw", None).await.unwrap().unwrap();
    let unread = raw.added_since(processed.raw_version, 1_000).await.unwrap();
    assert_eq!(unread.len(), 60);
    assert!(LakeTable::open(&location, "vitals_raw", Some(unread_from)).await.unwrap().is_some());
    assert_eq!(raw.row_count(), 120);
    let resume = resume_positions(&raw, &source, &BTreeSet::from([0])).await.unwrap();
    assert_eq!(resume, BTreeMap::from([(0, 120)]));
}
