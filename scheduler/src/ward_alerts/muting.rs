//! The ward's muting rule: whether a rise to High (a `risk_alerts` row) raises an alert.
//!
//! - A rise whose P(High) is below the ward's `min_probability_high` raises none.
//! - A patient with an active alert (open, acknowledged or escalated) gets no second one.
//! - A rise from before the patient's last alert closed belongs to that alert's episode: none (it is
//!   only seen again when `risk_alerts` is read again after a crash).
//! - After the patient's last alert closed (resolved or dismissed), a rise within
//!   `realert_quiet_minutes` of reading time raises none, unless its NEWS2 is at least
//!   `realert_news2_rise` above the last alert's, or its P(High) at least `realert_probability_rise`
//!   above it: the patient got worse, not just wobbled around the threshold again.
//! - Otherwise it raises one.

use crate::config::WardRules;

/// A patient's risk rose to High: one `risk_alerts` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RiseToHigh {
    /// The `risk_alerts` row's id (`topic/partition/offset` of the reading).
    pub risk_alert_id: String,
    /// The patient.
    pub patient_id: String,
    /// The patient's ward.
    pub ward: String,
    /// Time of the reading, ms since the epoch.
    pub reading_ms: i64,
    /// NEWS2 of the reading, when all its inputs were there.
    pub news2_score: Option<i32>,
    /// The model's P(High) of the reading.
    pub probability_high: Option<f64>,
}

/// What the rule needs to know of the patient's last alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastAlert {
    /// Whether it is still active.
    pub active: bool,
    /// When it closed, in reading time (ms since the epoch); `None` while active.
    pub closed_reading_ms: Option<i64>,
    /// NEWS2 of the reading that raised it.
    pub news2_score: Option<i32>,
    /// P(High) of the reading that raised it.
    pub probability_high: Option<f64>,
}

/// The rule's answer for one rise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Raise an alert.
    Raise,
    /// No alert: P(High) under the ward's threshold.
    BelowThreshold,
    /// No alert: the patient has an active one.
    AlreadyActive,
    /// No alert: within the quiet time after the last one closed, and not markedly worse.
    Quiet,
}

/// Whether `rise` raises an alert, given the patient's `last` alert and the ward's `rules`.
pub fn verdict(rise: &RiseToHigh, last: Option<&LastAlert>, rules: &WardRules) -> Verdict {
    if rise.probability_high.unwrap_or(1.0) < rules.min_probability_high {
        return Verdict::BelowThreshold;
    }
    let Some(last) = last else { return Verdict::Raise };
    if last.active {
        return Verdict::AlreadyActive;
    }
    if last.closed_reading_ms.is_some_and(|closed| rise.reading_ms <= closed) {
        return Verdict::Quiet;
    }
    let quiet_ms = (rules.realert_quiet_minutes as i64).saturating_mul(60_000);
    let within_quiet = last.closed_reading_ms.is_some_and(|closed| rise.reading_ms < closed.saturating_add(quiet_ms));
    if !within_quiet {
        return Verdict::Raise;
    }
    let news2_rose = matches!((rise.news2_score, last.news2_score), (Some(now), Some(then)) if now - then >= rules.realert_news2_rise);
    // A small tolerance: 0.15 above 0.70 is 0.85 even where binary floating point says 0.8499999.
    let probability_rose = matches!((rise.probability_high, last.probability_high),
        (Some(now), Some(then)) if now - then >= rules.realert_probability_rise - 1e-9);
    if news2_rose || probability_rose { Verdict::Raise } else { Verdict::Quiet }
}
