//! Outcomes a hospital recorded, in place of the simulator's true state: its own events (a rapid-response
//! call, an unplanned ICU transfer, a cardiac arrest, a death), each a patient and a time. This is how a
//! hospital runs `vitalflow evaluate` in shadow mode on its own history before go-live.
//!
//! - Each event is an **episode of one moment**: onset and end are the event's time, so an alert counts
//!   for it from the lookback before it up to it, and its lead time is how long before it the first
//!   such alert came.
//! - A reading is **positive** (for the AUROC) when an event of its patient follows within the lookback.
//! - An event with no reading of its patient in its window could not have been alerted by any score: it
//!   is counted as unobserved and left out of every score's sensitivity alike.

use std::collections::HashMap;

use super::alerts::Episode;
use super::scores::PatientHistory;

/// One recorded deterioration event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The patient, as in the history's `patient_id`.
    pub patient_id: String,
    /// When it happened, seconds since the Unix epoch.
    pub seconds: f64,
}

/// The episodes the events give each patient, and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEpisodes {
    /// Episodes of each history, in the histories' order.
    pub episodes: Vec<Vec<Episode>>,
    /// Distinct events given (the same patient and time twice is one).
    pub events: u64,
    /// Events with no reading of their patient in their window (none of a patient without readings
    /// either): no score could alert for them.
    pub unobserved: u64,
}

/// Labels every reading of `histories` by the events (positive: an event of the patient within
/// `lookback_seconds` after it) and turns the observed events into episodes.
pub fn label_by_events(
    histories: &mut [PatientHistory],
    events: &[RecordedEvent],
    lookback_seconds: f64,
) -> EventEpisodes {
    let mut by_patient: HashMap<&str, Vec<f64>> = HashMap::new();
    for event in events {
        by_patient.entry(event.patient_id.as_str()).or_default().push(event.seconds);
    }
    for times in by_patient.values_mut() {
        times.sort_by(f64::total_cmp);
        times.dedup();
    }
    let distinct: u64 = by_patient.values().map(|t| t.len() as u64).sum();
    let mut observed = 0u64;
    let episodes = histories
        .iter_mut()
        .map(|history| {
            let times = by_patient.get(history.patient_id.as_str()).map(Vec::as_slice).unwrap_or_default();
            for reading in &mut history.readings {
                reading.truly_high =
                    times.iter().any(|t| reading.seconds <= *t && reading.seconds >= *t - lookback_seconds);
            }
            let seen: Vec<Episode> = times
                .iter()
                .filter(|t| history.readings.iter().any(|r| r.seconds <= **t && r.seconds >= **t - lookback_seconds))
                .map(|t| Episode { onset: *t, end: *t })
                .collect();
            observed += seen.len() as u64;
            seen
        })
        .collect();
    EventEpisodes { episodes, events: distinct, unobserved: distinct - observed }
}
