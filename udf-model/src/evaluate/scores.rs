//! The three scores compared on each reading — the model's P(High), NEWS2 and the six-vital rubric — and
//! the reading's time and true label (the ward score of the true state), grouped into one history per
//! patient. The model is the one the ETL scores with: the trend model on each patient's readings in
//! time order through the ETL's per-patient pass (`crate::trend`), or the six-vital model of a file
//! without one.

use std::collections::HashMap;

use chrono::DateTime;

use crate::error::{Error, Result};
use crate::forest::{Prediction, RiskForest};
use crate::rubric::{Consciousness, News2Inputs, RiskLevel, SixVitals, Spo2Scale};
use crate::simulate::{SimulatedReading, VitalsRecord};
use crate::trend::{PatientTrend, TrendSettings};

/// One of the three early-warning scores compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreKind {
    /// The model's probability of High (the trend model's on the reading and the patient's recent ones).
    Model,
    /// The NEWS2 aggregate of the seven measured NEWS2 inputs.
    News2,
    /// The six-vital rubric's points of the measurements.
    Rubric,
}

impl ScoreKind {
    /// The three scores, in report order.
    pub const ALL: [ScoreKind; 3] = [ScoreKind::Model, ScoreKind::News2, ScoreKind::Rubric];

    /// The key in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            ScoreKind::Model => "model",
            ScoreKind::News2 => "news2",
            ScoreKind::Rubric => "rubric",
        }
    }

    /// The name in the text and HTML reports.
    pub fn title(self) -> &'static str {
        match self {
            ScoreKind::Model => "model P(High)",
            ScoreKind::News2 => "NEWS2",
            ScoreKind::Rubric => "rubric",
        }
    }
}

/// One reading reduced to what the evaluation needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredReading {
    /// Time of the measurement, seconds since the Unix epoch.
    pub seconds: f64,
    /// Whether the ward score of the patient's true state is High (the positive class).
    pub truly_high: bool,
    /// The model's P(High); `None` when the model cannot score the reading (the six-vital model
    /// without one of them; a reading the ETL rejects).
    pub model_p_high: Option<f64>,
    /// The model's label; `None` as `model_p_high`.
    pub model_label: Option<RiskLevel>,
    /// NEWS2; `None` when one of its seven inputs is missing.
    pub news2: Option<u8>,
    /// The rubric's points of the six measured vitals; `None` when one is missing.
    pub rubric: Option<u8>,
}

impl ScoredReading {
    /// The score of `kind` as a number; `None` is NULL (ranks lowest, never alerts).
    pub fn score(&self, kind: ScoreKind) -> Option<f64> {
        match kind {
            ScoreKind::Model => self.model_p_high,
            ScoreKind::News2 => self.news2.map(f64::from),
            ScoreKind::Rubric => self.rubric.map(f64::from),
        }
    }
}

/// NEWS2 of a reading's measured inputs; `None` when one is missing or unreadable.
pub fn news2_of(record: &VitalsRecord) -> Option<u8> {
    News2Inputs {
        respiratory_rate: record.respiratory_rate?,
        spo2: record.spo2?,
        on_oxygen: record.on_oxygen?,
        systolic_bp: record.systolic_bp?,
        heart_rate: record.heart_rate?,
        consciousness: Consciousness::parse(record.consciousness.as_deref()?)?,
        temperature: record.temperature?,
        // The simulator's records prescribe no scale: scale 1, as NEWS2 says for every patient by default.
        spo2_scale: Spo2Scale::One,
    }
    .score()
}

/// A reading to evaluate: what was measured, when, and whether the patient's true state was High then.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledReading {
    /// The measurement (its `timestamp` is not read again: `seconds` holds it).
    pub record: VitalsRecord,
    /// Time of the measurement, seconds since the Unix epoch.
    pub seconds: f64,
    /// The positive class: the ward score of the true state is High (simulated), or a recorded event of
    /// the patient follows within the lookback (a hospital's own history; `super::events`).
    pub truly_high: bool,
}

impl LabelledReading {
    /// A simulated reading, labelled by the ward score of its true state; fails on a timestamp that is
    /// not RFC 3339.
    pub fn simulated(reading: SimulatedReading) -> Result<LabelledReading> {
        let record = reading.record;
        let time = DateTime::parse_from_rfc3339(&record.timestamp).map_err(|e| {
            Error::Evaluation(format!(
                "reading of {} at {:?}: not an RFC 3339 time: {e}",
                record.patient_id, record.timestamp
            ))
        })?;
        Ok(LabelledReading {
            seconds: time.timestamp_millis() as f64 / 1_000.0,
            truly_high: reading.ward_label == RiskLevel::High,
            record,
        })
    }
}

/// Scores one reading, given the model's prediction for it.
fn scored(reading: &LabelledReading, prediction: Option<Prediction>) -> ScoredReading {
    let six = reading.record.six();
    ScoredReading {
        seconds: reading.seconds,
        truly_high: reading.truly_high,
        model_p_high: prediction.map(|p| p.probabilities[0]),
        model_label: prediction.map(|p| p.risk),
        news2: news2_of(&reading.record),
        rubric: six.and_then(|six| SixVitals::from_array(six).rubric_score()),
    }
}

/// One patient's readings in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientHistory {
    /// The patient's identifier.
    pub patient_id: String,
    /// Readings, earliest first.
    pub readings: Vec<ScoredReading>,
}

/// Scores every reading and groups them by patient (patients in order of their first reading, each
/// patient's readings sorted by time, equal times kept in arrival order). `forest` is a model file's
/// forest: its trend model scores when it has one, on each patient's readings in time order with the
/// ETL's default `settings`.
pub fn patient_histories(
    forest: &RiskForest,
    readings: impl IntoIterator<Item = LabelledReading>,
) -> Vec<PatientHistory> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut grouped: Vec<(String, Vec<LabelledReading>)> = Vec::new();
    for reading in readings {
        let slot = *index.entry(reading.record.patient_id.clone()).or_insert_with(|| {
            grouped.push((reading.record.patient_id.clone(), Vec::new()));
            grouped.len() - 1
        });
        grouped[slot].1.push(reading);
    }
    let trend = forest.trend().map(|t| (t, t.argument_columns().unwrap_or_default()));
    let mut histories = Vec::with_capacity(grouped.len());
    for (patient_id, mut readings) in grouped {
        readings.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let mut pass = PatientTrend::new(TrendSettings::default());
        let scored_readings = readings
            .iter()
            .map(|reading| {
                let prediction = match &trend {
                    Some((model, columns)) => pass
                        .push(reading.seconds, &reading.record.measured())
                        .and_then(|row| model.predict_arguments(&row.values(columns))),
                    None => reading.record.six().and_then(|six| forest.predict(&six)),
                };
                scored(reading, prediction)
            })
            .collect();
        histories.push(PatientHistory { patient_id, readings: scored_readings });
    }
    histories
}
