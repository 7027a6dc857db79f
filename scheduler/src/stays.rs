//! Where each patient is, from `patient_movements` (admissions, transfers, discharges, updates): the
//! ward the alert rules use, whether the patient is discharged (out of `patient_latest`, the ward
//! views and the stale-feed rule until admitted again), and whether a reading falls in an admission
//! (`etl.require_admission`).
//!
//! Movements are taken in event-time order (ties in source order), whatever order they landed in:
//! - `admit` and `transfer`: admitted, on the movement's ward (a transfer always names one; an admit
//!   without one keeps the ward known before);
//! - `discharge`: discharged; no current ward;
//! - `update`: a ward, room or bed it names is where the patient is now; admission is unchanged.
//!
//! A patient with no movement at all is admitted implicitly (readings alone, as before movements
//! existed) on no ward. The latest movement wins over a ward field on the reading, which is the
//! fallback for a patient whose movements name none ([`Stays::ward_for`]).

use std::collections::HashMap;

use arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_MOVEMENTS_SCHEMA, table};

use crate::error::{Error, Result};
use crate::table_rows::read_table_file;

/// One movement as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MovementRow {
    kind: String,
    ward: Option<String>,
    event_time_ns: i64,
    /// (partition, offset) in the topic: the order of movements stamped with the same time.
    position: (String, i32, i64),
}

/// Where a patient is after some of their movements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stay {
    /// `Some(true)` admitted, `Some(false)` discharged, `None` no admission, transfer or discharge yet.
    pub admitted: Option<bool>,
    /// The ward now (`None` when discharged or never said).
    pub ward: Option<String>,
}

impl Stay {
    /// Whether the patient is discharged (and not admitted again since).
    pub fn is_discharged(&self) -> bool {
        self.admitted == Some(false)
    }
}

/// Every patient's movements, read from `patient_movements` at one version.
#[derive(Debug, Default, Clone)]
pub struct Stays {
    /// The table version read (-1: the table does not exist yet).
    pub version: i64,
    by_patient: HashMap<String, Vec<MovementRow>>,
}

impl Stays {
    /// Reads `patient_movements` as it is now (no movements before ingest first opens it).
    pub async fn read(location: &DataLocation) -> Result<Stays> {
        let Some(movements) = LakeTable::open(location, table::PATIENT_MOVEMENTS, None).await? else {
            return Ok(Stays { version: -1, ..Stays::default() });
        };
        Self::read_table(location, &movements).await
    }

    /// The stays of `patient_movements`, re-read only when its version moved past `self.version`.
    pub async fn refreshed(self, location: &DataLocation) -> Result<Stays> {
        match LakeTable::open(location, table::PATIENT_MOVEMENTS, None).await? {
            Some(movements) if movements.version() != self.version => Self::read_table(location, &movements).await,
            _ => Ok(self),
        }
    }

    async fn read_table(location: &DataLocation, movements: &LakeTable) -> Result<Stays> {
        let mut by_patient: HashMap<String, Vec<MovementRow>> = HashMap::new();
        for file in movements.files() {
            let path = location.path(&format!("{}/{}", table::PATIENT_MOVEMENTS, file.path));
            for batch in read_table_file(location, &path, &PATIENT_MOVEMENTS_SCHEMA).await? {
                for (patient, row) in rows_of(&batch)? {
                    by_patient.entry(patient).or_default().push(row);
                }
            }
        }
        for rows in by_patient.values_mut() {
            rows.sort_by(|a, b| (a.event_time_ns, &a.position).cmp(&(b.event_time_ns, &b.position)));
        }
        Ok(Stays { version: movements.version(), by_patient })
    }

    /// Where `patient` is after every movement.
    pub fn current(&self, patient: &str) -> Stay {
        self.at(patient, i64::MAX)
    }

    /// Where `patient` was at `time_ns` (after the movements up to and including that time).
    pub fn at(&self, patient: &str, time_ns: i64) -> Stay {
        let mut stay = Stay::default();
        let Some(rows) = self.by_patient.get(patient) else { return stay };
        for row in rows.iter().take_while(|r| r.event_time_ns <= time_ns) {
            match row.kind.as_str() {
                "admit" | "transfer" => {
                    stay.admitted = Some(true);
                    stay.ward = row.ward.clone().or(stay.ward.take());
                }
                "discharge" => {
                    stay.admitted = Some(false);
                    stay.ward = None;
                }
                // An update moves an admitted patient (or one never admitted: implicit admission).
                _ if !stay.is_discharged() => stay.ward = row.ward.clone().or(stay.ward.take()),
                _ => {}
            }
        }
        stay
    }

