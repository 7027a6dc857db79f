//! `vitalflow evaluate`: the risk model against NEWS2 and the six-vital rubric on a held-out ward, as
//! hospitals compare early-warning scores — AUROC per reading, then episode sensitivity, PPV per alert
//! and lead time with each score's threshold set so that all three alert equally often (alerts per 35
//! patients per day, the Advance Alert Monitor's budget unit), with bootstrap intervals over patients and
//! the readings where the model and NEWS2 disagree. Definitions: `alerts` and `docs/model.md`.
//!
//! [`evaluate_simulated_ward`] simulates the ward and evaluates it against its true state;
//! [`evaluate_recorded`] evaluates a hospital's recorded history against its recorded events (`events`):
//! shadow mode before go-live.

pub mod alerts;
pub mod auroc;
pub mod bootstrap;
pub mod events;
pub mod render;
pub mod report;
pub mod scores;
pub mod ward;

#[cfg(test)]
mod tests;

use alerts::{
    Episode, PatientAlertOutcome, alert_rate, alerts_per_threshold, closest_threshold, episodes, median,
    patient_outcome, rise_alerts,
};
use auroc::{RankedScores, distinct_values};
use bootstrap::{PatientResampler, percentile_interval, weighted_share};
use events::{RecordedEvent, label_by_events};
use report::{
    BootstrapSummary, DisagreementCount, Disagreements, EvaluationReport, MatchedRate, MatchedScore, PerScore,
    WardSource, WardSummary,
};
use scores::{LabelledReading, PatientHistory, ScoreKind, patient_histories};
use ward::{SimulatedWard, WardSettings};

use crate::error::{Error, Result};
use crate::forest::RiskForest;
use crate::rubric::RiskLevel;

/// What is computed, beside the ward itself.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationOptions {
    /// Alert budgets, alerts per 35 patients per day (the Advance Alert Monitor budgets one).
    pub alert_rates: Vec<f64>,
    /// Hours before an episode's onset from which an alert counts for it: six, the horizon early-warning
    /// scores are usually judged at.
    pub lookback_hours: f64,
    /// Runs of truly-High readings less than this many hours apart are one episode (simulated wards;
    /// recorded events are each their own): a true state hovering at the High boundary dips below it for
    /// a reading or two and is still one deterioration.
    pub episode_gap_hours: f64,
    /// Bootstrap resamples of patients: 200 give the 2.5% and 97.5% percentiles to about ±0.01 of an AUROC
    /// interval's width while keeping the default ward's evaluation to seconds.
    pub resamples: usize,
    /// Seed of the resampling.
    pub bootstrap_seed: u64,
}

impl Default for EvaluationOptions {
    fn default() -> Self {
        EvaluationOptions {
            alert_rates: vec![0.5, 1.0, 2.0, 4.0],
            lookback_hours: 6.0,
            episode_gap_hours: 1.0,
            resamples: 200,
            bootstrap_seed: 2026,
        }
    }
}

impl EvaluationOptions {
    /// Checks the ranges; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        if self.alert_rates.is_empty() || !self.alert_rates.iter().all(|r| r.is_finite() && *r > 0.0) {
            return Err(Error::Config(format!(
                "evaluate: --alert-rates {:?}: give one or more alert budgets above 0 (alerts per 35 patients per day)",
                self.alert_rates
            )));
        }
        if !(self.lookback_hours >= 0.0 && self.lookback_hours.is_finite()) {
            return Err(Error::Config(format!("evaluate: lookback of {} hours: use 0 or more", self.lookback_hours)));
        }
        if !(self.episode_gap_hours >= 0.0 && self.episode_gap_hours.is_finite()) {
            return Err(Error::Config(format!(
                "evaluate: episode gap of {} hours: use 0 or more",
                self.episode_gap_hours
            )));
        }
        Ok(())
    }
}

/// The coverage of the intervals.
const INTERVAL_LEVEL: f64 = 0.95;

/// Simulates the held-out ward of `ward` and evaluates `forest` on it, the true state's High runs as
/// the episodes.
pub fn evaluate_simulated_ward(
    forest: &RiskForest,
    ward: &WardSettings,
    options: &EvaluationOptions,
) -> Result<EvaluationReport> {
    ward.validate()?;
    options.validate()?;
    let readings = SimulatedWard::new(ward).map(LabelledReading::simulated).collect::<Result<Vec<_>>>()?;
    let histories = patient_histories(forest, readings);
    let patient_episodes: Vec<Vec<Episode>> = histories
        .iter()
        .map(|h| {
            let times: Vec<f64> = h.readings.iter().map(|r| r.seconds).collect();
            let truth: Vec<bool> = h.readings.iter().map(|r| r.truly_high).collect();
            episodes(&times, &truth, options.episode_gap_hours * 3_600.0)
        })
        .collect();
    let source = WardSource::Simulated {
        hours: ward.hours,
        seed: ward.seed,
        seconds_per_reading: ward.seconds_per_reading,
        episode_rate_per_hour: ward.episode_rate_per_hour,
        episode_gap_hours: options.episode_gap_hours,
    };
    evaluate_histories(&histories, &patient_episodes, source, options)
}

