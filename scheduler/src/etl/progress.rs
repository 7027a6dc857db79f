//! Where the ETL stands: batches committed, rows written, lag behind ingest, alert delivery, errors.
//! Read from the store (the ETL checkpoint, the `vitals_raw` commits it has not read, the alert
//! sinks' checkpoints), so `vitalflow status` works with every process stopped; the scheduler process that
//! runs the driver adds its in-memory figures (failures, the last error) for the `etl_progress` table.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use vitalflow_udf_model::lake::checkpoint::{load_delivery_checkpoint, load_etl_checkpoint};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use crate::error::{Error, Result};
use crate::etl::partition_group::PartitionGroup;
use crate::etl::{EtlStats, count_rows};
use crate::ward_alerts::budget::{WardAlertRate, read_alert_rates};

/// Name of the Flight SQL table.
pub const PROGRESS_TABLE: &str = "etl_progress";

/// The ETL's progress, one row of `etl_progress` and the figures of `vitalflow status --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtlProgress {
    /// The batch id up to which every micro-batch is committed (ids run 1, 2, ... across the partition groups).
    pub batches_committed: i64,
    /// When the last batch was committed (RFC 3339, UTC); `None` before the first, or when its
    /// checkpoint predates the field.
    pub last_commit_time: Option<String>,
    /// The lowest batch started and not committed (running now, or interrupted and re-run at the next
    /// start); with several partition groups, one per group may be.
    pub pending_batch_id: Option<i64>,
    /// Rows written to `vitals_clean` by the committed batches.
    pub rows_out: u64,
    /// Rows the ETL sent to `dead_letters`.
    pub rejected: u64,
    /// Rows written to `risk_alerts`.
    pub alerts: u64,
    /// Data files landed in `vitals_raw` that the ETL has not committed yet.
    pub lag_files: u64,
    /// Rows in those files.
    pub lag_records: u64,
    /// Seconds since the oldest of those commits landed; `None` when there are none.
    pub lag_seconds: Option<f64>,
    /// Failed micro-batches since the driver started (`None`: not known outside the driver's process).
    pub failures: Option<u64>,
    /// The driver's last failure, cleared by the next commit (`None` also outside its process).
    pub last_error: Option<String>,
    /// Last batch whose alerts the Kafka topic acknowledged; `None` when that sink never ran.
    pub kafka_delivered_batch_id: Option<i64>,
    /// Committed batches whose alerts the Kafka topic has not acknowledged yet.
    pub kafka_lag_batches: Option<i64>,
    /// Last batch whose alerts the webhook acknowledged; `None` when that sink never ran.
    pub webhook_delivered_batch_id: Option<i64>,
    /// Committed batches whose alerts the webhook has not acknowledged yet.
    pub webhook_lag_batches: Option<i64>,
    /// The last delivery failure of a sink (`sink: error`), cleared by its next success; driver's process only.
    pub alert_delivery_error: Option<String>,
    /// Alerts a ward acts on raised since the alert keeper first ran (rows of `alerts`); `None` before.
    #[serde(default)]
    pub ward_alerts: Option<u64>,
    /// Those alerts per 35 patients per day of the readings' time (the alert budget's unit; see
    /// `ward_alerts::budget`).
    #[serde(default)]
    pub alerts_per_35_patients_per_day: Option<f64>,
    /// The same per ward: its alerts, its patients and their rate (empty before the keeper has run).
    #[serde(default)]
    pub ward_alert_rates: Vec<WardAlertRate>,
    /// When these figures were read (RFC 3339, UTC).
    pub checked_at: String,
}

/// Schema of the `etl_progress` table: the fields of [`EtlProgress`] in order.
pub static PROGRESS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let ward_rate = DataType::Struct(
        vec![
            Field::new("ward", DataType::Utf8, false),
            Field::new("alerts", DataType::UInt64, false),
            Field::new("patients", DataType::UInt64, false),
            Field::new("per_35_patients_per_day", DataType::Float64, true),
        ]
        .into(),
    );
    Arc::new(Schema::new(vec![
        Field::new("batches_committed", DataType::Int64, false),
        Field::new("last_commit_time", time.clone(), true),
        Field::new("pending_batch_id", DataType::Int64, true),
        Field::new("rows_out", DataType::UInt64, false),
        Field::new("rejected", DataType::UInt64, false),
        Field::new("alerts", DataType::UInt64, false),
        Field::new("lag_files", DataType::UInt64, false),
        Field::new("lag_records", DataType::UInt64, false),
        Field::new("lag_seconds", DataType::Float64, true),
        Field::new("failures", DataType::UInt64, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("kafka_delivered_batch_id", DataType::Int64, true),
        Field::new("kafka_lag_batches", DataType::Int64, true),
        Field::new("webhook_delivered_batch_id", DataType::Int64, true),
        Field::new("webhook_lag_batches", DataType::Int64, true),
        Field::new("alert_delivery_error", DataType::Utf8, true),
        Field::new("ward_alerts", DataType::UInt64, true),
        Field::new("alerts_per_35_patients_per_day", DataType::Float64, true),
        Field::new("ward_alert_rates", DataType::List(Arc::new(Field::new("item", ward_rate, true))), false),
        Field::new("checked_at", time, false),
    ]))
});

