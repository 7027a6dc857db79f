//! The alert keeper: the one task of the process that changes alerts. Actions from the HTTP API and
//! the keeper's own look at the ETL's tables (new rises, latest readings, the escalation clock) all
//! queue for it, so actions on one alert are taken one after the other and none is lost.
//!
//! **Durable before answered.** The keeper takes a batch of queued actions, applies each to its
//! [`AlertBook`], appends their events to `alert_events` in one commit, rewrites `alerts` in one
//! commit, and only then answers. `alert_events` is the truth: its commits carry the Delta
//! transactions `(vitalflow-alerts, last event_seq)` and `(vitalflow-alerts/risk_alerts, version of
//! risk_alerts read)`. At start the keeper replays `alert_events` into its book and rewrites `alerts` if
//! a crash came between the two commits (its `vitalflow-alerts` transaction is behind). A second keeper
//! on the same location loses the commit race (the transaction moved on) and starts over from the table.
//!
//! **A new keeper starts now**: with no `alert_events` yet, it follows `risk_alerts` from its current
//! version, so switching alerts on pages nobody with last month's rises.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{ALERT_EVENTS_SCHEMA, ALERTS_SCHEMA, table};

use super::book::{ActionRefusal, Alert, AlertBook, AlertEvent};
use super::budget::{AlertRates, READING_CLOCK_APP_ID, read_alert_rates};
use super::kind::AlertKind;
use super::lifecycle::Action;
use super::rows::{alert_rows, event_rows, events_of};
use super::sources::{RiseSource, below_high_since, oldest_reading_ms, ward_readings};
use crate::config::WardAlertsConfig;
use crate::error::{Error, Result};
use crate::stays::Stays;
use crate::table_rows::read_table_file;

/// Application id of the keeper's transactions: version = the last `event_seq` committed.
const EVENTS_APP_ID: &str = "vitalflow-alerts";
/// Application id recording how far `risk_alerts` has been read: version = its table version.
const SOURCE_APP_ID: &str = "vitalflow-alerts/risk_alerts";
/// Most queued actions taken in one commit.
const MAX_ACTIONS_PER_COMMIT: usize = 256;
/// Actions that may wait for the keeper before callers wait to queue.
const QUEUE: usize = 1_024;
/// Longest time how far `risk_alerts` has been read goes unrecorded while no event is committed: a
/// commit per look would fill the log; after a crash, rises read again raise nothing twice.
const SOURCE_RECORD_INTERVAL: Duration = Duration::from_secs(30);

/// Why the keeper did not take an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeeperRefusal {
    /// The action is not allowed (unknown alert, its state, no reason): the caller's to fix.
    #[error(transparent)]
    Refused(#[from] ActionRefusal),
    /// The keeper could not record it (the store failed, it stopped); nothing was changed.
    #[error("the alert keeper could not record the action: {0}")]
    Unavailable(String),
}

/// Counters of the keeper, for `/metrics`.
#[derive(Debug, Default)]
pub struct KeeperStats {
    /// Alerts raised since the process started.
    pub raised: AtomicU64,
    /// Events recorded since the process started, every action included.
    pub events: AtomicU64,
    /// Commits that failed (the actions in them were answered as unavailable).
    pub failures: AtomicU64,
    /// The alert budget figures as last read from the store (every [`RATES_INTERVAL`]).
    pub rates: std::sync::Mutex<Option<AlertRates>>,
}

/// How often the keeper reads the alert rates for `/metrics` (a read of `alerts` and `patient_latest`).
const RATES_INTERVAL: Duration = Duration::from_secs(15);

enum Command {
    Act { alert_id: String, action: Action, user: String, reason: Option<String>, reply: oneshot::Sender<ActResult> },
    List { reply: oneshot::Sender<Vec<Alert>> },
}

type ActResult = std::result::Result<Alert, KeeperRefusal>;

/// How the rest of the process reaches the keeper. The keeper runs beside the ETL driver, in the
/// process holding the location's ETL lease, so that one keeper writes the alert tables; a standby's
/// handle has no keeper behind it and answers that the alerts are kept elsewhere.
#[derive(Debug, Clone, Default)]
pub struct AlertKeeperHandle {
    /// The running keeper's queue; `None` while this process does not hold the ETL lease.
    commands: Arc<std::sync::RwLock<Option<mpsc::Sender<Command>>>>,
    /// The keeper's counters, over every term this process held the lease.
    pub stats: Arc<KeeperStats>,
}

fn stopped() -> KeeperRefusal {
    KeeperRefusal::Unavailable("the alert keeper has stopped".into())
}

