//! Tests of the forest: scikit-learn's decision rule, model validation, the early exit, and both
//! kernels (AVX2 where the CPU has it, and the scalar fallback) against a plain walk of the file's
//! own arrays on random deep forests with ties, NaN, infinities and NULLs.

use super::*;
use crate::schema::MODEL_FEATURES;

pub(super) fn stump(threshold: f64) -> ModelFile {
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
            cover: vec![],
        }],
        trend: None,
        calibration: None,
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
            let mut t = TreeArrays::default();
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
    for (k, forest) in forests.iter().flat_map(|f| kernels().into_iter().map(|k| f.with_kernel(k).unwrap())).enumerate()
    {
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

/// A small deterministic generator (tests need no `rand` state shared with other tests).
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n
    }
}

/// Per input, the values rows and thresholds are drawn around (the last is the rubric's points).
const CENTRE: [f64; 7] = [90.0, 125.0, 78.0, 95.0, 37.2, 130.0, 4.0];
const SPREAD: [f64; 7] = [30.0, 30.0, 15.0, 5.0, 1.0, 60.0, 4.0];

/// A value of input `f` on a coarse grid, so that rows and thresholds meet exactly (ties at `<=`).
fn grid_value(rng: &mut Lcg, f: usize) -> f64 {
    CENTRE[f] + SPREAD[f] * (rng.below(21) as f64 - 10.0) / 10.0
}

/// A random threshold of input `f`: on the grid, a hair above a grid value (between two `f32`s, where
/// rounding the threshold to nearest would decide wrongly), or anywhere.
fn random_threshold(rng: &mut Lcg, f: usize) -> f64 {
    match rng.below(4) {
        0 | 1 => grid_value(rng, f),
        2 => grid_value(rng, f) * (1.0 + 1e-9),
        _ => CENTRE[f] + SPREAD[f] * (rng.unit() - 0.5) * 2.0,
    }
}

/// A random tree of depth up to `max_depth`, branches ending early at random (so blocks are padded
/// at every level), leaves one-hot (votes, so classes tie) or fractional (with exact halves).
fn random_tree(rng: &mut Lcg, inputs: usize, max_depth: usize, one_hot: bool) -> TreeArrays {
    let mut t = TreeArrays::default();
    // (node, depth), filled depth first.
    let mut stack = vec![(0usize, 0usize)];
    t.feature.push(-1);
    t.threshold.push(-2.0);
    t.left.push(-1);
    t.right.push(-1);
    t.value.push(vec![]);
    while let Some((node, depth)) = stack.pop() {
        let leaf = depth >= max_depth || (depth > 0 && rng.unit() < 0.12 + 0.02 * depth as f64);
        if leaf {
            t.value[node] = if one_hot {
                let mut v = vec![0.0; 3];
                v[rng.below(3)] = 1.0;
                v
            } else if rng.below(4) == 0 {
                let mut v = vec![0.5; 3];
                v[rng.below(3)] = 0.0;
                v
            } else {
                let (a, b) = (rng.unit(), rng.unit());
                let (lo, hi) = (a.min(b), a.max(b));
                vec![lo, hi - lo, 1.0 - hi]
            };
            continue;
        }
        let f = rng.below(inputs);
        t.feature[node] = f as i32;
        t.threshold[node] = random_threshold(rng, f);
        for side in [&mut t.left, &mut t.right] {
            side[node] = t.feature.len() as i32;
            t.feature.push(-1);
        }
        for _ in 0..2 {
            t.threshold.push(-2.0);
            t.left.push(-1);
            t.right.push(-1);
            t.value.push(vec![]);
        }
        stack.push((t.right[node] as usize, depth + 1));
        stack.push((t.left[node] as usize, depth + 1));
    }
    t
}

/// A random forest file: deep uneven trees, the class order shuffled, with or without the rubric input.
pub(super) fn random_deep_forest(trees: usize, with_rubric: bool, one_hot: bool, seed: u64) -> ModelFile {
    let mut rng = Lcg(seed);
    let mut file = stump(0.0);
    if with_rubric {
        file.features.push(RUBRIC_FEATURE.into());
    }
    let orders = [["High", "Medium", "Low"], ["Low", "High", "Medium"], ["Medium", "Low", "High"]];
    file.classes = orders[rng.below(3)].iter().map(|c| c.to_string()).collect();
    let inputs = file.features.len();
    file.trees = (0..trees)
        .map(|_| {
            let depth = 4 + rng.below(14);
            random_tree(&mut rng, inputs, depth, one_hot)
        })
        .collect();
    file
}

/// Random rows: inputs on the grid (ties with thresholds) or anywhere; some NaN or infinite.
pub(super) fn random_columns(rng: &mut Lcg, n: usize) -> Vec<Vec<f64>> {
    let mut cols: Vec<Vec<f64>> = (0..6).map(|_| Vec::with_capacity(n)).collect();
    for i in 0..n {
        for (f, col) in cols.iter_mut().enumerate() {
            let v = match rng.below(50) {
                0 if i % 5 == 0 => f64::NAN,
                1 if i % 7 == 0 => f64::INFINITY,
                0..25 => grid_value(rng, f),
                _ => CENTRE[f] + SPREAD[f] * (rng.unit() - 0.5) * 3.0,
            };
            col.push(v);
        }
    }
    cols
}

