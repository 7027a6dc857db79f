//! Training the trend model: simulated patients' readings run through the ETL's per-patient pass
//! (`crate::trend`), each reading's input values labelled with the ward score of the patient's true
//! state, and a forest fitted on them like the six-vital one.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{ForestParams, Metrics, class_index, fit_trees};
use crate::calibration::Calibration;
use crate::error::{Error, Result};
use crate::forest::{ForestInputs, MODEL_FORMAT, ModelFile, RiskForest, TrainingInfo};
use crate::rubric::RiskLevel;
use crate::simulate::{SimulatorSettings, VitalsSimulator, training_settings};
use crate::trend::{PatientTrend, TrendColumn, TrendInput, TrendSettings};

/// Seconds between two readings of one patient in the training wards: a bedside monitor's pace, the
/// simulator's default and `vitalflow evaluate`'s, so that the rolling features are learnt at each.
const CADENCES: [f64; 3] = [30.0, 120.0, 300.0];
/// Patients of each training ward: few enough that each is followed for hours.
const PATIENTS: usize = 200;

/// Readings' input values (what the trees see, [`TrendInput`] order) with the ward label of the true
/// state, and the ward score's label of the measurements (the comparison the report makes).
#[derive(Debug, Clone, Default)]
pub struct TrendRows {
    /// The inputs' names, in value order.
    pub inputs: Vec<String>,
    /// One row of input values per reading.
    pub values: Vec<Vec<f64>>,
    /// Label of the true state.
    pub labels: Vec<RiskLevel>,
    /// The ward score of the measurements as a label (missing parameters counted as normal).
    pub measured_labels: Vec<RiskLevel>,
    /// The model's arguments of each reading ([`RiskForest::arguments`] order), for scoring.
    pub arguments: Vec<Vec<f64>>,
}

