//! The alert budget as a figure: alerts raised per 35 patients per day, the unit of Kaiser Permanente's
//! Advance Alert Monitor budget (about one alert per 35 patients per day).
//!
//! Read from the store, so `vitalflow status` works with every process stopped: alerts raised are the rows
//! of `alerts`, patients the rows of `patient_latest`, and the time is the wall clock from the alert keeper's
//! first commit on the data location (when `alert_events` was created) to the ETL's last commit of
//! `patient_latest`.

use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use crate::error::Result;

/// Alerts raised per 35 patients per day: `raised` alerts for `patients` patients over `hours` hours; `None`
/// without patients or time.
pub fn per_35_patients_per_day(raised: u64, patients: u64, hours: f64) -> Option<f64> {
    (patients > 0 && hours > 0.0).then(|| raised as f64 * 35.0 * 24.0 / (patients as f64 * hours))
}

/// The alerts raised since the keeper first ran, and their rate per 35 patients per day; `None` before the
/// keeper has run (or the ETL committed a batch).
pub async fn read_alert_rate(location: &DataLocation) -> Result<Option<(u64, Option<f64>)>> {
    let Some(alerts) = LakeTable::open(location, table::ALERTS, None).await? else { return Ok(None) };
    let Some(events) = LakeTable::open(location, table::ALERT_EVENTS, None).await? else { return Ok(None) };
    let raised = alerts.row_count();
    let Some(latest) = LakeTable::open(location, table::PATIENT_LATEST, None).await? else {
        return Ok(Some((raised, None)));
    };
    let started = events.commit_time(0).await?;
    let last_readings = latest.commit_time(latest.version()).await?;
    let hours = match (started, last_readings) {
        (Some(started), Some(last)) => (last - started) as f64 / 3_600_000.0,
        _ => 0.0,
    };
    Ok(Some((raised, per_35_patients_per_day(raised, latest.row_count(), hours))))
}