    /// Whether a reading of `patient` at `time_ns` falls in an admission (`etl.require_admission`):
    /// admitted or transferred at or before it, and not discharged since.
    pub fn admitted_at(&self, patient: &str, time_ns: i64) -> bool {
        self.at(patient, time_ns).admitted == Some(true)
    }

    /// The patients discharged now, not admitted again.
    pub fn discharged(&self) -> impl Iterator<Item = &str> {
        self.by_patient.keys().filter(|p| self.current(p).is_discharged()).map(String::as_str)
    }

    /// The ward the alert rules use for a reading of `patient` at `time_ns`: the ward of the latest
    /// movement by then that names one, else `reading_ward` (a ward field on the reading), else `default`.
    pub fn ward_for(&self, patient: &str, time_ns: i64, reading_ward: Option<&str>, default: &str) -> String {
        self.at(patient, time_ns).ward.as_deref().or(reading_ward).unwrap_or(default).to_string()
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    let table = table::PATIENT_MOVEMENTS;
    let found = batch.column_by_name(name).ok_or_else(|| Error::Config(format!("{table} has no column {name}")))?;
    found
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::Config(format!("{table} column {name} is {}", found.data_type())))
}

fn rows_of(batch: &RecordBatch) -> Result<Vec<(String, MovementRow)>> {
    let patient = column::<StringArray>(batch, "patient_id")?;
    let kind = column::<StringArray>(batch, "movement")?;
    let ward = column::<StringArray>(batch, "ward")?;
    let time = column::<TimestampNanosecondArray>(batch, "event_time")?;
    let topic = column::<StringArray>(batch, "source_topic")?;
    let partition = column::<Int32Array>(batch, "source_partition")?;
    let offset = column::<Int64Array>(batch, "source_offset")?;
    Ok((0..batch.num_rows())
        .map(|i| {
            let row = MovementRow {
                kind: kind.value(i).to_string(),
                ward: (!ward.is_null(i)).then(|| ward.value(i).to_string()),
                event_time_ns: time.value(i),
                position: (topic.value(i).to_string(), partition.value(i), offset.value(i)),
            };
            (patient.value(i).to_string(), row)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stays(moves: &[(&str, &str, Option<&str>, i64)]) -> Stays {
        let mut by_patient: HashMap<String, Vec<MovementRow>> = HashMap::new();
        for (offset, (patient, kind, ward, time)) in moves.iter().enumerate() {
            by_patient.entry(patient.to_string()).or_default().push(MovementRow {
                kind: kind.to_string(),
                ward: ward.map(str::to_string),
                event_time_ns: *time,
                position: ("t".into(), 0, offset as i64),
            });
        }
        for rows in by_patient.values_mut() {
            rows.sort_by(|a, b| (a.event_time_ns, &a.position).cmp(&(b.event_time_ns, &b.position)));
        }
        Stays { version: 0, by_patient }
    }

    #[test]
    fn the_latest_movement_says_where_a_patient_is() {
        let s = stays(&[
            ("P1", "admit", Some("ward-a"), 10),
            ("P1", "transfer", Some("icu"), 20),
            ("P1", "update", None, 25),
            ("P1", "discharge", Some("icu"), 30),
            ("P2", "update", Some("ward-b"), 5),
            // Landed late, happened early: event time decides.
            ("P3", "discharge", None, 50),
            ("P3", "admit", Some("ward-c"), 40),
        ]);
        assert_eq!(s.at("P1", 15), Stay { admitted: Some(true), ward: Some("ward-a".into()) });
        assert_eq!(s.at("P1", 27), Stay { admitted: Some(true), ward: Some("icu".into()) });
        assert!(s.current("P1").is_discharged());
        assert_eq!(s.ward_for("P1", 22, Some("ward-z"), "default"), "icu", "the movement wins over the reading's ward");
        assert_eq!(s.ward_for("P1", 5, Some("ward-z"), "default"), "ward-z", "before any movement: the reading's ward");
        assert_eq!(s.ward_for("P9", 5, None, "default"), "default");
        assert_eq!(s.current("P2"), Stay { admitted: None, ward: Some("ward-b".into()) });
        assert!(!s.admitted_at("P2", 6), "an update is no admission");
        assert!(s.admitted_at("P1", 10) && !s.admitted_at("P1", 9) && !s.admitted_at("P1", 30));
        assert!(s.current("P3").is_discharged());
        let mut discharged: Vec<&str> = s.discharged().collect();
        discharged.sort();
        assert_eq!(discharged, ["P1", "P3"]);
        // Admitted again: back on a ward.
        let again = stays(&[("P1", "admit", Some("a"), 1), ("P1", "discharge", None, 2), ("P1", "admit", None, 3)]);
        assert_eq!(again.current("P1"), Stay { admitted: Some(true), ward: None });
    }
}
