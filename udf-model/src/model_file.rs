//! The risk model's JSON file ([`ModelFile`]) and loading it from disk with errors that name the file.
//!
//! Trees are stored as scikit-learn stores them (parallel arrays of feature, threshold, children and
//! per-leaf class fractions), so that a forest exported from scikit-learn (`clients/python/
//! vitalflow_export`) loads the same way as one trained here.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Format tag written into every model file.
pub const MODEL_FORMAT: &str = "vitalflow-forest/1";

/// The model shipped in the repository and compiled into the binary: what runs when no model path is set.
pub const BUNDLED_MODEL_JSON: &str = include_str!("../models/risk-forest.json");

/// A model file as stored beside the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Version stamped on every `vitals_clean` row the model scores.
    pub version: String,
    /// Input columns, in order.
    pub features: Vec<String>,
    /// Class labels, in the order of each node's `value`.
    pub classes: Vec<String>,
    /// Where the model came from and on what data.
    pub training: TrainingInfo,
    /// Held-out figures measured when the model was trained (absent for imported models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    /// The trees.
    pub trees: Vec<TreeArrays>,
    /// The trend model the ETL scores with (its own features, classes and trees; see `crate::trend`),
    /// trained beside the six-vital model above. Absent in imported scikit-learn models: the ETL then
    /// scores with the six-vital model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Box<ModelFile>>,
    /// The map from this forest's P(High) to the share truly High, fitted when it was trained (the
    /// ETL's `probability_high`). Absent in imported models and in six-vital ones: their P(High) is
    /// taken as it comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::Calibration>,
}

/// Provenance of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// What produced the model (`vitalflow train`, `scikit-learn 1.9.1`).
    pub trainer: String,
    /// SHA-256 of the training rows and labels.
    pub data_hash: String,
    /// Training rows.
    pub rows: u64,
    /// Hyper-parameters as the trainer names them.
    pub params: serde_json::Value,
}

/// One tree as parallel arrays, scikit-learn's `tree_` layout. Node 0 is the root.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeArrays {
    /// Feature index tested at each node; -1 at leaves.
    pub feature: Vec<i32>,
    /// Threshold at each node (`x <= threshold` goes left); ignored at leaves.
    #[serde(deserialize_with = "exact::floats")]
    pub threshold: Vec<f64>,
    /// Left child of each node; -1 at leaves.
    pub left: Vec<i32>,
    /// Right child of each node; -1 at leaves.
    pub right: Vec<i32>,
    /// Class fractions at each leaf, summing to one (empty at inner nodes), in the file's class order.
    /// Kept in f64 as scikit-learn keeps them: its averaged probabilities are reproduced bit for bit.
    #[serde(deserialize_with = "exact::float_rows")]
    pub value: Vec<Vec<f64>>,
    /// Training weight that reached each node (scikit-learn's `weighted_n_node_samples`): what
    /// explanations weigh the branches by. Empty in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cover: Vec<f64>,
}

/// Exact decimal-to-f64 parsing. serde_json's default float parser can be one ulp off for 17-digit
/// numbers, which moves a threshold across an `f32` and sends a row the other way than scikit-learn
/// does; Rust's `str::parse::<f64>` rounds correctly, so numbers are taken raw and parsed with it.
mod exact {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::value::RawValue;

    fn parse<E: Error>(raw: &RawValue) -> Result<f64, E> {
        raw.get().trim().parse::<f64>().map_err(|_| E::custom(format!("expected a number, got {}", raw.get())))
    }

    pub(super) fn floats<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let raw: Vec<Box<RawValue>> = Vec::deserialize(d)?;
        raw.iter().map(|r| parse(r)).collect()
    }

    pub(super) fn float_rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        let raw: Vec<Vec<Box<RawValue>>> = Vec::deserialize(d)?;
        raw.iter().map(|row| row.iter().map(|r| parse(r)).collect()).collect()
    }
}

impl ModelFile {
    /// Parses a model file's JSON.
    pub fn from_json(json: &str) -> Result<ModelFile> {
        Ok(serde_json::from_str(json)?)
    }

    /// Reads and parses the model file at `path`; every error names the file.
    pub fn read(path: &Path) -> Result<ModelFile> {
        let named = |reason: String| Error::ModelFile { path: path.display().to_string(), reason };
        let json = std::fs::read_to_string(path).map_err(|e| named(format!("cannot read it: {e}")))?;
        ModelFile::from_json(&json).map_err(|e| named(e.to_string()))
    }

    /// Writes the model file as JSON to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let named = |reason: String| Error::ModelFile { path: path.display().to_string(), reason };
        let json = serde_json::to_vec(self).map_err(|e| named(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| named(format!("cannot write it: {e}")))
    }
}
