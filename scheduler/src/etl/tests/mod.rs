//! The ETL SQL and driver on an in-process context: cleaning, de-duplication, carry-forward across
//! batches, the alert rule, patient_latest, and re-runs after a crash; the golden files ([`golden`]).

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use vitalflow_ingest::batch::VitalsRawBuilder;
use vitalflow_ingest::decode::Reading;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::checkpoint::load_etl_checkpoint;
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable, write_data_file};
use vitalflow_udf_model::rubric::Consciousness;
use vitalflow_udf_model::schema::{VITALS_RAW_SCHEMA, table};

use super::*;
use crate::catalog::session::local_context;

mod golden;
mod reading_context;

const T0: i64 = 1_795_000_000_000_000_000; // 2026-11-18T11:07:40Z, in ns
const MINUTE: i64 = 60_000_000_000;

/// A reading at `minute` past T0 with vitals in `Vital::ALL` order.
fn reading(patient: &str, minute: i64, vitals: [Option<f64>; 7]) -> Reading {
    Reading {
        patient_id: patient.into(),
        event_time_ns: T0 + minute * MINUTE,
        vitals,
        on_oxygen: Some(false),
        consciousness: Some(Consciousness::Alert),
        ..Reading::default()
    }
}

const NORMAL: [Option<f64>; 7] = [Some(75.0), Some(120.0), Some(80.0), Some(98.0), Some(36.8), Some(100.0), Some(16.0)];
const CRITICAL: [Option<f64>; 7] =
    [Some(150.0), Some(80.0), Some(40.0), Some(85.0), Some(40.0), Some(350.0), Some(30.0)];

struct Fixture {
    _dir: tempfile::TempDir,
    location: DataLocation,
    forest: Arc<RiskForest>,
    ctx: SessionContext,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let forest = Arc::new(RiskForest::bundled().unwrap());
        let ctx = local_context(&location, &forest).unwrap();
        Fixture { _dir: dir, location, forest, ctx }
    }

    /// Lands `readings` as partition 0 from `first_offset` on, as ingest would.
    async fn land(&self, first_offset: i64, readings: Vec<Reading>) {
        self.land_on(0, first_offset, readings).await
    }

    /// Lands `readings` as partition `partition` from `first_offset` on, as ingest would.
    async fn land_on(&self, partition: i32, first_offset: i64, readings: Vec<Reading>) {
        let mut builder = VitalsRawBuilder::default();
        for (i, r) in readings.iter().enumerate() {
            builder.append_reading(first_offset + i as i64, r);
        }
        let last = first_offset + readings.len() as i64 - 1;
        let batch = builder.finish("vitals", partition, T0 + 60 * MINUTE).unwrap();
        let mut raw = LakeTable::open_or_create(&self.location, table::VITALS_RAW, &VITALS_RAW_SCHEMA).await.unwrap();
        let prefix = format!("vitals-p{partition}");
        let file = write_data_file(&self.location, table::VITALS_RAW, &prefix, &[batch]).await.unwrap();
        raw.append(&[file], vec![Transaction::new(format!("test-ingest/vitals/{partition}"), last)]).await.unwrap();
    }

    /// A driver of `groups` partition groups.
    async fn driver_of(&self, groups: u32) -> EtlDriver {
        let ctx = local_context(&self.location, &self.forest).unwrap();
        let config = EtlConfig { partition_groups: groups, ..EtlConfig::default() };
        EtlDriver::new(ctx, self.location.clone(), &config, Arc::new(EtlStats::default())).await.unwrap()
    }

    async fn driver(&self) -> EtlDriver {
        let ctx = local_context(&self.location, &self.forest).unwrap();
        EtlDriver::new(ctx, self.location.clone(), &EtlConfig::default(), Arc::new(EtlStats::default())).await.unwrap()
    }

    async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        self.ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        let batches = self.query(sql).await;
        batches[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0)
    }

    async fn strings(&self, sql: &str) -> Vec<Option<String>> {
        let batches = self.query(sql).await;
        batches
            .iter()
            .flat_map(|b| {
                let a = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
                let a = a.as_any().downcast_ref::<StringArray>().unwrap().clone();
                (0..a.len()).map(move |i| a.is_valid(i).then(|| a.value(i).to_string())).collect::<Vec<_>>()
            })
            .collect()
    }
}

