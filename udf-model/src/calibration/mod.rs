//! Calibrating a forest's P(High) ([`Calibration`]): an isotonic map from the forest's own P(High) to
//! the share of readings truly High, fitted on a calibration ward when the model is trained and
//! stored in its model file.
//!
//! A random forest's averaged leaf fractions rank readings well but are not probabilities: trained
//! with class weights and bootstrap samples, the shipped trend forest reads 0.45 where 0.56 of the
//! readings are truly High. The map is fitted by pooling adjacent violators (the isotonic regression
//! scikit-learn's `CalibratedClassifierCV(method="isotonic")` fits) and applied by linear
//! interpolation between the pooled blocks, clipped at the ends, as scikit-learn's
//! `IsotonicRegression(out_of_bounds="clip")` predicts. It never decreases, so a higher P(High) is
//! never calibrated below a lower one; thresholds on either order readings alike (ties aside).

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// The calibration of a forest's P(High): knots `(forest P(High), share truly High)`, in increasing
/// order of both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// What the map was fitted on (e.g. "isotonic, 30000 readings of a calibration ward, seed 9").
    pub fitted_on: String,
    /// The forest's P(High) at each knot, increasing.
    pub forest: Vec<f64>,
    /// The calibrated P(High) at each knot, non-decreasing, within [0, 1].
    pub calibrated: Vec<f64>,
}

impl Calibration {
    /// The isotonic fit of `outcomes` (truly High or not) on the forest's P(High) `scores`; `None`
    /// when there is nothing to fit (no finite score).
    pub fn fit(scores: &[f64], outcomes: &[bool], fitted_on: impl Into<String>) -> Option<Calibration> {
        let mut pairs: Vec<(f64, f64)> = scores
            .iter()
            .zip(outcomes)
            .filter(|(s, _)| s.is_finite())
            .map(|(s, y)| (*s, f64::from(u8::from(*y))))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of readings with (count, sum of scores, sum of outcomes, highest score); readings of
        // equal score start in one block.
        let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
        for (score, outcome) in pairs {
            match blocks.last_mut() {
                Some(last) if last.3 == score => {
                    last.0 += 1.0;
                    last.1 += score;
                    last.2 += outcome;
                }
                _ => blocks.push((1.0, score, outcome, score)),
            }
            // Pool while the last block's share truly High is below the one before it.
            while let [.., before, last] = blocks[..] {
                if before.2 / before.0 <= last.2 / last.0 {
                    break;
                }
                blocks.pop();
                let merged = blocks.last_mut()?;
                merged.0 += last.0;
                merged.1 += last.1;
                merged.2 += last.2;
                merged.3 = last.3;
            }
        }
        if blocks.is_empty() {
            return None;
        }
        let knots: Vec<(f64, f64)> = blocks.iter().map(|(w, s, y, _)| (s / w, y / w)).collect();
        // Inside a run of knots with one calibrated value, the middle ones change nothing: the
        // interpolation between the run's ends gives that value.
        let kept: Vec<(f64, f64)> = knots
            .iter()
            .enumerate()
            .filter(|(i, (_, y))| {
                let same_before = *i > 0 && knots[i - 1].1 == *y;
                let same_after = knots.get(i + 1).is_some_and(|next| next.1 == *y);
                !(same_before && same_after)
            })
            .map(|(_, knot)| *knot)
            .collect();
        Some(Calibration {
            fitted_on: fitted_on.into(),
            forest: kept.iter().map(|(x, _)| *x).collect(),
            calibrated: kept.iter().map(|(_, y)| *y).collect(),
        })
    }

    /// Checks the knots: as many of each, at least one, finite, increasing forest values, non-decreasing
    /// calibrated values within [0, 1].
    pub fn validate(&self) -> Result<(), String> {
        let n = self.forest.len();
        if n == 0 || self.calibrated.len() != n {
            return Err(format!(
                "{n} forest knots and {} calibrated ones: one or more of each, as many",
                self.calibrated.len()
            ));
        }
        if self.forest.iter().chain(&self.calibrated).any(|v| !v.is_finite()) {
            return Err("a knot is not a finite number".into());
        }
        if self.forest.windows(2).any(|w| w[0] >= w[1]) {
            return Err("the forest knots do not increase".into());
        }
        if self.calibrated.windows(2).any(|w| w[0] > w[1]) || self.calibrated.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err("the calibrated knots decrease or leave [0, 1]".into());
        }
        Ok(())
    }

    /// The calibrated P(High) of the forest's `p`: interpolated between the knots around it, the
    /// first or last knot's value outside them; NaN stays NaN.
    pub fn apply(&self, p: f64) -> f64 {
        if p.is_nan() {
            return p;
        }
        let above = self.forest.partition_point(|&x| x <= p);
        if above == 0 {
            return self.calibrated[0];
        }
        if above == self.forest.len() {
            return self.calibrated[above - 1];
        }
        let (x0, x1) = (self.forest[above - 1], self.forest[above]);
        let (y0, y1) = (self.calibrated[above - 1], self.calibrated[above]);
        y0 + (y1 - y0) * (p - x0) / (x1 - x0)
    }
}
