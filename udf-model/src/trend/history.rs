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
const CARRIED: usize = 9;

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
}

/// A patient's state between readings.
#[derive(Debug, Clone)]
pub struct PatientTrend {
    settings: TrendSettings,
    /// Last measured value of each parameter and when (seconds).
    last: [Option<(f64, f64)>; CARRIED],
    /// Carried vitals of the last readings, oldest first, at most `window_readings`.
    window: VecDeque<[f64; 7]>,
}

impl PatientTrend {
    /// A patient with no readings yet.
    pub fn new(settings: TrendSettings) -> PatientTrend {
        PatientTrend { settings, last: [None; CARRIED], window: VecDeque::new() }
    }

    /// Takes the next reading at `time` (seconds; not before the previous one) with the parameters
    /// measured (NaN: not measured) in order: the seven vitals, oxygen as 1/0, consciousness's rank.
    /// `None` when the ETL rejects the reading.
    pub fn push(&mut self, time: f64, measured: &[f64; CARRIED]) -> Option<TrendRow> {
        let (systolic, diastolic) = (measured[1], measured[2]);
        if systolic.is_finite() && diastolic.is_finite() && diastolic >= systolic {
            return None;
        }
        let mut carried = [f64::NAN; CARRIED];
        for p in 0..CARRIED {
            if measured[p].is_finite() {
                self.last[p] = Some((measured[p], time));
            }
            if let Some((value, at)) = self.last[p]
                && at >= time - self.settings.carry_forward_seconds
            {
                carried[p] = value;
            }
        }
        let vitals: [f64; 7] = std::array::from_fn(|v| carried[v]);
        self.window.push_back(vitals);
        while self.window.len() > self.settings.window_readings.max(1) {
            self.window.pop_front();
        }
        let mut means = [f64::NAN; 7];
        let mut changes = [f64::NAN; 7];
        for v in 0..7 {
            let present: Vec<f64> = self.window.iter().map(|w| w[v]).filter(|x| x.is_finite()).collect();
            if !present.is_empty() {
                means[v] = present.iter().sum::<f64>() / present.len() as f64;
            }
            changes[v] = vitals[v] - self.window.front().map_or(f64::NAN, |w| w[v]);
        }
        Some(TrendRow { carried, means, changes })
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