#[tokio::test]
async fn every_row_ends_clean_or_rejected_with_duplicates_and_implausible_values_rejected() {
    let f = Fixture::new();
    let mut swapped = NORMAL;
    (swapped[1], swapped[2]) = (Some(70.0), Some(110.0));
    f.land(
        0,
        vec![
            reading("P1", 0, NORMAL),
            reading("P1", 0, NORMAL), // re-sent: duplicate
            reading("P1", 1, swapped),
            reading("P2", 0, NORMAL),
            reading("P2", 0, CRITICAL), // same time, other values: kept
        ],
    )
    .await;
    let mut driver = f.driver().await;
    let report = driver.run_once().await.unwrap().unwrap();
    assert_eq!((report.rows_out, report.rejected), (3, 2));
    assert_eq!(f.count("SELECT count(*) FROM vitals_clean").await, 3);
    let codes = f.strings("SELECT reason_code FROM dead_letters WHERE stage = 'etl' ORDER BY source_offset").await;
    assert_eq!(codes, vec![Some("duplicate".into()), Some("implausible_value".into())]);
    let reasons = f.strings("SELECT reason FROM dead_letters WHERE reason_code = 'implausible_value'").await;
    assert!(reasons[0].as_deref().unwrap().contains("diastolic_bp 110"), "{reasons:?}");
    let payload = f.strings("SELECT CAST(payload AS VARCHAR) FROM dead_letters WHERE reason_code = 'duplicate'").await;
    assert!(payload[0].as_deref().unwrap().contains(r#""patient_id":"P1""#), "{payload:?}");
    // Offsets 0..=4 each exactly once across the two tables.
    let total = f
        .count(
            "SELECT count(DISTINCT source_offset) FROM (SELECT source_offset FROM vitals_clean \
             UNION ALL SELECT source_offset FROM dead_letters WHERE stage = 'etl')",
        )
        .await;
    assert_eq!(total, 5);
    assert!(driver.run_once().await.unwrap().is_none());

    // The next batch: a copy of an earlier batch's reading is a duplicate of it; a reading lacking a
    // vital, sent twice, keeps its first copy (NULL equals NULL here); a reading at a time already
    // seen but with other values is kept.
    let mut partial = NORMAL;
    partial[5] = None;
    f.land(
        5,
        vec![
            reading("P1", 0, NORMAL),
            reading("P3", 2, partial),
            reading("P3", 2, partial),
            reading("P2", 0, one_beat_faster(CRITICAL)),
        ],
    )
    .await;
    let report = driver.run_once().await.unwrap().unwrap();
    assert_eq!((report.rows_out, report.rejected), (2, 2));
    let duplicates =
        f.count("SELECT count(*) FROM dead_letters WHERE reason_code = 'duplicate' AND source_offset IN (5, 7)").await;
    assert_eq!(duplicates, 2);
}

/// `vitals` with heart rate one beat higher: the same time as a reading, other values.
fn one_beat_faster(mut vitals: [Option<f64>; 7]) -> [Option<f64>; 7] {
    vitals[0] = vitals[0].map(|v| v + 1.0);
    vitals
}

#[tokio::test]
async fn missing_vitals_are_carried_forward_for_a_bounded_time_across_batches() {
    let f = Fixture::new();
    f.land(0, vec![reading("P1", 0, NORMAL)]).await;
    let mut driver = f.driver().await;
    driver.run_once().await.unwrap().unwrap();
    let mut no_glucose = NORMAL;
    no_glucose[5] = None;
    // 10 minutes later glucose is carried (default 15 min); 40 minutes later it is not.
    f.land(1, vec![reading("P1", 10, no_glucose), reading("P1", 40, no_glucose)]).await;
    driver.run_once().await.unwrap().unwrap();
    let rows = f.query("SELECT glucose, risk FROM vitals_clean WHERE source_offset > 0 ORDER BY event_time").await;
    let glucose = rows[0].column(0).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!((glucose.value(0), glucose.is_null(1)), (100.0, true));
    // The trend model scores a reading whatever it lacks: its trees route a missing vital.
    let risk = rows[0].column(1).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((risk.value(0), risk.value(1)), ("Low", "Low"));
    // patient_latest: one row, the newest reading, with glucose missing as it is there.
    assert_eq!(f.count("SELECT count(*) FROM patient_latest").await, 1);
    assert_eq!(f.count("SELECT source_offset FROM patient_latest").await, 2);
}

#[tokio::test]
async fn an_alert_is_raised_once_per_rise_to_high_across_batches() {
    let f = Fixture::new();
    // P1: High from its first reading (alert, previous NULL), stays High (none), Low, High again (alert).
    f.land(0, vec![reading("P1", 0, CRITICAL), reading("P1", 1, CRITICAL), reading("P2", 0, NORMAL)]).await;
    let mut driver = f.driver().await;
    driver.run_once().await.unwrap().unwrap();
    f.land(
        3,
        vec![
            reading("P1", 2, CRITICAL),
            reading("P1", 3, NORMAL),
            reading("P1", 4, CRITICAL),
            reading("P2", 5, CRITICAL),
        ],
    )
    .await;
    driver.run_once().await.unwrap().unwrap();
    let alerts = f.strings("SELECT concat(patient_id, ':', CAST(source_offset AS VARCHAR), ':', coalesce(previous_risk, '-')) FROM risk_alerts ORDER BY patient_id, event_time").await;
    assert_eq!(alerts, vec![Some("P1:0:-".into()), Some("P1:5:Low".into()), Some("P2:6:Low".into())]);
    let ids = f.strings("SELECT alert_id FROM risk_alerts ORDER BY source_offset").await;
    assert_eq!(ids[0].as_deref(), Some("vitals/0/0"));
    // Each alert says why: the three inputs that pushed P(High) up most, largest first, as explain_risk gives them.
    let reasons = f.strings("SELECT top_reasons FROM risk_alerts ORDER BY source_offset").await;
    let arguments: Vec<String> = f.forest.trend().unwrap().arguments().into_iter().map(|(name, _)| name).collect();
    let why = f
        .query(&format!(
            "SELECT explain_trend_risk({}) FROM vitals_clean WHERE source_offset = 0",
            arguments.join(", ")
        ))
        .await;
    let why = why[0].column(0).as_any().downcast_ref::<arrow::array::StructArray>().unwrap().clone();
    let expected = vitalflow_udf_model::udf::top_reasons(&why, 3);
    assert_eq!(reasons[0].as_deref(), Some(expected.value(0)));
    for reason in &reasons {
        let reason = reason.as_deref().unwrap_or_default();
        assert_eq!(reason.split(", ").count(), 3, "{reason}");
        assert!(reason.starts_with("ward_points"), "{reason}");
    }
    // Rolling features and the anomaly flag: P2 jumped from normal to critical.
    let rows = f.query("SELECT anomaly, heart_rate_change FROM vitals_clean WHERE source_offset = 6").await;
    let anomaly = rows[0].column(0).as_any().downcast_ref::<BooleanArray>().unwrap();
    let change = rows[0].column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    assert!(anomaly.value(0));
    assert_eq!(change.value(0), 75.0);
    let latest = f.strings("SELECT concat(patient_id, ':', risk) FROM patient_latest ORDER BY patient_id").await;
    assert_eq!(latest, vec![Some("P1:High".into()), Some("P2:High".into())]);
}

#[tokio::test]
async fn a_batch_interrupted_before_its_checkpoint_reruns_the_same_files_and_commits_nothing_twice() {
    let f = Fixture::new();
    f.land(0, vec![reading("P1", 0, CRITICAL)]).await;
    let mut driver = f.driver().await;
    // Simulate the crash: the batch recorded as pending, its outputs written, its commit not made.
    driver.groups[0].next_batch().await.unwrap().unwrap();
    let intent = load_etl_checkpoint(&f.location).await.unwrap();
    assert_eq!(intent.pending_batches().count(), 1);
    driver.run_once().await.unwrap().unwrap();
    let committed = driver.checkpoint().await;
    // A file landing meanwhile waits for the next batch; the crashed batch re-runs alone.
    f.land(1, vec![reading("P1", 1, NORMAL)]).await;
    let restarted_driver = f.driver().await;
    *restarted_driver.shared.checkpoint.lock().await = intent;
    let mut restarted = restarted_driver;
    let report = restarted.run_once().await.unwrap().unwrap();
    assert_eq!((report.id, report.files, report.rows_out, report.alerts), (1, 1, 1, 1));
    // The same checkpoint of the batch's group (the other group read on: the new file is not its).
    let rerun = restarted.checkpoint().await;
    assert_eq!(
        (rerun.last_batch_id, rerun.totals, &rerun.groups[0]),
        (committed.last_batch_id, committed.totals, &committed.groups[0])
    );
    assert_eq!(f.count("SELECT count(*) FROM risk_alerts").await, 1);
    let report = restarted.run_once().await.unwrap().unwrap();
    assert_eq!((report.id, report.rows_out, report.alerts), (2, 1, 0));
    assert_eq!(f.count("SELECT count(*) FROM vitals_clean").await, 2);
    assert_eq!(f.count("SELECT count(*) FROM patient_latest").await, 1);
}

/// `n` normal readings of one patient as a `vitals_raw` batch (for tests of other modules).
pub(crate) fn raw_rows(n: usize) -> RecordBatch {
    let mut builder = VitalsRawBuilder::default();
    for i in 0..n {
        builder.append_reading(i as i64, &reading("P1", i as i64, NORMAL));
    }
    builder.finish("vitals", 0, T0).unwrap()
}

/// A simulated reading as ingest decodes it, `seconds` after T0.
fn simulated(record: &vitalflow_udf_model::simulate::VitalsRecord, seconds: f64) -> Reading {
    Reading {
        patient_id: record.patient_id.clone(),
        event_time_ns: T0 + (seconds * 1e9) as i64,
        vitals: record.vitals(),
        on_oxygen: record.on_oxygen,
        consciousness: record.consciousness.as_deref().and_then(Consciousness::parse),
        ..Reading::default()
    }
}

#[tokio::test]
async fn the_etl_scores_each_reading_as_training_and_evaluate_do_across_batches() {
    use vitalflow_udf_model::simulate::{SimulatorSettings, VitalsSimulator};
    use vitalflow_udf_model::trend::{PatientTrend, TrendSettings};

    let f = Fixture::new();
    let trend = f.forest.trend().expect("the bundled model has a trend model").clone();
    let columns = trend.argument_columns().unwrap();
    // A ward with missing fields and artefacts, one reading per patient every 30 s, landed in five
    // batches so that carry-forward and windows cross batch boundaries.
    let settings = SimulatorSettings { missing_rate: 0.15, ill_at_start: 0.6, ..SimulatorSettings::default() };
    let mut sim = VitalsSimulator::with_settings(12, 11, settings);
    let mut expected: std::collections::HashMap<(String, i64), (String, f64, f64, f64)> = Default::default();
    let mut passes: std::collections::HashMap<String, PatientTrend> = Default::default();
    let mut driver = f.driver().await;
    let mut offset = 0;
    for batch in 0..5 {
        let mut readings = Vec::new();
        for tick in 0..8 {
            for _ in 0..12 {
                let seconds = f64::from(batch * 8 + tick) * 30.0;
                let record = sim.next_reading(chrono::DateTime::UNIX_EPOCH);
                let reading = simulated(&record, seconds);
                let pass = passes
                    .entry(record.patient_id.clone())
                    .or_insert_with(|| PatientTrend::new(TrendSettings::default()));
                if let Some(row) = pass.push(seconds, &record.measured()) {
                    let p = trend.predict_arguments(&row.values(&columns)).unwrap();
                    let mean = row.get(vitalflow_udf_model::trend::TrendColumn::RollingMean(
                        vitalflow_udf_model::schema::Vital::HeartRate,
                    ));
                    expected.insert(
                        (record.patient_id.clone(), reading.event_time_ns),
                        (
                            p.risk.as_str().to_string(),
                            p.probabilities[0],
                            trend.calibrated_high(p.probabilities[0]),
                            mean,
                        ),
                    );
                }
                readings.push(reading);
            }
        }
        let n = readings.len() as i64;
        f.land(offset, readings).await;
        offset += n;
        driver.run_once().await.unwrap().unwrap();
    }
    let rows = f
        .query(
            "SELECT patient_id, CAST(event_time AS BIGINT) AS t, risk, forest_probability_high, heart_rate_rolling_mean, \
             probability_high \
             FROM vitals_clean ORDER BY patient_id, event_time",
        )
        .await;
    let mut compared = 0;
    for b in &rows {
        let patient = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let patient = patient.as_any().downcast_ref::<StringArray>().unwrap();
        let time = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let risk = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8).unwrap();
        let risk = risk.as_any().downcast_ref::<StringArray>().unwrap();
        let p = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        let mean = b.column(4).as_any().downcast_ref::<Float64Array>().unwrap();
        let calibrated = b.column(5).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            let key = (patient.value(i).to_string(), time.value(i));
            let (want_risk, want_p, want_calibrated, want_mean) =
                expected.get(&key).unwrap_or_else(|| panic!("{key:?} not expected"));
            // Every reading has a risk, missing vitals or not, and the same as the Rust pass gives.
            assert_eq!(risk.value(i), want_risk, "{key:?}");
            assert!((p.value(i) - want_p).abs() < 1e-9, "{key:?}: {} vs {want_p}", p.value(i));
            assert!((calibrated.value(i) - want_calibrated).abs() < 1e-9, "{key:?}");
            assert_eq!(mean.is_null(i), want_mean.is_nan(), "{key:?}");
            assert!(mean.is_null(i) || (mean.value(i) - want_mean).abs() < 1e-9, "{key:?}");
            compared += 1;
        }
    }
    assert_eq!(compared, expected.len());
    assert!(compared > 400, "{compared}");
}