impl EtlProgress {
    /// One row of [`PROGRESS_SCHEMA`].
    pub fn to_record_batch(&self) -> Result<RecordBatch> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Config(format!("encoding etl_progress: {e}")))?;
        let bad = |e: arrow::error::ArrowError| Error::Config(format!("building etl_progress: {e}"));
        let mut decoder = arrow::json::ReaderBuilder::new(PROGRESS_SCHEMA.clone()).build_decoder().map_err(bad)?;
        decoder.decode(&json).map_err(bad)?;
        decoder.flush().map_err(bad)?.ok_or_else(|| Error::Config("etl_progress: no row".into()))
    }
}

/// Most `vitals_raw` commits `status` reads to measure the lag (one small read each).
const MAX_LAG_COMMITS: usize = 100_000;

fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The progress as the store shows it, plus the driver's in-memory figures when `stats` is given.
pub async fn read_progress(location: &DataLocation, stats: Option<&EtlStats>) -> Result<EtlProgress> {
    let now = chrono::Utc::now();
    let checkpoint = load_etl_checkpoint(location).await?;
    let (mut lag_files, mut lag_records, mut oldest) = (0, 0, None);
    if let Some(raw) = LakeTable::open(location, table::VITALS_RAW, None).await?
        && raw.version() > checkpoint.raw_version
    {
        // After the slowest group's version, only what the file's own group has not read yet.
        let added: Vec<_> = raw
            .added_since(checkpoint.raw_version, MAX_LAG_COMMITS)
            .await?
            .into_iter()
            .filter(|(version, f)| !checkpoint.has_processed(*version, PartitionGroup::partition_of(&f.path)))
            .collect();
        let paths: Vec<_> =
            added.iter().map(|(_, f)| location.path(&format!("{}/{}", table::VITALS_RAW, f.path))).collect();
        lag_files = paths.len() as u64;
        lag_records = count_rows(location, &paths).await? as u64;
        if let Some((first, _)) = added.first() {
            oldest = raw.commit_time(*first).await?.and_then(chrono::DateTime::from_timestamp_millis);
        }
    }
    let mut progress = EtlProgress {
        batches_committed: checkpoint.last_batch_id,
        last_commit_time: (checkpoint.committed_at_ms > 0)
            .then(|| chrono::DateTime::from_timestamp_millis(checkpoint.committed_at_ms).map(rfc3339))
            .flatten(),
        pending_batch_id: checkpoint.pending_batches().map(|p| p.id).min(),
        rows_out: checkpoint.totals.rows_out,
        rejected: checkpoint.totals.rejected,
        alerts: checkpoint.totals.alerts,
        lag_files,
        lag_records,
        lag_seconds: oldest.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        checked_at: rfc3339(now),
        ..EtlProgress::default()
    };
    for (sink, delivered, lag) in [
        ("kafka", &mut progress.kafka_delivered_batch_id, &mut progress.kafka_lag_batches),
        ("webhook", &mut progress.webhook_delivered_batch_id, &mut progress.webhook_lag_batches),
    ] {
        if let Some(c) = load_delivery_checkpoint(location, sink).await? {
            *delivered = Some(c.last_batch_id);
            *lag = Some((checkpoint.last_batch_id - c.last_batch_id).max(0));
        }
    }
    if let Some(rates) = read_alert_rates(location).await? {
        progress.ward_alerts = Some(rates.raised);
        progress.alerts_per_35_patients_per_day = rates.per_35_patients_per_day;
        progress.ward_alert_rates = rates.wards;
    }
    if let Some(stats) = stats {
        progress.failures = Some(stats.failures.load(Ordering::Relaxed));
        progress.last_error = stats.last_error.lock().ok().and_then(|e| e.clone());
        progress.alert_delivery_error =
            stats.delivery.sinks().into_iter().find_map(|(name, s)| s.last_error().map(|e| format!("{name}: {e}")));
    }
    Ok(progress)
}

