//! The lifecycle of an alert: its states, the actions on it and which action is allowed in which state.
//!
//! ```text
//!   raise ──► open ──acknowledge──► acknowledged ──escalate──► escalated
//!              │  └──────────────escalate (by hand, or by itself when nobody acknowledged in time)──┘
//!              └─ from open, acknowledged or escalated: dismiss (with a reason) ──► dismissed
//!                                                       resolve (by hand, or when the risk stayed
//!                                                       below High long enough) ──► resolved
//! ```
//! `dismissed` and `resolved` are closed: no action applies to a closed alert. An escalated alert
//! nobody had acknowledged may still be acknowledged: it stays `escalated` and records who did.

use serde::{Deserialize, Serialize};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Raised; nobody has acted on it.
    Open,
    /// Someone has seen it and looks after it.
    Acknowledged,
    /// Handed on (the rapid-response team), by hand or because nobody acknowledged it in time.
    Escalated,
    /// Closed as not needing action, with a reason.
    Dismissed,
    /// Closed: dealt with, or the patient's risk stayed below High long enough.
    Resolved,
}

impl AlertState {
    /// Every state.
    pub const ALL: [AlertState; 5] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Escalated,
        AlertState::Dismissed,
        AlertState::Resolved,
    ];

    /// The state's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Escalated => "escalated",
            AlertState::Dismissed => "dismissed",
            AlertState::Resolved => "resolved",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Option<AlertState> {
        AlertState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether someone still has to deal with the alert (open, acknowledged or escalated).
    pub fn is_active(self) -> bool {
        !matches!(self, AlertState::Dismissed | AlertState::Resolved)
    }
}

impl std::fmt::Display for AlertState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an alert: one row of `alert_events` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The alert was raised from a rise to High.
    Raise,
    /// Someone has seen it.
    Acknowledge,
    /// Handed on.
    Escalate,
    /// Closed as needing no action (a reason is required).
    Dismiss,
    /// Closed as dealt with.
    Resolve,
}

impl Action {
    /// The actions a person may take through the HTTP API (all but `raise`).
    pub const BY_PEOPLE: [Action; 4] = [Action::Acknowledge, Action::Escalate, Action::Dismiss, Action::Resolve];

    /// The action's name, as stored and in the HTTP path.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Raise => "raise",
            Action::Acknowledge => "acknowledge",
            Action::Escalate => "escalate",
            Action::Dismiss => "dismiss",
            Action::Resolve => "resolve",
        }
    }

    /// The action as done to an alert: `acknowledged`, `dismissed`, ...
    pub fn past_tense(self) -> &'static str {
        match self {
            Action::Raise => "raised",
            Action::Acknowledge => "acknowledged",
            Action::Escalate => "escalated",
            Action::Dismiss => "dismissed",
            Action::Resolve => "resolved",
        }
    }

    /// The action a person may take named `name` (`raise` is not one).
    pub fn by_people(name: &str) -> Option<Action> {
        Action::BY_PEOPLE.into_iter().find(|a| a.as_str() == name)
    }

    /// The action named `name`, `raise` included (reading `alert_events` back).
    pub fn parse(name: &str) -> Option<Action> {
        std::iter::once(Action::Raise).chain(Action::BY_PEOPLE).find(|a| a.as_str() == name)
    }

    /// Whether the action needs a reason.
    pub fn needs_reason(self) -> bool {
        self == Action::Dismiss
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action the alert's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alert {alert_id} is {state}{already}: it cannot be {action}", already = if *.acknowledged && *.action == Action::Acknowledge { " and acknowledged" } else { "" }, action = .action.past_tense())]
pub struct IllegalTransition {
    /// The alert.
    pub alert_id: String,
    /// Its state.
    pub state: AlertState,
    /// Whether someone acknowledged it already.
    pub acknowledged: bool,
    /// The action refused.
    pub action: Action,
}

/// The state `action` moves an alert in `state` to (`acknowledged`: someone acknowledged it already);
/// `None` when the action is not allowed there. `raise` never applies to an existing alert.
pub fn next_state(state: AlertState, acknowledged: bool, action: Action) -> Option<AlertState> {
    use AlertState::*;
    match (state, action) {
        (Open, Action::Acknowledge) => Some(Acknowledged),
        (Escalated, Action::Acknowledge) if !acknowledged => Some(Escalated),
        (Open | Acknowledged, Action::Escalate) => Some(Escalated),
        (Open | Acknowledged | Escalated, Action::Dismiss) => Some(Dismissed),
        (Open | Acknowledged | Escalated, Action::Resolve) => Some(Resolved),
        _ => None,
    }
}
