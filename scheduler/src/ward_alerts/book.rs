//! The alert book: every alert in its current state and what the muting rule remembers of each
//! patient, kept in memory by the one task that changes alerts ([`super::keeper`]).
//!
//! Every change is an [`AlertEvent`] first, then applied by [`AlertBook::apply`], the only code that
//! changes an alert: replaying `alert_events` from the start rebuilds the same book, so the `alerts`
//! table (the book written out) always agrees with the events.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::kind::AlertKind;
use super::lifecycle::{Action, AlertState, IllegalTransition, next_state};
use super::muting::{LastAlert, RiseToHigh, Verdict, verdict};
use super::sources::LatestReading;
use crate::config::WardRules;

/// Who the automatic changes (raise, auto-resolve, auto-escalate) are recorded under.
pub const SYSTEM_USER: &str = "vitalflow";

/// The patient and ward of a `feed_down` alert: every one.
pub const FEED_WIDE: &str = "*";

/// One alert in its current state: a row of `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `topic:partition:offset` of the reading that raised it (its `risk_alerts` id, with `:` for `/`
    /// so that it fits in a URL path).
    pub alert_id: String,
    /// The patient.
    pub patient_id: String,
    /// The ward whose rules apply.
    pub ward: String,
    /// What raised it.
    pub kind: AlertKind,
    /// Where it stands.
    pub state: AlertState,
    /// Time of the reading that raised it (for `no_data` and `feed_down`, the last reading before the
    /// silence), ms since the epoch.
    pub raised_at_ms: i64,
    /// The `risk_alerts` row that raised it (empty for `no_data` and `feed_down`).
    pub risk_alert_id: String,
    /// NEWS2 of that reading.
    pub news2_score: Option<i32>,
    /// P(High) of that reading.
    pub probability_high: Option<f64>,
    /// When it was raised (wall clock), ms since the epoch.
    pub created_at_ms: i64,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When, ms since the epoch.
    pub acknowledged_at_ms: Option<i64>,
    /// Who changed it last.
    pub updated_by: String,
    /// When (wall clock), ms since the epoch.
    pub updated_at_ms: i64,
    /// The reason given with the last change that had one (a dismissal's, an automatic change's).
    pub reason: Option<String>,
    /// Its events so far.
    pub events: i64,
    /// When it closed, in reading time (the patient's latest reading then): the quiet time runs from here.
    #[serde(skip)]
    pub closed_reading_ms: Option<i64>,
}

/// One change of an alert: a row of `alert_events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// Numbers every event of the table: 1, 2, ...
    pub event_seq: i64,
    /// The alert.
    pub alert_id: String,
    /// The alert's n-th event (1 is its raise).
    pub number: i64,
    /// The patient.
    pub patient_id: String,
    /// The ward.
    pub ward: String,
    /// What the alert is about.
    pub kind: AlertKind,
    /// What happened.
    pub action: Action,
    /// The state before (`None` for a raise).
    pub from_state: Option<AlertState>,
    /// The state after.
    pub to_state: AlertState,
    /// Who did it ([`SYSTEM_USER`] for automatic changes).
    pub user: String,
    /// Whether vitalflow did it by itself.
    pub automatic: bool,
    /// When it was recorded (wall clock), ms since the epoch.
    pub time_ms: i64,
    /// The reading time it happened at: the raising reading's, or the patient's latest reading's.
    pub reading_ms: Option<i64>,
    /// Why (required to dismiss; set on automatic changes).
    pub reason: Option<String>,
    /// For a raise: the `risk_alerts` row.
    pub risk_alert_id: Option<String>,
    /// For a raise: NEWS2 of the reading.
    pub news2_score: Option<i32>,
    /// For a raise: P(High) of the reading.
    pub probability_high: Option<f64>,
}

impl AlertEvent {
    /// Stable id of the event: `<alert_id>#<n>`.
    pub fn event_id(&self) -> String {
        format!("{}#{}", self.alert_id, self.number)
    }

    /// The event as the sinks send it: an `alert_event` message (times RFC 3339 in UTC).
    pub fn message(&self) -> serde_json::Value {
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        serde_json::json!({
            "type": "alert_event",
            "event_id": self.event_id(),
            "event_seq": self.event_seq,
            "alert_id": self.alert_id,
            "patient_id": self.patient_id,
            "ward": self.ward,
            "kind": self.kind,
            "action": self.action,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "user_name": self.user,
            "automatic": self.automatic,
            "recorded_at": time(self.time_ms),
            "reading_time": self.reading_ms.and_then(time),
            "reason": self.reason,
            "risk_alert_id": self.risk_alert_id,
            "news2_score": self.news2_score,
            "probability_high": self.probability_high,
        })
    }
}