impl TrendRows {
    /// SHA-256 of the values and labels, hex.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (row, label) in self.values.iter().zip(&self.labels) {
            for v in row {
                h.update(v.to_le_bytes());
            }
            h.update([class_index(*label) as u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The trend model's hyper-parameters: more inputs than the six-vital model, so more trees, and half
/// the inputs per tree.
pub fn trend_params(seed: u64) -> ForestParams {
    ForestParams { trees: 16, max_features: 8, seed, ..ForestParams::default() }
}

/// About `n` readings from simulated wards (training settings: frequent episodes) at each of
/// [`CADENCES`], through the per-patient pass with `settings`, as rows for a model of `inputs`.
pub fn trend_rows(n: usize, seed: u64, inputs: &[TrendInput], settings: TrendSettings) -> Result<TrendRows> {
    let names: Vec<String> = inputs.iter().map(|i| i.name()).collect();
    let model_inputs = ForestInputs::from_features(&names, true).map_err(Error::Training)?;
    let columns: Vec<TrendColumn> =
        model_inputs.arguments().iter().filter_map(|(name, _)| TrendColumn::parse(name)).collect();
    let mut rows = TrendRows { inputs: names.clone(), ..TrendRows::default() };
    let start = DateTime::<Utc>::UNIX_EPOCH;
    for (w, cadence) in CADENCES.iter().enumerate() {
        let ward = SimulatorSettings { seconds_per_reading: *cadence, ..training_settings() };
        let mut sim = VitalsSimulator::with_settings(PATIENTS, seed.wrapping_add(w as u64 * 1_000), ward);
        let mut patients: HashMap<String, PatientTrend> = HashMap::new();
        let target = n * (w + 1) / CADENCES.len();
        let mut tick = 0u32;
        while rows.labels.len() < target {
            for _ in 0..PATIENTS {
                let seconds = f64::from(tick) * cadence;
                let at = start + Duration::milliseconds((seconds * 1_000.0) as i64);
                let reading = sim.next_labelled(at);
                let record = &reading.record;
                let values = record.measured();
                let trend = patients.entry(record.patient_id.clone()).or_insert_with(|| PatientTrend::new(settings));
                let Some(row) = trend.push(seconds, &values) else { continue };
                let arguments = row.values(&columns);
                let Some(input_values) = model_inputs.values(&arguments) else { continue };
                rows.values.push(input_values);
                rows.arguments.push(arguments);
                rows.labels.push(reading.ward_label);
                rows.measured_labels.push(measured_label(&values));
            }
            tick += 1;
        }
    }
    Ok(rows)
}

/// The ward score's label of measured parameters (NaN: missing, counted as normal).
fn measured_label(values: &[f64; 9]) -> RiskLevel {
    let points = crate::trend::DerivedInput::value(values);
    let any_three = crate::trend::ward_vitals(values).points().contains(&Some(3));
    if points >= 7.0 {
        RiskLevel::High
    } else if points >= 5.0 || any_three {
        RiskLevel::Medium
    } else {
        RiskLevel::Low
    }
}

/// Trains the trend model on `rows`; `on_tree` is called after each tree.
pub fn train_trend(
    rows: &TrendRows,
    params: &ForestParams,
    version: &str,
    mut on_tree: impl FnMut(usize),
) -> Result<ModelFile> {
    if rows.values.is_empty() || rows.values.len() != rows.labels.len() {
        return Err(Error::Training(format!("{} rows and {} labels", rows.values.len(), rows.labels.len())));
    }
    let input = |s: usize, f: usize| rows.values[s][f];
    let trees = fit_trees(rows.inputs.len(), input, &rows.labels, params, &mut on_tree)?;
    Ok(ModelFile {
        format: MODEL_FORMAT.into(),
        version: version.into(),
        features: rows.inputs.clone(),
        classes: RiskLevel::ALL.iter().map(|l| l.as_str().to_string()).collect(),
        training: TrainingInfo {
            trainer: "vitalflow train (linfa-trees), trend model".into(),
            data_hash: rows.hash(),
            rows: rows.values.len() as u64,
            params: serde_json::to_value(params).unwrap_or_default(),
        },
        metrics: None,
        trees,
        trend: None,
        calibration: None,
    })
}

/// The trend model and the ward score of the measurements on held-out rows.
pub fn evaluate_trend(forest: &RiskForest, rows: &TrendRows) -> (Metrics, Metrics) {
    let model: Vec<Option<RiskLevel>> =
        rows.arguments.iter().map(|args| forest.predict_arguments(args).map(|p| p.risk)).collect();
    let measured: Vec<Option<RiskLevel>> = rows.measured_labels.iter().copied().map(Some).collect();
    (Metrics::measure(&rows.labels, &model), Metrics::measure(&rows.labels, &measured))
}

/// How well P(High) means what it says on held-out rows: per tenth of probability, the rows, their
/// mean P(High) and the share truly High; and the Brier score (mean squared error of P(High)).
#[derive(Debug, Clone, Serialize)]
pub struct Reliability {
    /// `[low, high, rows, mean P(High), share truly High]` per bin with rows.
    pub bins: Vec<[f64; 5]>,
    /// Mean of (P(High) − truly High)² over the rows scored.
    pub brier: f64,
}

/// The calibration of `forest`'s P(High) fitted on `rows` (a calibration ward: neither the training
/// rows nor the held-out ones); `None` when no row can be scored.
pub fn calibrate(forest: &RiskForest, rows: &TrendRows, fitted_on: impl Into<String>) -> Option<Calibration> {
    let (mut scores, mut outcomes) = (Vec::new(), Vec::new());
    for (args, label) in rows.arguments.iter().zip(&rows.labels) {
        if let Some(p) = forest.predict_arguments(args) {
            scores.push(p.probabilities[0]);
            outcomes.push(*label == RiskLevel::High);
        }
    }
    Calibration::fit(&scores, &outcomes, fitted_on)
}

/// The reliability on `rows` of `forest`'s P(High), calibrated by its file's calibration or (not
/// `calibrated`) its own.
pub fn reliability(forest: &RiskForest, rows: &TrendRows, calibrated: bool) -> Reliability {
    let mut bins = [[0.0f64; 3]; 10];
    let (mut squared, mut scored) = (0.0, 0usize);
    for (args, label) in rows.arguments.iter().zip(&rows.labels) {
        let Some(p) = forest.predict_arguments(args) else { continue };
        let p = if calibrated { forest.calibrated_high(p.probabilities[0]) } else { p.probabilities[0] };
        let y = f64::from(u8::from(*label == RiskLevel::High));
        let bin = &mut bins[((p * 10.0) as usize).min(9)];
        bin[0] += 1.0;
        bin[1] += p;
        bin[2] += y;
        squared += (p - y) * (p - y);
        scored += 1;
    }
    Reliability {
        bins: bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b[0] > 0.0)
            .map(|(i, b)| [i as f64 / 10.0, (i + 1) as f64 / 10.0, b[0], b[1] / b[0], b[2] / b[0]])
            .collect(),
        brier: squared / scored.max(1) as f64,
    }
}

/// The trend model's part of the training report: its labels against the ward score's, and the
/// reliability of its own and its calibrated P(High).
pub fn trend_report_text(
    held_out: usize,
    model: &Metrics,
    measured: &Metrics,
    forest: &Reliability,
    calibrated: &Reliability,
) -> String {
    use std::fmt::Write;
    let mut out = format!("trend model, held-out readings: {held_out} (label: the ward score of the true state)\n");
    out += &super::metrics_text(&[("trend forest", model), ("ward score on measurements", measured)]);
    for (what, reliability) in [("the forest's own P(High)", forest), ("calibrated P(High)", calibrated)] {
        let _ = writeln!(out, "reliability of {what} (Brier score {:.4}):", reliability.brier);
        let _ = writeln!(out, "  {:<11} {:>8} {:>12} {:>14}", "P(High)", "readings", "mean P(High)", "truly High");
        for [lo, hi, rows, mean, observed] in &reliability.bins {
            let _ = writeln!(out, "  {lo:.1} - {hi:.1}  {rows:>8} {mean:>12.3} {observed:>14.3}");
        }
    }
    out
}
