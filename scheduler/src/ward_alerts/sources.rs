//! What the keeper reads from the ETL's tables: the rises to High committed to `risk_alerts` since it
//! last looked, each patient's latest reading (`patient_latest`) for auto-resolve and stale feeds, when
//! the ETL last landed readings (the feed's silence), and from `vitals_clean` since when a patient's
//! risk has been below High (the auto-resolve clock); each on the ward the patient's movements put them
//! on ([`Stays`]), else the reading's, discharged patients left out of the latest readings. Every timer
//! is read from the tables, never from when this process started, so a restarted keeper comes to the
//! same answers.

use std::collections::HashMap;

use arrow::array::{Array, Float64Array, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::common::ScalarValue;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, WARD, table};

use super::muting::RiseToHigh;
use crate::catalog::session::{register_tables, runtime_env, session_config};
use crate::error::{Error, Result};
use crate::stays::Stays;
use crate::table_rows::read_table_file;

/// The ward of a patient whose movements and readings name none (its rules are `ward_alerts.default_ward`).
pub const DEFAULT_WARD: &str = "default";

/// The ward of row `i`: its `ward` column, or [`DEFAULT_WARD`] when NULL (or in a file written before
/// the column existed, which [`read_table_file`] gives as NULL).
fn ward_of(wards: &StringArray, i: usize) -> String {
    if wards.is_valid(i) { wards.value(i).to_string() } else { DEFAULT_WARD.to_string() }
}

/// Most `risk_alerts` commits read in one look (the rest wait for the next).
const MAX_COMMITS_PER_LOOK: usize = 1_000;

fn column<'a, T: 'static>(batch: &'a RecordBatch, table: &str, name: &str) -> Result<&'a T> {
    let found = batch.column_by_name(name).ok_or_else(|| Error::Config(format!("{table} has no column {name}")))?;
    found
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::Config(format!("{table} column {name} is {}", found.data_type())))
}

/// One patient's latest reading.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestReading {
    /// The patient.
    pub patient_id: String,
    /// The patient's ward.
    pub ward: String,
    /// Its time, ms since the epoch.
    pub reading_ms: i64,
    /// Whether its risk is High; `None` when the model could not score it (it says nothing either way).
    pub high: Option<bool>,
}

/// `risk_alerts` as the keeper follows it: the table (once it exists) and the version read up to.
#[derive(Debug)]
pub struct RiseSource {
    table: Option<LakeTable>,
    /// The `risk_alerts` version read up to (-1: none).
    pub version: i64,
}

impl RiseSource {
    /// Follows `risk_alerts` after version `version`.
    pub fn after(version: i64) -> RiseSource {
        RiseSource { table: None, version }
    }

    /// The table's latest version now (-1 when it does not exist yet).
    pub async fn current_version(location: &DataLocation) -> Result<i64> {
        Ok(LakeTable::open(location, table::RISK_ALERTS, None).await?.map_or(-1, |t| t.version()))
    }

    /// The rises committed since the last look, in reading-time order, each on the ward the patient was
    /// on at the reading's time; moves [`RiseSource::version`] on. Only commits of the ETL are read
    /// (compaction rewrites none of their rows anew).
    pub async fn new_rises(&mut self, location: &DataLocation, stays: &Stays) -> Result<Vec<RiseToHigh>> {
        match &mut self.table {
            Some(table) => table.refresh().await?,
            None => self.table = LakeTable::open(location, table::RISK_ALERTS, None).await?,
        }
        let Some(risk_alerts) = &self.table else { return Ok(Vec::new()) };
        let latest = risk_alerts.version();
        if latest <= self.version {
            return Ok(Vec::new());
        }
        let added = risk_alerts.added_since(self.version, MAX_COMMITS_PER_LOOK).await?;
        let mut rises = Vec::new();
        for (_, file) in &added {
            let path = location.path(&format!("{}/{}", table::RISK_ALERTS, file.path));
            for batch in read_table_file(location, &path, &RISK_ALERTS_SCHEMA).await? {
                rises.extend(rises_of(&batch, stays)?);
            }
        }
        rises.sort_by(|a, b| (a.reading_ms, &a.risk_alert_id).cmp(&(b.reading_ms, &b.risk_alert_id)));
        self.version = (self.version + MAX_COMMITS_PER_LOOK as i64).min(latest);
        Ok(rises)
    }
}

