//! What micro-batches cost: the input rows and time of the recent ones, and from them a straight-line
//! fit, a fixed cost per batch plus a cost per row (`vitalflow bench e2e` prints it). Bounded: only
//! the newest [`KEPT`] batches are kept, however long the ETL runs.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Batches kept.
const KEPT: usize = 1024;

/// The recent batches' rows and times.
#[derive(Debug, Default)]
pub struct BatchCosts(Mutex<VecDeque<(usize, Duration)>>);

/// A fit of batch time on input rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostFit {
    /// Batches fitted.
    pub batches: usize,
    /// Their median input rows.
    pub median_rows: usize,
    /// Their median time.
    pub median_time: Duration,
    /// The time of a batch of no rows (the fit's intercept, at least 0).
    pub fixed: Duration,
    /// The time each row adds (the fit's slope, at least 0).
    pub per_row: Duration,
}

impl BatchCosts {
    /// Records a batch of `rows` input rows that took `elapsed`.
    pub fn record(&self, rows: usize, elapsed: Duration) {
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back((rows, elapsed));
        }
    }

    /// The least-squares fit of the kept batches; `None` without two batches of different sizes.
    pub fn fit(&self) -> Option<CostFit> {
        let kept: Vec<(usize, Duration)> = self.0.lock().ok()?.iter().copied().collect();
        let n = kept.len() as f64;
        let (xs, ys): (Vec<f64>, Vec<f64>) = kept.iter().map(|(r, t)| (*r as f64, t.as_secs_f64())).unzip();
        let (mean_x, mean_y) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let spread: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
        if kept.len() < 2 || spread <= 0.0 {
            return None;
        }
        let slope = xs.iter().zip(&ys).map(|(x, y)| (x - mean_x) * (y - mean_y)).sum::<f64>() / spread;
        let intercept = mean_y - slope * mean_x;
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Some(CostFit {
            batches: kept.len(),
            median_rows: median(xs) as usize,
            median_time: Duration::from_secs_f64(median(ys)),
            fixed: Duration::from_secs_f64(intercept.max(0.0)),
            per_row: Duration::from_secs_f64(slope.max(0.0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_finds_the_fixed_and_per_row_cost_and_keeps_the_newest_batches_only() {
        let costs = BatchCosts::default();
        assert_eq!(costs.fit(), None);
        // 40 ms per batch and 5 µs per row, recorded more times than kept.
        for i in 0..3 * KEPT {
            let rows = 100 * (i % 7);
            costs.record(rows, Duration::from_micros(40_000 + 5 * rows as u64));
        }
        let fit = costs.fit().unwrap();
        assert_eq!(fit.batches, KEPT);
        assert!((fit.fixed.as_secs_f64() - 0.040).abs() < 1e-6, "{fit:?}");
        assert!((fit.per_row.as_secs_f64() - 5e-6).abs() < 1e-9, "{fit:?}");
        assert_eq!(fit.median_rows, 300);
    }
}
