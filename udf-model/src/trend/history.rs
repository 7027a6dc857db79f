//! One patient's readings in time order turned into [`TrendColumn`] values, as the ETL SQL
//! (`vitals_clean.sql`) computes them: carry-forward of each parameter for `carry_forward_seconds`,
//! then, over the last `window_readings` readings, each vital's mean (of the values present) and its
//! change since the window's first reading. A reading the ETL rejects (diastolic not below systolic)
//! has no row and does not enter the window.

use std::collections::VecDeque;

use super::columns::TrendColumn;
use crate::schema::Vital;

/// The ETL settings the features depend on (`[etl]` in vitalflow.toml).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendSettings {
    /// `etl.carry_forward_seconds`.
    pub carry_forward_seconds: f64,
    /// `etl.window_readings`.
    pub window_readings: usize,
}

impl Default for TrendSettings {
    fn default() -> Self {
        // The ETL's defaults.
        TrendSettings { carry_forward_seconds: 900.0, window_readings: 5 }
    }
}

/// Parameters carried forward: the seven vitals, oxygen (1/0), consciousness (ACVPU rank).
pub const CARRIED: usize = 9;

/// Microseconds in a second: the pass's unit of time.
const MICROS: f64 = 1_000_000.0;

/// One parameter as a reading measured it: the value, when (microseconds since the epoch), and
/// which reading it came from (the caller's index, e.g. a row of a batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// The value (oxygen as 1/0, consciousness as its ACVPU rank).
    pub value: f64,
    /// When it was measured, in microseconds since the epoch.
    pub at: i64,
    /// The reading that measured it.
    pub source: usize,
}

/// A reading's values of every [`TrendColumn`], NaN where missing.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendRow {
    carried: [f64; CARRIED],
    means: [f64; 7],
    changes: [f64; 7],
}

impl TrendRow {
    /// The values of `columns`, in order (a trend model's arguments).
    pub fn values(&self, columns: &[TrendColumn]) -> Vec<f64> {
        columns.iter().map(|c| self.get(*c)).collect()
    }

    /// The value of `column`; NaN when missing.
    pub fn get(&self, column: TrendColumn) -> f64 {
        let vital = |v: Vital| Vital::ALL.iter().position(|x| *x == v).unwrap_or(0);
        match column {
            TrendColumn::Vital(v) => self.carried[vital(v)],
            TrendColumn::OnOxygen => self.carried[7],
            TrendColumn::Consciousness => self.carried[8],
            TrendColumn::RollingMean(v) => self.means[vital(v)],
            TrendColumn::Change(v) => self.changes[vital(v)],
        }
    }

    /// The rolling mean of vital `v` (index in [`Vital::ALL`]); NaN when no value is in the window.
    pub fn mean(&self, v: usize) -> f64 {
        self.means[v]
    }

    /// The change of vital `v` (index in [`Vital::ALL`]) since the window's first reading; NaN when
    /// either is missing.
    pub fn change(&self, v: usize) -> f64 {
        self.changes[v]
    }
}

/// What the pass makes of one accepted reading: its features, and which measurement each carried
/// parameter comes from (`None`: missing, or expired).
#[derive(Debug, Clone, PartialEq)]
pub struct TrendStep {
    /// The reading's features.
    pub row: TrendRow,
    /// The measurement behind each carried parameter, in [`TrendRow`]'s order.
    pub carried_from: [Option<Measurement>; CARRIED],
}

/// A patient's state between readings: the one ordered pass that training, `vitalflow evaluate` and
/// the ETL (`patient_history(...)`) all compute features with.
#[derive(Debug, Clone)]
pub struct PatientTrend {
    /// `carry_forward_seconds` in microseconds.
    carry_forward: i64,
    window_readings: usize,
    /// Last measurement of each parameter.
    last: [Option<Measurement>; CARRIED],
    /// Carried vitals of the last readings, oldest first, at most `window_readings`.
    window: VecDeque<[f64; 7]>,
}

impl PatientTrend {
    /// A patient with no readings yet.
    pub fn new(settings: TrendSettings) -> PatientTrend {
        PatientTrend {
            carry_forward: (settings.carry_forward_seconds * MICROS).round() as i64,
            window_readings: settings.window_readings.max(1),
            last: [None; CARRIED],
            window: VecDeque::with_capacity(settings.window_readings.max(1) + 1),
        }
    }

