//! What ingest counts and logs, once per flush (never per record).

use std::collections::BTreeMap;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::decode::ReasonCode;
use crate::prometheus::{Exposition, escape_label};

/// Upper bounds (seconds) of the flush-latency histogram buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Counters of one ingest process, read by tests and the metrics endpoint.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Records received from Kafka.
    pub records_in: AtomicU64,
    /// Records landed in `vitals_raw`.
    pub records_landed: AtomicU64,
    /// Records landed in `patient_movements`.
    pub records_moved: AtomicU64,
    /// Records written to `dead_letters`.
    pub records_dead_lettered: AtomicU64,
    /// Records written to `dead_letters`, per reason code in [`ReasonCode::ALL`] order.
    pub dead_lettered_by_reason: [AtomicU64; ReasonCode::ALL.len()],
    /// Parquet files written.
    pub files_written: AtomicU64,
    /// Offset commits that failed (the landed files stay the truth).
    pub commit_failures: AtomicU64,
    /// Partitions assigned to this process by rebalances.
    pub partitions_assigned: AtomicU64,
    /// Whether the consumer has joined its group (a first assignment arrived, possibly of no partition):
    /// what `/readyz` reports.
    pub joined_group: AtomicBool,
    /// Buffered records released unlanded because their partition was revoked (its next owner reads them).
    pub records_released: AtomicU64,
    /// Flushes landed, with their latency histogram.
    flush_latency: Mutex<Histogram>,
    /// Per (topic, partition) owned: records on the broker after the last landed offset.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

/// A Prometheus histogram: cumulative counts per bucket, sum and count.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
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

    /// A rebalance gave this consumer its (possibly empty) share of the topic: it is in the group.
    pub(crate) fn joined(&self) {
        self.joined_group.store(true, Ordering::Relaxed);
    }

    /// Whether the consumer is in its group (see [`IngestStats::joined_group`]).
    pub fn in_group(&self) -> bool {
        self.joined_group.load(Ordering::Relaxed)
    }

    /// The consumer lag of a partition after a flush (`None`: revoked, no longer ours to report).
    pub(crate) fn set_lag(&self, topic: &str, partition: i32, lag: Option<i64>) {
        let mut map = self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match lag {
            Some(lag) => map.insert((topic.to_string(), partition), lag.max(0)),
            None => map.remove(&(topic.to_string(), partition)),
        };
    }

    /// Records dead-lettered for `code` so far.
    pub fn dead_lettered(&self, code: ReasonCode) -> u64 {
        self.dead_lettered_by_reason[code.index()].load(Ordering::Relaxed)
    }

    /// The counters in Prometheus' text format (what `/metrics` serves).
    pub fn render_prometheus(&self) -> String {
        let mut page = Exposition::new();
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        page.counter("vitalflow_ingest_records_in_total", "Records received from Kafka.", load(&self.records_in));
        page.counter(
            "vitalflow_ingest_records_landed_total",
            "Records landed in vitals_raw.",
            load(&self.records_landed),
        );
        page.counter(
            "vitalflow_ingest_movements_landed_total",
            "Records landed in patient_movements (admissions, transfers, discharges, updates).",
            load(&self.records_moved),
        );
        let name = "vitalflow_ingest_records_dead_lettered_total";
        page.family(name, "counter", "Records written to dead_letters, by reason.");
        for code in ReasonCode::ALL {
            page.sample(name, &format!("reason=\"{}\"", code.as_str()), self.dead_lettered(code));
        }
        page.counter("vitalflow_ingest_files_written_total", "Parquet files written.", load(&self.files_written));
        page.counter(
            "vitalflow_ingest_commit_failures_total",
            "Offset commits that failed after landing.",
            load(&self.commit_failures),
        );
        page.counter(
            "vitalflow_ingest_partitions_assigned_total",
            "Partitions assigned by rebalances.",
            load(&self.partitions_assigned),
        );
        page.counter(
            "vitalflow_ingest_records_released_total",
            "Buffered records released on revocation, read again by the next owner.",
            load(&self.records_released),
        );
        let name = "vitalflow_ingest_consumer_lag_records";
        page.family(name, "gauge", "Records on the broker after the last landed offset, per owned partition.");
        for ((topic, partition), lag) in self.lag.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            page.sample(name, &format!("topic=\"{}\",partition=\"{partition}\"", escape_label(topic)), lag);
        }
        let name = "vitalflow_ingest_flush_latency_seconds";
        let h = self.flush_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        page.family(name, "histogram", "Time from a flush starting to its last file written.");
        let bucket = format!("{name}_bucket");
        for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            page.sample(&bucket, &format!("le=\"{le}\""), n);
        }
        page.sample(&bucket, "le=\"+Inf\"", h.count);
        page.sample(&format!("{name}_sum"), "", h.sum);
        page.sample(&format!("{name}_count"), "", h.count);
        page.finish()
    }
}

