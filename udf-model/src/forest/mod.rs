//! The forest that scores rows ([`RiskForest`]), laid out for speed and deciding exactly as
//! scikit-learn does.
//!
//! A model file is validated and laid out once, at load (`layout`): each tree in cache-line blocks of
//! three levels. Scoring works on columns: a chunk of rows is gathered once into `f32` rows, then each
//! tree is walked by all of them before the next tree, so that the tree stays in cache across the
//! chunk (`walk`), with the exit of each block found by the AVX2 kernel where the CPU has it and by the
//! scalar one otherwise ([`Kernel`]). Nothing is allocated per row.
//!
//! Parity with scikit-learn's `predict`: inputs are cast to `f32` and compared `x <= threshold` with
//! the threshold rounded down to the nearest `f32`; each tree's leaf fractions are summed over the
//! trees in order in f64, divided by the tree count, and the first largest class in
//! the file's class order wins, as in `RandomForestClassifier.predict_proba` with `n_jobs=1`.

use std::path::Path;

use crate::calibration::Calibration;
use crate::error::{Error, Result};
pub use crate::model_file::{BUNDLED_MODEL_JSON, MODEL_FORMAT, ModelFile, TrainingInfo, TreeArrays};
use crate::rubric::RiskLevel;
#[cfg(target_arch = "x86_64")]
mod exit_avx2;
mod exit_scalar;
mod explain;
mod inputs;
mod layout;
#[cfg(test)]
mod tests;
mod walk;

pub use explain::{Explainer, Explanation};
pub use inputs::{ForestInputs, MISSING};
use layout::{Layout, ROW_SLOTS, Row};
pub use walk::Kernel;
use walk::add;

/// A class prediction with the averaged class probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The most probable class.
    pub risk: RiskLevel,
    /// Probabilities in [`RiskLevel::ALL`] order (High, Medium, Low).
    pub probabilities: [f64; 3],
}

/// An optional seventh model input, computed from the six vitals by the forest itself (so the SQL
/// functions still take the six vitals): the clinical rubric's score of the measurements, raised to
/// 5 when a single parameter scores 3 — ordered so that `>= 7` is the rubric's High and `>= 5` its Medium.
/// With it a tree can start from the rubric's answer and spend its splits on where the rubric is wrong.
pub const RUBRIC_FEATURE: &str = "rubric_points";

/// The [`RUBRIC_FEATURE`] value of six vitals in feature order; NaN when one is not finite.
pub fn rubric_points(row: &[f64; 6]) -> f64 {
    match crate::rubric::SixVitals::from_array(*row).points() {
        Some(points) => {
            let total: u8 = points.iter().sum();
            if total < 5 && points.contains(&3) { 5.0 } else { f64::from(total) }
        }
        None => f64::NAN,
    }
}

/// Rows gathered and scored together: each tree is walked by all of them before the next tree, so a
/// deep tree (50-150 kB of blocks) is brought into cache once per chunk, and its deep blocks, which few
/// rows visit, are visited by more rows each time (65,536 rows scored 1.5x faster than 4,096 on a
/// 100-tree unbounded forest). The buffers (about 90 bytes a row, at most 6 MB) are allocated once per
/// call, never per row.
const CHUNK: usize = 65_536;
/// Trees between two checks for rows whose label is settled.
const CHECK_EVERY: usize = 4;

/// A validated forest laid out for fast scoring.
#[derive(Debug, Clone)]
pub struct RiskForest {
    version: String,
    layout: Layout,
    kernel: Kernel,
    nodes: usize,
    max_depth: usize,
    /// For argmax ties: position of each of [`RiskLevel::ALL`] in the file's class order, so that a
    /// tie resolves as the file's trainer (scikit-learn's `argmax`) would.
    tie_order: [usize; 3],
    /// What the row slots hold.
    inputs: ForestInputs,
    /// TreeSHAP over the file's trees; `None` when the file records no node covers.
    explainer: Option<std::sync::Arc<Explainer>>,
    /// The trend model of the same file, which the ETL scores with.
    trend: Option<std::sync::Arc<RiskForest>>,
    /// The file's map from P(High) to the share truly High; `None`: P(High) as it comes.
    calibration: Option<std::sync::Arc<Calibration>>,
}

