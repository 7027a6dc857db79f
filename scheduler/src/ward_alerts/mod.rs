//! The alerts a ward acts on. `risk_alerts` is the raw signal (one row per rise to High); an alert
//! of the `alerts` table is raised from a rise only when the ward's muting rule lets it ([`muting`]),
//! and lives through a lifecycle ([`lifecycle`]): people acknowledge, escalate, dismiss and resolve it
//! through the HTTP API, vitalflow resolves it when the patient's risk stayed below High long enough
//! and escalates it when nobody acknowledged it in time. A patient whose readings stopped raises a
//! `no_data` alert, a whole feed that stopped one `feed_down` alert ([`kind`]), through the same
//! lifecycle. Every change is a row of `alert_events`.
//!
//! One task of the process, the [`keeper`], changes alerts; it keeps them in an [`book::AlertBook`]
//! rebuilt from `alert_events` at start, and commits each change before answering.

pub mod book;
pub mod budget;
pub mod keeper;
pub mod kind;
pub mod lifecycle;
pub mod muting;
#[cfg(test)]
mod restart_tests;
pub mod rows;
pub mod sources;
#[cfg(test)]
mod tests;

pub use book::{ActionRefusal, Alert, AlertBook, AlertEvent};
pub use keeper::{AlertKeeperHandle, KeeperRefusal, KeeperStats, start_keeper};
pub use kind::AlertKind;
pub use lifecycle::{Action, AlertState};