/// Why an action on an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionRefusal {
    /// No alert has this id.
    #[error("no alert has id {alert_id}")]
    UnknownAlert {
        /// The id asked for.
        alert_id: String,
    },
    /// The alert's state does not allow the action.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The action needs a reason and none (or a blank one) was given.
    #[error("{action} needs a reason: give a non-empty \"reason\"")]
    MissingReason {
        /// The action.
        action: Action,
    },
}

/// What the book remembers of a patient.
#[derive(Debug, Clone, Default, PartialEq)]
struct PatientMemory {
    /// The patient's latest alert.
    last_alert: Option<String>,
    /// The latest reading time seen, ms since the epoch.
    latest_reading_ms: Option<i64>,
    /// Since when (reading time) the patient's risk has been below High while an alert is active.
    below_high_since_ms: Option<i64>,
    /// The patient's latest `no_data` alert.
    no_data_alert: Option<String>,
}

/// A book whose events do not follow one another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert_events: event {event_seq} ({alert_id}, {action}) {problem}")]
pub struct BrokenHistory {
    /// The event.
    pub event_seq: i64,
    /// Its alert.
    pub alert_id: String,
    /// Its action.
    pub action: Action,
    /// What is wrong.
    pub problem: String,
}

/// Every alert and what the muting rule remembers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertBook {
    alerts: BTreeMap<String, Alert>,
    patients: HashMap<String, PatientMemory>,
    /// The latest `feed_down` alert.
    feed_down_alert: Option<String>,
    last_seq: i64,
}

fn minutes_ms(minutes: u64) -> i64 {
    (minutes as i64).saturating_mul(60_000)
}

impl AlertBook {
    /// The seq of the last event applied (0: none).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The alert `alert_id`.
    pub fn get(&self, alert_id: &str) -> Option<&Alert> {
        self.alerts.get(alert_id)
    }

    /// Every alert, by id.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// The patient's active alert.
    fn active_alert(&self, patient_id: &str) -> Option<&Alert> {
        let id = self.patients.get(patient_id)?.last_alert.as_ref()?;
        self.alerts.get(id).filter(|a| a.state.is_active())
    }

    /// Applies one event: the only place an alert changes. Events must come in `event_seq` order.
    pub fn apply(&mut self, event: &AlertEvent) -> Result<(), BrokenHistory> {
        let broken = |problem: String| BrokenHistory {
            event_seq: event.event_seq,
            alert_id: event.alert_id.clone(),
            action: event.action,
            problem,
        };
        if event.event_seq != self.last_seq + 1 {
            return Err(broken(format!("follows event {}", self.last_seq)));
        }
        if event.action == Action::Raise {
            if self.alerts.contains_key(&event.alert_id) {
                return Err(broken("raises an alert that exists".into()));
            }
            let alert = Alert {
                alert_id: event.alert_id.clone(),
                patient_id: event.patient_id.clone(),
                ward: event.ward.clone(),
                kind: event.kind,
                state: event.to_state,
                raised_at_ms: event.reading_ms.unwrap_or(event.time_ms),
                risk_alert_id: event.risk_alert_id.clone().unwrap_or_default(),
                news2_score: event.news2_score,
                probability_high: event.probability_high,
                created_at_ms: event.time_ms,
                acknowledged_by: None,
                acknowledged_at_ms: None,
                updated_by: event.user.clone(),
                updated_at_ms: event.time_ms,
                reason: event.reason.clone(),
                events: 1,
                closed_reading_ms: None,
            };
            match event.kind {
                AlertKind::Risk => {
                    let patient = self.patients.entry(event.patient_id.clone()).or_default();
                    patient.last_alert = Some(event.alert_id.clone());
                    patient.below_high_since_ms = None;
                }
                AlertKind::NoData => {
                    self.patients.entry(event.patient_id.clone()).or_default().no_data_alert =
                        Some(event.alert_id.clone());
                }
                AlertKind::FeedDown => self.feed_down_alert = Some(event.alert_id.clone()),
            }
            self.alerts.insert(event.alert_id.clone(), alert);
        } else {
            let Some(alert) = self.alerts.get_mut(&event.alert_id) else {
                return Err(broken("changes an alert never raised".into()));
            };
            if Some(alert.state) != event.from_state {
                return Err(broken(format!("starts from {:?}, the alert is {}", event.from_state, alert.state)));
            }
            alert.state = event.to_state;
            alert.updated_by = event.user.clone();
            alert.updated_at_ms = event.time_ms;
            alert.events += 1;
            if event.reason.is_some() {
                alert.reason = event.reason.clone();
            }
            if event.action == Action::Acknowledge {
                alert.acknowledged_by = Some(event.user.clone());
                alert.acknowledged_at_ms = Some(event.time_ms);
            }
            if !event.to_state.is_active() {
                alert.closed_reading_ms = Some(event.reading_ms.unwrap_or(alert.raised_at_ms));
            }
        }
        if let Some(reading_ms) = event.reading_ms.filter(|_| event.kind != AlertKind::FeedDown) {
            let patient = self.patients.entry(event.patient_id.clone()).or_default();
            patient.latest_reading_ms = Some(patient.latest_reading_ms.map_or(reading_ms, |t| t.max(reading_ms)));
        }
        self.last_seq = event.event_seq;
        Ok(())
    }