/// The scoring buffers of one chunk of rows, allocated once per call.
struct Chunk {
    /// Gathered rows; the live ones first once rows leave early.
    rows: Vec<Row>,
    /// Running sums of the rows in `rows`' order.
    sums: Vec<[f64; 3]>,
    /// Gather position of each row in `rows`' order.
    slot: Vec<u32>,
    /// Final sums by gather position.
    total: Vec<[f64; 3]>,
}

/// Whether `left` more trees cannot change the leading class of `sums`: a tree adds at most 1 to a
/// class, so a lead of more than `left` holds (the margin covers the sums' rounding, so the label is
/// the one the full sums would give, ties included).
#[inline]
fn settled(sums: &[f64; 3], left: f64) -> bool {
    let [a, b, c] = *sums;
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    let (top, second) = if c > hi { (c, hi) } else { (hi, lo.max(c)) };
    top - second > left + 1e-6
}

/// Checks that `tree` is a tree whose inner nodes test one of `inputs` features and whose leaves hold
/// class fractions; returns the depth of its deepest leaf.
fn validate_tree(tree: &TreeArrays, inputs: usize) -> Result<usize, String> {
    let n = tree.feature.len();
    if n == 0 || [tree.threshold.len(), tree.left.len(), tree.right.len(), tree.value.len()] != [n; 4] {
        return Err("arrays are empty or of different lengths".into());
    }
    if !tree.cover.is_empty() && tree.cover.len() != n {
        return Err(format!("{} node covers for {n} nodes", tree.cover.len()));
    }
    let mut seen = vec![false; n];
    let mut max_depth = 0;
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("node {i} is reached twice"));
        }
        max_depth = max_depth.max(depth);
        if tree.feature[i] < 0 {
            let v = &tree.value[i];
            if v.len() != 3 || v.iter().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(format!("leaf {i}: class fractions {v:?}"));
            }
            // Fractions are used as stored, as scikit-learn (>= 1.4) uses its leaf values; the
            // exporter normalises counts from older versions the way their predict_proba did.
            if (v[0] + v[1] + v[2] - 1.0).abs() > 1e-4 {
                return Err(format!("leaf {i}: class fractions {v:?} do not sum to 1"));
            }
            continue;
        }
        let (f, l, r) = (tree.feature[i], tree.left[i], tree.right[i]);
        let child_ok = |c: i32| c >= 0 && (c as usize) < n;
        if f as usize >= inputs || !child_ok(l) || !child_ok(r) {
            return Err(format!("node {i}: feature {f}, children {l} and {r}"));
        }
        if tree.threshold[i].is_nan() {
            return Err(format!("node {i}: threshold is NaN"));
        }
        let cover = |j: usize| tree.cover.get(j).copied();
        check_cover(i, cover(i), cover(l as usize), cover(r as usize))?;
        stack.push((r as usize, depth + 1));
        stack.push((l as usize, depth + 1));
    }
    Ok(max_depth)
}

/// A node's cover (training weight reaching it) is positive and its children's covers add up to it
/// (to rounding): TreeSHAP's expectations weigh the branches by them.
fn check_cover(node: usize, cover: Option<f64>, left: Option<f64>, right: Option<f64>) -> Result<(), String> {
    let (Some(c), Some(l), Some(r)) = (cover, left, right) else { return Ok(()) };
    if ![c, l, r].iter().all(|v| v.is_finite() && *v > 0.0) || (l + r - c).abs() > 1e-6 * c {
        return Err(format!("node {node}: cover {c} is not positive or not its children's {l} + {r}"));
    }
    Ok(())
}

impl RiskForest {
    /// Parses and validates a model file's JSON.
    pub fn from_json(json: &str) -> Result<RiskForest> {
        RiskForest::from_model(&ModelFile::from_json(json)?)
    }

    /// Reads, parses and validates the model file at `path`; every error names the file.
    pub fn load(path: &Path) -> Result<RiskForest> {
        let file = ModelFile::read(path)?;
        RiskForest::from_model(&file).map_err(|e| Error::ModelFile {
            path: path.display().to_string(),
            reason: match e {
                Error::InvalidModel(reason) => reason,
                other => other.to_string(),
            },
        })
    }

    /// The model compiled into the binary.
    pub fn bundled() -> Result<RiskForest> {
        RiskForest::from_json(BUNDLED_MODEL_JSON)
    }

