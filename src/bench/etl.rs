//! `vitalflow bench etl`: the ETL's rows/s on one core, the shipped SQL (one ordered pass per batch,
//! `patient_history` and `patient_previous`) against the SQL it replaced (a window per patient and
//! pass, `etl_window_passes.sql` beside this file), on the same landed rows, in one run.
//!
//! Each SQL runs as one micro-batch of the in-process ETL driver on its own copy of the landed rows:
//! simulated readings of `patients` patients (missing fields, artefacts, re-sent copies) in time
//! order. Printed: the SQL's time (planning included) and the whole batch's (with writing the
//! outputs), rows/s per core of each, the ratio, and whether both SQLs gave the same rows.

use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use vitalflow_ingest::batch::VitalsRawBuilder;
use vitalflow_ingest::decode::Reading;
use vitalflow_scheduler::catalog::session::local_context;
use vitalflow_scheduler::config::{EtlConfig, EtlEngine};
use vitalflow_scheduler::etl::{BatchReport, EtlDriver, EtlStats};
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable, write_data_file};
use vitalflow_udf_model::rubric::Consciousness;
use vitalflow_udf_model::schema::{VITALS_RAW_SCHEMA, table};
use vitalflow_udf_model::simulate::{SimulatorSettings, VitalsSimulator};

use super::cli::BenchEtlArgs;
use super::{pin_to_core, rows_per_sec};

/// The ETL SQL before the one-pass functions: the reference.
pub const WINDOW_PASSES_SQL: &str = include_str!("etl_window_passes.sql");

/// 2026-11-19T00:00:00Z in nanoseconds: the simulated ward's start.
const START_NS: i64 = 1_795_000_000_000_000_000;

/// Runs the benchmark.
pub async fn run(args: &BenchEtlArgs) -> anyhow::Result<()> {
    let pinned = pin_to_core(args.core);
    let readings = simulated_readings(args.rows, args.patients, args.seed);
    println!(
        "vitalflow bench etl: {} landed rows of {} patients as one micro-batch, in process{}",
        readings.len(),
        args.patients,
        if pinned { format!(", pinned to core {}", args.core) } else { ", NOT pinned to one core".into() }
    );
    let reference = run_sql(&readings, Some(WINDOW_PASSES_SQL)).await.context("the window-pass SQL")?;
    let shipped = run_sql(&readings, None).await.context("the shipped SQL")?;
    let rows = readings.len() as u64;
    for (name, run) in [("window passes (before)", &reference), ("one pass (shipped)", &shipped)] {
        println!(
            "  {name:<24} SQL {:>8.3} s  {:>10.0} rows/s per core   whole batch {:>8.3} s  {:>10.0} rows/s",
            run.report.sql.as_secs_f64(),
            rows_per_sec(rows, run.report.sql.as_secs_f64()),
            run.report.elapsed.as_secs_f64(),
            rows_per_sec(rows, run.report.elapsed.as_secs_f64()),
        );
    }
    println!(
        "  ratio: SQL {:.1}x, whole batch {:.1}x",
        reference.report.sql.as_secs_f64() / shipped.report.sql.as_secs_f64(),
        reference.report.elapsed.as_secs_f64() / shipped.report.elapsed.as_secs_f64()
    );
    let differing = differing_rows(&reference.rows, &shipped.rows);
    println!(
        "  outputs: {} clean, {} rejected, {} alerts; rows differing between the two SQLs: {differing}",
        shipped.report.rows_out, shipped.report.rejected, shipped.report.alerts
    );
    if differing > 0 {
        bail!("the two SQLs gave different rows ({differing})");
    }
    Ok(())
}

/// One SQL's run: its batch report and its rows, keyed and sorted by source offset.
pub struct EtlRun {
    /// The driver's report of the batch.
    pub report: BatchReport,
    /// Each landed row's outcome, by source offset.
    pub rows: Vec<RowSummary>,
}

/// What is compared of one landed row between the two SQLs.
#[derive(Debug, Clone, PartialEq)]
pub struct RowSummary {
    offset: i64,
    outcome: Option<String>,
    values: Vec<Option<f64>>,
}

/// About `rows` simulated readings of `patients` patients, one per patient per tick (every 30 s), in
/// time order, with missing fields and artefacts; every 50th reading is sent twice.
pub fn simulated_readings(rows: usize, patients: usize, seed: u64) -> Vec<Reading> {
    let settings = SimulatorSettings { missing_rate: 0.1, ..SimulatorSettings::default() };
    let mut sim = VitalsSimulator::with_settings(patients.max(1), seed, settings);
    let mut readings = Vec::with_capacity(rows);
    let mut tick = 0i64;
    while readings.len() < rows {
        for _ in 0..patients.max(1) {
            let record = sim.next_reading(chrono::DateTime::UNIX_EPOCH);
            let reading = Reading {
                patient_id: record.patient_id.clone(),
                event_time_ns: START_NS + tick * 30_000_000_000,
                vitals: record.vitals(),
                on_oxygen: record.on_oxygen,
                consciousness: record.consciousness.as_deref().and_then(Consciousness::parse),
                ..Reading::default()
            };
            if readings.len() % 50 == 49 {
                readings.push(reading.clone());
            }
            readings.push(reading);
        }
        tick += 1;
    }
    readings.truncate(rows);
    readings
}

