//! What the keeper reads from the ETL's tables: the rises to High committed to `risk_alerts` since it
//! last looked, and each patient's latest reading (`patient_latest`) for auto-resolve and stale feeds;
//! each on the ward the patient's movements put them on ([`Stays`]), discharged patients left out of
//! the latest readings.

use arrow::array::{Array, Float64Array, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, table};

use super::muting::RiseToHigh;
use crate::error::{Error, Result};
use crate::stays::Stays;
use crate::table_rows::read_table_file;

/// The ward of a patient whose movements (and readings) name none.
pub const DEFAULT_WARD: &str = "default";

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
    Ok((0..batch.num_rows())
        .map(|i| RiseToHigh {
            risk_alert_id: alert_id.value(i).to_string(),
            patient_id: patient_id.value(i).to_string(),
            ward: stays.ward_for(patient_id.value(i), event_time.value(i), None, DEFAULT_WARD),
            reading_ms: event_time.value(i).div_euclid(1_000_000),
            news2_score: (!news2.is_null(i)).then(|| news2.value(i)),
            probability_high: (!probability.is_null(i)).then(|| probability.value(i)),
        })
        .collect())
}

/// Each patient's latest scored reading, from `patient_latest` (none before the ETL's first batch), on
/// the patient's current ward; discharged patients are left out.
pub async fn latest_readings(location: &DataLocation, stays: &Stays) -> Result<Vec<LatestReading>> {
    let Some(latest) = LakeTable::open(location, table::PATIENT_LATEST, None).await? else { return Ok(Vec::new()) };
    let name = table::PATIENT_LATEST;
    let mut readings = Vec::new();
    for file in latest.files() {
        let path = location.path(&format!("{name}/{}", file.path));
        for batch in read_table_file(location, &path, &PATIENT_LATEST_SCHEMA).await? {
            let patient_id = column::<StringArray>(&batch, name, "patient_id")?;
            let event_time = column::<TimestampNanosecondArray>(&batch, name, "event_time")?;
            let risk = column::<StringArray>(&batch, name, "risk")?;
            for i in 0..batch.num_rows() {
                let stay = stays.current(patient_id.value(i));
                if stay.is_discharged() {
                    continue;
                }
                readings.push(LatestReading {
                    patient_id: patient_id.value(i).to_string(),
                    ward: stay.ward.unwrap_or_else(|| DEFAULT_WARD.to_string()),
                    reading_ms: event_time.value(i).div_euclid(1_000_000),
                    high: (!risk.is_null(i)).then(|| risk.value(i) == "High"),
                });
            }
        }
    }
    Ok(readings)
}
