//! The evaluation report: what `vitalflow evaluate` prints, and the shape of its JSON.

use serde::Serialize;

use super::scores::ScoreKind;

/// One figure for each of the three scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerScore<T> {
    /// The forest's P(High).
    pub model: T,
    /// NEWS2.
    pub news2: T,
    /// The six-vital rubric.
    pub rubric: T,
}

impl<T> PerScore<T> {
    /// Builds from a function of the score.
    pub fn from_fn(mut figure: impl FnMut(ScoreKind) -> T) -> PerScore<T> {
        PerScore { model: figure(ScoreKind::Model), news2: figure(ScoreKind::News2), rubric: figure(ScoreKind::Rubric) }
    }

    /// The figure of `kind`.
    pub fn get(&self, kind: ScoreKind) -> &T {
        match kind {
            ScoreKind::Model => &self.model,
            ScoreKind::News2 => &self.news2,
            ScoreKind::Rubric => &self.rubric,
        }
    }

    /// The figure of `kind`, to change.
    pub fn get_mut(&mut self, kind: ScoreKind) -> &mut T {
        match kind {
            ScoreKind::Model => &mut self.model,
            ScoreKind::News2 => &mut self.news2,
            ScoreKind::Rubric => &mut self.rubric,
        }
    }
}

/// One score at one alert budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedScore {
    /// The threshold whose alert rate is closest to the budget (probability for the model, points for
    /// NEWS2 and the rubric); `None` when the score is NULL on every reading.
    pub threshold: Option<f64>,
    /// Even the score's highest threshold alerts more often than the budget (a P(High) near 1 from every
    /// tree, say, is reached often): the threshold is that highest one and the achieved rate is above the budget.
    pub budget_unreachable: bool,
    /// The alert rate reached at that threshold, alerts per 35 patients per day.
    pub achieved_rate: f64,
    /// Alerts fired.
    pub alerts: u64,
    /// Episodes with an alert in their window.
    pub caught_episodes: u64,
    /// Share of episodes caught.
    pub sensitivity: Option<f64>,
    /// 95% bootstrap interval of the sensitivity.
    pub sensitivity_ci: Option<[f64; 2]>,
    /// Share of alerts inside some episode's window.
    pub ppv: Option<f64>,
    /// 95% bootstrap interval of the PPV.
    pub ppv_ci: Option<[f64; 2]>,
    /// Median lead time of caught episodes, minutes (positive = alert before onset).
    pub median_lead_min: Option<f64>,
}

/// The three scores at one alert budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedRate {
    /// The budget: alerts per 35 patients per day.
    pub alerts_per_35_per_day: f64,
    /// The forest's P(High).
    pub model: MatchedScore,
    /// NEWS2.
    pub news2: MatchedScore,
    /// The six-vital rubric.
    pub rubric: MatchedScore,
}

impl MatchedRate {
    /// The figures of `kind`.
    pub fn get(&self, kind: ScoreKind) -> &MatchedScore {
        match kind {
            ScoreKind::Model => &self.model,
            ScoreKind::News2 => &self.news2,
            ScoreKind::Rubric => &self.rubric,
        }
    }
}

/// Readings of one kind of disagreement between the model and NEWS2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisagreementCount {
    /// Readings.
    pub count: u64,
    /// Share of all readings.
    pub share: f64,
    /// Of those, readings whose true label is High: who was right.
    pub truly_high: u64,
}

/// Where the model and NEWS2 disagree most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreements {
    /// NEWS2 ≥ 7 (the RCP's emergency response) while the model says Low or Medium.
    pub news2_high_model_not_high: DisagreementCount,
    /// The model says High while NEWS2 ≤ 4 (the RCP's low band).
    pub model_high_news2_low: DisagreementCount,
}

/// The ward evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WardSummary {
    /// Where the readings and their outcomes came from.
    pub source: WardSource,
    /// Patients.
    pub patients: u64,
    /// Readings.
    pub readings: u64,
    /// Positive readings: true label High (simulated), or an event within the lookback (recorded).
    pub truly_high_readings: u64,
    /// Deterioration episodes (recorded: the observed events).
    pub episodes: u64,
    /// Patient-days observed (the alert-rate denominator).
    pub patient_days: f64,
}

/// Where an evaluated ward came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WardSource {
    /// The simulator's held-out ward, labelled by its true state.
    Simulated {
        /// Hours each patient was observed.
        hours: f64,
        /// Simulator seed.
        seed: u64,
        /// Seconds between two readings of a patient.
        seconds_per_reading: f64,
        /// New episodes per patient per hour the simulator drew.
        episode_rate_per_hour: f64,
        /// Runs of truly-High readings less than this many hours apart counted as one episode.
        episode_gap_hours: f64,
    },
    /// A recorded history of readings with a file of recorded events (`super::events`).
    Recorded {
        /// The readings: a file or a table, as given.
        history: String,
        /// The events file, as given.
        events: String,
        /// Distinct events in it.
        events_given: u64,
        /// Events no score could alert for (no reading of the patient in their window).
        events_unobserved: u64,
    },
}

/// How the intervals were computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BootstrapSummary {
    /// Resamples of patients.
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Hours before onset an alert still counts for an episode.
    pub lookback_hours: f64,
    /// Thresholds are fixed from the full ward, not chosen again in each resample.
    pub thresholds: &'static str,
}

/// Everything `vitalflow evaluate` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationReport {
    /// AUROC per reading (positive: true label High; NULL ranks lowest).
    pub auroc: PerScore<Option<f64>>,
    /// 95% bootstrap intervals of the AUROCs.
    pub auroc_ci: PerScore<Option<[f64; 2]>>,
    /// The three scores at each alert budget.
    pub matched: Vec<MatchedRate>,
    /// Where the model and NEWS2 disagree.
    pub disagreements: Disagreements,
    /// The ward.
    pub ward: WardSummary,
    /// How the intervals were computed.
    pub bootstrap: BootstrapSummary,
}
