//! The three scores compared on each reading — the forest's P(High), NEWS2 and the six-vital rubric — and
//! the reading's time and true label, grouped into one history per patient.

use std::collections::HashMap;

use chrono::DateTime;

use crate::error::{Error, Result};
use crate::forest::RiskForest;
use crate::rubric::{Consciousness, News2Inputs, RiskLevel, SixVitals};
use crate::simulate::{SimulatedReading, VitalsRecord};

/// One of the three early-warning scores compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreKind {
    /// The forest's probability of High on the six measured vitals.
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
    /// Whether the label of the patient's true state is High (the positive class).
    pub truly_high: bool,
    /// The forest's P(High); `None` when one of the six vitals is missing.
    pub model_p_high: Option<f64>,
    /// The forest's label; `None` when one of the six vitals is missing.
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
    }
    .score()
}

/// Scores one reading; fails only on a timestamp that is not RFC 3339.
pub fn score_reading(forest: &RiskForest, reading: &SimulatedReading) -> Result<ScoredReading> {
    let record = &reading.record;
    let time = DateTime::parse_from_rfc3339(&record.timestamp).map_err(|e| {
        Error::Evaluation(format!(
            "reading of {} at {:?}: not an RFC 3339 time: {e}",
            record.patient_id, record.timestamp
        ))
    })?;
    let six = record.six();
    let prediction = six.and_then(|six| forest.predict(&six));
    Ok(ScoredReading {
        seconds: time.timestamp_millis() as f64 / 1_000.0,
        truly_high: reading.true_label == RiskLevel::High,
        model_p_high: prediction.map(|p| p.probabilities[0]),
        model_label: prediction.map(|p| p.risk),
        news2: news2_of(record),
        rubric: six.and_then(|six| SixVitals::from_array(six).rubric_score()),
    })
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
/// patient's readings sorted by time, equal times kept in arrival order).
pub fn patient_histories(
    forest: &RiskForest,
    readings: impl IntoIterator<Item = SimulatedReading>,
) -> Result<Vec<PatientHistory>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut histories: Vec<PatientHistory> = Vec::new();
    for reading in readings {
        let scored = score_reading(forest, &reading)?;
        let slot = *index.entry(reading.record.patient_id.clone()).or_insert_with(|| {
            histories.push(PatientHistory { patient_id: reading.record.patient_id.clone(), readings: Vec::new() });
            histories.len() - 1
        });
        histories[slot].readings.push(scored);
    }
    for history in &mut histories {
        history.readings.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    }
    Ok(histories)
}