/// scikit-learn's `predict_proba` and `predict` done plainly on the file's own arrays: the input cast
/// to float32 and compared with the float64 threshold, leaf fractions summed in tree order in f64,
/// the first largest class in file order.
fn reference_walk(file: &ModelFile, row: &[f64; 6]) -> Option<Prediction> {
    if row.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut inputs = row.to_vec();
    inputs.push(rubric_points(row));
    Some(reference_walk_values(file, &inputs))
}

/// The kernels this CPU runs; says so when it cannot run AVX2 (the scalar one is always tested).
fn kernels() -> Vec<Kernel> {
    let kernels: Vec<Kernel> = [Kernel::Scalar, Kernel::Avx2].into_iter().filter(|k| k.is_supported()).collect();
    if kernels.len() < 2 {
        eprintln!("this CPU has no AVX2: only the scalar kernel is tested");
    }
    kernels
}

#[test]
fn both_kernels_give_the_reference_walks_labels_and_probabilities() {
    let mut rng = Lcg(7);
    // Past one chunk, so that the second chunk starts mid-way.
    let n = CHUNK + 1_500;
    let cols = random_columns(&mut rng, n);
    let present = |i: usize| i % 13 != 4;
    let forests = [
        random_deep_forest(40, false, true, 11),
        random_deep_forest(25, true, false, 12),
        random_deep_forest(8, true, true, 13),
        random_deep_forest(1, false, false, 14),
    ];
    for (k, file) in forests.iter().enumerate() {
        let loaded = RiskForest::from_model(file).unwrap();
        let expected: Vec<Option<Prediction>> = (0..cols[0].len())
            .map(|i| if present(i) { reference_walk(file, &std::array::from_fn(|f| cols[f][i])) } else { None })
            .collect();
        assert!(expected.iter().flatten().count() > n * 4 / 5);
        for kernel in kernels() {
            let forest = loaded.with_kernel(kernel).unwrap();
            // Whole (two chunks), and in batches that leave lanes idle or a single row walking alone.
            for batch in [n, 100, 17, 3, 1] {
                let mut start = 0;
                while start < cols[0].len() {
                    let end = (start + batch).min(cols[0].len());
                    let slices: [&[f64]; 6] = std::array::from_fn(|f| &cols[f][start..end]);
                    let mut full = Vec::new();
                    forest.score_columns(slices, |i| present(start + i), |_, p| full.push(p));
                    let mut labels = Vec::new();
                    forest.label_columns(slices, |i| present(start + i), |_, r| labels.push(r));
                    for (i, (p, r)) in full.iter().zip(&labels).enumerate() {
                        let want = &expected[start + i];
                        assert_eq!(p, want, "forest {k}, {kernel:?}, batch {batch}, row {}", start + i);
                        assert_eq!(
                            *r,
                            want.map(|w| w.risk),
                            "forest {k}, {kernel:?}, batch {batch}, row {}",
                            start + i
                        );
                    }
                    start = end;
                    if batch < 100 && start > 300 {
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn the_avx2_exit_of_every_block_is_the_scalar_exit() {
    #[cfg(target_arch = "x86_64")]
    if Kernel::Avx2.is_supported() {
        let mut rng = Lcg(21);
        let cols = random_columns(&mut rng, 300);
        let forest = RiskForest::from_model(&random_deep_forest(20, true, false, 22)).unwrap();
        for i in 0..cols[0].len() {
            let mut row = Row([f32::NAN; ROW_SLOTS]);
            for (f, col) in cols.iter().enumerate() {
                row.0[f] = col[i] as f32;
            }
            row.0[6] = rubric_points(&std::array::from_fn(|f| cols[f][i])) as f32;
            for block in &forest.layout.blocks {
                // SAFETY: AVX2 is supported (checked above).
                let (narrow, wide) =
                    unsafe { (exit_avx2::exit::<false>(block, &row), exit_avx2::exit::<true>(block, &row)) };
                assert_eq!((narrow, wide), (exit_scalar::exit(block, &row), exit_scalar::exit(block, &row)), "row {i}");
            }
        }
        return;
    }
    eprintln!("this CPU has no AVX2: nothing to compare");
}

#[test]
fn a_leaf_alone_is_a_forest() {
    let mut file = stump(1.0);
    file.trees.push(TreeArrays {
        feature: vec![-1],
        threshold: vec![-2.0],
        left: vec![-1],
        right: vec![-1],
        value: vec![vec![0.0, 0.0, 1.0]],
        cover: vec![],
    });
    for kernel in kernels() {
        let forest = RiskForest::from_model(&file).unwrap().with_kernel(kernel).unwrap();
        // Tree 1 always says Medium (file order High, Low, Medium); tree 0 says Low below 1.0.
        let p = forest.predict(&[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(p.probabilities, [0.0, 0.5, 0.5]);
        assert_eq!(p.risk, RiskLevel::Low);
    }
}

/// A random trend forest over the sixteen default inputs (slots 8 to 15 included), with node covers.
fn random_trend_forest(trees: usize, seed: u64) -> ModelFile {
    let mut rng = Lcg(seed);
    let mut file = random_deep_forest(0, false, false, seed);
    file.features = crate::trend::default_inputs().iter().map(|i| i.name()).collect();
    let inputs = file.features.len();
    file.trees = (0..trees)
        .map(|_| {
            let depth = 4 + rng.below(10);
            let mut t = random_tree(&mut rng, 7, depth, false);
            for f in t.feature.iter_mut().filter(|f| **f >= 0) {
                // Spread the splits over all sixteen slots; thresholds stay in the vitals' ranges, and a
                // few sit just above MISSING, where a tree routes missing inputs on their own.
                *f = rng.below(inputs) as i32;
            }
            for (node, th) in t.threshold.iter_mut().enumerate() {
                if t.feature[node] >= 0 && rng.below(8) == 0 {
                    *th = MISSING + 1.0;
                }
            }
            t
        })
        .collect();
    file
}

#[test]
fn a_trend_forest_routes_missing_inputs_and_both_kernels_agree_on_sixteen_slots() {
    let mut file = stump(0.0);
    file.trend = Some(Box::new(random_trend_forest(30, 5)));
    let six = RiskForest::from_model(&file).unwrap();
    let trend = six.trend().unwrap().clone();
    assert!(trend.routes_missing() && !six.routes_missing());
    let arguments = trend.arguments();
    // Sixteen inputs: fourteen columns, two derived, which also read the rolling means not among them.
    assert_eq!(trend.inputs().len(), 16);
    assert_eq!(arguments.len(), 16);
    assert_eq!(arguments[7], ("on_oxygen".to_string(), arrow::datatypes::DataType::Boolean));
    let mut rng = Lcg(9);
    let n = 3_000;
    let cols: Vec<Vec<f64>> = (0..arguments.len())
        .map(|a| {
            (0..n)
                .map(|_| match rng.below(10) {
                    0 => f64::NAN,
                    _ if a == 7 => rng.below(2) as f64,
                    _ if a == 8 => rng.below(5) as f64,
                    _ => grid_value(&mut rng, a % 6),
                })
                .collect()
        })
        .collect();
    let slices: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    let tree_file = file.trend.as_ref().unwrap();
    for kernel in kernels() {
        let forest = trend.with_kernel(kernel).unwrap();
        let mut got = Vec::new();
        forest.score_slices(&slices, |_| true, |_, p| got.push(p));
        for (i, p) in got.iter().enumerate() {
            let args: Vec<f64> = cols.iter().map(|c| c[i]).collect();
            let values = forest.input_values(&args).unwrap();
            // A missing input is routed, never left unscored; its slot holds MISSING.
            assert!(args[0].is_finite() || values[0] == MISSING);
            let expected = reference_walk_values(tree_file, &values);
            assert_eq!(p.unwrap(), expected, "row {i}, {} kernel", kernel.name());
        }
    }
}

/// [`reference_walk`] over input values already laid out (derived inputs included).
fn reference_walk_values(file: &ModelFile, values: &[f64]) -> Prediction {
    let inputs: Vec<f64> = values.iter().map(|v| *v as f32 as f64).collect();
    let mut sums = [0.0f64; 3];
    for tree in &file.trees {
        let mut node = 0;
        while tree.feature[node] >= 0 {
            let x = inputs[tree.feature[node] as usize];
            node = if x <= tree.threshold[node] { tree.left[node] } else { tree.right[node] } as usize;
        }
        for (sum, p) in sums.iter_mut().zip(&tree.value[node]) {
            *sum += p;
        }
    }
    let n = file.trees.len() as f64;
    let proba = sums.map(|s| s / n);
    let best = (0..3).fold(0, |best, c| if proba[c] > proba[best] { c } else { best });
    let level = |i: usize| RiskLevel::parse(&file.classes[i]).unwrap();
    let mut probabilities = [0.0; 3];
    for (i, p) in proba.iter().enumerate() {
        probabilities[RiskLevel::ALL.iter().position(|l| *l == level(i)).unwrap()] = *p;
    }
    Prediction { risk: level(best), probabilities }
}

#[test]
fn a_model_file_naming_inputs_vitalflow_cannot_supply_is_refused_naming_them() {
    let mut file = stump(0.0);
    let mut trend = random_trend_forest(2, 3);
    trend.features[3] = "lactate".into();
    file.trend = Some(Box::new(trend));
    let err = RiskForest::from_model(&file).unwrap_err().to_string();
    assert!(err.contains("its trend model") && err.contains("\"lactate\""), "{err}");
}