    /// Validates a model file and lays it out for scoring with the fastest [`Kernel`] of this CPU: the
    /// six-vital model, and the file's trend model when it has one.
    pub fn from_model(file: &ModelFile) -> Result<RiskForest> {
        let mut forest = RiskForest::build(file, false)?;
        if let Some(trend) = &file.trend {
            let trend = RiskForest::build(trend, true).map_err(|e| match e {
                Error::InvalidModel(reason) => Error::InvalidModel(format!("its trend model: {reason}")),
                other => other,
            })?;
            forest.trend = Some(std::sync::Arc::new(trend));
        }
        Ok(forest)
    }

    /// Validates a trend model's file (the `trend` part of a model file) and lays it out.
    pub fn from_trend_model(file: &ModelFile) -> Result<RiskForest> {
        RiskForest::build(file, true)
    }

    /// One forest of a model file: the six-vital model, or (`trend`) a model of named inputs.
    fn build(file: &ModelFile, trend: bool) -> Result<RiskForest> {
        let invalid = |msg: String| Error::InvalidModel(msg);
        if file.format != MODEL_FORMAT {
            return Err(invalid(format!("format is {:?}, expected {MODEL_FORMAT:?}", file.format)));
        }
        if file.trend.is_some() && trend {
            return Err(invalid("a trend model holds no trend model of its own".into()));
        }
        let inputs = ForestInputs::from_features(&file.features, trend).map_err(invalid)?;
        if !trend && inputs.routes_missing() {
            let expected: Vec<&str> = crate::schema::MODEL_FEATURES.iter().map(|v| v.column()).collect();
            return Err(invalid(format!(
                "features are {:?}, but vitalflow's model inputs are {expected:?} in this order, \
                 optionally followed by {RUBRIC_FEATURE:?} \
                 (export with --features to name the columns the model was trained on)",
                file.features
            )));
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
        // Each input is tested in the row slot of its position in the feature list.
        let slots = inputs.slot_count().min(ROW_SLOTS);
        let mut max_depth = 0;
        for (t, tree) in file.trees.iter().enumerate() {
            let depth = validate_tree(tree, slots).map_err(|msg| invalid(format!("tree {t}: {msg}")))?;
            max_depth = max_depth.max(depth);
        }
        let covered = file.trees.iter().filter(|t| !t.cover.is_empty()).count();
        if covered != 0 && covered != file.trees.len() {
            return Err(invalid(format!("{covered} of {} trees have node covers: all or none must", file.trees.len())));
        }
        if let Some(calibration) = &file.calibration {
            calibration.validate().map_err(|msg| invalid(format!("calibration: {msg}")))?;
        }
        let high_class = class_slot.iter().position(|&slot| slot == 0).unwrap_or(0);
        let explainer =
            Explainer::build(&file.trees, high_class, file.features.len(), max_depth).map(std::sync::Arc::new);
        // Blocks (at most one per node, and one per tree and leaf value) are numbered in 31 bits.
        let nodes: usize = file.trees.iter().map(|t| t.feature.len()).sum();
        if nodes >= (u32::MAX / 8) as usize {
            return Err(invalid(format!("{nodes} nodes is more than this layout holds")));
        }
        Ok(RiskForest {
            version: file.version.clone(),
            layout: Layout::build(&file.trees, &class_slot),
            kernel: Kernel::detect(),
            nodes,
            max_depth,
            tie_order,
            inputs,
            explainer,
            trend: None,
            calibration: file.calibration.clone().map(std::sync::Arc::new),
        })
    }

    /// This forest scoring with `kernel` instead of the detected one (tests and benchmarks compare
    /// them); `None` when this CPU cannot run it.
    pub fn with_kernel(&self, kernel: Kernel) -> Option<RiskForest> {
        kernel.is_supported().then(|| RiskForest { kernel, ..self.clone() })
    }

    /// The kernel scoring rows.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The version stamped on scored rows.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of trees.
    pub fn tree_count(&self) -> usize {
        self.layout.roots.len()
    }

    /// Number of nodes over all trees, as in the model file.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Bytes of the laid-out forest (blocks, leaves and their distinct class fractions).
    pub fn layout_bytes(&self) -> usize {
        self.layout.bytes()
    }

    /// Depth of the deepest leaf of any tree (a root alone is depth 0).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The model's inputs in file order (the fields of its explanations): for the six-vital model the
    /// six vitals, then [`RUBRIC_FEATURE`] when it reads it.
    pub fn inputs(&self) -> Vec<String> {
        self.inputs.names()
    }

    /// The arguments of the model's SQL functions, name and type, in order.
    pub fn arguments(&self) -> Vec<(String, arrow::datatypes::DataType)> {
        self.inputs.arguments()
    }

    /// The trend column of each argument, in order; `None` when one is not a trend column (the
    /// six-vital model's arguments are: its vitals).
    pub fn argument_columns(&self) -> Option<Vec<crate::trend::TrendColumn>> {
        self.arguments().iter().map(|(name, _)| crate::trend::TrendColumn::parse(name)).collect()
    }

    /// Whether a missing argument is routed by the trees (a trend model); otherwise a row with one has no score.
    pub fn routes_missing(&self) -> bool {
        self.inputs.routes_missing()
    }

    /// The trend model of the same model file, if it has one.
    pub fn trend(&self) -> Option<&std::sync::Arc<RiskForest>> {
        self.trend.as_ref()
    }

    /// The file's calibration of P(High), if it has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_deref()
    }

