//! The ward score: every NEWS2 parameter plus the rubric's diastolic and glucose bands
//! (docs/clinical-rubric.md, "Label, from this round on"). Of the true state it is the trend model's
//! training label; of the measurements, with missing parameters counted as normal, it is the trend
//! model's derived `ward_points` input.

use crate::rubric::{
    Consciousness, RiskLevel, consciousness_points, diastolic_bp_points, glucose_points, heart_rate_points,
    oxygen_points, respiratory_rate_points, spo2_points, systolic_bp_points, temperature_points,
};

/// The nine parameters of the ward score; any may be missing in a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WardVitals {
    /// Pulse, beats/min.
    pub heart_rate: Option<f64>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: Option<f64>,
    /// Diastolic blood pressure, mmHg.
    pub diastolic_bp: Option<f64>,
    /// SpO2 (scale 1), percent.
    pub spo2: Option<f64>,
    /// Temperature, °C.
    pub temperature: Option<f64>,
    /// Glucose, mg/dL.
    pub glucose: Option<f64>,
    /// Respiration rate, breaths/min.
    pub respiratory_rate: Option<f64>,
    /// On supplemental oxygen.
    pub on_oxygen: Option<bool>,
    /// ACVPU level.
    pub consciousness: Option<Consciousness>,
}

impl WardVitals {
    /// Points of each parameter (`None` where it is missing or not finite).
    pub fn points(&self) -> [Option<u8>; 9] {
        let banded = |v: Option<f64>, band: fn(f64) -> Option<u8>| v.and_then(band);
        [
            banded(self.heart_rate, heart_rate_points),
            banded(self.systolic_bp, systolic_bp_points),
            banded(self.diastolic_bp, diastolic_bp_points),
            banded(self.spo2, spo2_points),
            banded(self.temperature, temperature_points),
            banded(self.glucose, glucose_points),
            banded(self.respiratory_rate, respiratory_rate_points),
            self.on_oxygen.map(oxygen_points),
            self.consciousness.map(consciousness_points),
        ]
    }

    /// The label: High at 7 or more points; Medium at 5–6 or a 3 in any parameter; Low otherwise.
    /// `None` when a parameter is missing (the true state always has all nine).
    pub fn label(&self) -> Option<RiskLevel> {
        let points = self.points();
        let mut all = [0u8; 9];
        for (slot, p) in all.iter_mut().zip(points) {
            *slot = p?;
        }
        let total: u8 = all.iter().sum();
        Some(if total >= 7 {
            RiskLevel::High
        } else if total >= 5 || all.contains(&3) {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        })
    }

    /// The points of the parameters present (a missing one counts as normal), raised to 5 when a
    /// single parameter scores 3: ordered so that `>= 7` reads High and `>= 5` Medium, as the label.
    pub fn ordered_points(&self) -> f64 {
        let points = self.points();
        let total: u8 = points.iter().flatten().sum();
        if total < 5 && points.contains(&Some(3)) { 5.0 } else { f64::from(total) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal() -> WardVitals {
        WardVitals {
            heart_rate: Some(75.0),
            systolic_bp: Some(125.0),
            diastolic_bp: Some(75.0),
            spo2: Some(98.0),
            temperature: Some(37.0),
            glucose: Some(100.0),
            respiratory_rate: Some(16.0),
            on_oxygen: Some(false),
            consciousness: Some(Consciousness::Alert),
        }
    }

    #[test]
    fn the_label_weighs_every_news2_parameter() {
        assert_eq!(normal().label(), Some(RiskLevel::Low));
        // The dashboard's case: NEWS2 14 must be High whatever the six seed vitals alone say.
        let septic = WardVitals {
            heart_rate: Some(126.0),
            spo2: Some(85.0),
            temperature: Some(38.2),
            respiratory_rate: Some(35.0),
            ..normal()
        };
        assert_eq!(septic.label(), Some(RiskLevel::High));
        // One parameter at 3 alone is Medium; oxygen (2) plus respiration 21 (2) plus pulse 95 (1) is 5.
        let confused = WardVitals { consciousness: Some(Consciousness::Confused), ..normal() };
        assert_eq!(confused.label(), Some(RiskLevel::Medium));
        assert_eq!(confused.ordered_points(), 5.0);
        let five =
            WardVitals { on_oxygen: Some(true), respiratory_rate: Some(21.0), heart_rate: Some(95.0), ..normal() };
        assert_eq!(five.label(), Some(RiskLevel::Medium));
        // Diastolic and glucose count too: 120 mmHg (3) and 45 mg/dL (3) with SpO2 95 (1) is 7.
        let crisis = WardVitals { diastolic_bp: Some(120.0), glucose: Some(45.0), spo2: Some(95.0), ..normal() };
        assert_eq!(crisis.label(), Some(RiskLevel::High));
        assert_eq!(crisis.ordered_points(), 7.0);
    }

    #[test]
    fn a_missing_parameter_has_no_label_and_counts_as_normal_in_the_points() {
        let partial = WardVitals { respiratory_rate: None, heart_rate: Some(135.0), ..normal() };
        assert_eq!(partial.label(), None);
        // Pulse 135 scores 3: raised to 5.
        assert_eq!(partial.ordered_points(), 5.0);
        assert_eq!(WardVitals::default().ordered_points(), 0.0);
    }
}