    /// Takes the next reading at `time` (seconds; not before the previous one) with the parameters
    /// measured (NaN: not measured) in order: the seven vitals, oxygen as 1/0, consciousness's rank.
    /// `None` when the ETL rejects the reading (diastolic not below systolic).
    pub fn push(&mut self, time: f64, measured: &[f64; CARRIED]) -> Option<TrendRow> {
        let (systolic, diastolic) = (measured[1], measured[2]);
        if systolic.is_finite() && diastolic.is_finite() && diastolic >= systolic {
            return None;
        }
        let at = (time * MICROS).round() as i64;
        let measured = measured.map(|value| value.is_finite().then_some(Measurement { value, at, source: 0 }));
        Some(self.take(at, &measured).row)
    }

    /// Takes the next accepted reading at `time` (microseconds; not before the previous one) with
    /// what it brings of each parameter: a measurement of its own, or (a reading kept from an earlier
    /// batch) the carried one with its own time.
    pub fn take(&mut self, time: i64, measured: &[Option<Measurement>; CARRIED]) -> TrendStep {
        let oldest_kept = time.saturating_sub(self.carry_forward);
        let mut carried = [f64::NAN; CARRIED];
        let mut carried_from = [None; CARRIED];
        for p in 0..CARRIED {
            if let Some(m) = measured[p] {
                self.last[p] = Some(m);
            }
            if let Some(m) = self.last[p]
                && m.at >= oldest_kept
            {
                carried[p] = m.value;
                carried_from[p] = Some(m);
            }
        }
        let vitals: [f64; 7] = std::array::from_fn(|v| carried[v]);
        if self.window.len() == self.window_readings {
            self.window.pop_front();
        }
        self.window.push_back(vitals);
        let first = self.window.front().copied().unwrap_or(vitals);
        let mut means = [f64::NAN; 7];
        let mut changes = [f64::NAN; 7];
        for v in 0..7 {
            let (sum, count) = self
                .window
                .iter()
                .filter(|w| w[v].is_finite())
                .fold((0.0, 0u32), |(sum, count), w| (sum + w[v], count + 1));
            if count > 0 {
                means[v] = sum / f64::from(count);
            }
            changes[v] = vitals[v] - first[v];
        }
        TrendStep { row: TrendRow { carried, means, changes }, carried_from }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: f64 = f64::NAN;

    #[test]
    fn carries_forward_then_averages_over_the_window() {
        let mut p = PatientTrend::new(TrendSettings { carry_forward_seconds: 60.0, window_readings: 3 });
        let hr = |row: &TrendRow| row.get(TrendColumn::Vital(Vital::HeartRate));
        let mean = |row: &TrendRow| row.get(TrendColumn::RollingMean(Vital::HeartRate));
        let change = |row: &TrendRow| row.get(TrendColumn::Change(Vital::HeartRate));
        let r = p.push(0.0, &[80.0, 120.0, 70.0, 97.0, 37.0, N, 16.0, 0.0, 0.0]).unwrap();
        assert_eq!((hr(&r), mean(&r), change(&r)), (80.0, 80.0, 0.0));
        assert!(r.get(TrendColumn::Vital(Vital::Glucose)).is_nan());
        // Not measured: carried from 30 s ago.
        let r = p.push(30.0, &[N, 120.0, 70.0, 97.0, 37.0, N, 16.0, 0.0, 0.0]).unwrap();
        assert_eq!((hr(&r), mean(&r), change(&r)), (80.0, 80.0, 0.0));
        let r = p.push(60.0, &[110.0, 120.0, 70.0, 97.0, 37.0, N, 16.0, 0.0, 0.0]).unwrap();
        assert_eq!((hr(&r), mean(&r), change(&r)), (110.0, 90.0, 30.0));
        // Rejected: diastolic not below systolic; nothing changes.
        assert!(p.push(70.0, &[150.0, 80.0, 90.0, N, N, N, N, N, N]).is_none());
        // 65 s after the last pulse: the carried value has expired; the window drops the first reading.
        let r = p.push(125.0, &[N, 120.0, 70.0, 97.0, 37.0, N, 16.0, 0.0, 0.0]).unwrap();
        assert!(hr(&r).is_nan() && change(&r).is_nan());
        assert_eq!(mean(&r), 95.0);
    }
}