    /// The calibrated P(High) of this forest's `p` (the share of readings truly High among those it
    /// gives `p`); `p` itself when the file has no calibration.
    pub fn calibrated_high(&self, p: f64) -> f64 {
        self.calibration.as_ref().map_or(p, |c| c.apply(p))
    }

    /// The input values the trees see for one row of arguments ([`RiskForest::arguments`] order; NaN:
    /// missing), derived inputs and [`MISSING`] included; `None` when the model cannot score the row.
    pub fn input_values(&self, args: &[f64]) -> Option<Vec<f64>> {
        self.inputs.values(args)
    }

    /// The TreeSHAP explainer; `None` when the model file records no node covers.
    pub fn explainer(&self) -> Option<&Explainer> {
        self.explainer.as_deref()
    }

    /// Explains P(High) of one row of six vitals in feature order: each input's exact Shapley value
    /// ([`Explainer`]), the derived [`RUBRIC_FEATURE`] included. `None` when any input is NaN or
    /// infinite; an error when the model file records no node covers.
    pub fn explain(&self, row: &[f64; 6]) -> Result<Option<Explanation>> {
        self.explain_arguments(row)
    }

    /// Explains P(High) of one row of arguments ([`RiskForest::arguments`] order; NaN: missing), over
    /// [`RiskForest::inputs`]. `None` when the model cannot score the row; an error when the model
    /// file records no node covers.
    pub fn explain_arguments(&self, args: &[f64]) -> Result<Option<Explanation>> {
        let Some(explainer) = self.explainer() else {
            return Err(Error::InvalidModel(format!(
                "model {} records no node covers, which explanations need; train it again or export it again \
                 with this version's vitalflow_export",
                self.version
            )));
        };
        Ok(self.inputs.values(args).map(|inputs| explainer.explain(&inputs)))
    }

    /// Scores one row of arguments ([`RiskForest::arguments`] order; NaN: missing); `None` when the
    /// model cannot score it.
    pub fn predict_arguments(&self, args: &[f64]) -> Option<Prediction> {
        let cols: Vec<&[f64]> = args.iter().map(std::slice::from_ref).collect();
        let mut out = None;
        self.score_slices(&cols, |_| true, |_, p| out = p);
        out
    }

    /// Scores one row in feature order; `None` when any input is NaN or infinite.
    pub fn predict(&self, row: &[f64; 6]) -> Option<Prediction> {
        self.predict_arguments(row)
    }

    /// Scores rows given as six equally long columns in feature order. `present(i)` says whether row
    /// `i` has every input (Arrow validity); `emit(i, prediction)` is called once per row, in row
    /// order, with `None` for a row that is absent or has a NaN or infinite input.
    pub fn score_columns(
        &self,
        cols: [&[f64]; 6],
        present: impl Fn(usize) -> bool,
        emit: impl FnMut(usize, Option<Prediction>),
    ) {
        self.score_slices(&cols, present, emit);
    }

    /// As [`RiskForest::score_columns`], for the columns of [`RiskForest::arguments`]: a NaN or
    /// infinite value is missing (routed by a trend model's trees, unscored by the six-vital model).
    pub fn score_slices(
        &self,
        cols: &[&[f64]],
        present: impl Fn(usize) -> bool,
        mut emit: impl FnMut(usize, Option<Prediction>),
    ) {
        self.sum_columns(cols, present, false, |i, sums| emit(i, sums.map(|s| self.finish(s))));
    }

