//! The risk model: its JSON file ([`ModelFile`]) and the flat forest that scores rows ([`RiskForest`]).
//!
//! Trees are stored as scikit-learn stores them (parallel arrays of feature, threshold, children and
//! per-node class fractions), so that a forest exported from scikit-learn loads the same way as one
//! trained here. Decisions reproduce scikit-learn's exactly: inputs are cast to `f32` and compared
//! `x <= threshold` against the threshold rounded down to the nearest `f32`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rubric::RiskLevel;
use crate::schema::MODEL_FEATURES;

/// Format tag written into every model file.
pub const MODEL_FORMAT: &str = "vitalflow-forest/1";

/// The model shipped in the repository and compiled into the binary: what runs when no model URL is set.
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
}

/// Provenance of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingInfo {
    /// What produced the model (`vitalflow train`, `scikit-learn`).
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
    pub threshold: Vec<f64>,
    /// Left child of each node; -1 at leaves.
    pub left: Vec<i32>,
    /// Right child of each node; -1 at leaves.
    pub right: Vec<i32>,
    /// Class fractions at each leaf (empty at inner nodes), in the file's class order.
    pub value: Vec<Vec<f32>>,
}

/// A class prediction with the averaged class probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The most probable class.
    pub risk: RiskLevel,
    /// Probabilities in [`RiskLevel::ALL`] order (High, Medium, Low).
    pub probabilities: [f32; 3],
}

/// An inner node or a leaf, 16 bytes, all trees in one array.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// `x <= threshold` goes left.
    threshold: f32,
    /// Feature index, or [`LEAF`].
    feature: u32,
    /// Left child index, or at a leaf the offset of its probabilities in `leaf_values`.
    left: u32,
    /// Right child index.
    right: u32,
}

const LEAF: u32 = u32::MAX;

/// A validated forest laid out flat for fast scoring.
#[derive(Debug, Clone)]
pub struct RiskForest {
    version: String,
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
    /// Per leaf, three probabilities in [`RiskLevel::ALL`] order, already divided by the tree count.
    leaf_values: Vec<f32>,
    /// For argmax ties: position of each of [`RiskLevel::ALL`] in the file's class order, so that a
    /// tie resolves as the file's trainer (scikit-learn's `argmax`) would.
    tie_order: [usize; 3],
}

/// The largest `f32` not above `t`: with it, `(x as f32) <= t32` decides as `(x as f32) as f64 <= t`.
fn threshold_f32(t: f64) -> f32 {
    let f = t as f32;
    if f as f64 > t { f.next_down() } else { f }
}

impl RiskForest {
    /// Parses and validates a model file.
    pub fn from_json(json: &str) -> Result<RiskForest> {
        let file: ModelFile = serde_json::from_str(json)?;
        RiskForest::from_model(&file)
    }

    /// The model compiled into the binary.
    pub fn bundled() -> Result<RiskForest> {
        RiskForest::from_json(BUNDLED_MODEL_JSON)
    }

    /// Validates a model file and lays it out flat.
    pub fn from_model(file: &ModelFile) -> Result<RiskForest> {
        let invalid = |msg: String| Error::InvalidModel(msg);
        if file.format != MODEL_FORMAT {
            return Err(invalid(format!("format is {:?}, expected {MODEL_FORMAT:?}", file.format)));
        }
        let expected: Vec<&str> = MODEL_FEATURES.iter().map(|v| v.column()).collect();
        if file.features != expected {
            return Err(invalid(format!("features are {:?}, expected {expected:?}", file.features)));
        }
        // Column of each file class in RiskLevel::ALL order.
        let mut class_slot = Vec::with_capacity(file.classes.len());
        for c in &file.classes {
            let level = RiskLevel::parse(c).ok_or_else(|| invalid(format!("unknown class {c:?}")))?;
            class_slot.push(RiskLevel::ALL.iter().position(|l| *l == level).unwrap_or(0));
        }
        let mut sorted = class_slot.clone();
        sorted.sort_unstable();
        if sorted != [0, 1, 2] {
            return Err(invalid(format!("classes must be High, Medium and Low once each, got {:?}", file.classes)));
        }
        if file.trees.is_empty() {
            return Err(invalid("the forest has no trees".into()));
        }
        let mut tie_order = [0; 3];
        for (file_pos, slot) in class_slot.iter().enumerate() {
            tie_order[*slot] = file_pos;
        }

        let scale = 1.0 / file.trees.len() as f32;
        let mut forest = RiskForest {
            version: file.version.clone(),
            nodes: Vec::new(),
            roots: Vec::with_capacity(file.trees.len()),
            leaf_values: Vec::new(),
            tie_order,
        };
        for (t, tree) in file.trees.iter().enumerate() {
            let n = tree.feature.len();
            if n == 0
                || [tree.threshold.len(), tree.left.len(), tree.right.len(), tree.value.len()] != [n; 4]
            {
                return Err(invalid(format!("tree {t}: arrays are empty or of different lengths")));
            }
            let base = forest.nodes.len() as u32;
            forest.roots.push(base);
            for i in 0..n {
                let node = if tree.feature[i] < 0 {
                    let v = &tree.value[i];
                    if v.len() != 3 || v.iter().any(|p| !p.is_finite() || *p < 0.0) {
                        return Err(invalid(format!("tree {t} leaf {i}: class fractions {v:?}")));
                    }
                    let total: f32 = v.iter().sum();
                    let offset = forest.leaf_values.len() as u32;
                    let mut probs = [0.0f32; 3];
                    for (file_pos, p) in v.iter().enumerate() {
                        // Normalised: scikit-learn stores counts in older versions, fractions in newer.
                        probs[class_slot[file_pos]] = if total > 0.0 { p / total } else { 0.0 };
                    }
                    forest.leaf_values.extend(probs.iter().map(|p| p * scale));
                    FlatNode { threshold: 0.0, feature: LEAF, left: offset, right: 0 }
                } else {
                    let (f, l, r) = (tree.feature[i], tree.left[i], tree.right[i]);
                    // Children after their parent: a walk always ends.
                    let child_ok = |c: i32| c > i as i32 && (c as usize) < n;
                    if f as usize >= MODEL_FEATURES.len() || !child_ok(l) || !child_ok(r) {
                        return Err(invalid(format!("tree {t} node {i}: feature {f}, children {l} and {r}")));
                    }
                    let th = tree.threshold[i];
                    if th.is_nan() {
                        return Err(invalid(format!("tree {t} node {i}: threshold is NaN")));
                    }
                    FlatNode { threshold: threshold_f32(th), feature: f as u32, left: base + l as u32, right: base + r as u32 }
                };
                forest.nodes.push(node);
            }
        }
        Ok(forest)
    }