/// The rises in rows of `risk_alerts`.
fn rises_of(batch: &RecordBatch, stays: &Stays) -> Result<Vec<RiseToHigh>> {
    let name = table::RISK_ALERTS;
    let alert_id = column::<StringArray>(batch, name, "alert_id")?;
    let patient_id = column::<StringArray>(batch, name, "patient_id")?;
    let event_time = column::<TimestampNanosecondArray>(batch, name, "event_time")?;
    let news2 = column::<Int32Array>(batch, name, "news2_score")?;
    let probability = column::<Float64Array>(batch, name, "probability_high")?;
    let ward = column::<StringArray>(batch, name, WARD)?;
    Ok((0..batch.num_rows())
        .map(|i| RiseToHigh {
            risk_alert_id: alert_id.value(i).to_string(),
            patient_id: patient_id.value(i).to_string(),
            ward: stays.ward_for(
                patient_id.value(i),
                event_time.value(i),
                ward.is_valid(i).then(|| ward.value(i)),
                DEFAULT_WARD,
            ),
            reading_ms: event_time.value(i).div_euclid(1_000_000),
            news2_score: (!news2.is_null(i)).then(|| news2.value(i)),
            probability_high: (!probability.is_null(i)).then(|| probability.value(i)),
        })
        .collect())
}

/// Each patient's latest reading and when the ETL last landed readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WardReadings {
    /// One per patient, from `patient_latest`.
    pub latest: Vec<LatestReading>,
    /// When the ETL last committed readings to `patient_latest` (wall clock, ms since the epoch).
    pub landed_ms: Option<i64>,
}

/// Commits of `patient_latest` looked through for the ETL's last one (maintenance commits, e.g. a
/// vacuum, may follow it).
const LANDED_LOOKBACK: i64 = 4;

/// When the ETL last landed readings in `latest`: the time of its newest commit carrying an
/// application transaction (the ETL's; maintenance carries none). Past [`LANDED_LOOKBACK`] commits of
/// maintenance, the latest commit's time: later than the truth, so a silence is never overstated.
async fn landed_ms(latest: &LakeTable) -> Result<Option<i64>> {
    let version = latest.version();
    let etl_commits = latest.added_since((version - LANDED_LOOKBACK).max(-1), LANDED_LOOKBACK as usize).await?;
    let last_etl = etl_commits.iter().map(|(v, _)| *v).max().unwrap_or(version);
    Ok(latest.commit_time(last_etl).await?)
}

/// Each patient's latest scored reading, from `patient_latest` (none before the ETL's first batch), on
/// the patient's current ward (the latest movement's, else the reading's), discharged patients left
/// out; and when the ETL last landed readings.
pub async fn ward_readings(location: &DataLocation, stays: &Stays) -> Result<WardReadings> {
    let Some(latest) = LakeTable::open(location, table::PATIENT_LATEST, None).await? else {
        return Ok(WardReadings::default());
    };
    let name = table::PATIENT_LATEST;
    let mut readings = Vec::new();
    for file in latest.files() {
        let path = location.path(&format!("{name}/{}", file.path));
        for batch in read_table_file(location, &path, &PATIENT_LATEST_SCHEMA).await? {
            let patient_id = column::<StringArray>(&batch, name, "patient_id")?;
            let event_time = column::<TimestampNanosecondArray>(&batch, name, "event_time")?;
            let risk = column::<StringArray>(&batch, name, "risk")?;
            let ward = column::<StringArray>(&batch, name, WARD)?;
            for i in 0..batch.num_rows() {
                let stay = stays.current(patient_id.value(i));
                if stay.is_discharged() {
                    continue;
                }
                readings.push(LatestReading {
                    patient_id: patient_id.value(i).to_string(),
                    ward: stay.ward.unwrap_or_else(|| ward_of(ward, i)),
                    reading_ms: event_time.value(i).div_euclid(1_000_000),
                    high: (!risk.is_null(i)).then(|| risk.value(i) == "High"),
                });
            }
        }
    }
    Ok(WardReadings { latest: readings, landed_ms: landed_ms(&latest).await? })
}