/// Evaluates `forest` on a recorded history with recorded events (`events`: shadow mode on a hospital's
/// own data); `history` and `events_name` say where they came from.
pub fn evaluate_recorded(
    forest: &RiskForest,
    readings: Vec<LabelledReading>,
    events: &[RecordedEvent],
    history: &str,
    events_name: &str,
    options: &EvaluationOptions,
) -> Result<EvaluationReport> {
    options.validate()?;
    let mut histories = patient_histories(forest, readings);
    let labels = label_by_events(&mut histories, events, options.lookback_hours * 3_600.0);
    let source = WardSource::Recorded {
        history: history.to_string(),
        events: events_name.to_string(),
        events_given: labels.events,
        events_unobserved: labels.unobserved,
    };
    evaluate_histories(&histories, &labels.episodes, source, options)
}

/// Days one patient was observed: their readings' span plus one mean interval (n readings cover n
/// intervals); 0 for a single reading.
fn observed_days(times: &[f64]) -> f64 {
    match (times.first(), times.last()) {
        (Some(first), Some(last)) if times.len() > 1 => {
            (last - first) * times.len() as f64 / (times.len() - 1) as f64 / 86_400.0
        }
        _ => 0.0,
    }
}

/// One score's alerts at one budget, per patient, for the point estimates and the bootstrap.
struct BudgetTally {
    threshold: Option<f64>,
    budget_unreachable: bool,
    alerts: u64,
    outcomes: Vec<PatientAlertOutcome>,
    caught: Vec<u32>,
    episodes: Vec<u32>,
    true_alerts: Vec<u32>,
    alert_counts: Vec<u32>,
}

impl BudgetTally {
    fn new(
        threshold: Option<f64>,
        budget_unreachable: bool,
        alerts: u64,
        outcomes: Vec<PatientAlertOutcome>,
    ) -> BudgetTally {
        BudgetTally {
            threshold,
            budget_unreachable,
            alerts,
            caught: outcomes.iter().map(|o| o.caught_episodes).collect(),
            episodes: outcomes.iter().map(|o| o.episodes).collect(),
            true_alerts: outcomes.iter().map(|o| o.true_alerts).collect(),
            alert_counts: outcomes.iter().map(|o| o.alerts).collect(),
            outcomes,
        }
    }

    fn sensitivity(&self, weights: &[f64]) -> Option<f64> {
        weighted_share(weights, &self.caught, &self.episodes)
    }

    fn ppv(&self, weights: &[f64]) -> Option<f64> {
        weighted_share(weights, &self.true_alerts, &self.alert_counts)
    }
}