    /// Records `event` (numbered here) and returns it.
    fn record(&mut self, mut event: AlertEvent) -> AlertEvent {
        event.event_seq = self.last_seq + 1;
        event.number = self.alerts.get(&event.alert_id).map_or(1, |a| a.events + 1);
        // Built from the book's own state, so it always follows: a failure is a bug here.
        if let Err(broken) = self.apply(&event) {
            panic!("the alert book built an event it cannot apply: {broken}");
        }
        event
    }

    /// A change of `alert` by `action` to `to_state`, not yet numbered.
    fn change(alert: &Alert, action: Action, to_state: AlertState, user: &str, now_ms: i64) -> AlertEvent {
        AlertEvent {
            event_seq: 0,
            alert_id: alert.alert_id.clone(),
            number: 0,
            patient_id: alert.patient_id.clone(),
            ward: alert.ward.clone(),
            kind: alert.kind,
            action,
            from_state: Some(alert.state),
            to_state,
            user: user.to_string(),
            automatic: user == SYSTEM_USER,
            time_ms: now_ms,
            reading_ms: None,
            reason: None,
            risk_alert_id: None,
            news2_score: None,
            probability_high: None,
        }
    }

    /// A patient's risk rose to High: raises an alert when the ward's muting rule lets it (the raise
    /// event), else `None`. A rise seen before (its alert exists) raises nothing again.
    pub fn on_rise(&mut self, rise: &RiseToHigh, rules: &WardRules, now_ms: i64) -> Option<AlertEvent> {
        let alert_id = rise.risk_alert_id.replace('/', ":");
        let patient = self.patients.entry(rise.patient_id.clone()).or_default();
        patient.latest_reading_ms = Some(patient.latest_reading_ms.map_or(rise.reading_ms, |t| t.max(rise.reading_ms)));
        patient.below_high_since_ms = None;
        if self.alerts.contains_key(&alert_id) {
            return None;
        }
        let last = self.patients.get(&rise.patient_id).and_then(|p| p.last_alert.as_ref()).and_then(|id| {
            self.alerts.get(id).map(|a| LastAlert {
                active: a.state.is_active(),
                closed_reading_ms: a.closed_reading_ms,
                news2_score: a.news2_score,
                probability_high: a.probability_high,
            })
        });
        if verdict(rise, last.as_ref(), rules) != Verdict::Raise {
            return None;
        }
        Some(self.record(AlertEvent {
            event_seq: 0,
            alert_id,
            number: 0,
            patient_id: rise.patient_id.clone(),
            ward: rise.ward.clone(),
            kind: AlertKind::Risk,
            action: Action::Raise,
            from_state: None,
            to_state: AlertState::Open,
            user: SYSTEM_USER.into(),
            automatic: true,
            time_ms: now_ms,
            reading_ms: Some(rise.reading_ms),
            reason: None,
            risk_alert_id: Some(rise.risk_alert_id.clone()),
            news2_score: rise.news2_score,
            probability_high: rise.probability_high,
        }))
    }

    /// Since when (reading time) the patient's risk has been below High while an alert is active, as far
    /// as the book knows.
    pub fn below_high_since(&self, patient_id: &str) -> Option<i64> {
        self.patients.get(patient_id).and_then(|p| p.below_high_since_ms)
    }

    /// Starts the patient's auto-resolve clock at `since_ms` (read from `vitals_clean`: the first reading
    /// below High after the last High one), unless it runs already.
    pub fn start_below_high_clock(&mut self, patient_id: &str, since_ms: i64) {
        self.patients.entry(patient_id.to_string()).or_default().below_high_since_ms.get_or_insert(since_ms);
    }

