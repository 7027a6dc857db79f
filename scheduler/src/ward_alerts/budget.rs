//! The alert budget as a figure: alerts raised per 35 patients per day, the unit of Kaiser Permanente's
//! Advance Alert Monitor budget (about one alert per 35 patients per day), over all wards and per ward.
//!
//! A day is a day of the ward's own clock, the readings' event time: the alerts the ward lived through
//! while its patients were monitored for that long. On a live feed reading time and the wall clock run
//! together; they part when readings are replayed or delayed (a month of history replayed in an hour
//! is a month for the ward, not an hour) and on the simulator, whose clock runs 30 s per reading.
//!
//! Read from the store, so `vitalflow status` works with every process stopped: alerts raised are the rows
//! of `alerts` (a ward's: those with its `ward`), patients the rows of `patient_latest` (a ward's: those
//! whose latest reading names it, or no ward for `default`), and the time runs from where the ward's clock
//! started for the alert keeper (recorded in `alert_events`' log: the newest reading when it started on a
//! running ward, the oldest reading when it started before the ETL's first batch) to the newest reading
//! now, the same for every ward.

use std::collections::BTreeMap;

use arrow::array::{Array, StringArray};
use serde::{Deserialize, Serialize};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{ALERTS_SCHEMA, WARD, table};

use super::book::FEED_WIDE;
use super::sources::{DEFAULT_WARD, ward_readings};
use crate::error::{Error, Result};
use crate::stays::Stays;
use crate::table_rows::read_table_file;

/// Application id recording where the ward's clock starts for the alert budget: version = a reading time,
/// ms since the epoch. For a keeper that started on a ward already running, its newest reading then; for
/// one that started before the ETL's first batch, the oldest reading of `vitals_clean` once there is one.
pub(crate) const READING_CLOCK_APP_ID: &str = "vitalflow-alerts/reading-clock";

/// Most wards reported one by one (each a `/metrics` label value): a feed naming more is a fault, and
/// the rest are left out of the per-ward figures (the all-wards figure still counts them).
pub const MAX_WARDS_REPORTED: usize = 100;

/// Alerts raised per 35 patients per day: `raised` alerts for `patients` patients over `hours` hours; `None`
/// without patients or time.
pub fn per_35_patients_per_day(raised: u64, patients: u64, hours: f64) -> Option<f64> {
    (patients > 0 && hours > 0.0).then(|| raised as f64 * 35.0 * 24.0 / (patients as f64 * hours))
}

/// One ward's alert rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WardAlertRate {
    /// The ward (`default` for readings naming none).
    pub ward: String,
    /// Alerts raised for the ward.
    pub alerts: u64,
    /// Patients whose latest reading is on the ward.
    pub patients: u64,
    /// Those alerts per 35 patients per day; `None` without patients or time.
    pub per_35_patients_per_day: Option<f64>,
}

/// The alert rate over all wards and per ward.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertRates {
    /// Alerts raised since the keeper first ran, every ward's.
    pub raised: u64,
    /// Those per 35 patients per day; `None` without patients or time.
    pub per_35_patients_per_day: Option<f64>,
    /// Per ward, by name (a stopped feed's `feed_down` alert belongs to no ward: only the total counts it).
    pub wards: Vec<WardAlertRate>,
}

/// The rates of `alert_wards` (one entry per alert) for `patient_wards` (one per patient) over `hours`.
pub fn alert_rates(alert_wards: &[String], patient_wards: &[String], hours: f64) -> AlertRates {
    let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for ward in alert_wards.iter().filter(|w| *w != FEED_WIDE) {
        counts.entry(ward).or_default().0 += 1;
    }
    for ward in patient_wards {
        counts.entry(ward).or_default().1 += 1;
    }
    let wards = counts
        .into_iter()
        .take(MAX_WARDS_REPORTED)
        .map(|(ward, (alerts, patients))| WardAlertRate {
            ward: ward.to_string(),
            alerts,
            patients,
            per_35_patients_per_day: per_35_patients_per_day(alerts, patients, hours),
        })
        .collect();
    let (raised, patients) = (alert_wards.len() as u64, patient_wards.len() as u64);
    AlertRates { raised, per_35_patients_per_day: per_35_patients_per_day(raised, patients, hours), wards }
}

/// The `ward` column of every row of `table` (NULL: [`DEFAULT_WARD`]).
async fn wards_of(
    location: &DataLocation,
    lake_table: &LakeTable,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Vec<String>> {
    let name = lake_table.name();
    let mut wards = Vec::new();
    for file in lake_table.files() {
        let path = location.path(&format!("{name}/{}", file.path));
        for batch in read_table_file(location, &path, schema).await? {
            let column = batch.column_by_name(WARD).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let column = column.ok_or_else(|| Error::Config(format!("{name} has no string column {WARD}")))?;
            wards.extend(
                (0..column.len())
                    .map(|i| if column.is_valid(i) { column.value(i).to_string() } else { DEFAULT_WARD.to_string() }),
            );
        }
    }
    Ok(wards)
}

/// The alerts raised since the keeper first ran and their rates per 35 patients per day, over all wards and
/// per ward, over the readings' time; `None` before the keeper has run (the rates `None` before it saw a
/// reading, or while no reading time passed).
pub async fn read_alert_rates(location: &DataLocation) -> Result<Option<AlertRates>> {
    let Some(alerts) = LakeTable::open(location, table::ALERTS, None).await? else { return Ok(None) };
    let Some(events) = LakeTable::open(location, table::ALERT_EVENTS, None).await? else { return Ok(None) };
    let alert_wards = wards_of(location, &alerts, &ALERTS_SCHEMA).await?;
    // One read of patient_latest gives both the patients' wards (their readings', as the figure counts
    // them) and the newest reading.
    let latest = ward_readings(location, &Stays::default()).await?.latest;
    let patient_wards: Vec<String> = latest.iter().map(|r| r.ward.clone()).collect();
    let Some(clock_start_ms) = events.txn_version(READING_CLOCK_APP_ID).await? else {
        return Ok(Some(alert_rates(&alert_wards, &patient_wards, 0.0)));
    };
    let hours =
        latest.iter().map(|r| r.reading_ms).max().map_or(0.0, |newest| (newest - clock_start_ms) as f64 / 3_600_000.0);
    Ok(Some(alert_rates(&alert_wards, &patient_wards, hours)))
}