    /// The labels alone (`predict_risk`): as [`RiskForest::score_columns`]'s `risk`, but a row stops
    /// walking trees once the trees left cannot change its label (its leading class is ahead of the
    /// second by more than one vote per tree left), so the probabilities are never complete.
    pub fn label_columns(
        &self,
        cols: [&[f64]; 6],
        present: impl Fn(usize) -> bool,
        emit: impl FnMut(usize, Option<RiskLevel>),
    ) {
        self.label_slices(&cols, present, emit);
    }

    /// As [`RiskForest::label_columns`], for the columns of [`RiskForest::arguments`].
    pub fn label_slices(
        &self,
        cols: &[&[f64]],
        present: impl Fn(usize) -> bool,
        mut emit: impl FnMut(usize, Option<RiskLevel>),
    ) {
        self.sum_columns(cols, present, true, |i, sums| emit(i, sums.map(|s| self.finish(s).risk)));
    }

    /// Gathers the rows chunk by chunk and emits each row's summed leaf fractions in row order.
    fn sum_columns(
        &self,
        cols: &[&[f64]],
        present: impl Fn(usize) -> bool,
        decide_early: bool,
        mut emit: impl FnMut(usize, Option<&[f64; 3]>),
    ) {
        let n = cols.iter().map(|c| c.len()).min().unwrap_or(0);
        let cap = n.min(CHUNK);
        let mut chunk = Chunk {
            rows: vec![Row([f32::NAN; ROW_SLOTS]); cap],
            sums: vec![[0.0; 3]; cap],
            slot: vec![0; cap],
            total: vec![[0.0; 3]; cap],
        };
        let mut index = vec![0usize; cap];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let mut m = 0;
            for i in start..end {
                if !present(i) || !self.inputs.gather(cols, i, &mut chunk.rows[m].0) {
                    continue;
                }
                index[m] = i;
                m += 1;
            }
            self.accumulate(&mut chunk, m, decide_early);
            let mut next = 0;
            for i in start..end {
                if next < m && index[next] == i {
                    emit(i, Some(&chunk.total[next]));
                    next += 1;
                } else {
                    emit(i, None);
                }
            }
            start = end;
        }
    }

    /// Sums each tree's leaf fractions, tree by tree (scikit-learn's order), for the first `m` rows of
    /// `chunk` into `chunk.total`. With `decide_early`, every [`CHECK_EVERY`] trees the rows whose
    /// label is settled leave the walk (swapped behind the live ones).
    fn accumulate(&self, chunk: &mut Chunk, m: usize, decide_early: bool) {
        let Chunk { rows, sums, slot, total } = chunk;
        for (j, (s, p)) in sums[..m].iter_mut().zip(&mut slot[..m]).enumerate() {
            *s = [0.0; 3];
            *p = j as u32;
        }
        let trees = self.tree_count();
        let mut live = m;
        for tree in 0..trees {
            if live == 1 {
                add(&mut sums[0], self.kernel.leaf_of(&self.layout, tree, &rows[0]));
            } else {
                self.kernel.walk_rows(&self.layout, tree, &rows[..live], &mut sums[..live]);
            }
            let done = tree + 1;
            if decide_early && done % CHECK_EVERY == 0 && 2 * done > trees && done < trees {
                let left = (trees - done) as f64;
                let mut j = 0;
                while j < live {
                    if settled(&sums[j], left) {
                        total[slot[j] as usize] = sums[j];
                        live -= 1;
                        rows.swap(j, live);
                        sums.swap(j, live);
                        slot.swap(j, live);
                    } else {
                        j += 1;
                    }
                }
            }
            if live == 0 {
                break;
            }
        }
        for j in 0..live {
            total[slot[j] as usize] = sums[j];
        }
    }

    /// Averages the summed fractions and picks the class.
    fn finish(&self, sums: &[f64; 3]) -> Prediction {
        let n = self.tree_count() as f64;
        let probabilities = sums.map(|s| s / n);
        let mut best = 0;
        for c in 1..3 {
            let better = probabilities[c] > probabilities[best]
                || (probabilities[c] == probabilities[best] && self.tie_order[c] < self.tie_order[best]);
            if better {
                best = c;
            }
        }
        Prediction { risk: RiskLevel::ALL[best], probabilities }
    }
}