    /// A reading of the patient, High or not: resolves the patient's active alert (the event) once its
    /// risk has stayed below High for the ward's `auto_resolve_minutes` of reading time. A clock not
    /// started by [`AlertBook::start_below_high_clock`] starts at the first reading below High given here.
    pub fn on_reading(
        &mut self,
        patient_id: &str,
        reading_ms: i64,
        high: bool,
        rules: &WardRules,
        now_ms: i64,
    ) -> Option<AlertEvent> {
        let patient = self.patients.entry(patient_id.to_string()).or_default();
        patient.latest_reading_ms = Some(patient.latest_reading_ms.map_or(reading_ms, |t| t.max(reading_ms)));
        let alert = self.active_alert(patient_id)?.clone();
        let patient = self.patients.get_mut(patient_id)?;
        if high || reading_ms < alert.raised_at_ms {
            if high {
                patient.below_high_since_ms = None;
            }
            return None;
        }
        let since = *patient.below_high_since_ms.get_or_insert(reading_ms);
        if rules.auto_resolve_minutes == 0 || reading_ms - since < minutes_ms(rules.auto_resolve_minutes) {
            return None;
        }
        let mut event = Self::change(&alert, Action::Resolve, AlertState::Resolved, SYSTEM_USER, now_ms);
        event.reading_ms = Some(reading_ms);
        event.reason = Some(format!("risk below High for {} min of readings", rules.auto_resolve_minutes));
        Some(self.record(event))
    }