/// Lands `readings` in a fresh data location and runs one micro-batch of `sql` (None: the shipped).
pub async fn run_sql(readings: &[Reading], sql: Option<&str>) -> anyhow::Result<EtlRun> {
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let location = DataLocation::open(dir.path().to_str().context("a scratch path that is UTF-8")?)?;
    land(&location, readings).await?;
    let mut config = EtlConfig { run_on: EtlEngine::InProcess, ..EtlConfig::default() };
    if let Some(sql) = sql {
        let file = dir.path().join("etl.sql");
        std::fs::write(&file, sql).context("writing the SQL file")?;
        config.sql_file = file.to_string_lossy().into_owned();
    }
    let forest = Arc::new(RiskForest::bundled()?);
    let ctx = local_context(&location, &forest)?;
    let mut driver = EtlDriver::new(ctx.clone(), location.clone(), &config, Arc::new(EtlStats::default())).await?;
    let report = driver.run_once().await?.context("the landed rows made no micro-batch")?;
    let rows = summaries(&ctx).await?;
    Ok(EtlRun { report, rows })
}

/// Lands `readings` as one file of partition 0, as ingest would.
async fn land(location: &DataLocation, readings: &[Reading]) -> anyhow::Result<()> {
    let mut builder = VitalsRawBuilder::default();
    for (offset, reading) in readings.iter().enumerate() {
        builder.append_reading(offset as i64, reading);
    }
    let ingested = readings.last().map_or(START_NS, |r| r.event_time_ns);
    let batch = builder.finish("vitals", 0, ingested)?;
    let mut raw = LakeTable::open_or_create(location, table::VITALS_RAW, &VITALS_RAW_SCHEMA).await?;
    let file = write_data_file(location, table::VITALS_RAW, "bench-p0", &[batch]).await?;
    let last = readings.len() as i64 - 1;
    raw.append(&[file], vec![Transaction::new("bench/vitals/0", last)]).await?;
    Ok(())
}

/// Every landed row's outcome: its risk and derived values when clean, its reject code when not.
async fn summaries(ctx: &datafusion::prelude::SessionContext) -> anyhow::Result<Vec<RowSummary>> {
    let sql = "SELECT source_offset, risk, CAST(alerted AS DOUBLE), heart_rate, spo2, glucose, \
                      heart_rate_rolling_mean, spo2_change, respiratory_rate_rolling_mean, probability_high \
               FROM (SELECT c.*, a.source_offset IS NOT NULL AS alerted FROM vitals_clean c \
                     LEFT JOIN risk_alerts a USING (source_topic, source_partition, source_offset)) \
               UNION ALL \
               SELECT source_offset, reason_code, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
               FROM dead_letters WHERE stage = 'etl' \
               ORDER BY 1";
    let batches: Vec<RecordBatch> = ctx.sql(sql).await?.collect().await?;
    let mut rows = Vec::new();
    for b in &batches {
        let offset = b.column(0).as_primitive::<Int64Type>();
        let outcome = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let outcome = outcome.as_string::<i32>();
        let values: Vec<_> = (2..b.num_columns())
            .map(|c| arrow::compute::cast(b.column(c), &DataType::Float64))
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(RowSummary {
                offset: offset.value(i),
                outcome: outcome.is_valid(i).then(|| outcome.value(i).to_string()),
                values: values
                    .iter()
                    .map(|v| {
                        let v = v.as_primitive::<Float64Type>();
                        v.is_valid(i).then(|| v.value(i))
                    })
                    .collect(),
            });
        }
    }
    Ok(rows)
}

/// How many rows differ (a row missing on one side counts; floats compared to 1e-9).
pub fn differing_rows(a: &[RowSummary], b: &[RowSummary]) -> usize {
    let close = |x: &Option<f64>, y: &Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        (None, None) => true,
        _ => false,
    };
    let same = |x: &RowSummary, y: &RowSummary| {
        x.offset == y.offset
            && x.outcome == y.outcome
            && x.values.len() == y.values.len()
            && x.values.iter().zip(&y.values).all(|(p, q)| close(p, q))
    };
    let matched = a.iter().zip(b).filter(|(x, y)| same(x, y)).count();
    a.len().max(b.len()) - matched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped one-pass SQL gives every landed row the outcome and values the window-pass SQL
    /// gave: duplicates, implausible values, carry-forward of missing fields, windows, alerts.
    #[tokio::test]
    async fn the_one_pass_sql_gives_the_window_pass_sqls_rows() {
        let mut readings = simulated_readings(3_000, 40, 7);
        // An implausible reading and a future one among them.
        readings[100].vitals[2] = readings[100].vitals[1];
        readings[200].event_time_ns += 3_600_000_000_000;
        let reference = run_sql(&readings, Some(WINDOW_PASSES_SQL)).await.unwrap();
        let shipped = run_sql(&readings, None).await.unwrap();
        assert_eq!(shipped.rows.len(), readings.len());
        let outcome = |code: &str| shipped.rows.iter().filter(|r| r.outcome.as_deref() == Some(code)).count();
        assert!(outcome("duplicate") >= 50, "{}", outcome("duplicate"));
        assert!(outcome("High") > 0 && outcome("Low") > 0);
        assert_eq!(differing_rows(&reference.rows, &shipped.rows), 0);
    }
}