/// The figures for a person, one per line.
pub fn render(progress: &EtlProgress) -> String {
    let p = progress;
    let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_string());
    let mut lines = vec![
        format!("batches committed   {} (last at {})", p.batches_committed, or(&p.last_commit_time, "never")),
        format!("rows out            {} clean, {} rejected, {} alerts", p.rows_out, p.rejected, p.alerts),
        match p.lag_seconds {
            Some(age) => format!(
                "lag behind ingest   {} files, {} records, oldest landed {age:.1} s ago",
                p.lag_files, p.lag_records
            ),
            None => "lag behind ingest   none (every landed file is processed)".to_string(),
        },
    ];
    if let Some(id) = p.pending_batch_id {
        lines.push(format!("pending batch       {id} (started, not committed: running, or re-run at the next start)"));
    }
    for (sink, delivered, lag) in [
        ("kafka", p.kafka_delivered_batch_id, p.kafka_lag_batches),
        ("webhook", p.webhook_delivered_batch_id, p.webhook_lag_batches),
    ] {
        let line = match (delivered, lag) {
            (Some(d), Some(l)) => format!("delivered through batch {d}, {l} batches behind"),
            _ => "never ran".to_string(),
        };
        lines.push(format!("alerts to {sink:<9} {line}"));
    }
    match (p.failures, &p.last_error) {
        (Some(n), Some(e)) => lines.push(format!("failures            {n}; last: {e}")),
        (Some(n), None) => lines.push(format!("failures            {n} since start, none now")),
        (None, _) => lines.push(
            "failures            (known to the running scheduler: etl_progress over Flight SQL, logs)".to_string(),
        ),
    }
    if let Some(raised) = p.ward_alerts {
        let rate = p.alerts_per_35_patients_per_day.map_or("no patients yet".to_string(), |r| format!("{r:.1}"));
        lines.push(format!(
            "ward alerts         {raised} raised; per 35 patients per day of readings: {rate} (budget about 1)"
        ));
        for w in &p.ward_alert_rates {
            let rate = w.per_35_patients_per_day.map_or("no patients".to_string(), |r| format!("{r:.1}"));
            lines.push(format!(
                "  ward {}: {} alerts, {} patients; per 35 patients per day of readings: {rate}",
                w.ward, w.alerts, w.patients
            ));
        }
    }
    if let Some(e) = &p.alert_delivery_error {
        lines.push(format!("alert delivery      failing: {e}"));
    }
    lines.push(format!("checked at          {}", p.checked_at));
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use vitalflow_udf_model::lake::table::Transaction;
    use vitalflow_udf_model::lake::write_data_file;
    use vitalflow_udf_model::schema::VITALS_RAW_SCHEMA;

    use super::*;

    #[tokio::test]
    async fn progress_reads_checkpoints_and_counts_unprocessed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let mut raw = LakeTable::open_or_create(&location, table::VITALS_RAW, &VITALS_RAW_SCHEMA).await.unwrap();
        // Three flushes: versions 1, 2, 3.
        for (partition, last, n) in [(0, 9, 10), (0, 16, 7), (1, 4, 5)] {
            let rows = crate::etl::tests::raw_rows(n);
            let prefix = format!("vitals-p{partition}");
            let file = write_data_file(&location, table::VITALS_RAW, &prefix, &[rows]).await.unwrap();
            raw.append(&[file], vec![Transaction::new(format!("app/{partition}"), last)]).await.unwrap();
        }
        let nothing = read_progress(&location, None).await.unwrap();
        assert_eq!((nothing.batches_committed, nothing.lag_files, nothing.lag_records), (0, 3, 22));
        assert!(nothing.lag_seconds.is_some() && nothing.last_commit_time.is_none() && nothing.failures.is_none());

        // Two partition groups: the first runs batch 5, the second has committed batch 6 and read on.
        let checkpoint = r#"{"last_batch_id":4,"raw_version":1,
            "totals":{"rows_out":9,"rejected":1,"alerts":2},"committed_at_ms":1795000000000,
            "groups":[{"last_batch_id":4,"raw_version":1,"pending":{"id":5,"files":[],"raw_version":2,"state_version":0}},
                      {"last_batch_id":6,"raw_version":3}]}"#;
        let put = |path: &str, body: &str| {
            let (path, body) = (location.path(path), object_store::PutPayload::from(body.to_string()));
            let store = location.store().clone();
            async move { object_store::ObjectStoreExt::put(store.as_ref(), &path, body).await.unwrap() }
        };
        put(vitalflow_udf_model::lake::names::ETL_CHECKPOINT, checkpoint).await;
        put(&vitalflow_udf_model::lake::names::alert_sink_checkpoint("kafka"), r#"{"last_batch_id":3}"#).await;
        let stats = EtlStats::default();
        stats.failures.store(2, Ordering::Relaxed);
        let p = read_progress(&location, Some(&stats)).await.unwrap();
        assert_eq!((p.batches_committed, p.pending_batch_id, p.rows_out, p.rejected, p.alerts), (4, Some(5), 9, 1, 2));
        // Partition 0's second flush: partition 1's (version 3) is read by the second group.
        assert_eq!((p.lag_files, p.lag_records), (1, 7));
        assert_eq!(p.last_commit_time.as_deref(), Some("2026-11-18T11:06:40.000Z"));
        assert_eq!((p.kafka_delivered_batch_id, p.kafka_lag_batches), (Some(3), Some(1)));
        assert_eq!((p.webhook_delivered_batch_id, p.webhook_lag_batches), (None, None));
        assert_eq!((p.failures, p.last_error.clone()), (Some(2), None));

        let batch = p.to_record_batch().unwrap();
        assert_eq!((batch.num_rows(), batch.schema()), (1, PROGRESS_SCHEMA.clone()));
        assert!(render(&p).contains("lag behind ingest   1 files, 7 records"), "{}", render(&p));
    }
}