/// An in-process context over the lake's tables (no functions: the keeper's reads need none).
fn lake_context(location: &DataLocation) -> Result<SessionContext> {
    let runtime =
        runtime_env().map_err(|source| Error::Query { step: "creating the keeper's runtime".into(), source })?;
    let state = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_tables(&ctx, location)?;
    Ok(ctx)
}

/// The time of the oldest reading of `vitals_clean` (ms since the epoch; `None` while it holds none):
/// where the ward's clock starts for a keeper that started before the ETL's first batch.
pub async fn oldest_reading_ms(location: &DataLocation) -> Result<Option<i64>> {
    let query = |source| Error::Query { step: "reading the oldest reading of vitals_clean".into(), source };
    let ctx = lake_context(location)?;
    let sql = format!("SELECT min(event_time) AS oldest FROM {}", table::VITALS_CLEAN);
    let batches = ctx.sql(&sql).await.map_err(query)?.collect().await.map_err(query)?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(None) };
    let oldest = column::<TimestampNanosecondArray>(batch, table::VITALS_CLEAN, "oldest")?;
    Ok((!oldest.is_null(0)).then(|| oldest.value(0).div_euclid(1_000_000)))
}

/// Since when each patient's risk has been below High, from `vitals_clean`: for each `(patient,
/// alert raised at)`, the first scored reading below High after the patient's last High reading since
/// the alert was raised. A patient whose latest scored reading is High, or whose readings are not in
/// `vitals_clean` yet, is left out. Readings the model could not score count neither way.
pub async fn below_high_since(location: &DataLocation, patients: &[(String, i64)]) -> Result<HashMap<String, i64>> {
    let Some(earliest) = patients.iter().map(|(_, raised)| *raised).min() else { return Ok(HashMap::new()) };
    let query = |source| Error::Query { step: "reading vitals_clean for the auto-resolve clock".into(), source };
    let ctx = lake_context(location)?;
    let since = ScalarValue::TimestampNanosecond(Some(earliest.saturating_mul(1_000_000)), Some("UTC".into()));
    let ids: Vec<Expr> = patients.iter().map(|(patient, _)| lit(patient.as_str())).collect();
    let readings = ctx
        .table(table::VITALS_CLEAN)
        .await
        .map_err(query)?
        .filter(
            col("patient_id")
                .in_list(ids, false)
                .and(col("event_time").gt_eq(lit(since)))
                .and(col("risk").is_not_null()),
        )
        .map_err(query)?
        .select_columns(&["patient_id", "event_time", "risk"])
        .map_err(query)?
        .collect()
        .await
        .map_err(query)?;
    let mut by_patient: HashMap<&str, Vec<(i64, bool)>> = HashMap::new();
    for batch in &readings {
        let name = table::VITALS_CLEAN;
        let patient_id = column::<StringArray>(batch, name, "patient_id")?;
        let event_time = column::<TimestampNanosecondArray>(batch, name, "event_time")?;
        let risk = column::<StringArray>(batch, name, "risk")?;
        for i in 0..batch.num_rows() {
            let Some((patient, _)) = patients.iter().find(|(p, _)| p == patient_id.value(i)) else { continue };
            by_patient
                .entry(patient.as_str())
                .or_default()
                .push((event_time.value(i).div_euclid(1_000_000), risk.value(i) == "High"));
        }
    }
    let mut clocks = HashMap::new();
    for (patient, raised_ms) in patients {
        let Some(readings) = by_patient.get_mut(patient.as_str()) else { continue };
        readings.retain(|(ms, _)| *ms >= *raised_ms);
        readings.sort_unstable();
        let after_last_high = readings.iter().rposition(|(_, high)| *high).map_or(0, |i| i + 1);
        if let Some((since, _)) = readings.get(after_last_high) {
            clocks.insert(patient.clone(), *since);
        }
    }
    Ok(clocks)
}