/// Evaluates scored patient histories against their episodes (`patient_episodes[i]` of `histories[i]`).
pub fn evaluate_histories(
    histories: &[PatientHistory],
    patient_episodes: &[Vec<Episode>],
    source: WardSource,
    options: &EvaluationOptions,
) -> Result<EvaluationReport> {
    let times: Vec<Vec<f64>> = histories.iter().map(|h| h.readings.iter().map(|r| r.seconds).collect()).collect();
    let truth: Vec<Vec<bool>> = histories.iter().map(|h| h.readings.iter().map(|r| r.truly_high).collect()).collect();
    let patient_days: f64 = times.iter().map(|t| observed_days(t)).sum();
    if !patient_days.is_finite() || patient_days <= 0.0 {
        return Err(Error::Evaluation(format!(
            "{} patients whose readings span no time: alert rates need readings over time",
            histories.len()
        )));
    }
    let scores: PerScore<Vec<Vec<Option<f64>>>> = PerScore::from_fn(|kind| {
        histories.iter().map(|h| h.readings.iter().map(|r| r.score(kind)).collect()).collect()
    });
    let ranked: PerScore<RankedScores> = PerScore::from_fn(|kind| RankedScores::new(scores.get(kind), &truth));
    let lookback_seconds = options.lookback_hours * 3_600.0;

    // Thresholds from the full ward, then what each patient's alerts caught at them.
    let candidates = PerScore::from_fn(|kind| {
        let values = distinct_values(scores.get(kind).iter().flatten());
        alerts_per_threshold(scores.get(kind), &values)
    });
    let tallies: Vec<PerScore<BudgetTally>> = options
        .alert_rates
        .iter()
        .map(|target| {
            PerScore::from_fn(|kind| {
                let choice = closest_threshold(candidates.get(kind), patient_days, *target);
                let outcomes: Vec<PatientAlertOutcome> = match choice {
                    Some(choice) => scores
                        .get(kind)
                        .iter()
                        .zip(&times)
                        .zip(patient_episodes)
                        .map(|((s, t), e)| patient_outcome(t, &rise_alerts(s, choice.threshold), e, lookback_seconds))
                        .collect(),
                    // NULL everywhere: nothing alerts.
                    None => patient_episodes
                        .iter()
                        .map(|e| PatientAlertOutcome { episodes: e.len() as u32, ..PatientAlertOutcome::default() })
                        .collect(),
                };
                let highest = candidates.get(kind).last().map(|c| c.threshold);
                // Only the highest threshold can alert more often than the budget and still be the closest.
                let unreachable = choice
                    .is_some_and(|c| Some(c.threshold) == highest && alert_rate(c.alerts, patient_days) > *target);
                BudgetTally::new(choice.map(|c| c.threshold), unreachable, choice.map_or(0, |c| c.alerts), outcomes)
            })
        })
        .collect();

    // The bootstrap: one set of patient weights per resample, shared by every figure (paired).
    let mut resampler = PatientResampler::new(histories.len(), options.bootstrap_seed);
    let mut auroc_samples: PerScore<Vec<Option<f64>>> = PerScore::from_fn(|_| Vec::new());
    let mut sensitivity_samples: Vec<PerScore<Vec<Option<f64>>>> =
        tallies.iter().map(|_| PerScore::from_fn(|_| Vec::new())).collect();
    let mut ppv_samples: Vec<PerScore<Vec<Option<f64>>>> =
        tallies.iter().map(|_| PerScore::from_fn(|_| Vec::new())).collect();
    for _ in 0..options.resamples {
        let weights = resampler.next_weights();
        for kind in ScoreKind::ALL {
            auroc_samples.get_mut(kind).push(ranked.get(kind).weighted_auroc(&weights));
            for (budget, tally) in tallies.iter().enumerate() {
                sensitivity_samples[budget].get_mut(kind).push(tally.get(kind).sensitivity(&weights));
                ppv_samples[budget].get_mut(kind).push(tally.get(kind).ppv(&weights));
            }
        }
    }

    let ones = vec![1.0; histories.len()];
    let matched = options
        .alert_rates
        .iter()
        .zip(&tallies)
        .enumerate()
        .map(|(budget, (target, tally))| {
            let figures = |kind: ScoreKind| {
                let t = tally.get(kind);
                let leads: Vec<f64> = t.outcomes.iter().flat_map(|o| o.lead_minutes.iter().copied()).collect();
                MatchedScore {
                    threshold: t.threshold,
                    budget_unreachable: t.budget_unreachable,
                    achieved_rate: alert_rate(t.alerts, patient_days),
                    alerts: t.alerts,
                    caught_episodes: t.caught.iter().map(|c| u64::from(*c)).sum(),
                    sensitivity: t.sensitivity(&ones),
                    sensitivity_ci: percentile_interval(sensitivity_samples[budget].get(kind), INTERVAL_LEVEL),
                    ppv: t.ppv(&ones),
                    ppv_ci: percentile_interval(ppv_samples[budget].get(kind), INTERVAL_LEVEL),
                    median_lead_min: median(&leads),
                }
            };
            MatchedRate {
                alerts_per_35_per_day: *target,
                model: figures(ScoreKind::Model),
                news2: figures(ScoreKind::News2),
                rubric: figures(ScoreKind::Rubric),
            }
        })
        .collect();

    let readings: u64 = histories.iter().map(|h| h.readings.len() as u64).sum();
    Ok(EvaluationReport {
        auroc: PerScore::from_fn(|kind| ranked.get(kind).auroc()),
        auroc_ci: PerScore::from_fn(|kind| percentile_interval(auroc_samples.get(kind), INTERVAL_LEVEL)),
        matched,
        disagreements: disagreements(histories, readings),
        ward: WardSummary {
            source,
            patients: histories.len() as u64,
            readings,
            truly_high_readings: truth.iter().flatten().filter(|h| **h).count() as u64,
            episodes: patient_episodes.iter().map(|e| e.len() as u64).sum(),
            patient_days,
        },
        bootstrap: BootstrapSummary {
            resamples: options.resamples,
            seed: options.bootstrap_seed,
            lookback_hours: options.lookback_hours,
            thresholds: "fixed from the full ward",
        },
    })
}

/// NEWS2 ≥ 7 (emergency response) where the model says Low or Medium, and the model's High where NEWS2 ≤ 4.
fn disagreements(histories: &[PatientHistory], readings: u64) -> Disagreements {
    let count = |matches: &dyn Fn(&scores::ScoredReading) -> bool| {
        let rows = histories.iter().flat_map(|h| &h.readings).filter(|r| matches(r));
        let (count, truly_high) = rows.fold((0u64, 0u64), |(c, t), r| (c + 1, t + u64::from(r.truly_high)));
        DisagreementCount { count, share: if readings > 0 { count as f64 / readings as f64 } else { 0.0 }, truly_high }
    };
    Disagreements {
        news2_high_model_not_high: count(&|r| {
            r.news2.is_some_and(|n| n >= 7) && matches!(r.model_label, Some(RiskLevel::Low | RiskLevel::Medium))
        }),
        model_high_news2_low: count(&|r| r.model_label == Some(RiskLevel::High) && r.news2.is_some_and(|n| n <= 4)),
    }
}
