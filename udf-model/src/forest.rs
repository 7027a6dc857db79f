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

/// Trees between two checks for rows whose label is settled.
const CHECK_EVERY: usize = 4;

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
        self.sum_columns(cols, present, false, |i, sums| emit(i, sums.map(|s| self.finish(s))));
    }

    /// The labels alone (`predict_risk`): as [`RiskForest::score_columns`]'s `risk`, but a row stops
    /// walking trees once the trees left cannot change its label (its leading class is ahead of the
    /// second by more than one vote per tree left), so the probabilities are never complete.
    pub fn label_columns(
        &self,
        cols: [&[f64]; 6],
        present: impl Fn(usize) -> bool,
        mut emit: impl FnMut(usize, Option<RiskLevel>),
    ) {
        self.sum_columns(cols, present, true, |i, sums| emit(i, sums.map(|s| self.finish(s).risk)));
    }

    /// Gathers the rows chunk by chunk and emits each row's summed leaf fractions in row order.
    fn sum_columns(
        &self,
        cols: [&[f64]; 6],
        present: impl Fn(usize) -> bool,
        decide_early: bool,
        mut emit: impl FnMut(usize, Option<&[f64; 3]>),
    ) {
        let n = cols.iter().map(|c| c.len()).min().unwrap_or(0);
        let cap = n.min(CHUNK);
        let mut chunk = Chunk {
            rows: vec![[f32::NAN; 8]; cap],
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
                if !present(i) || !cols.iter().all(|c| c[i].is_finite()) {
                    continue;
                }
                let row = &mut chunk.rows[m];
                for (f, col) in cols.iter().enumerate() {
                    row[f] = col[i] as f32;
                }
                if self.uses_rubric {
                    // Computed from the f64 inputs, as training computed it.
                    row[RUBRIC_SLOT] = rubric_points(&std::array::from_fn(|f| cols[f][i])) as f32;
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
        let trees = self.trees.len();
        let mut live = m;
        for (k, tree) in self.trees.iter().enumerate() {
            if live == 1 {
                add(&mut sums[0], &self.leaf_values[self.walk_one(tree, &rows[0]) as usize]);
            } else {
                self.walk_tree(tree, &rows[..live], &mut sums[..live]);
            }
            let done = k + 1;
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
            training: TrainingInfo {
                trainer: "test".into(),
                data_hash: String::new(),
                rows: 0,
                params: serde_json::Value::Null,
            },
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
        let json =
            serde_json::to_string(&stump(0.0)).unwrap().replace("[0.0,-2.0,-2.0]", "[114.05000305175781,-2.0,-2.0]");
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

    /// A forest of `trees` random depth-3 trees; leaves one-hot (votes, so ties happen) or fractional.
    fn random_forest(trees: usize, one_hot: bool, seed: u64) -> RiskForest {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        let mut file = stump(0.0);
        // Thresholds around the simulated ward's values of each vital.
        let centre = [90.0, 125.0, 78.0, 95.0, 37.2, 130.0];
        let spread = [30.0, 30.0, 15.0, 5.0, 1.0, 60.0];
        file.trees = (0..trees)
            .map(|_| {
                let mut t =
                    TreeArrays { feature: vec![], threshold: vec![], left: vec![], right: vec![], value: vec![] };
                // Inner nodes 0..7 in breadth-first order, leaves 7..15.
                for i in 0..15 {
                    if i < 7 {
                        let f = (next() * 6.0) as usize;
                        t.feature.push(f as i32);
                        t.threshold.push(centre[f] + (next() - 0.5) * 2.0 * spread[f]);
                        t.left.push(2 * i + 1);
                        t.right.push(2 * i + 2);
                        t.value.push(vec![]);
                    } else {
                        t.feature.push(-2);
                        t.threshold.push(-2.0);
                        t.left.push(-1);
                        t.right.push(-1);
                        let v = if one_hot {
                            let mut v = vec![0.0; 3];
                            v[(next() * 3.0) as usize % 3] = 1.0;
                            v
                        } else {
                            let (a, b) = (next(), next());
                            let (lo, hi) = (a.min(b), a.max(b));
                            vec![lo, hi - lo, 1.0 - hi]
                        };
                        t.value.push(v);
                    }
                }
                t
            })
            .collect();
        RiskForest::from_model(&file).unwrap()
    }

    #[test]
    fn labels_that_stop_early_equal_the_full_sums_labels() {
        let rows = crate::simulate::training_rows(20_000, 9);
        let cols: Vec<Vec<f64>> = (0..6).map(|f| rows.features.iter().map(|r| r[f]).collect()).collect();
        let slices: [&[f64]; 6] = std::array::from_fn(|f| cols[f].as_slice());
        let forests = [
            RiskForest::bundled().unwrap(),
            random_forest(100, true, 1),
            random_forest(101, true, 2),
            random_forest(64, false, 3),
        ];
        for (k, forest) in forests.iter().enumerate() {
            let mut full = Vec::new();
            forest.score_columns(slices, |i| i % 97 != 0, |_, p| full.push(p.map(|p| p.risk)));
            let mut labels = Vec::new();
            forest.label_columns(slices, |i| i % 97 != 0, |_, r| labels.push(r));
            assert_eq!(full.len(), labels.len());
            for (i, (a, b)) in full.iter().zip(&labels).enumerate() {
                assert_eq!(a, b, "forest {k}, row {i}");
            }
            assert!(full.iter().flatten().count() > 19_000);
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
