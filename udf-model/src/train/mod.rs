//! Training a [`ModelFile`] with linfa-trees decision trees: bootstrap samples, class weights, and
//! held-out metrics against the plain rubric applied to the same noisy measurements. The six-vital
//! model is trained here, the trend model in `trend`.

mod trend;

pub use trend::{
    Reliability, TrendRows, calibrate, evaluate_trend, reliability, train_trend, trend_params, trend_report_text,
    trend_rows,
};

use linfa::prelude::*;
use linfa_trees::{DecisionTree, SplitQuality, TreeNode};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::forest::{MODEL_FORMAT, ModelFile, RUBRIC_FEATURE, RiskForest, TrainingInfo, TreeArrays, rubric_points};
use crate::rubric::{RiskLevel, SixVitals};
use crate::schema::MODEL_FEATURES;

pub use crate::simulate::LabelledRows;

/// Forest hyper-parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ForestParams {
    /// Number of trees.
    pub trees: usize,
    /// Depth limit of each tree.
    pub max_depth: usize,
    /// Rows drawn (with replacement) for each tree's bootstrap sample; fewer than the training rows
    /// keeps training fast, because linfa-trees scans every sample row at every node.
    pub max_samples: usize,
    /// Inputs each tree may split on, drawn at random per tree (7, or 6 without the rubric input: all, plain bagging).
    pub max_features: usize,
    /// Smallest total sample weight in a leaf.
    pub min_weight_leaf: f32,
    /// Multiplier of the class-balanced weight of High rows: above 1 trades precision for High recall.
    pub high_weight_boost: f32,
    /// Give the trees the rubric's score of the measurements as a seventh input
    /// ([`crate::forest::RUBRIC_FEATURE`], computed from the six vitals when scoring).
    pub rubric_feature: bool,
    /// Seed for the bootstrap.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        // The shipped model's settings (a few minutes to train; docs/model.md).
        ForestParams {
            trees: 10,
            max_depth: 12,
            max_samples: 40_000,
            max_features: 7,
            min_weight_leaf: 3.0,
            high_weight_boost: 2.0,
            rubric_feature: true,
            seed: 7,
        }
    }
}

fn class_index(level: RiskLevel) -> usize {
    RiskLevel::ALL.iter().position(|l| *l == level).unwrap_or(0)
}

/// Figures on held-out rows, for the forest and for the rubric on the measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Fraction of rows labelled right.
    pub accuracy: f64,
    /// Mean of per-class F1.
    pub macro_f1: f64,
    /// Recall per class in High, Medium, Low order.
    pub recall: [f64; 3],
    /// `confusion[true][predicted]` in High, Medium, Low order.
    pub confusion: [[u64; 3]; 3],
}

impl Metrics {
    /// Compares predictions with labels; rows without a prediction count as wrong (in the accuracy's
    /// denominator, in no confusion cell).
    pub fn measure(labels: &[RiskLevel], predicted: &[Option<RiskLevel>]) -> Metrics {
        let mut confusion = [[0u64; 3]; 3];
        for (truth, p) in labels.iter().zip(predicted) {
            if let Some(p) = p {
                confusion[class_index(*truth)][class_index(*p)] += 1;
            }
        }
        let total = labels.len().max(1) as f64;
        let correct: u64 = (0..3).map(|c| confusion[c][c]).sum();
        let mut recall = [0.0; 3];
        let mut f1_sum = 0.0;
        for c in 0..3 {
            let actual: u64 = confusion[c].iter().sum();
            let called: u64 = (0..3).map(|t| confusion[t][c]).sum();
            let r = if actual > 0 { confusion[c][c] as f64 / actual as f64 } else { 0.0 };
            let p = if called > 0 { confusion[c][c] as f64 / called as f64 } else { 0.0 };
            recall[c] = r;
            f1_sum += if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        }
        Metrics { accuracy: correct as f64 / total, macro_f1: f1_sum / 3.0, recall, confusion }
    }
}