/// One flush landed: the `BatchLanded` event.
#[derive(Debug)]
pub struct BatchLanded {
    /// Rows written to `vitals_raw`.
    pub landed: usize,
    /// Rows written to `patient_movements`.
    pub moved: usize,
    /// Rows written to `dead_letters`.
    pub dead_lettered: usize,
    /// Files written.
    pub files: usize,
    /// Dead letters per reason code, in [`ReasonCode::ALL`] order.
    pub by_reason: [usize; ReasonCode::ALL.len()],
    /// Time from the flush starting to the last file written.
    pub latency: Duration,
}

impl BatchLanded {
    /// Counts and logs the event.
    pub fn emit(&self, stats: &IngestStats) {
        IngestStats::add(&stats.records_landed, self.landed);
        IngestStats::add(&stats.records_moved, self.moved);
        IngestStats::add(&stats.records_dead_lettered, self.dead_lettered);
        IngestStats::add(&stats.files_written, self.files);
        for (counter, n) in stats.dead_lettered_by_reason.iter().zip(self.by_reason) {
            IngestStats::add(counter, n);
        }
        {
            let mut h = stats.flush_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let secs = self.latency.as_secs_f64();
            for (bucket, le) in h.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                *bucket += u64::from(secs <= le);
            }
            h.sum += secs;
            h.count += 1;
        }
        tracing::debug!(
            landed = self.landed,
            moved = self.moved,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_counter_reason_and_the_histogram() {
        let stats = IngestStats::default();
        let mut by_reason = [0; ReasonCode::ALL.len()];
        by_reason[ReasonCode::ImpossibleValue.index()] = 2;
        BatchLanded { landed: 10, moved: 1, dead_lettered: 2, files: 2, by_reason, latency: Duration::from_millis(30) }
            .emit(&stats);
        stats.set_lag("ward\"3", 1, Some(42));
        let text = stats.render_prometheus();
        assert!(text.contains("vitalflow_ingest_records_landed_total 10\n"), "{text}");
        assert!(text.contains("vitalflow_ingest_movements_landed_total 1\n"), "{text}");
        assert!(text.contains("vitalflow_ingest_records_dead_lettered_total{reason=\"impossible_value\"} 2\n"));
        assert!(text.contains("vitalflow_ingest_records_dead_lettered_total{reason=\"oversized\"} 0\n"));
        assert!(text.contains("vitalflow_ingest_consumer_lag_records{topic=\"ward\\\"3\",partition=\"1\"} 42\n"));
        assert!(text.contains("vitalflow_ingest_flush_latency_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("vitalflow_ingest_flush_latency_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("vitalflow_ingest_flush_latency_seconds_count 1\n"));
        stats.set_lag("ward\"3", 1, None);
        assert!(ReasonCode::ALL.iter().enumerate().all(|(i, c)| c.index() == i));
        assert!(!stats.render_prometheus().contains("partition=\"1\""));
    }
}