    /// The patients' latest readings against the ward's stale-feed rule: raises a `no_data` alert for a
    /// patient whose latest reading is the ward's `no_data_minutes` (of reading time) behind the newest
    /// reading of the ward, once per silence (its id names the last reading before it), and resolves
    /// the patient's `no_data` alert once a newer reading came. A ward whose readings all stopped raises
    /// none: that is [`AlertBook::on_feed`]'s one `feed_down` alert.
    pub fn on_latest_readings<'r>(
        &mut self,
        readings: &[LatestReading],
        rules: impl Fn(&str) -> &'r WardRules,
        now_ms: i64,
    ) -> Vec<AlertEvent> {
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for reading in readings {
            let ward_newest = newest.entry(reading.ward.as_str()).or_insert(reading.reading_ms);
            *ward_newest = (*ward_newest).max(reading.reading_ms);
        }
        let mut events = Vec::new();
        for reading in readings {
            let active = self
                .patients
                .get(&reading.patient_id)
                .and_then(|p| p.no_data_alert.as_ref())
                .and_then(|id| self.alerts.get(id))
                .filter(|a| a.state.is_active())
                .cloned();
            if let Some(alert) = active {
                if reading.reading_ms > alert.raised_at_ms {
                    let mut event = Self::change(&alert, Action::Resolve, AlertState::Resolved, SYSTEM_USER, now_ms);
                    event.reading_ms = Some(reading.reading_ms);
                    event.reason = Some("readings resumed".into());
                    events.push(self.record(event));
                }
                continue;
            }
            let minutes = rules(&reading.ward).no_data_minutes;
            let behind = newest.get(reading.ward.as_str()).map_or(0, |n| n - reading.reading_ms);
            let alert_id = format!("no_data:{}:{}", reading.patient_id.replace('/', ":"), reading.reading_ms);
            if minutes == 0 || behind < minutes_ms(minutes) || self.alerts.contains_key(&alert_id) {
                continue;
            }
            let reason = format!("no reading for {minutes} min while the ward's other readings went on");
            events.push(self.record(Self::raise(alert_id, AlertKind::NoData, reading, reason, now_ms)));
        }
        events
    }

    /// Resolves the active alerts (`risk` and `no_data`) of each patient in `discharged`: a discharged
    /// patient has no feed to miss and no readings left to resolve a risk alert by; the stale-feed rule
    /// skips them until they are admitted again.
    pub fn on_discharged<'p>(&mut self, discharged: impl Iterator<Item = &'p str>, now_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for patient in discharged {
            let Some(memory) = self.patients.get(patient) else { continue };
            let active: Vec<Alert> = [&memory.last_alert, &memory.no_data_alert]
                .into_iter()
                .flatten()
                .filter_map(|id| self.alerts.get(id))
                .filter(|a| a.state.is_active())
                .cloned()
                .collect();
            for alert in active {
                let mut event = Self::change(&alert, Action::Resolve, AlertState::Resolved, SYSTEM_USER, now_ms);
                event.reason = Some("patient discharged".into());
                events.push(self.record(event));
            }
        }
        events
    }

    /// The whole feed: raises one `feed_down` alert once no reading of any patient has arrived for
    /// `feed_down_minutes` (`silent_ms` of wall clock since the newest reading, `newest_ms`, arrived;
    /// 0 minutes: never), and resolves it when a newer reading arrives.
    pub fn on_feed(
        &mut self,
        newest_ms: Option<i64>,
        silent_ms: i64,
        feed_down_minutes: u64,
        now_ms: i64,
    ) -> Option<AlertEvent> {
        let newest_ms = newest_ms?;
        let active = self.feed_down_alert.as_ref().and_then(|id| self.alerts.get(id)).filter(|a| a.state.is_active());
        if let Some(alert) = active.cloned() {
            if newest_ms <= alert.raised_at_ms {
                return None;
            }
            let mut event = Self::change(&alert, Action::Resolve, AlertState::Resolved, SYSTEM_USER, now_ms);
            event.reading_ms = Some(newest_ms);
            event.reason = Some("readings arrive again".into());
            return Some(self.record(event));
        }
        let alert_id = format!("feed_down:{newest_ms}");
        if feed_down_minutes == 0 || silent_ms < minutes_ms(feed_down_minutes) || self.alerts.contains_key(&alert_id) {
            return None;
        }
        let everyone =
            LatestReading { patient_id: FEED_WIDE.into(), ward: FEED_WIDE.into(), reading_ms: newest_ms, high: None };
        let reason = format!("no reading of any patient for {feed_down_minutes} min: ingest, Kafka or the ETL stopped");
        Some(self.record(Self::raise(alert_id, AlertKind::FeedDown, &everyone, reason, now_ms)))
    }

    /// The raise of a `no_data` or `feed_down` alert after `last`, the last reading before the silence.
    fn raise(alert_id: String, kind: AlertKind, last: &LatestReading, reason: String, now_ms: i64) -> AlertEvent {
        AlertEvent {
            event_seq: 0,
            alert_id,
            number: 0,
            patient_id: last.patient_id.clone(),
            ward: last.ward.clone(),
            kind,
            action: Action::Raise,
            from_state: None,
            to_state: AlertState::Open,
            user: SYSTEM_USER.into(),
            automatic: true,
            time_ms: now_ms,
            reading_ms: Some(last.reading_ms),
            reason: Some(reason),
            risk_alert_id: None,
            news2_score: None,
            probability_high: None,
        }
    }

    /// Escalates every open alert nobody acknowledged within its ward's `escalate_after_minutes`
    /// (wall clock, from when it was raised).
    pub fn escalate_overdue<'r>(&mut self, rules: impl Fn(&str) -> &'r WardRules, now_ms: i64) -> Vec<AlertEvent> {
        let overdue: Vec<(Alert, u64)> = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Open && a.acknowledged_by.is_none())
            .filter_map(|a| {
                let minutes = rules(&a.ward).escalate_after_minutes;
                (minutes > 0 && now_ms - a.created_at_ms >= minutes_ms(minutes)).then(|| (a.clone(), minutes))
            })
            .collect();
        overdue
            .into_iter()
            .map(|(alert, minutes)| {
                let mut event = Self::change(&alert, Action::Escalate, AlertState::Escalated, SYSTEM_USER, now_ms);
                event.reading_ms = self.patients.get(&alert.patient_id).and_then(|p| p.latest_reading_ms);
                event.reason = Some(format!("not acknowledged within {minutes} min"));
                self.record(event)
            })
            .collect()
    }

    /// A person's `action` on `alert_id` under their name `user`: the event, or why it is refused.
    pub fn act(
        &mut self,
        alert_id: &str,
        action: Action,
        user: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<AlertEvent, ActionRefusal> {
        let alert =
            self.alerts.get(alert_id).ok_or_else(|| ActionRefusal::UnknownAlert { alert_id: alert_id.to_string() })?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if action.needs_reason() && reason.is_none() {
            return Err(ActionRefusal::MissingReason { action });
        }
        let acknowledged = alert.acknowledged_by.is_some();
        let to_state = next_state(alert.state, acknowledged, action).ok_or_else(|| IllegalTransition {
            alert_id: alert_id.to_string(),
            state: alert.state,
            acknowledged,
            action,
        })?;
        let mut event = Self::change(alert, action, to_state, user, now_ms);
        event.automatic = false;
        let latest = self.patients.get(&alert.patient_id).and_then(|p| p.latest_reading_ms);
        event.reading_ms = Some(latest.map_or(alert.raised_at_ms, |t| t.max(alert.raised_at_ms)));
        event.reason = reason.map(str::to_string);
        Ok(self.record(event))
    }
}