/// Trains a forest; `on_tree` is called after each tree (progress bars).
pub fn train_forest(
    rows: &LabelledRows,
    params: &ForestParams,
    version: &str,
    mut on_tree: impl FnMut(usize),
) -> Result<ModelFile> {
    let n = rows.features.len();
    if n == 0 || rows.labels.len() != n {
        return Err(Error::Training(format!("{n} rows and {} labels", rows.labels.len())));
    }
    let inputs = 6 + usize::from(params.rubric_feature);
    let input = |s: usize, f: usize| if f < 6 { rows.features[s][f] } else { rubric_points(&rows.features[s]) };
    let trees = fit_trees(inputs, input, &rows.labels, params, &mut on_tree)?;
    Ok(ModelFile {
        format: MODEL_FORMAT.into(),
        version: version.into(),
        features: MODEL_FEATURES
            .iter()
            .map(|v| v.column())
            .chain(params.rubric_feature.then_some(RUBRIC_FEATURE))
            .map(str::to_string)
            .collect(),
        classes: RiskLevel::ALL.iter().map(|l| l.as_str().to_string()).collect(),
        training: TrainingInfo {
            trainer: "vitalflow train (linfa-trees)".into(),
            data_hash: rows.hash(),
            rows: n as u64,
            params: serde_json::to_value(params).unwrap_or_default(),
        },
        metrics: None,
        trees,
        trend: None,
        calibration: None,
    })
}

/// Fits `params.trees` trees on rows of `inputs` values (`input(row, f)`) labelled `labels`, each on a
/// bootstrap sample and a random subset of the inputs; `on_tree` is called after each tree.
fn fit_trees(
    inputs: usize,
    input: impl Fn(usize, usize) -> f64,
    labels: &[RiskLevel],
    params: &ForestParams,
    on_tree: &mut impl FnMut(usize),
) -> Result<Vec<TreeArrays>> {
    let n = labels.len();
    let class_weight = class_weights(labels, params);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut trees = Vec::with_capacity(params.trees);
    let sample_rows = params.max_samples.clamp(1, n);
    let width = params.max_features.clamp(1, inputs);
    for t in 0..params.trees {
        // This tree's features: a random subset of `width`, in feature order.
        let mut order: Vec<usize> = (0..inputs).collect();
        for i in 0..width {
            let j = rng.gen_range(i..inputs);
            order.swap(i, j);
        }
        let mut chosen = order[..width].to_vec();
        chosen.sort_unstable();
        let mut records = Array2::<f64>::zeros((sample_rows, width));
        let mut targets = Array1::<usize>::zeros(sample_rows);
        let mut weights = Array1::<f32>::zeros(sample_rows);
        for i in 0..sample_rows {
            let s = rng.gen_range(0..n);
            for (col, f) in chosen.iter().enumerate() {
                records[(i, col)] = input(s, *f);
            }
            let c = class_index(labels[s]);
            targets[i] = c;
            weights[i] = class_weight[c];
        }
        let dataset = Dataset::new(records, targets).with_weights(weights);
        let tree = DecisionTree::<f64, usize>::params()
            .split_quality(SplitQuality::Gini)
            .max_depth(Some(params.max_depth))
            .min_weight_leaf(params.min_weight_leaf)
            .fit(&dataset)
            .map_err(|e| Error::Training(format!("tree {t}: {e}")))?;
        let mut arrays = flatten_tree(&tree, &dataset);
        for f in arrays.feature.iter_mut().filter(|f| **f >= 0) {
            *f = chosen[*f as usize] as i32;
        }
        trees.push(arrays);
        on_tree(t + 1);
    }
    Ok(trees)
}

/// Class-balanced weights, High boosted: missing a deteriorating patient is the costly error.
/// Whole numbers on purpose: linfa sums weights in f32, and fractional weights can cancel to a
/// negative total, which it asserts against.
fn class_weights(labels: &[RiskLevel], params: &ForestParams) -> [f32; 3] {
    let mut counts = [0usize; 3];
    for l in labels {
        counts[class_index(*l)] += 1;
    }
    let largest = counts.iter().copied().max().unwrap_or(1) as f32;
    std::array::from_fn(|c| {
        let balanced = (largest / counts[c].max(1) as f32).round().max(1.0);
        if c == 0 { (balanced * params.high_weight_boost).round() } else { balanced }
    })
}

