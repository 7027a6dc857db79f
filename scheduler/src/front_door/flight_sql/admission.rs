//! How many queries one signed-in user runs at once: at most `flight_sql.max_queries_per_user`, and
//! up to `flight_sql.max_queued_per_user` more wait in line (first come, first served); a query past
//! the line is refused at once with `RESOURCE_EXHAUSTED` naming the setting. The wait counts against
//! the query's time limit. A [`Slot`] is held from planning to the last row streamed, and freed when
//! it is dropped: on success, error, time-out, cancel or a client gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::Status;

/// Counters of admission, on `/metrics`.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// Queries that had to wait for a slot of their user.
    pub queued: AtomicU64,
    /// Queries refused because their user's line was full.
    pub refused: AtomicU64,
}

impl AdmissionStats {
    /// Appends the counters to a `/metrics` page.
    pub fn render(&self, page: &mut vitalflow_ingest::prometheus::Exposition) {
        for (name, help, value) in [
            (
                "vitalflow_flight_sql_queries_queued_total",
                "Flight SQL queries that waited for a slot of their user (flight_sql.max_queries_per_user).",
                &self.queued,
            ),
            (
                "vitalflow_flight_sql_queries_refused_total",
                "Flight SQL queries refused because their user's wait line was full (flight_sql.max_queued_per_user).",
                &self.refused,
            ),
        ] {
            page.counter(name, help, value.load(Ordering::Relaxed));
        }
    }
}

/// One user's running queries (the semaphore's permits) and how many wait for one.
#[derive(Debug)]
struct UserLine {
    running: Arc<Semaphore>,
    waiting: usize,
}

/// Per-user admission of queries.
#[derive(Debug)]
pub(crate) struct Admission {
    max_running: usize,
    max_queued: usize,
    /// Lines of users with a query running or waiting; an idle user's line is removed.
    users: Mutex<HashMap<String, UserLine>>,
    stats: Arc<AdmissionStats>,
}

/// A query's right to run; dropping it lets the next query of the same user in.
#[derive(Debug)]
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    user: String,
    admission: Arc<Admission>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.admission.forget_if_idle(&mut self.admission.lock(), &self.user);
    }
}

/// Takes a waiter out of its user's line however its wait ends (a slot, the time limit, a client gone).
struct Waiting<'a> {
    admission: &'a Arc<Admission>,
    user: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut users = self.admission.lock();
        if let Some(line) = users.get_mut(self.user) {
            line.waiting = line.waiting.saturating_sub(1);
        }
        self.admission.forget_if_idle(&mut users, self.user);
    }
}

impl Admission {
    /// At most `max_running` queries per user at once, `max_queued` more waiting.
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Arc<Admission> {
        Arc::new(Admission { max_running, max_queued, users: Mutex::default(), stats: Arc::default() })
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Arc<AdmissionStats> {
        self.stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, UserLine>> {
        // The map stays consistent whatever panicked while holding it (every change is one statement).
        self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes `user`'s line when nothing of it runs or waits, so the map holds only active users.
    fn forget_if_idle(&self, users: &mut HashMap<String, UserLine>, user: &str) {
        if users.get(user).is_some_and(|l| l.waiting == 0 && l.running.available_permits() == self.max_running) {
            users.remove(user);
        }
    }

    /// A slot for a query of `user`: at once when one is free, else after waiting in line until
    /// `deadline` (then `timed_out`). A full line refuses the query at once.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        user: &str,
        deadline: Instant,
        timed_out: impl FnOnce() -> Status,
    ) -> Result<Slot, Status> {
        let slot = |permit| Slot { permit: Some(permit), user: user.to_string(), admission: self.clone() };
        let running = {
            let mut users = self.lock();
            let line = users
                .entry(user.to_string())
                .or_insert_with(|| UserLine { running: Arc::new(Semaphore::new(self.max_running)), waiting: 0 });
            if let Ok(permit) = line.running.clone().try_acquire_owned() {
                return Ok(slot(permit));
            }
            if line.waiting >= self.max_queued {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Status::resource_exhausted(format!(
                    "user {user:?} already runs {} queries (flight_sql.max_queries_per_user) and {} more wait \
                     (flight_sql.max_queued_per_user); wait for one to finish",
                    self.max_running, self.max_queued
                )));
            }
            line.waiting += 1;
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            line.running.clone()
        };
        let _waiting = Waiting { admission: self, user };
        // Tokio's semaphore is fair: waiters get slots in the order they came.
        match tokio::time::timeout_at(deadline, running.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(slot(permit)),
            Ok(Err(_)) => Err(Status::internal("the query admission line was closed")),
            Err(_) => Err(timed_out()),
        }
    }

    /// Queries of `user` running now (for tests).
    #[cfg(test)]
    fn running(&self, user: &str) -> usize {
        self.lock().get(user).map_or(0, |l| self.max_running - l.running.available_permits())
    }
}

#[cfg(test)]
mod tests;
