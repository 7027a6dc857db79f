//! The alert budget as a figure: alerts raised per 35 patients per day, the unit of Kaiser Permanente's
//! Advance Alert Monitor budget (about one alert per 35 patients per day).
//!
//! A day is a day of the ward's own clock, the readings' event time: the alerts the ward lived through
//! while its patients were monitored for that long. On a live feed reading time and the wall clock run
//! together; they part when readings are replayed or delayed (a month of history replayed in an hour
//! is a month for the ward, not an hour) and on the simulator, whose clock runs 30 s per reading.
//!
//! Read from the store, so `vitalflow status` works with every process stopped: alerts raised are the rows
//! of `alerts`, patients the rows of `patient_latest`, and the time runs from where the ward's clock started
//! for the alert keeper (recorded in `alert_events`' log: the newest reading when it started on a running
//! ward, the oldest reading when it started before the ETL's first batch) to the newest reading now.

use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::table;

use super::keeper::READING_CLOCK_APP_ID;
use super::sources::ward_readings;
use crate::error::Result;

/// Alerts raised per 35 patients per day: `raised` alerts for `patients` patients over `hours` hours; `None`
/// without patients or time.
pub fn per_35_patients_per_day(raised: u64, patients: u64, hours: f64) -> Option<f64> {
    (patients > 0 && hours > 0.0).then(|| raised as f64 * 35.0 * 24.0 / (patients as f64 * hours))
}

/// The alerts raised since the keeper first ran, and their rate per 35 patients per day of reading time;
/// `None` before the keeper has run (the rate `None` before it saw a reading, or while no reading time passed).
pub async fn read_alert_rate(location: &DataLocation) -> Result<Option<(u64, Option<f64>)>> {
    let Some(alerts) = LakeTable::open(location, table::ALERTS, None).await? else { return Ok(None) };
    let Some(events) = LakeTable::open(location, table::ALERT_EVENTS, None).await? else { return Ok(None) };
    let raised = alerts.row_count();
    let Some(clock_start_ms) = events.txn_version(READING_CLOCK_APP_ID).await? else {
        return Ok(Some((raised, None)));
    };
    let readings = ward_readings(location).await?.latest;
    let hours = readings
        .iter()
        .map(|r| r.reading_ms)
        .max()
        .map_or(0.0, |newest| (newest - clock_start_ms) as f64 / 3_600_000.0);
    Ok(Some((raised, per_35_patients_per_day(raised, readings.len() as u64, hours))))
}