/// Records the node covers of a model file written without them (before explanations), from
/// `rows` (its training rows) with the class weights of `params`: each tree's covers are the weight
/// of the rows reaching each node. The trees and their decisions are unchanged.
pub fn record_covers(file: &mut ModelFile, rows: &LabelledRows, params: &ForestParams) -> Result<()> {
    let rubric = match file.features.len() {
        6 => false,
        7 => true,
        n => return Err(Error::Training(format!("the model has {n} inputs; vitalflow's have 6 or 7"))),
    };
    let class_weight = class_weights(&rows.labels, params);
    for tree in &mut file.trees {
        let mut weights = vec![0f64; tree.feature.len()];
        for (row, label) in rows.features.iter().zip(&rows.labels) {
            let input = |f: usize| {
                if f < 6 {
                    row[f]
                } else if rubric {
                    rubric_points(row)
                } else {
                    f64::NAN
                }
            };
            let mut node = 0usize;
            while tree.feature[node] >= 0 {
                let f = tree.feature[node] as usize;
                let left = f64::from(input(f) as f32) <= tree.threshold[node];
                node = if left { tree.left[node] } else { tree.right[node] } as usize;
            }
            weights[node] += f64::from(class_weight[class_index(*label)]);
        }
        tree.cover = covers_from_leaves(tree, weights);
    }
    Ok(())
}

/// Every node's cover from the weight that reached each leaf (`leaf_weight`, by node): leaves no row
/// reached get a negligible weight, as explanations need every branch weighed above zero, and inner
/// nodes the sum of their children (which follow their parent).
fn covers_from_leaves(tree: &TreeArrays, leaf_weight: Vec<f64>) -> Vec<f64> {
    let mut cover: Vec<f64> = leaf_weight.into_iter().map(|w| w.max(EMPTY_LEAF_COVER)).collect();
    for node in (0..tree.feature.len()).rev() {
        if tree.feature[node] >= 0 {
            cover[node] = cover[tree.left[node] as usize] + cover[tree.right[node] as usize];
        }
    }
    cover
}

/// Scores held-out rows with the forest and with the rubric on the measurements.
pub fn evaluate(forest: &RiskForest, rows: &LabelledRows) -> (Metrics, Metrics) {
    let model: Vec<Option<RiskLevel>> = rows.features.iter().map(|r| forest.predict(r).map(|p| p.risk)).collect();
    let rubric: Vec<Option<RiskLevel>> =
        rows.features.iter().map(|r| SixVitals::from_array(*r).rubric_label()).collect();
    (Metrics::measure(&rows.labels, &model), Metrics::measure(&rows.labels, &rubric))
}

/// Permutation importance on held-out rows: how much the forest's macro-F1 drops when one feature's
/// column is shuffled (its link to the label broken), per feature in feature order.
pub fn permutation_importance(forest: &RiskForest, rows: &LabelledRows, seed: u64) -> [f64; 6] {
    let score = |features: &[[f64; 6]]| {
        let predicted: Vec<Option<RiskLevel>> = features.iter().map(|r| forest.predict(r).map(|p| p.risk)).collect();
        Metrics::measure(&rows.labels, &predicted).macro_f1
    };
    let base = score(&rows.features);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut importance = [0.0; 6];
    for (f, slot) in importance.iter_mut().enumerate() {
        let mut shuffled = rows.features.clone();
        for i in (1..shuffled.len()).rev() {
            let j = rng.gen_range(0..=i);
            let (a, b) = (shuffled[i][f], shuffled[j][f]);
            shuffled[i][f] = b;
            shuffled[j][f] = a;
        }
        *slot = base - score(&shuffled);
    }
    importance
}

/// The training report: the forest and the rubric on the same held-out noisy rows, and what the forest relies on.
pub fn report_text(held_out: usize, model: &Metrics, rubric: &Metrics, importance: &[f64; 6]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "held-out rows: {held_out} (noisy measurements; labels from the true state)");
    out += &metrics_text(&[("forest", model), ("rubric on measurements", rubric)]);
    let _ = writeln!(out, "feature importance (macro-F1 lost when the feature is shuffled):");
    for (vital, imp) in MODEL_FEATURES.iter().zip(importance) {
        let _ = writeln!(out, "  {:<14} {imp:.4}", vital.column());
    }
    out
}

