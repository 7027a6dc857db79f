//! The flat forest that scores rows ([`RiskForest`]), laid out for speed and deciding exactly as
//! scikit-learn does.
//!
//! Layout: every tree of the forest in one array of 8-byte nodes, each tree in pre-order so that a
//! node's left child is the next node and only the right child is stored. A leaf points right at
//! itself and tests a slot that always holds NaN (`NaN <= t` is false), so a walk can keep stepping
//! without branching once it has arrived; its threshold bits hold the index of its class fractions.
//!
//! Scoring works on columns: a chunk of rows is gathered once into `f32` rows, then each tree is
//! walked with [`LANES`] rows in flight, interleaved, so that the memory latency of one row's walk is
//! hidden behind the others'; a row that reaches its leaf hands its lane to the next row. Nothing is
//! allocated per row.
//!
//! Parity with scikit-learn's `predict`: inputs are cast to `f32` and compared `x <= threshold` with
//! the threshold rounded down to the nearest `f32`; each tree's leaf fractions are summed over the
//! trees in order in f64, divided by the tree count, and the first largest class in
//! the file's class order wins, as in `RandomForestClassifier.predict_proba` with `n_jobs=1`.

use std::path::Path;

use crate::error::{Error, Result};
pub use crate::model_file::{BUNDLED_MODEL_JSON, MODEL_FORMAT, ModelFile, TrainingInfo, TreeArrays};
use crate::rubric::RiskLevel;
use crate::schema::MODEL_FEATURES;

/// A class prediction with the averaged class probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The most probable class.
    pub risk: RiskLevel,
    /// Probabilities in [`RiskLevel::ALL`] order (High, Medium, Low).
    pub probabilities: [f64; 3],
}

/// An inner node or a leaf, 8 bytes.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// Inner node: `x <= threshold` goes left (to the next node). Leaf: the bits are the leaf's index
    /// in `leaf_values`.
    threshold: f32,
    /// `right << 3 | feature`; a leaf has feature [`LEAF_SLOT`] and `right` its own index.
    packed: u32,
}

/// The row slot a leaf tests: always NaN, so a leaf's walk stays on the leaf.
const LEAF_SLOT: u32 = 6;
/// The row slot of the derived feature [`RUBRIC_FEATURE`] (NaN for models that do not use it).
const RUBRIC_SLOT: usize = 7;
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
/// Rows in flight through a tree at once.
pub const LANES: usize = 8;
/// Steps every lane takes between two checks for leaves.
const STEPS_PER_CHECK: usize = 2;
/// Rows gathered and scored together: each tree is walked by all of them before the next tree, so a
/// deep tree (tens of kB) stays in cache across thousands of rows, as scikit-learn's tree-by-tree
/// loop keeps it; the buffers (about 200 kB) are allocated once per call, never per row.
const CHUNK: usize = 4096;

/// A tree's root and the depth of its deepest leaf.
#[derive(Debug, Clone, Copy)]
struct TreeRoot {
    root: u32,
    depth: u32,
}

/// A validated forest laid out flat for fast scoring.
#[derive(Debug, Clone)]
pub struct RiskForest {
    version: String,
    nodes: Vec<FlatNode>,
    trees: Vec<TreeRoot>,
    /// Per leaf, the class fractions in [`RiskLevel::ALL`] order.
    leaf_values: Vec<[f64; 3]>,
    /// For argmax ties: position of each of [`RiskLevel::ALL`] in the file's class order, so that a
    /// tie resolves as the file's trainer (scikit-learn's `argmax`) would.
    tie_order: [usize; 3],
    /// The model reads [`RUBRIC_FEATURE`].
    uses_rubric: bool,
}

/// The largest `f32` not above `t`: with it, `(x as f32) <= t32` decides as `(x as f32) as f64 <= t`.
fn threshold_f32(t: f64) -> f32 {
    let f = t as f32;
    if f as f64 > t { f.next_down() } else { f }
}