#[tokio::test]
async fn a_waiting_etl_runs_as_soon_as_ingest_in_the_same_process_says_rows_landed() {
    use vitalflow_udf_model::lake::handoff::Handoff;

    let f = Fixture::new();
    // A poll a minute apart: only the hand-off can start the batch within the test's time.
    let config = EtlConfig { min_interval_ms: 60_000, ..EtlConfig::default() };
    let ctx = local_context(&f.location, &f.forest).unwrap();
    let driver = EtlDriver::new(ctx, f.location.clone(), &config, Arc::new(EtlStats::default())).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(driver.run(shutdown.clone()));
    let handoff = Handoff::of(&f.location);
    // The ETL finds nothing and says it waits (what makes ingest land at once).
    let waits = async {
        while !handoff.take_etl_waiting() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), waits).await.expect("the ETL said it waits");
    f.land(0, vec![reading("P1", 0, NORMAL), reading("P2", 0, NORMAL)]).await;
    handoff.landed();
    let processed = async {
        while f.count("SELECT count(*) FROM vitals_clean").await < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), processed).await.expect("the batch ran on the hand-off");
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn partition_groups_run_side_by_side_and_a_change_of_their_count_loses_and_repeats_nothing() {
    let f = Fixture::new();
    // Each patient on a partition of its own, as Kafka keys readings by patient.
    f.land_on(0, 0, vec![reading("P1", 0, CRITICAL)]).await;
    f.land_on(1, 0, vec![reading("P2", 0, NORMAL)]).await;
    f.land_on(2, 0, vec![reading("P3", 0, NORMAL)]).await;
    let mut driver = f.driver_of(2).await;
    let report = driver.run_once().await.unwrap().unwrap();
    // Two batches side by side: partitions 0 and 2 in one group, 1 in the other.
    assert_eq!((report.id, report.files, report.rows_out, report.alerts), (2, 3, 3, 1));
    let checkpoint = driver.checkpoint().await;
    assert_eq!((checkpoint.groups.len(), checkpoint.last_batch_id), (2, 2));
    assert!(driver.run_once().await.unwrap().is_none());

    // P1 lacks glucose (its group's state carries it), P2 rises to High. Only P2's group runs before the
    // count changes to 3: the groups stand at different versions.
    let mut no_glucose = NORMAL;
    no_glucose[5] = None;
    f.land_on(0, 1, vec![reading("P1", 1, no_glucose)]).await;
    f.land_on(1, 1, vec![reading("P2", 1, CRITICAL)]).await;
    driver.groups[1].run_once().await.unwrap().unwrap();
    drop(driver);
    let mut driver = f.driver_of(3).await;
    let report = driver.run_once().await.unwrap().unwrap();
    assert_eq!((report.files, report.rows_out), (1, 1), "only P1's file was left to do");
    assert!(driver.run_once().await.unwrap().is_none());
    let glucose = f.query("SELECT glucose FROM vitals_clean WHERE patient_id = 'P1' AND source_offset = 1").await;
    assert_eq!(glucose[0].column(0).as_any().downcast_ref::<Float64Array>().unwrap().value(0), 350.0);

    // Back to one group, with a reading of P3's.
    f.land_on(2, 1, vec![reading("P3", 1, CRITICAL)]).await;
    drop(driver);
    let mut driver = f.driver_of(1).await;
    driver.run_once().await.unwrap().unwrap();
    assert_eq!(driver.checkpoint().await.groups.len(), 1);

    // Every reading once, every rise to High once, every patient once in patient_latest with its newest reading.
    let distinct = "SELECT count(DISTINCT (source_partition, source_offset)) FROM vitals_clean";
    assert_eq!((f.count("SELECT count(*) FROM vitals_clean").await, f.count(distinct).await), (6, 6));
    let alerts =
        f.strings("SELECT patient_id || ':' || CAST(source_offset AS VARCHAR) FROM risk_alerts ORDER BY 1").await;
    assert_eq!(alerts, vec![Some("P1:0".into()), Some("P2:1".into()), Some("P3:1".into())]);
    let latest =
        f.strings("SELECT patient_id || ':' || CAST(source_offset AS VARCHAR) FROM patient_latest ORDER BY 1").await;
    assert_eq!(latest, vec![Some("P1:1".into()), Some("P2:1".into()), Some("P3:1".into())]);
}
