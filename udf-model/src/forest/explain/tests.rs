//! Tests of the explanations: TreeSHAP against a brute-force Shapley computation on small trees, and
//! additivity (base + contributions = the scored P(High)) on random deep forests and on the shipped one.

use crate::forest::tests::{Lcg, random_columns, random_deep_forest, stump};
use std::sync::Arc;

use crate::forest::*;
use crate::simulate::training_rows;

/// Random positive covers (whole numbers, as training weights are) added up from the leaves.
fn with_covers(mut file: ModelFile, rng: &mut Lcg) -> ModelFile {
    for tree in &mut file.trees {
        tree.cover = (0..tree.feature.len()).map(|_| 1.0 + rng.below(50) as f64).collect();
        // Children follow their parent in the random trees, so a reverse pass sums them first.
        for node in (0..tree.feature.len()).rev() {
            if tree.feature[node] >= 0 {
                tree.cover[node] = tree.cover[tree.left[node] as usize] + tree.cover[tree.right[node] as usize];
            }
        }
    }
    file
}

/// The expected P(High) of `tree` when only the inputs in `known` are known: a known input follows the
/// row (scikit-learn's rule: the f32 input against the f64 threshold), an unknown one averages both
/// branches by their covers.
fn value_of(tree: &TreeArrays, high: usize, row: &[f64], known: u32, node: usize) -> f64 {
    let f = tree.feature[node];
    if f < 0 {
        return tree.value[node][high];
    }
    let (l, r) = (tree.left[node] as usize, tree.right[node] as usize);
    if known & (1 << f) != 0 {
        let left = f64::from(row[f as usize] as f32) <= tree.threshold[node];
        return value_of(tree, high, row, known, if left { l } else { r });
    }
    (tree.cover[l] * value_of(tree, high, row, known, l) + tree.cover[r] * value_of(tree, high, row, known, r))
        / tree.cover[node]
}

/// Shapley values of the forest's P(High) by their definition: every subset of the other inputs.
fn brute_force(file: &ModelFile, row: &[f64]) -> Vec<f64> {
    let m = file.features.len();
    let high = file.classes.iter().position(|c| c == "High").unwrap();
    let factorial = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
    let v =
        |known: u32| file.trees.iter().map(|t| value_of(t, high, row, known, 0)).sum::<f64>() / file.trees.len() as f64;
    (0..m)
        .map(|i| {
            (0u32..1 << m)
                .filter(|s| s & (1 << i) == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    factorial(size) * factorial(m - size - 1) / factorial(m) * (v(s | 1 << i) - v(s))
                })
                .sum()
        })
        .collect()
}

/// Row `i` of six columns.
fn row_of(cols: &[Vec<f64>], i: usize) -> [f64; 6] {
    std::array::from_fn(|f| cols[f][i])
}

/// The model inputs of six vitals as the forest sees them (the rubric's points appended when read).
fn inputs_of(file: &ModelFile, row: &[f64; 6]) -> Vec<f64> {
    let mut inputs = row.to_vec();
    if file.features.len() == 7 {
        inputs.push(rubric_points(row));
    }
    inputs
}

#[test]
fn tree_shap_equals_the_shapley_values_by_definition() {
    let mut rng = Lcg(11);
    for seed in 0..30 {
        let file = with_covers(random_deep_forest(1 + seed as usize % 3, seed % 2 == 0, false, seed), &mut rng);
        let forest = RiskForest::from_model(&file).unwrap();
        let cols = random_columns(&mut rng, 40);
        for i in 0..40 {
            let row = row_of(&cols, i);
            let Some(explained) = forest.explain(&row).unwrap() else {
                assert!(row.iter().any(|v| !v.is_finite()));
                continue;
            };
            let expected = brute_force(&file, &inputs_of(&file, &row));
            assert_eq!(explained.contributions.len(), expected.len());
            for (got, want) in explained.contributions.iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "seed {seed} row {i}: {got} vs {want} ({:?})", explained);
            }
        }
    }
}

