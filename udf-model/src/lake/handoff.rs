//! The hand-off between ingest and the ETL when both run in one process on one data location (`up`):
//! ingest says when it has committed new `vitals_raw` rows, so that the ETL starts at once instead of
//! at its next poll; the ETL says when it waits with nothing to do, so that ingest lands what it holds
//! at once instead of at its next flush tick. Across processes neither hears the other and both keep
//! to their timers (`ingest.flush_interval_ms`, `etl.min_interval_ms`). Each of the ETL's partition
//! groups follows the landings with a [`LandingWatch`] of its own, so that one landing wakes them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::{Notify, watch};

use super::DataLocation;

/// Each data location's hand-off in this process, by the location's URL.
static HANDOFFS: LazyLock<Mutex<HashMap<String, Arc<Handoff>>>> = LazyLock::new(Default::default);

/// The hand-off of one data location (see the module documentation).
#[derive(Debug)]
pub struct Handoff {
    /// How many times ingest said it landed rows.
    landed: watch::Sender<u64>,
    etl_waiting: AtomicBool,
    etl_started_waiting: Notify,
}

impl Default for Handoff {
    fn default() -> Self {
        Handoff {
            landed: watch::Sender::new(0),
            etl_waiting: AtomicBool::new(false),
            etl_started_waiting: Notify::new(),
        }
    }
}

/// One follower's view of ingest's landings: a landing since its last wait is kept until it waits.
#[derive(Debug)]
pub struct LandingWatch(watch::Receiver<u64>);

impl LandingWatch {
    /// Waits until ingest says it landed rows (returns at once if it did since the last wait).
    pub async fn wait_landed(&mut self) {
        // The sender lives as long as the process-wide map: an error cannot happen; waiting on is right.
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Handoff {
    /// The hand-off of `location` in this process.
    pub fn of(location: &DataLocation) -> Arc<Handoff> {
        let mut all = HANDOFFS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(location.url().to_string()).or_default().clone()
    }

    /// Ingest: new `vitals_raw` rows are committed. Kept until the ETL next waits, if it is busy now.
    pub fn landed(&self) {
        self.landed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The ETL: follows ingest's landings from now on.
    pub fn watch_landings(&self) -> LandingWatch {
        LandingWatch(self.landed.subscribe())
    }

    /// The ETL: it found nothing new and waits (`true`), or it starts a batch (`false`).
    pub fn set_etl_waiting(&self, waiting: bool) {
        self.etl_waiting.store(waiting, Ordering::Release);
        if waiting {
            self.etl_started_waiting.notify_waiters();
        }
    }

    /// Ingest: whether the ETL waits for rows, clearing it, so that one wait gets one early flush.
    pub fn take_etl_waiting(&self) -> bool {
        self.etl_waiting.swap(false, Ordering::AcqRel)
    }

    /// Ingest: waits until the ETL starts waiting for rows.
    pub async fn wait_etl_waiting(&self) {
        self.etl_started_waiting.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_location_shares_one_handoff_and_a_landing_is_kept_until_the_etl_waits() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let (a, b) = (Handoff::of(&location), Handoff::of(&location));
        assert!(Arc::ptr_eq(&a, &b));
        let other = tempfile::tempdir().unwrap();
        assert!(!Arc::ptr_eq(&a, &Handoff::of(&DataLocation::open(other.path().to_str().unwrap()).unwrap())));

        // Landed while the ETL's groups were busy: each one's next wait returns at once.
        let (mut first, mut second) = (b.watch_landings(), b.watch_landings());
        a.landed();
        for group in [&mut first, &mut second] {
            tokio::time::timeout(Duration::from_secs(1), group.wait_landed()).await.expect("the landing was kept");
            let again = tokio::time::timeout(Duration::from_millis(50), group.wait_landed()).await;
            assert!(again.is_err(), "kept only once");
        }

        // The ETL's wait reaches ingest once.
        assert!(!a.take_etl_waiting());
        let ingest = tokio::spawn({
            let a = a.clone();
            async move { a.wait_etl_waiting().await }
        });
        // Said until heard: a wait that starts after the saying only sees the flag.
        let said = async {
            while !ingest.is_finished() {
                b.set_etl_waiting(true);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(1), said).await.expect("ingest woke");
        assert!(a.take_etl_waiting());
        assert!(!a.take_etl_waiting());
    }
}
