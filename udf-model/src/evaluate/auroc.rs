//! AUROC per reading: the Mann-Whitney statistic, P(a positive outranks a negative) with ties counted
//! one half, NULL ranking below every value. Scores are reduced once to ranks among their distinct
//! values and to per-patient counts per rank, so that a bootstrap resample of patients costs one pass
//! over those counts and no sort.

/// How many positive and negative readings of one patient hold one rank.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RankCount {
    /// 0 for NULL, else 1 + the position of the value among the distinct values, lowest first.
    rank: u32,
    positives: u32,
    negatives: u32,
}

/// One score's readings, reduced to per-patient counts per rank.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedScores {
    /// Ranks in use: the distinct values and NULL.
    ranks: usize,
    per_patient: Vec<Vec<RankCount>>,
}

/// The distinct finite values among `scores`, lowest first.
pub fn distinct_values<'a>(scores: impl IntoIterator<Item = &'a Option<f64>>) -> Vec<f64> {
    let mut values: Vec<f64> = scores.into_iter().filter_map(|s| s.filter(|v| v.is_finite())).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

/// 0 for NULL (or a non-finite score), else 1 + the position of the score in `values`.
pub fn rank_of(values: &[f64], score: Option<f64>) -> usize {
    match score.filter(|v| v.is_finite()) {
        // Every finite score is among the values; a missing one would rank as the next value up.
        Some(v) => values.partition_point(|x| *x < v) + 1,
        None => 0,
    }
}

impl RankedScores {
    /// Reduces the scores and labels (`true` = positive) of each patient, in matching order.
    pub fn new(scores: &[Vec<Option<f64>>], positives: &[Vec<bool>]) -> RankedScores {
        let values = distinct_values(scores.iter().flatten());
        let per_patient = scores
            .iter()
            .zip(positives)
            .map(|(patient_scores, patient_labels)| {
                let mut counts: Vec<RankCount> = Vec::new();
                let mut ranked: Vec<(u32, bool)> =
                    patient_scores.iter().zip(patient_labels).map(|(s, p)| (rank_of(&values, *s) as u32, *p)).collect();
                ranked.sort_unstable_by_key(|(rank, _)| *rank);
                for (rank, positive) in ranked {
                    if counts.last().is_none_or(|last| last.rank != rank) {
                        counts.push(RankCount { rank, positives: 0, negatives: 0 });
                    }
                    if let Some(count) = counts.last_mut() {
                        if positive {
                            count.positives += 1;
                        } else {
                            count.negatives += 1;
                        }
                    }
                }
                counts
            })
            .collect();
        RankedScores { ranks: values.len() + 1, per_patient }
    }

    /// Patients held.
    pub fn patients(&self) -> usize {
        self.per_patient.len()
    }

    /// AUROC with each patient's readings counted `weights[patient]` times (1 each for the point
    /// estimate, the bootstrap multiplicity in a resample); `None` without a positive or a negative.
    pub fn weighted_auroc(&self, weights: &[f64]) -> Option<f64> {
        let mut positives = vec![0.0; self.ranks];
        let mut negatives = vec![0.0; self.ranks];
        for (counts, weight) in self.per_patient.iter().zip(weights) {
            if *weight == 0.0 {
                continue;
            }
            for count in counts {
                positives[count.rank as usize] += weight * f64::from(count.positives);
                negatives[count.rank as usize] += weight * f64::from(count.negatives);
            }
        }
        auroc_of_counts(&positives, &negatives)
    }

    /// AUROC of all readings, each once.
    pub fn auroc(&self) -> Option<f64> {
        self.weighted_auroc(&vec![1.0; self.patients()])
    }
}

/// AUROC from positive and negative counts per rank, lowest rank first: Σ over ranks of positives ×
/// (negatives below + half the negatives tied), over positives × negatives.
fn auroc_of_counts(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    let total_positives: f64 = positives.iter().sum();
    let total_negatives: f64 = negatives.iter().sum();
    if total_positives == 0.0 || total_negatives == 0.0 {
        return None;
    }
    let mut negatives_below = 0.0;
    let mut pairs_won = 0.0;
    for (p, n) in positives.iter().zip(negatives) {
        pairs_won += p * (negatives_below + 0.5 * n);
        negatives_below += n;
    }
    Some(pairs_won / (total_positives * total_negatives))
}

/// AUROC of `(score, positive)` pairs; `None` without a positive or a negative.
pub fn auroc(readings: &[(Option<f64>, bool)]) -> Option<f64> {
    let scores: Vec<Option<f64>> = readings.iter().map(|(s, _)| *s).collect();
    let labels: Vec<bool> = readings.iter().map(|(_, p)| *p).collect();
    RankedScores::new(&[scores], &[labels]).auroc()
}
