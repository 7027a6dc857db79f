//! A simple vitals simulator: patients with a stable true state, labelled with the rubric, emitting
//! noisy monitor readings in the seed's flat JSON. (The realistic simulator, with episodes that unfold
//! over minutes, is the model issue's.)

use chrono::{DateTime, SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::rubric::SixVitals;
use crate::train::LabelledRows;

/// One reading in the seed's flat JSON contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitalsRecord {
    /// Patient identifier, e.g. `P017`.
    pub patient_id: String,
    /// RFC 3339 UTC time of the measurement.
    pub timestamp: String,
    /// Beats/min.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heart_rate: Option<f64>,
    /// mmHg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systolic_bp: Option<f64>,
    /// mmHg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diastolic_bp: Option<f64>,
    /// Percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spo2: Option<f64>,
    /// °C.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// mg/dL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glucose: Option<f64>,
    /// Breaths/min.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respiratory_rate: Option<f64>,
    /// On supplemental oxygen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_oxygen: Option<bool>,
    /// ACVPU letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consciousness: Option<String>,
}

/// How ill a simulated patient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acuity {
    Stable,
    Unwell,
    Critical,
}

/// A patient's true physiological state.
#[derive(Debug, Clone)]
struct Patient {
    id: String,
    acuity: Acuity,
    /// True vitals in feature order.
    truth: [f64; 6],
    respiratory_rate: f64,
}

/// Sensor noise (standard deviation) per feature, in feature order.
const NOISE: [f64; 6] = [1.5, 2.0, 1.5, 0.5, 0.05, 3.0];

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; one draw is enough here.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn draw_state(rng: &mut ChaCha8Rng, acuity: Acuity) -> ([f64; 6], f64) {
    match acuity {
        Acuity::Stable => (
            [
                rng.gen_range(60.0..85.0),
                rng.gen_range(115.0..140.0),
                rng.gen_range(65.0..82.0),
                rng.gen_range(97.0..99.5),
                rng.gen_range(36.4..37.6),
                rng.gen_range(85.0..150.0),
            ],
            rng.gen_range(13.0..19.0),
        ),
        Acuity::Unwell => (
            [
                rng.gen_range(95.0..125.0),
                rng.gen_range(100.0..115.0),
                rng.gen_range(85.0..100.0),
                rng.gen_range(93.0..96.0),
                rng.gen_range(37.8..38.8),
                rng.gen_range(150.0..240.0),
            ],
            rng.gen_range(19.0..23.0),
        ),
        Acuity::Critical => (
            [
                rng.gen_range(135.0..165.0),
                rng.gen_range(70.0..86.0),
                rng.gen_range(35.0..45.0),
                rng.gen_range(82.0..89.0),
                rng.gen_range(39.4..40.5),
                rng.gen_range(300.0..380.0),
            ],
            rng.gen_range(26.0..34.0),
        ),
    }
}

/// Produces readings for a ward of patients, deterministically for a seed.
#[derive(Debug, Clone)]
pub struct VitalsSimulator {
    rng: ChaCha8Rng,
    patients: Vec<Patient>,
    next: usize,
}

impl VitalsSimulator {
    /// A ward of `patients`: about 70 % stable, 20 % unwell, 10 % critical.
    pub fn new(patients: usize, seed: u64) -> VitalsSimulator {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let patients = (0..patients)
            .map(|i| {
                let acuity = match i % 10 {
                    0 => Acuity::Critical,
                    1 | 2 => Acuity::Unwell,
                    _ => Acuity::Stable,
                };
                let (truth, respiratory_rate) = draw_state(&mut rng, acuity);
                Patient { id: format!("P{:03}", i + 1), acuity, truth, respiratory_rate }
            })
            .collect();
        VitalsSimulator { rng, patients, next: 0 }
    }

    /// Number of patients.
    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// The next reading, patients in turn, stamped `at`.
    pub fn next_reading(&mut self, at: DateTime<Utc>) -> VitalsRecord {
        let i = self.next % self.patients.len().max(1);
        self.next += 1;
        let rng = &mut self.rng;
        let p = &self.patients[i];
        let mut measured = [0.0; 6];
        for f in 0..6 {
            measured[f] = p.truth[f] + NOISE[f] * gaussian(rng);
        }
        // Monitors report whole numbers except temperature (one decimal).
        let whole = |v: f64| v.round();
        let critical = p.acuity == Acuity::Critical;
        VitalsRecord {
            patient_id: p.id.clone(),
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            heart_rate: Some(whole(measured[0])),
            systolic_bp: Some(whole(measured[1])),
            diastolic_bp: Some(whole(measured[2])),
            spo2: Some(whole(measured[3]).min(100.0)),
            temperature: Some((measured[4] * 10.0).round() / 10.0),
            glucose: Some(whole(measured[5])),
            respiratory_rate: Some(whole(p.respiratory_rate + gaussian(rng))),
            on_oxygen: Some(critical),
            consciousness: Some(if critical { "V" } else { "A" }.into()),
        }
    }
}

/// Training rows covering every band of every feature: each true vital is drawn from its normal range
/// or, often, from anywhere a patient can be; the label comes from the true state, the features are
/// noisy measurements of it.
pub fn training_rows(n: usize, seed: u64) -> LabelledRows {
    const NORMAL: [(f64, f64); 6] =
        [(55.0, 95.0), (110.0, 150.0), (55.0, 88.0), (95.0, 100.0), (36.2, 37.9), (75.0, 170.0)];
    const WIDE: [(f64, f64); 6] =
        [(30.0, 180.0), (60.0, 240.0), (30.0, 135.0), (75.0, 100.0), (33.5, 41.5), (30.0, 500.0)];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = LabelledRows::default();
    for _ in 0..n {
        let mut truth = [0.0; 6];
        for f in 0..6 {
            let (lo, hi) = if rng.gen_bool(0.6) { NORMAL[f] } else { WIDE[f] };
            truth[f] = rng.gen_range(lo..hi);
        }
        let Some(label) = SixVitals::from_array(truth).rubric_label() else { continue };
        let mut measured = [0.0; 6];
        for f in 0..6 {
            measured[f] = truth[f] + NOISE[f] * gaussian(&mut rng);
        }
        rows.features.push(measured);
        rows.labels.push(label);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric::RiskLevel;

    #[test]
    fn simulator_is_deterministic_and_covers_every_label() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:15:02.123Z").unwrap().with_timezone(&Utc);
        let mut a = VitalsSimulator::new(50, 9);
        let mut b = VitalsSimulator::new(50, 9);
        let mut labels = std::collections::HashSet::new();
        for _ in 0..200 {
            let r = a.next_reading(at);
            assert_eq!(r, b.next_reading(at));
            let six = [r.heart_rate, r.systolic_bp, r.diastolic_bp, r.spo2, r.temperature, r.glucose]
                .map(|v| v.unwrap());
            labels.insert(SixVitals::from_array(six).rubric_label().unwrap());
        }
        assert_eq!(labels.len(), 3, "{labels:?}");
        let json = serde_json::to_string(&a.next_reading(at)).unwrap();
        assert!(json.contains("\"timestamp\":\"2026-11-23T10:15:02.123Z\""), "{json}");
    }

    #[test]
    fn training_rows_are_balanced_enough() {
        let rows = training_rows(5_000, 3);
        let high = rows.labels.iter().filter(|l| **l == RiskLevel::High).count();
        assert!(high > 250, "only {high} High rows");
    }
}