impl AlertKeeperHandle {
    /// The running keeper's queue, or why there is none.
    fn queue(&self) -> std::result::Result<mpsc::Sender<Command>, KeeperRefusal> {
        // A poisoned lock still holds a valid sender or none: nothing is left half-written.
        let queue = self.commands.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        queue.ok_or_else(|| {
            KeeperRefusal::Unavailable(
                "this scheduler is an ETL standby: the alerts are kept by the scheduler holding the ETL lease of \
                 this data location"
                    .into(),
            )
        })
    }

    fn set_queue(&self, queue: Option<mpsc::Sender<Command>>) {
        *self.commands.write().unwrap_or_else(std::sync::PoisonError::into_inner) = queue;
    }

    /// Takes `action` on `alert_id` as `user`; answers once it is committed, with the alert after it.
    pub async fn act(&self, alert_id: &str, action: Action, user: &str, reason: Option<String>) -> ActResult {
        let (reply, answer) = oneshot::channel();
        let command = Command::Act { alert_id: alert_id.to_string(), action, user: user.to_string(), reason, reply };
        self.queue()?.send(command).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Every alert, as committed.
    pub async fn list(&self) -> std::result::Result<Vec<Alert>, KeeperRefusal> {
        let (reply, answer) = oneshot::channel();
        self.queue()?.send(Command::List { reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

/// The keeper's state: the book and the tables it writes.
pub(super) struct AlertKeeper {
    location: DataLocation,
    config: WardAlertsConfig,
    book: AlertBook,
    events: LakeTable,
    alerts: LakeTable,
    rises: RiseSource,
    /// The `risk_alerts` version last recorded in `alert_events`.
    recorded_source_version: i64,
    /// A commit failed: the book may hold events the tables lack, and is read again before going on.
    stale: bool,
    /// When how far `risk_alerts` has been read was last committed.
    source_recorded_at: std::time::Instant,
    /// Where the ward's clock starts (see [`READING_CLOCK_APP_ID`]).
    reading_clock: Option<i64>,
    /// The keeper started before any reading: the clock starts at the oldest one.
    clock_from_first_reading: bool,
    /// Whether `reading_clock` is committed.
    reading_clock_recorded: bool,
    /// Where each patient is (`patient_movements`), re-read when the table moves on.
    stays: Stays,
    stats: Arc<KeeperStats>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Every event of `alert_events` at `table`'s snapshot, in `event_seq` order.
pub(super) async fn read_events(location: &DataLocation, table: &LakeTable) -> Result<Vec<AlertEvent>> {
    let mut events = Vec::new();
    for file in table.files() {
        let path = location.path(&format!("{}/{}", table::ALERT_EVENTS, file.path));
        for batch in read_table_file(location, &path, &ALERT_EVENTS_SCHEMA).await? {
            events.extend(events_of(&batch)?);
        }
    }
    events.sort_by_key(|e| e.event_seq);
    Ok(events)
}

impl AlertKeeper {
    /// Opens (or creates) the tables and replays `alert_events` into the book.
    pub(super) async fn open(
        location: &DataLocation,
        config: &WardAlertsConfig,
        stats: Arc<KeeperStats>,
    ) -> Result<AlertKeeper> {
        let events = LakeTable::open_or_create(location, table::ALERT_EVENTS, &ALERT_EVENTS_SCHEMA).await?;
        let alerts = LakeTable::open_or_create(location, table::ALERTS, &ALERTS_SCHEMA).await?;
        let mut book = AlertBook::default();
        for event in read_events(location, &events).await? {
            book.apply(&event).map_err(|e| Error::Config(e.to_string()))?;
        }
        let source_version = events.txn_version(SOURCE_APP_ID).await?;
        let reading_clock = events.txn_version(READING_CLOCK_APP_ID).await?;
        let book_is_empty = book.last_seq() == 0;
        let mut keeper = AlertKeeper {
            location: location.clone(),
            config: config.clone(),
            book,
            events,
            alerts,
            rises: RiseSource::after(source_version.unwrap_or(-1)),
            recorded_source_version: source_version.unwrap_or(-1),
            stale: false,
            source_recorded_at: std::time::Instant::now(),
            reading_clock,
            reading_clock_recorded: reading_clock.is_some(),
            // Not recorded yet: a keeper stopped before it saw a reading (no alert raised) starts it at the
            // first reading, as it would have.
            clock_from_first_reading: reading_clock.is_none() && book_is_empty,
            stays: Stays::default(),
            stats,
        };
        if source_version.is_none() {
            // The ward's clock: from its newest reading now, or (no reading yet) from its first one.
            let newest = ward_readings(location, &Stays::default()).await?.latest.iter().map(|r| r.reading_ms).max();
            keeper.reading_clock = newest;
            keeper.clock_from_first_reading = newest.is_none();
            // A new keeper starts now (module doc): recorded so that a restart does not move it.
            // Version 0 of a table is its creation: from there when risk_alerts does not exist yet.
            keeper.rises = RiseSource::after(RiseSource::current_version(location).await?.max(0));
            keeper.recorded_source_version = i64::MIN;
            keeper.persist(&[]).await?;
            tracing::info!(
                risk_alerts_version = keeper.rises.version,
                "Alerts start with the next rise to High; earlier ones stay in risk_alerts."
            );
        }
        let alerts_written = keeper.alerts.txn_version(EVENTS_APP_ID).await?.unwrap_or(0);
        if alerts_written < keeper.book.last_seq() {
            keeper.write_alerts().await?;
            tracing::info!(
                event_seq = keeper.book.last_seq(),
                "Rewrote alerts from alert_events (a crash came between their commits)."
            );
        }
        Ok(keeper)
    }

    /// The book, as the keeper holds it.
    #[cfg(test)]
    pub(super) fn book(&self) -> &AlertBook {
        &self.book
    }

    /// Makes `alerts` the book's alerts, as of its last event.
    async fn write_alerts(&mut self) -> Result<()> {
        let rows = alert_rows(self.book.alerts())?;
        let txn = vec![Transaction::new(EVENTS_APP_ID, self.book.last_seq())];
        self.alerts.replace_batches(&format!("seq-{:012}", self.book.last_seq()), &[rows], txn).await?;
        Ok(())
    }

    /// Commits `events` (already in the book) and how far `risk_alerts` has been read, then `alerts`.
    async fn persist(&mut self, events: &[AlertEvent]) -> Result<()> {
        let source_moved = self.rises.version != self.recorded_source_version;
        let source_due =
            self.source_recorded_at.elapsed() >= SOURCE_RECORD_INTERVAL || self.recorded_source_version < 0;
        let clock_due = !self.reading_clock_recorded && self.reading_clock.is_some();
        if events.is_empty() && !(source_moved && source_due) && !clock_due {
            return Ok(());
        }
        let mut txns = vec![
            Transaction::new(EVENTS_APP_ID, self.book.last_seq()),
            Transaction::new(SOURCE_APP_ID, self.rises.version),
        ];
        txns.extend(self.reading_clock.map(|ms| Transaction::new(READING_CLOCK_APP_ID, ms)));
        if events.is_empty() {
            self.events.append(&[], txns).await?;
        } else {
            let prefix = format!("seq-{:012}", self.book.last_seq());
            self.events.append_batches(&prefix, &[event_rows(events)?], txns).await?;
        }
        self.recorded_source_version = self.rises.version;
        self.source_recorded_at = std::time::Instant::now();
        self.reading_clock_recorded = self.reading_clock.is_some();
        if !events.is_empty() {
            self.write_alerts().await?;
            self.stats.events.fetch_add(events.len() as u64, Ordering::Relaxed);
            let raised = events.iter().filter(|e| e.action == Action::Raise).count();
            self.stats.raised.fetch_add(raised as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Starts over from the tables when a commit failed ([`AlertKeeper::stale`]).
    async fn reload_if_stale(&mut self) -> Result<()> {
        if self.stale {
            *self = AlertKeeper::open(&self.location, &self.config, self.stats.clone()).await?;
        }
        Ok(())
    }

    /// One look at the ETL's tables and the clock: raises (risk, stale patients, a stopped feed),
    /// auto-resolves and escalations, committed.
    pub(super) async fn look(&mut self) -> Result<usize> {
        self.reload_if_stale().await?;
        let now = now_ms();
        let mut events = Vec::new();
        self.stays = std::mem::take(&mut self.stays).refreshed(&self.location).await?;
        for rise in self.rises.new_rises(&self.location, &self.stays).await? {
            let rules = self.config.rules(&rise.ward);
            events.extend(self.book.on_rise(&rise, rules, now));
        }
        let active: HashMap<String, (String, i64)> = self
            .book
            .alerts()
            .filter(|a| a.kind == AlertKind::Risk && a.state.is_active())
            .map(|a| (a.patient_id.clone(), (a.ward.clone(), a.raised_at_ms)))
            .collect();
        let seen = ward_readings(&self.location, &self.stays).await?;
        let readings = &seen.latest;
        // The auto-resolve clock of a patient whose risk fell below High starts at the first such reading
        // of vitals_clean, not at the first one this process saw: the same after a restart.
        let clocks_to_start: Vec<(String, i64)> = readings
            .iter()
            .filter(|r| r.high == Some(false) && self.book.below_high_since(&r.patient_id).is_none())
            .filter_map(|r| active.get(&r.patient_id).map(|(_, raised_ms)| (r.patient_id.clone(), *raised_ms)))
            .collect();
        if !clocks_to_start.is_empty() {
            for (patient_id, since_ms) in below_high_since(&self.location, &clocks_to_start).await? {
                self.book.start_below_high_clock(&patient_id, since_ms);
            }
        }
        for reading in readings {
            let (Some((ward, _)), Some(high)) = (active.get(&reading.patient_id), reading.high) else { continue };
            if !high && self.book.below_high_since(&reading.patient_id).is_none() {
                continue; // its reading is not in vitals_clean yet: the next look starts the clock
            }
            let rules = self.config.rules(ward);
            events.extend(self.book.on_reading(&reading.patient_id, reading.reading_ms, high, rules, now));
        }
        let config = &self.config;
        events.extend(self.book.on_latest_readings(readings, |ward| config.rules(ward), now));
        events.extend(self.book.on_discharged(self.stays.discharged(), now));
        // The feed's silence runs on the wall clock from the ETL's last commit of readings (recorded in
        // patient_latest's log, so a restart does not count again).
        let newest = readings.iter().map(|r| r.reading_ms).max();
        if self.reading_clock.is_none() && newest.is_some() {
            self.reading_clock =
                if self.clock_from_first_reading { oldest_reading_ms(&self.location).await? } else { newest };
        }
        let silent_ms = seen.landed_ms.map_or(0, |landed_ms| (now - landed_ms).max(0));
        events.extend(self.book.on_feed(newest, silent_ms, config.feed_down_minutes, now));
        let config = &self.config;
        events.extend(self.book.escalate_overdue(|ward| config.rules(ward), now));
        if let Err(error) = self.persist(&events).await {
            self.stale = true;
            return Err(error);
        }
        Ok(events.len())
    }

    /// Takes `commands` in order and answers them once their events are committed.
    async fn take(&mut self, commands: Vec<Command>) {
        if let Err(error) = self.reload_if_stale().await {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            for command in commands {
                match command {
                    Command::List { reply } => drop(reply),
                    Command::Act { reply, .. } => {
                        let _ = reply.send(Err(KeeperRefusal::Unavailable(error.to_string())));
                    }
                }
            }
            return;
        }
        let mut events = Vec::new();
        let mut answers = Vec::new();
        for command in commands {
            match command {
                Command::List { reply } => {
                    let _ = reply.send(self.book.alerts().cloned().collect());
                }
                Command::Act { alert_id, action, user, reason, reply } => {
                    match self.book.act(&alert_id, action, &user, reason.as_deref(), now_ms()) {
                        Ok(event) => {
                            let alert = self.book.get(&alert_id).cloned();
                            events.push(event);
                            answers.push((reply, alert));
                        }
                        Err(refusal) => {
                            let _ = reply.send(Err(refusal.into()));
                        }
                    }
                }
            }
        }
        match self.persist(&events).await {
            Ok(()) => {
                for (reply, alert) in answers {
                    let answer = alert.ok_or_else(|| KeeperRefusal::Unavailable("the alert vanished".into()));
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, actions = answers.len(), "Recording alert actions failed; they were refused and nothing changed.");
                for (reply, _) in answers {
                    let _ = reply.send(Err(KeeperRefusal::Unavailable(error.to_string())));
                }
                self.stale = true;
            }
        }
    }

    /// Takes actions as they come and looks at the tables every `poll_interval_ms`, until `shutdown`.
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rates_read_at: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => {
                    let Some(first) = command else { break };
                    let mut batch = vec![first];
                    while batch.len() < MAX_ACTIONS_PER_COMMIT {
                        match commands.try_recv() {
                            Ok(command) => batch.push(command),
                            Err(_) => break,
                        }
                    }
                    self.take(batch).await;
                }
                _ = ticks.tick() => {
                    if let Err(error) = self.look().await {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %error, "Looking for new alerts failed; retrying.");
                    }
                    if rates_read_at.is_none_or(|at| at.elapsed() >= RATES_INTERVAL) {
                        rates_read_at = Some(std::time::Instant::now());
                        match read_alert_rates(&self.location).await {
                            Ok(rates) => *self.stats.rates.lock().unwrap_or_else(|e| e.into_inner()) = rates,
                            Err(error) => tracing::warn!(error = %error, "Reading the alert rates failed; retrying."),
                        }
                    }
                }
            }
        }
        tracing::info!("Alert keeper stopped.");
    }
}

/// Opens the alert tables under `location` (replaying `alert_events`) and runs the keeper, reachable
/// through `handle`, until `held` ends (the ETL lease is lost or the process stops).
pub async fn start_keeper(
    location: &DataLocation,
    config: &WardAlertsConfig,
    handle: &AlertKeeperHandle,
    held: CancellationToken,
) -> Result<JoinHandle<()>> {
    config.validate()?;
    let keeper = AlertKeeper::open(location, config, handle.stats.clone()).await?;
    let (commands, queue) = mpsc::channel(QUEUE);
    handle.set_queue(Some(commands));
    let handle = handle.clone();
    Ok(tokio::spawn(async move {
        keeper.run(queue, held).await;
        handle.set_queue(None);
    }))
}