#[test]
fn contributions_and_base_add_up_to_the_scored_probability() {
    let mut rng = Lcg(5);
    for seed in 0..12 {
        let file = with_covers(random_deep_forest(20, seed % 2 == 1, seed % 3 == 0, 100 + seed), &mut rng);
        let forest = RiskForest::from_model(&file).unwrap();
        let cols = random_columns(&mut rng, 300);
        let mut explained_rows = 0;
        for i in 0..300 {
            let row = row_of(&cols, i);
            let (scored, explained) = (forest.predict(&row), forest.explain(&row).unwrap());
            assert_eq!(scored.is_some(), explained.is_some(), "row {row:?}");
            if let (Some(p), Some(e)) = (scored, explained) {
                let sum = e.base + e.contributions.iter().sum::<f64>();
                assert!(
                    (sum - p.probabilities[0]).abs() < 1e-9,
                    "seed {seed} row {i}: {sum} vs {}",
                    p.probabilities[0]
                );
                explained_rows += 1;
            }
        }
        assert!(explained_rows > 200, "{explained_rows} rows explained");
    }
}

#[test]
fn the_shipped_forest_explains_every_reading_exactly() {
    let forest = RiskForest::bundled().unwrap();
    let explainer = forest.explainer().expect("the shipped model records node covers");
    assert!(explainer.base() > 0.0 && explainer.base() < 1.0);
    let rows = training_rows(2_000, 99);
    let mut moved = [0usize; 7];
    for row in &rows.features {
        let p = forest.predict(row).unwrap().probabilities[0];
        let e = forest.explain(row).unwrap().unwrap();
        assert_eq!(e.contributions.len(), forest.inputs().len());
        let sum = e.base + e.contributions.iter().sum::<f64>();
        assert!((sum - p).abs() < 1e-9, "{row:?}: {sum} vs {p}");
        for (count, c) in moved.iter_mut().zip(&e.contributions) {
            *count += usize::from(c.abs() > 1e-6);
        }
    }
    // The forest leans on the rubric's points above all: it moves nearly every reading's P(High).
    assert!(moved[6] > rows.features.len() / 2, "{moved:?}");
}

#[test]
fn a_model_without_covers_cannot_explain_and_says_why() {
    let forest = RiskForest::from_model(&stump(100.0)).unwrap();
    assert!(forest.explainer().is_none());
    let err = forest.explain(&[90.0, 120.0, 80.0, 98.0, 37.0, 100.0]).unwrap_err().to_string();
    assert!(err.contains("node covers"), "{err}");
}

#[test]
fn covers_that_do_not_add_up_are_refused() {
    let mut file = stump(100.0);
    file.trees[0].cover = vec![10.0, 4.0, 5.0];
    let err = RiskForest::from_model(&file).unwrap_err().to_string();
    assert!(err.contains("tree 0: node 0: cover 10"), "{err}");
    file.trees[0].cover = vec![9.0, 4.0, 5.0];
    assert!(RiskForest::from_model(&file).unwrap().explainer().is_some());
    file.trees[0].cover = vec![9.0, 4.0];
    assert!(RiskForest::from_model(&file).unwrap_err().to_string().contains("2 node covers for 3 nodes"));
    file.trees[0].cover = vec![9.0, 4.0, 5.0];
    file.trees.push(stump(50.0).trees.remove(0));
    let err = RiskForest::from_model(&file).unwrap_err().to_string();
    assert!(err.contains("1 of 2 trees have node covers"), "{err}");
}

#[test]
fn top_reasons_name_the_largest_pushes_up_in_order() {
    use arrow::array::{Array, ArrayRef, Float64Array, StructArray};
    use arrow::datatypes::{DataType, Field};
    let column = |values: [f64; 2]| Arc::new(Float64Array::from(values.to_vec())) as ArrayRef;
    let why = StructArray::try_new(
        ["base", "spo2", "glucose", "heart_rate", "rubric_points"]
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, false))
            .collect(),
        vec![
            column([0.1, 0.1]),
            column([0.08, -0.1]),
            column([-0.2, -0.1]),
            column([0.0004, -0.3]),
            column([0.5, -0.2]),
        ],
        Some(arrow::buffer::NullBuffer::from(vec![true, true])),
    )
    .unwrap();
    let reasons = crate::udf::top_reasons(&why, 3);
    assert_eq!(reasons.value(0), "rubric_points +0.500, spo2 +0.080", "a push that rounds to 0 is left out");
    // Nothing pushed the second reading towards High.
    assert!(reasons.is_null(1));
}