/// One gathered row: the six features as `f32`, the leaf slot (NaN), one spare slot.
type Row = [f32; 8];

/// Adds one tree's leaf fractions to a row's sums.
#[inline(always)]
fn add(sum: &mut [f64; 3], leaf: &[f64; 3]) {
    sum[0] += leaf[0];
    sum[1] += leaf[1];
    sum[2] += leaf[2];
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

    /// Validates a model file and lays it out flat.
    pub fn from_model(file: &ModelFile) -> Result<RiskForest> {
        let invalid = |msg: String| Error::InvalidModel(msg);
        if file.format != MODEL_FORMAT {
            return Err(invalid(format!("format is {:?}, expected {MODEL_FORMAT:?}", file.format)));
        }
        let expected: Vec<&str> = MODEL_FEATURES.iter().map(|v| v.column()).collect();
        let mut with_rubric = expected.clone();
        with_rubric.push(RUBRIC_FEATURE);
        let uses_rubric = file.features == with_rubric;
        if file.features != expected && !uses_rubric {
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
        let mut forest = RiskForest {
            version: file.version.clone(),
            nodes: Vec::new(),
            trees: Vec::with_capacity(file.trees.len()),
            leaf_values: Vec::new(),
            tie_order,
            uses_rubric,
        };
        for (t, tree) in file.trees.iter().enumerate() {
            forest.push_tree(tree, &class_slot).map_err(|msg| invalid(format!("tree {t}: {msg}")))?;
        }
        if forest.nodes.len() >= (u32::MAX >> 3) as usize {
            return Err(invalid(format!("{} nodes is more than this layout holds", forest.nodes.len())));
        }
        Ok(forest)
    }

    /// Appends one tree in pre-order, checking that it is a tree (every node reached once).
    fn push_tree(&mut self, tree: &TreeArrays, class_slot: &[usize]) -> Result<(), String> {
        let n = tree.feature.len();
        if n == 0 || [tree.threshold.len(), tree.left.len(), tree.right.len(), tree.value.len()] != [n; 4] {
            return Err("arrays are empty or of different lengths".into());
        }
        let root = self.nodes.len() as u32;
        let mut seen = vec![false; n];
        let mut max_depth = 0u32;
        // (file node, flat node whose right child this is, depth)
        let mut stack: Vec<(usize, Option<usize>, u32)> = vec![(0, None, 0)];
        while let Some((i, parent, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                return Err(format!("node {i} is reached twice"));
            }
            let here = self.nodes.len();
            if let Some(p) = parent {
                self.nodes[p].packed |= (here as u32) << 3;
            }
            max_depth = max_depth.max(depth);
            if tree.feature[i] < 0 {
                let v = &tree.value[i];
                if v.len() != 3 || v.iter().any(|p| !p.is_finite() || *p < 0.0) {
                    return Err(format!("leaf {i}: class fractions {v:?}"));
                }
                // Fractions are used as stored, as scikit-learn (>= 1.4) uses its leaf values; the
                // exporter normalises counts from older versions the way their predict_proba did.
                let total = v[0] + v[1] + v[2];
                if (total - 1.0).abs() > 1e-4 {
                    return Err(format!("leaf {i}: class fractions {v:?} do not sum to 1"));
                }
                let mut probs = [0.0; 3];
                for (file_pos, p) in v.iter().enumerate() {
                    probs[class_slot[file_pos]] = *p;
                }
                let leaf = self.leaf_values.len() as u32;
                self.leaf_values.push(probs);
                self.nodes.push(FlatNode { threshold: f32::from_bits(leaf), packed: (here as u32) << 3 | LEAF_SLOT });
            } else {
                let (f, l, r) = (tree.feature[i], tree.left[i], tree.right[i]);
                let child_ok = |c: i32| c >= 0 && (c as usize) < n;
                let inputs = MODEL_FEATURES.len() + usize::from(self.uses_rubric);
                if f as usize >= inputs || !child_ok(l) || !child_ok(r) {
                    return Err(format!("node {i}: feature {f}, children {l} and {r}"));
                }
                // The derived input lives past the leaf slot.
                let f = if f as usize == MODEL_FEATURES.len() { RUBRIC_SLOT as i32 } else { f };
                let th = tree.threshold[i];
                if th.is_nan() {
                    return Err(format!("node {i}: threshold is NaN"));
                }
                self.nodes.push(FlatNode { threshold: threshold_f32(th), packed: f as u32 });
                stack.push((r as usize, Some(here), depth + 1));
                stack.push((l as usize, None, depth + 1));
            }
        }
        self.trees.push(TreeRoot { root, depth: max_depth });
        Ok(())
    }

    /// The version stamped on scored rows.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of trees.
    pub fn tree_count(&self) -> usize {
        self.trees.len()
    }

    /// Number of nodes over all trees.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Depth of the deepest leaf of any tree (a root alone is depth 0).
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(|t| t.depth as usize).max().unwrap_or(0)
    }

    /// Scores one row in feature order; `None` when any input is NaN or infinite.
    pub fn predict(&self, row: &[f64; 6]) -> Option<Prediction> {
        let cols: [&[f64]; 6] = std::array::from_fn(|f| std::slice::from_ref(&row[f]));
        let mut out = None;
        self.score_columns(cols, |_| true, |_, p| out = p);
        out
    }

    /// Scores rows given as six equally long columns in feature order. `present(i)` says whether row
    /// `i` has every input (Arrow validity); `emit(i, prediction)` is called once per row, in row
    /// order, with `None` for a row that is absent or has a NaN or infinite input.
    pub fn score_columns(
        &self,
        cols: [&[f64]; 6],
        present: impl Fn(usize) -> bool,
        mut emit: impl FnMut(usize, Option<Prediction>),
    ) {
        let n = cols.iter().map(|c| c.len()).min().unwrap_or(0);
        let cap = n.min(CHUNK);
        let mut rows: Vec<Row> = vec![[f32::NAN; 8]; cap];
        let mut index = vec![0usize; cap];
        let mut sums = vec![[0.0f64; 3]; cap];
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let mut m = 0;
            for i in start..end {
                if !present(i) || !cols.iter().all(|c| c[i].is_finite()) {
                    continue;
                }
                for (f, col) in cols.iter().enumerate() {
                    rows[m][f] = col[i] as f32;
                }
                if self.uses_rubric {
                    // Computed from the f64 inputs, as training computed it.
                    rows[m][RUBRIC_SLOT] = rubric_points(&std::array::from_fn(|f| cols[f][i])) as f32;
                }
                index[m] = i;
                m += 1;
            }
            self.accumulate(&rows, m, &mut sums);
            let mut next = 0;
            for i in start..end {
                if next < m && index[next] == i {
                    emit(i, Some(self.finish(&sums[next])));
                    next += 1;
                } else {
                    emit(i, None);
                }
            }
            start = end;
        }
    }

    /// Sums each tree's leaf fractions, tree by tree (scikit-learn's order), for the first `m` rows.
    fn accumulate(&self, rows: &[Row], m: usize, sums: &mut [[f64; 3]]) {
        for s in &mut sums[..m] {
            *s = [0.0; 3];
        }
        for tree in &self.trees {
            if m == 1 {
                add(&mut sums[0], &self.leaf_values[self.walk_one(tree, &rows[0]) as usize]);
            } else {
                self.walk_tree(tree, &rows[..m], &mut sums[..m]);
            }
        }
    }

    /// One step of a walk: the next node of `at` for `row`.
    #[inline(always)]
    fn step(&self, at: u32, row: &Row) -> u32 {
        let node = self.nodes[at as usize];
        if row[(node.packed & 7) as usize] <= node.threshold { at + 1 } else { node.packed >> 3 }
    }

    /// Walks `rows` down `tree`, [`LANES`] rows in flight at once so that their node loads overlap.
    /// Lanes take [`STEPS_PER_CHECK`] steps between checks for leaves (a leaf steps onto itself, so
    /// the extra steps are harmless and the check's cost is shared). A lane whose row has reached its
    /// leaf adds the leaf's fractions to that row's sums and takes the next row: no lane waits for a
    /// deeper neighbour.
    fn walk_tree(&self, tree: &TreeRoot, rows: &[Row], sums: &mut [[f64; 3]]) {
        const IDLE: usize = usize::MAX;
        let m = rows.len();
        let Some(first) = rows.first() else { return };
        let mut lane_row = [IDLE; LANES];
        // An idle lane walks the first row to a leaf and stays there; its sums are never read.
        let mut lane_data: [&Row; LANES] = [first; LANES];
        let mut at = [tree.root; LANES];
        let mut next = 0;
        let mut busy = 0;
        for k in 0..LANES.min(m) {
            lane_row[k] = k;
            lane_data[k] = &rows[k];
            next += 1;
            busy += 1;
        }
        while busy > 0 {
            for _ in 0..STEPS_PER_CHECK {
                for k in 0..LANES {
                    at[k] = self.step(at[k], lane_data[k]);
                }
            }
            for k in 0..LANES {
                let node = self.nodes[at[k] as usize];
                if node.packed & 7 != LEAF_SLOT || lane_row[k] == IDLE {
                    continue;
                }
                add(&mut sums[lane_row[k]], &self.leaf_values[node.threshold.to_bits() as usize]);
                if next < m {
                    lane_row[k] = next;
                    lane_data[k] = &rows[next];
                    next += 1;
                    at[k] = tree.root;
                } else {
                    lane_row[k] = IDLE;
                    busy -= 1;
                }
            }
        }
    }

    /// Walks one row down `tree`; returns its leaf index.
    fn walk_one(&self, tree: &TreeRoot, row: &Row) -> u32 {
        let mut at = tree.root;
        while self.nodes[at as usize].packed & 7 != LEAF_SLOT {
            at = self.step(at, row);
        }
        self.nodes[at as usize].threshold.to_bits()
    }

    /// Averages the summed fractions and picks the class.
    fn finish(&self, sums: &[f64; 3]) -> Prediction {
        let n = self.trees.len() as f64;
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
    fn seventeen_digit_thresholds_load_exactly() {
        // 114.05000305175781 is exactly the f32 nearest 114.05; a parser one ulp low would move the
        // threshold below it and send x = 114.05000305175781 right, where scikit-learn sends it left.
        let json = serde_json::to_string(&stump(0.0)).unwrap().replace("[0.0,-2.0,-2.0]", "[114.05000305175781,-2.0,-2.0]");
        let forest = RiskForest::from_json(&json).unwrap();
        let x: f64 = "114.05000305175781".parse().unwrap();
        assert_eq!(forest.predict(&[x, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap().risk, RiskLevel::Low);
    }

    #[test]
    fn probabilities_are_in_high_medium_low_order() {
        let forest = RiskForest::from_model(&stump(100.0)).unwrap();
        let p = forest.predict(&[150.0, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap();
        assert_eq!(p.probabilities, [1.0, 0.0, 0.0]);
        assert_eq!(forest.predict(&[f64::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]), None);
        assert_eq!(forest.predict(&[f64::INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0]), None);
    }

    #[test]
    fn ties_resolve_to_the_first_class_in_file_order() {
        // File order High, Low, Medium; a leaf split evenly between Low and Medium is Low.
        let mut file = stump(100.0);
        file.trees[0].value[1] = vec![0.0, 0.5, 0.5];
        let forest = RiskForest::from_model(&file).unwrap();
        assert_eq!(forest.predict(&[90.0, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap().risk, RiskLevel::Low);
    }

    #[test]
    fn columns_score_like_single_rows_with_nulls_in_place() {
        let forest = RiskForest::bundled().unwrap();
        let rows = crate::simulate::training_rows(1_000, 5);
        let cols: Vec<Vec<f64>> = (0..6).map(|f| rows.features.iter().map(|r| r[f]).collect()).collect();
        let mut cols = cols;
        cols[3][17] = f64::NAN;
        let slices: [&[f64]; 6] = std::array::from_fn(|f| cols[f].as_slice());
        let mut got = Vec::new();
        forest.score_columns(slices, |i| i != 500, |i, p| got.push((i, p)));
        assert_eq!(got.len(), rows.features.len());
        for (i, p) in got {
            let mut row: [f64; 6] = std::array::from_fn(|f| cols[f][i]);
            if i == 500 {
                assert_eq!(p, None);
                row[0] = f64::NAN;
            }
            assert_eq!(p, forest.predict(&row), "row {i}");
        }
    }

    #[test]
    fn the_rubric_input_is_computed_from_the_six_vitals() {
        // One split on the derived input: rubric points <= 6.5 is Low, else High.
        let mut file = stump(6.5);
        file.features.push(RUBRIC_FEATURE.into());
        file.trees[0].feature[0] = 6;
        let forest = RiskForest::from_model(&file).unwrap();
        let calm = [75.0, 120.0, 80.0, 98.0, 36.8, 100.0];
        let septic = [150.0, 78.0, 40.0, 85.0, 39.9, 340.0];
        assert_eq!(rubric_points(&calm), 0.0);
        assert!(rubric_points(&septic) >= 7.0);
        // A single 3 counts as 5, the rubric's Medium.
        assert_eq!(rubric_points(&[75.0, 120.0, 80.0, 90.0, 36.8, 100.0]), 5.0);
        assert_eq!(forest.predict(&calm).unwrap().risk, RiskLevel::Low);
        assert_eq!(forest.predict(&septic).unwrap().risk, RiskLevel::High);
        let mut nan = septic;
        nan[4] = f64::NAN;
        assert_eq!(forest.predict(&nan), None);
        // A model that names the derived input but has nodes past it is refused.
        let mut past = file.clone();
        past.trees[0].feature[0] = 7;
        assert!(RiskForest::from_model(&past).is_err());
        // Without the name in the feature list, feature 6 is out of range.
        let mut unnamed = file;
        unnamed.features.pop();
        assert!(RiskForest::from_model(&unnamed).is_err());
    }

    #[test]
    fn rejects_broken_files() {
        let mut cyclic = stump(1.0);
        cyclic.trees[0].left[0] = 0;
        assert!(matches!(RiskForest::from_model(&cyclic), Err(Error::InvalidModel(_))));
        let mut shared = stump(1.0);
        shared.trees[0].right[0] = 1;
        assert!(matches!(RiskForest::from_model(&shared), Err(Error::InvalidModel(_))));
        let mut wrong_classes = stump(1.0);
        wrong_classes.classes[2] = "Low".into();
        assert!(RiskForest::from_model(&wrong_classes).is_err());
        assert!(RiskForest::from_json("{").is_err());
    }

    #[test]
    fn a_bad_model_file_is_an_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("vitalflow-model-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let corrupt = dir.join("corrupt.json");
        std::fs::write(&corrupt, "{\"format\": \"vitalflow-forest/1\", \"trees\": [").unwrap();
        let err = RiskForest::load(&corrupt).unwrap_err().to_string();
        assert!(err.contains("corrupt.json"), "{err}");

        let mut renamed = stump(1.0);
        renamed.features[0] = "pulse".into();
        let wrong = dir.join("wrong-features.json");
        renamed.write(&wrong).unwrap();
        let err = RiskForest::load(&wrong).unwrap_err().to_string();
        assert!(err.contains("wrong-features.json") && err.contains("pulse") && err.contains("heart_rate"), "{err}");

        let missing = dir.join("absent.json");
        let err = RiskForest::load(&missing).unwrap_err().to_string();
        assert!(err.contains("absent.json") && err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