    /// The version stamped on scored rows.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of trees.
    pub fn tree_count(&self) -> usize {
        self.roots.len()
    }

    /// Scores one row in feature order; `None` when any input is NaN or infinite.
    pub fn predict(&self, row: &[f64; 6]) -> Option<Prediction> {
        if row.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let x = row.map(|v| v as f32);
        let mut probs = [0.0f32; 3];
        for &root in &self.roots {
            let mut node = self.nodes[root as usize];
            while node.feature != LEAF {
                let next = if x[node.feature as usize] <= node.threshold { node.left } else { node.right };
                node = self.nodes[next as usize];
            }
            let leaf = &self.leaf_values[node.left as usize..node.left as usize + 3];
            for (p, v) in probs.iter_mut().zip(leaf) {
                *p += v;
            }
        }
        Some(Prediction { risk: self.argmax(&probs), probabilities: probs })
    }

    fn argmax(&self, probs: &[f32; 3]) -> RiskLevel {
        let mut best = 0;
        for c in 1..3 {
            let better = probs[c] > probs[best]
                || (probs[c] == probs[best] && self.tie_order[c] < self.tie_order[best]);
            if better {
                best = c;
            }
        }
        RiskLevel::ALL[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(threshold: f64) -> ModelFile {
        ModelFile {
            format: MODEL_FORMAT.into(),
            version: "test".into(),
            features: MODEL_FEATURES.iter().map(|v| v.column().to_string()).collect(),
            classes: vec!["High".into(), "Low".into(), "Medium".into()],
            training: TrainingInfo { trainer: "test".into(), data_hash: String::new(), rows: 0, params: serde_json::Value::Null },
            metrics: None,
            // Heart rate <= threshold: Low, else High.
            trees: vec![TreeArrays {
                feature: vec![0, -1, -1],
                threshold: vec![threshold, -2.0, -2.0],
                left: vec![1, -1, -1],
                right: vec![2, -1, -1],
                value: vec![vec![], vec![0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0]],
            }],
        }
    }

    #[test]
    fn decides_like_scikit_learn_at_the_threshold() {
        // f32(100.3) is 100.30000305, above 100.3: scikit-learn sends x = 100.3 right (f32 x > f64 t),
        // which a threshold merely cast to f32 would get wrong.
        let forest = RiskForest::from_model(&stump(100.3)).unwrap();
        let at = |hr: f64| forest.predict(&[hr, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap().risk;
        assert_eq!(at(100.29), RiskLevel::Low);
        assert_eq!(at(100.3), RiskLevel::High);
        // f32(100.1) is below 100.1: x = 100.1 goes left, as in scikit-learn.
        let forest = RiskForest::from_model(&stump(100.1)).unwrap();
        assert_eq!(forest.predict(&[100.1, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap().risk, RiskLevel::Low);
    }

    #[test]
    fn probabilities_are_in_high_medium_low_order() {
        let forest = RiskForest::from_model(&stump(100.0)).unwrap();
        let p = forest.predict(&[150.0, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap();
        assert_eq!(p.probabilities, [1.0, 0.0, 0.0]);
        assert_eq!(forest.predict(&[f64::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]), None);
    }

    #[test]
    fn rejects_broken_files() {
        let mut cyclic = stump(1.0);
        cyclic.trees[0].left[0] = 0;
        assert!(matches!(RiskForest::from_model(&cyclic), Err(Error::InvalidModel(_))));
        let mut wrong_classes = stump(1.0);
        wrong_classes.classes[2] = "Low".into();
        assert!(RiskForest::from_model(&wrong_classes).is_err());
        assert!(RiskForest::from_json("{").is_err());
    }
}
