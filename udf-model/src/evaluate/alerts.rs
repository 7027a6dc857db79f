//! Alerts and deterioration episodes: the ETL's rise rule, the threshold whose alert rate is closest to
//! a budget, and what each patient's alerts caught.
//!
//! - An **alert** fires on a reading whose score is ≥ the threshold when the patient's previous reading
//!   scored below it, was NULL, or there is none (the rise rule of `risk_alerts`). A NULL never alerts.
//! - An **episode** is a maximal run of one patient's consecutive readings whose true label is High,
//!   runs less than the merge gap apart joined: onset is the first one's time, end the last one's.
//! - An episode is **caught** when an alert falls in its window [onset − lookback, end]; an alert is
//!   **true** when it falls in some episode's window; the **lead time** of a caught episode is onset
//!   minus its first alert in the window (positive = before onset).
//! - The **alert rate** is alerts per 35 patients per day (Kaiser's Advance Alert Monitor budget unit).

/// Patients in the alert-rate unit: alerts per 35 patients per day.
pub const PATIENTS_PER_BUDGET: f64 = 35.0;

/// One deterioration episode, times in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// Time of the episode's first truly-High reading.
    pub onset: f64,
    /// Time of its last truly-High reading.
    pub end: f64,
}

/// The episodes of one patient: maximal runs of truly-High readings (`times` and `truly_high` match), a
/// run starting less than `merge_gap` seconds after the previous one ended joined to it (a true state
/// hovering at the High boundary is one deterioration, not several).
pub fn episodes(times: &[f64], truly_high: &[bool], merge_gap: f64) -> Vec<Episode> {
    let mut found: Vec<Episode> = Vec::new();
    let mut previous_high = false;
    for (time, high) in times.iter().zip(truly_high) {
        if *high && !previous_high {
            match found.last_mut() {
                Some(last) if *time - last.end < merge_gap => last.end = *time,
                _ => found.push(Episode { onset: *time, end: *time }),
            }
        } else if *high && let Some(current) = found.last_mut() {
            current.end = *time;
        }
        previous_high = *high;
    }
    found
}

/// Indices of the readings that alert at `threshold` under the rise rule.
pub fn rise_alerts(scores: &[Option<f64>], threshold: f64) -> Vec<usize> {
    let mut alerts = Vec::new();
    let mut previous_at_or_above = false;
    for (i, score) in scores.iter().enumerate() {
        let at_or_above = score.is_some_and(|s| s >= threshold);
        if at_or_above && !previous_at_or_above {
            alerts.push(i);
        }
        previous_at_or_above = at_or_above;
    }
    alerts
}

/// A threshold and how many alerts the rise rule gives at it over all patients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdAlerts {
    /// The threshold: one of the score's observed values.
    pub threshold: f64,
    /// Alerts over all patients.
    pub alerts: u64,
}

/// The alert count at every threshold worth trying (each distinct observed score), lowest first, in one
/// pass: a reading alerts at exactly the thresholds above its predecessor's score (NULL or none: all)
/// and at or below its own.
pub fn alerts_per_threshold(scores: &[Vec<Option<f64>>], values: &[f64]) -> Vec<ThresholdAlerts> {
    // Threshold k (1-based) is values[k - 1]; a reading of rank r after one of rank q alerts for q < k ≤ r.
    let mut change = vec![0i64; values.len() + 2];
    for patient in scores {
        let mut previous_rank = 0;
        for score in patient {
            let rank = super::auroc::rank_of(values, *score);
            if rank > previous_rank {
                change[previous_rank + 1] += 1;
                change[rank + 1] -= 1;
            }
            previous_rank = rank;
        }
    }
    let mut running = change[0];
    values
        .iter()
        .enumerate()
        .map(|(i, threshold)| {
            running += change[i + 1];
            ThresholdAlerts { threshold: *threshold, alerts: running.max(0) as u64 }
        })
        .collect()
}

/// Alerts per 35 patients per day.
pub fn alert_rate(alerts: u64, patient_days: f64) -> f64 {
    if patient_days > 0.0 { alerts as f64 / patient_days * PATIENTS_PER_BUDGET } else { f64::NAN }
}

/// The threshold whose alert rate is closest to `target` (alerts per 35 patients per day); on a tie the
/// higher threshold, which alerts less. `None` when there is no candidate.
pub fn closest_threshold(candidates: &[ThresholdAlerts], patient_days: f64, target: f64) -> Option<ThresholdAlerts> {
    let distance = |c: &ThresholdAlerts| (alert_rate(c.alerts, patient_days) - target).abs();
    candidates.iter().copied().filter(|c| !distance(c).is_nan()).reduce(|best, c| {
        if distance(&c) < distance(&best) || (distance(&c) == distance(&best) && c.threshold > best.threshold) {
            c
        } else {
            best
        }
    })
}

/// What one patient's alerts at one threshold caught: the per-patient sums a bootstrap resamples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatientAlertOutcome {
    /// Episodes of the patient.
    pub episodes: u32,
    /// Episodes with an alert in their window.
    pub caught_episodes: u32,
    /// Alerts.
    pub alerts: u32,
    /// Alerts inside some episode's window.
    pub true_alerts: u32,
    /// Lead time of each caught episode, minutes (positive = alert before onset).
    pub lead_minutes: Vec<f64>,
}

/// Weighs a patient's alerts (indices into `times`) against their episodes with windows reaching
/// `lookback_seconds` before onset.
pub fn patient_outcome(
    times: &[f64],
    alerts: &[usize],
    episodes: &[Episode],
    lookback_seconds: f64,
) -> PatientAlertOutcome {
    let alert_times: Vec<f64> = alerts.iter().filter_map(|i| times.get(*i).copied()).collect();
    let in_window = |t: f64, e: &Episode| t >= e.onset - lookback_seconds && t <= e.end;
    let mut outcome = PatientAlertOutcome {
        episodes: episodes.len() as u32,
        alerts: alert_times.len() as u32,
        true_alerts: alert_times.iter().filter(|t| episodes.iter().any(|e| in_window(**t, e))).count() as u32,
        ..PatientAlertOutcome::default()
    };
    for episode in episodes {
        // Alert times are in time order: the first in the window is the earliest.
        if let Some(first) = alert_times.iter().find(|t| in_window(**t, episode)) {
            outcome.caught_episodes += 1;
            outcome.lead_minutes.push((episode.onset - first) / 60.0);
        }
    }
    outcome
}

/// The median; `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
