//! What ingest counts and logs, once per flush (never per record).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one ingest process, read by tests and the metrics endpoint.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Records received from Kafka.
    pub records_in: AtomicU64,
    /// Records landed in `vitals_raw`.
    pub records_landed: AtomicU64,
    /// Records written to `dead_letters`.
    pub records_dead_lettered: AtomicU64,
    /// Parquet files written.
    pub files_written: AtomicU64,
    /// Offset commits that failed (the landed files stay the truth).
    pub commit_failures: AtomicU64,
    /// Partitions assigned to this process by rebalances.
    pub partitions_assigned: AtomicU64,
    /// Buffered records released unlanded because their partition was revoked (its next owner reads them).
    pub records_released: AtomicU64,
}

impl IngestStats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A rebalance assigned `assigned` partitions, or revoked some with `released` records buffered.
    pub(crate) fn rebalanced(&self, assigned: usize, released: usize) {
        Self::add(&self.partitions_assigned, assigned);
        Self::add(&self.records_released, released);
    }
}

/// One flush landed: the `BatchLanded` event.
#[derive(Debug)]
pub struct BatchLanded {
    /// Rows written to `vitals_raw`.
    pub landed: usize,
    /// Rows written to `dead_letters`.
    pub dead_lettered: usize,
    /// Files written.
    pub files: usize,
    /// Time from the flush starting to the last file written.
    pub latency: Duration,
}

impl BatchLanded {
    /// Counts and logs the event.
    pub fn emit(&self, stats: &IngestStats) {
        IngestStats::add(&stats.records_landed, self.landed);
        IngestStats::add(&stats.records_dead_lettered, self.dead_lettered);
        IngestStats::add(&stats.files_written, self.files);
        tracing::debug!(
            landed = self.landed,
            dead_lettered = self.dead_lettered,
            files = self.files,
            latency_ms = self.latency.as_millis() as u64,
            "Batch landed."
        );
    }
}

/// Records arrived from Kafka.
pub(crate) fn records_received(stats: &IngestStats, n: usize) {
    IngestStats::add(&stats.records_in, n);
}

/// An offset commit failed after the files were written.
pub(crate) fn commit_failed(stats: &IngestStats, error: &dyn std::fmt::Display) {
    stats.commit_failures.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %error, "Offset commit failed; landed files remain the record of progress.");
}
