//! The isotonic fit against a brute-force least-squares check, and the map's interpolation.

use super::Calibration;

/// A small deterministic generator for test data.
fn lcg(state: &mut u64) -> f64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn the_fit_is_non_decreasing_and_keeps_each_blocks_share() {
    let mut state = 7;
    let mut scores = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..5_000 {
        let p = (lcg(&mut state) * 20.0).floor() / 20.0;
        // Truly High more often than p says in the middle: the forest under-reads there.
        let truth = (p * 1.2).min(1.0);
        scores.push(p);
        outcomes.push(lcg(&mut state) < truth);
    }
    let c = Calibration::fit(&scores, &outcomes, "test").expect("fitted");
    c.validate().expect("valid knots");
    // Pooling keeps the totals, and interpolating between the pooled blocks moves their members little:
    // the mean calibrated P(High) is the share truly High, near enough.
    let share = outcomes.iter().filter(|y| **y).count() as f64 / outcomes.len() as f64;
    let mean: f64 = scores.iter().map(|p| c.apply(*p)).sum::<f64>() / scores.len() as f64;
    assert!((mean - share).abs() < 0.005, "mean calibrated {mean} against share {share}");
    // Calibrated Brier score is no worse than the forest's own on the rows it was fitted on.
    let brier = |f: &dyn Fn(f64) -> f64| {
        scores.iter().zip(&outcomes).map(|(p, y)| (f(*p) - f64::from(u8::from(*y))).powi(2)).sum::<f64>()
    };
    assert!(brier(&|p| c.apply(p)) < brier(&|p| p));
}

#[test]
fn each_distinct_score_gets_its_share_when_the_shares_already_increase() {
    let scores = [0.1, 0.1, 0.5, 0.5, 0.5, 0.5, 0.9, 0.9];
    let outcomes = [false, false, true, false, false, false, true, true];
    let c = Calibration::fit(&scores, &outcomes, "test").expect("fitted");
    assert_eq!(c.forest, vec![0.1, 0.5, 0.9]);
    assert_eq!(c.calibrated, vec![0.0, 0.25, 1.0]);
    // Between knots the map interpolates; outside, it clips.
    assert!((c.apply(0.3) - 0.125).abs() < 1e-12);
    assert_eq!(c.apply(0.0), 0.0);
    assert_eq!(c.apply(1.0), 1.0);
    assert!(c.apply(f64::NAN).is_nan());
}

#[test]
fn violators_are_pooled() {
    // 0.2 is High more often than 0.6: the two pool into one block of their joint share.
    let scores = [0.2, 0.2, 0.6, 0.6];
    let outcomes = [true, true, false, true];
    let c = Calibration::fit(&scores, &outcomes, "test").expect("fitted");
    assert_eq!(c.forest, vec![0.4]);
    assert_eq!(c.calibrated, vec![0.75]);
    assert_eq!(c.apply(0.9), 0.75);
}

#[test]
fn broken_knots_are_refused() {
    let good = Calibration { fitted_on: "t".into(), forest: vec![0.1, 0.2], calibrated: vec![0.0, 0.5] };
    assert!(good.validate().is_ok());
    for (forest, calibrated) in [
        (vec![], vec![]),
        (vec![0.1], vec![0.1, 0.2]),
        (vec![0.2, 0.1], vec![0.0, 0.5]),
        (vec![0.1, 0.2], vec![0.5, 0.4]),
        (vec![0.1, 0.2], vec![0.0, 1.5]),
        (vec![0.1, f64::NAN], vec![0.0, 0.5]),
    ] {
        let broken = Calibration { fitted_on: "t".into(), forest, calibrated };
        assert!(broken.validate().is_err(), "{broken:?} accepted");
    }
    assert!(Calibration::fit(&[f64::NAN], &[true], "t").is_none());
}

#[test]
fn knots_inside_a_run_of_one_value_are_dropped_without_changing_the_map() {
    let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let outcomes = [false, false, false, false, true, true];
    let c = Calibration::fit(&scores, &outcomes, "test").expect("fitted");
    assert_eq!(c.forest, vec![0.1, 0.4, 0.5, 0.6]);
    assert_eq!(c.calibrated, vec![0.0, 0.0, 1.0, 1.0]);
    for p in scores {
        assert_eq!(c.apply(p), if p < 0.45 { 0.0 } else { 1.0 });
    }
}
