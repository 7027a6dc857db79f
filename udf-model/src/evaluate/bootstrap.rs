//! Bootstrap intervals over patients: each resample draws as many patients as the ward has, with
//! replacement, and weighs each patient's precomputed sums by how often it was drawn. Readings of one
//! patient are not independent, so patients, not readings, are the unit resampled.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Draws the resamples of a ward of patients, deterministically for a seed.
#[derive(Debug, Clone)]
pub struct PatientResampler {
    rng: ChaCha8Rng,
    patients: usize,
}

impl PatientResampler {
    /// Resamples of `patients` patients seeded with `seed`.
    pub fn new(patients: usize, seed: u64) -> PatientResampler {
        PatientResampler { rng: ChaCha8Rng::seed_from_u64(seed), patients }
    }

    /// The next resample: how many times each patient was drawn.
    pub fn next_weights(&mut self) -> Vec<f64> {
        let mut weights = vec![0.0; self.patients];
        for _ in 0..self.patients {
            weights[self.rng.gen_range(0..self.patients)] += 1.0;
        }
        weights
    }
}

/// The share Σ weight × numerator over Σ weight × denominator; `None` when the denominator is 0.
pub fn weighted_share(weights: &[f64], numerators: &[u32], denominators: &[u32]) -> Option<f64> {
    let mut top = 0.0;
    let mut bottom = 0.0;
    for ((w, n), d) in weights.iter().zip(numerators).zip(denominators) {
        top += w * f64::from(*n);
        bottom += w * f64::from(*d);
    }
    (bottom > 0.0).then(|| top / bottom)
}

/// The percentile interval holding the central `level` (0.95 for 95%) of the estimates, linear between
/// order statistics; estimates that could not be computed (`None`) are left out. `None` when none could.
pub fn percentile_interval(estimates: &[Option<f64>], level: f64) -> Option<[f64; 2]> {
    let mut sorted: Vec<f64> = estimates.iter().flatten().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some([quantile(&sorted, tail), quantile(&sorted, 1.0 - tail)])
}

/// The `q` quantile of sorted, non-empty values (linear interpolation, R's type 7).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}