/// Accuracy, macro-F1, recall and the confusion matrix of each named set of figures.
fn metrics_text(named: &[(&str, &Metrics)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (name, m) in named {
        let _ = writeln!(
            out,
            "{name:<26} accuracy {:.4}  macro-F1 {:.4}  recall High {:.4}  Medium {:.4}  Low {:.4}",
            m.accuracy, m.macro_f1, m.recall[0], m.recall[1], m.recall[2]
        );
        let _ = writeln!(out, "{:<26}   confusion (rows: true, columns: predicted High / Medium / Low)", "");
        for (label, row) in ["High", "Medium", "Low"].iter().zip(m.confusion) {
            let _ = writeln!(out, "{:<26}   {label:<6} {:>8} {:>8} {:>8}", "", row[0], row[1], row[2]);
        }
    }
    out
}

/// The cover given to a leaf no training row reached (weights are whole numbers, so it stays negligible).
const EMPTY_LEAF_COVER: f64 = 1e-6;

/// Lays a linfa tree out in scikit-learn's arrays (pre-order, so children follow parents), fills
/// each leaf with the weighted class fractions of the training rows that reach it and each node's
/// cover with their weight.
fn flatten_tree(tree: &DecisionTree<f64, usize>, data: &DatasetBase<Array2<f64>, Array1<usize>>) -> TreeArrays {
    let mut out = TreeArrays::default();
    let mut leaf_fallback = Vec::new();
    push_node(tree.root_node(), &mut out, &mut leaf_fallback);
    let mut sums = vec![[0f64; 3]; out.feature.len()];
    let weights = data.weights();
    for (i, (row, target)) in data.records().outer_iter().zip(data.targets().iter()).enumerate() {
        let mut node = 0usize;
        while out.feature[node] >= 0 {
            let f = out.feature[node] as usize;
            node = if row[f] <= out.threshold[node] { out.left[node] } else { out.right[node] } as usize;
        }
        sums[node][*target] += weights.map_or(1.0, |w| f64::from(w[i]));
    }
    out.cover = covers_from_leaves(&out, sums.iter().map(|s| s.iter().sum()).collect());
    for node in 0..out.feature.len() {
        if out.feature[node] < 0 {
            let total: f64 = sums[node].iter().sum();
            out.value[node] = if total > 0.0 {
                sums[node].iter().map(|s| s / total).collect()
            } else {
                let mut one_hot = vec![0.0; 3];
                one_hot[leaf_fallback[node]] = 1.0;
                one_hot
            };
        }
    }
    out
}

/// Appends `node` and its subtree; returns its index. `fallback[i]` is linfa's class at leaf `i`.
fn push_node(node: &TreeNode<f64, usize>, out: &mut TreeArrays, fallback: &mut Vec<usize>) -> i32 {
    let index = out.feature.len();
    out.feature.push(-1);
    out.threshold.push(-2.0);
    out.left.push(-1);
    out.right.push(-1);
    out.value.push(Vec::new());
    fallback.push(node.prediction().unwrap_or(0));
    let children = node.children();
    let (Some(Some(left)), Some(Some(right))) = (children.first().copied(), children.get(1).copied()) else {
        // A leaf, or a split linfa left one-sided: scored as a leaf.
        return index as i32;
    };
    let (feature, threshold, _) = node.split();
    out.feature[index] = feature as i32;
    out.threshold[index] = threshold;
    let l = push_node(left, out, fallback);
    let r = push_node(right, out, fallback);
    out.left[index] = l;
    out.right[index] = r;
    index as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::training_rows;

    #[test]
    fn a_small_forest_learns_far_better_than_chance() {
        let train = training_rows(6_000, 1);
        let test = training_rows(2_000, 2);
        let params = ForestParams { trees: 5, max_depth: 10, ..ForestParams::default() };
        let file = train_forest(&train, &params, "test", |_| {}).unwrap();
        let json = serde_json::to_string(&file).unwrap();
        let forest = RiskForest::from_json(&json).unwrap();
        let (model, _rubric) = evaluate(&forest, &test);
        assert!(model.accuracy > 0.8, "accuracy {}", model.accuracy);
        // Chance is a third; a tiny forest on little data is far above it, not yet good (the shipped one is tested apart).
        assert!(model.recall[0] > 0.6, "High recall {}", model.recall[0]);
        // Trained covers add up and explain.
        assert!(file.trees.iter().all(|t| t.cover.len() == t.feature.len()));
        assert!(forest.explainer().is_some());

        // A file written before covers gets them from its training rows, its trees unchanged.
        let mut old = file.clone();
        old.trees.iter_mut().for_each(|t| t.cover.clear());
        record_covers(&mut old, &train, &params).unwrap();
        let weights = class_weights(&train.labels, &params);
        let total: f64 = train.labels.iter().map(|l| f64::from(weights[class_index(*l)])).sum();
        for (before, after) in file.trees.iter().zip(&old.trees) {
            assert_eq!(
                (&before.feature, &before.threshold, &before.value),
                (&after.feature, &after.threshold, &after.value)
            );
            // Every training row reaches the root once (leaves no row reached add a negligible weight).
            assert!((after.cover[0] - total).abs() < 1e-3, "{} vs {total}", after.cover[0]);
        }
        let recovered = RiskForest::from_model(&old).unwrap();
        let row = train.features[0];
        let (p, e) = (recovered.predict(&row).unwrap(), recovered.explain(&row).unwrap().unwrap());
        assert!((e.base + e.contributions.iter().sum::<f64>() - p.probabilities[0]).abs() < 1e-9);
    }

    #[test]
    fn a_small_trend_forest_learns_the_ward_label_routes_missing_vitals_and_explains_itself() {
        use crate::trend::{TrendSettings, default_inputs};
        let inputs = default_inputs();
        let train = trend_rows(6_000, 1, &inputs, TrendSettings::default()).unwrap();
        let test = trend_rows(3_000, 2, &inputs, TrendSettings::default()).unwrap();
        assert_eq!(train.values[0].len(), 16);
        let params = ForestParams { trees: 6, max_depth: 10, ..trend_params(3) };
        let file = train_trend(&train, &params, "test", |_| {}).unwrap();
        let forest = RiskForest::from_trend_model(&file).unwrap();
        let (model, _measured) = evaluate_trend(&forest, &test);
        assert!(model.recall[0] > 0.8, "High recall {}", model.recall[0]);
        assert!(model.accuracy > 0.8, "accuracy {}", model.accuracy);
        // Every held-out reading is scored, those with missing vitals included.
        let missing = test.arguments.iter().filter(|a| a.iter().any(|v| v.is_nan())).count();
        assert!(missing > 0);
        assert!(test.arguments.iter().all(|a| forest.predict_arguments(a).is_some()));
        // Explanations add up to P(High) over the sixteen inputs.
        for args in test.arguments.iter().take(200) {
            let p = forest.predict_arguments(args).unwrap().probabilities[0];
            let e = forest.explain_arguments(args).unwrap().unwrap();
            assert_eq!(e.contributions.len(), 16);
            assert!((e.base + e.contributions.iter().sum::<f64>() - p).abs() < 1e-9);
        }
        let own = reliability(&forest, &test, false);
        assert!(own.brier < 0.1, "Brier {}", own.brier);
        // Calibrated on another ward, P(High) is nearer the share truly High on the held-out one.
        let calibration_ward = trend_rows(3_000, 4, &inputs, TrendSettings::default()).unwrap();
        let mut file = file;
        file.calibration = calibrate(&forest, &calibration_ward, "test");
        let forest = RiskForest::from_trend_model(&file).unwrap();
        let calibrated = reliability(&forest, &test, true);
        assert!(calibrated.brier < own.brier, "Brier {} calibrated against {}", calibrated.brier, own.brier);
        let gap =
            |r: &Reliability| r.bins.iter().map(|b| b[2] * (b[3] - b[4]).abs()).sum::<f64>() / test.labels.len() as f64;
        assert!(gap(&calibrated) < gap(&own), "calibration error {} against {}", gap(&calibrated), gap(&own));
    }
}
