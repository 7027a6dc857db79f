//! The audit log of the Flight SQL front door: who ran which SQL, when, how it ended and how many
//! rows it returned. Each entry is written as a log event (target `vitalflow::audit`) and kept in a
//! bounded buffer until `audit_lake` appends it to the Delta table
//! `audit_log` under the data location, the durable record admins query.
//!
//! Log files travel further than the data (aggregators, support tickets), so the log event carries the
//! SQL and the error with their literals replaced by `?`: a patient id or a value in a `WHERE` stays
//! out of the logs. The admin-only `audit_log` table keeps the text as it was sent.
//!
//! Recording never waits on the store: a query only pushes its entry into the buffer. When the buffer
//! is full (the store has been unreachable for a while) the new entry is dropped from the table,
//! counted and warned about once per episode; its log event is still written.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;
use vitalflow_ingest::prometheus::Exposition;

use crate::front_door::auth::Principal;
use crate::front_door::sql_limits::is_literal;

/// The SQL name admins query, and the directory of its Delta table under the data location.
pub const AUDIT_TABLE: &str = vitalflow_udf_model::schema::table::AUDIT_LOG;

/// Waiting entries that make the flusher write at once instead of at its next tick.
pub(crate) const FLUSH_AT_ENTRIES: usize = 1_000;

/// Schema of `audit_log`.
pub static AUDIT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("rows_returned", DataType::Int64, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
});

/// How a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row was sent.
    Ok,
    /// Refused before running (authorisation, read-only policy, bad SQL).
    Refused,
    /// Failed while running (including limits).
    Failed,
    /// The client went away before the end.
    Cancelled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One audited query.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// When it started, nanoseconds since the epoch (UTC).
    pub time_ns: i64,
    /// Who ran it.
    pub user_name: String,
    /// The SQL text.
    pub sql: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Rows sent to the client.
    pub rows_returned: i64,
    /// Wall time until the end.
    pub duration_ms: i64,
    /// The error, when it failed or was refused.
    pub error: Option<String>,
}

/// Counters of the audit table, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Entries appended to the Delta table.
    pub written: AtomicU64,
    /// Entries dropped from the table because the buffer was full (their log events were written).
    pub dropped: AtomicU64,
    /// Appends that failed (retried with the next flush).
    pub flush_failures: AtomicU64,
    /// Entries waiting in the buffer.
    pub waiting: AtomicU64,
}

impl AuditStats {
    /// Appends the counters to `page` (`/metrics`).
    pub fn render(&self, page: &mut Exposition) {
        for (name, help, value) in [
            ("vitalflow_audit_entries_written_total", "Audit entries appended to the audit_log table.", &self.written),
            (
                "vitalflow_audit_entries_dropped_total",
                "Audit entries left out of audit_log because the buffer (flight_sql.audit_window) was full; \
                 their log events were written.",
                &self.dropped,
            ),
            (
                "vitalflow_audit_flush_failures_total",
                "Appends to audit_log that failed (the entries wait and are retried).",
                &self.flush_failures,
            ),
        ] {
            page.counter(name, help, value.load(Ordering::Relaxed));
        }
        let name = "vitalflow_audit_entries_waiting";
        page.family(name, "gauge", "Audit entries in memory, not yet in the audit_log table.");
        page.sample(name, "", self.waiting.load(Ordering::Relaxed));
    }
}

/// The buffer of entries not yet in the Delta table.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    /// Oldest first.
    pub(crate) entries: VecDeque<AuditEntry>,
    /// Entries taken out by the flush being written; they still count against the capacity.
    pub(crate) flushing: usize,
    /// Entries are being dropped (warned once per episode, until a flush succeeds).
    dropping: bool,
}

/// The audit log of one front door: log events, and the buffer of entries not yet in the table.
#[derive(Debug)]
pub struct AuditLog {
    waiting: Mutex<Waiting>,
    capacity: usize,
    stats: Arc<AuditStats>,
    /// Woken when the buffer holds [`FLUSH_AT_ENTRIES`].
    pub(crate) flush_wanted: tokio::sync::Notify,
}

impl AuditLog {
    /// A log holding at most `capacity` entries not yet written to the table `audit_log`.
    pub fn new(capacity: usize) -> AuditLog {
        AuditLog {
            waiting: Mutex::new(Waiting::default()),
            capacity,
            stats: Arc::new(AuditStats::default()),
            flush_wanted: tokio::sync::Notify::new(),
        }
    }

    /// The counters, for `/metrics`.
    pub fn stats(&self) -> Arc<AuditStats> {
        self.stats.clone()
    }

    /// The buffer. A poisoned lock only means another thread panicked mid-push; the deque is still valid.
    pub(crate) fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the entry as a log event and puts it in the buffer, or drops it when the buffer is full.
    pub fn record(&self, entry: AuditEntry) {
        tracing::info!(
            target: "vitalflow::audit",
            user = %entry.user_name,
            outcome = entry.outcome.as_str(),
            rows = entry.rows_returned,
            duration_ms = entry.duration_ms,
            error = %entry.error.as_deref().map(quoted_values_hidden).unwrap_or_default(),
            sql = %literals_hidden(&entry.sql),
            "Query audited."
        );
        let mut waiting = self.waiting();
        if waiting.entries.len() + waiting.flushing >= self.capacity {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if !waiting.dropping {
                waiting.dropping = true;
                tracing::warn!(
                    capacity = self.capacity,
                    "The audit buffer is full (flight_sql.audit_window): new entries are left out of audit_log \
                     (their log events are still written) until it is written to the data location again."
                );
            }
            return;
        }
        waiting.entries.push_back(entry);
        self.stats.waiting.store((waiting.entries.len() + waiting.flushing) as u64, Ordering::Relaxed);
        if waiting.entries.len() >= FLUSH_AT_ENTRIES {
            self.flush_wanted.notify_one();
        }
    }

    /// Takes every waiting entry out of the buffer for a flush; they keep counting against the capacity
    /// until [`AuditLog::flushed`] says how the flush ended.
    pub(crate) fn take_for_flush(&self) -> Vec<AuditEntry> {
        let mut waiting = self.waiting();
        let taken: Vec<AuditEntry> = waiting.entries.drain(..).collect();
        waiting.flushing = taken.len();
        taken
    }

    /// Ends a flush: written, the entries leave the buffer; not written (`Some(entries)`), they go back
    /// to its front, ahead of the entries recorded meanwhile.
    pub(crate) fn flushed(&self, not_written: Option<Vec<AuditEntry>>) {
        let mut waiting = self.waiting();
        let written = waiting.flushing;
        waiting.flushing = 0;
        match not_written {
            None => {
                waiting.dropping = false;
                self.stats.written.fetch_add(written as u64, Ordering::Relaxed);
            }
            Some(entries) => {
                self.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                for entry in entries.into_iter().rev() {
                    waiting.entries.push_front(entry);
                }
            }
        }
        self.stats.waiting.store(waiting.entries.len() as u64, Ordering::Relaxed);
    }

    /// Starts auditing a query; the entry is recorded when the returned guard ends or drops.
    pub fn start(self: &Arc<Self>, who: &Principal, sql: &str) -> QueryAudit {
        QueryAudit {
            log: self.clone(),
            started: Instant::now(),
            entry: AuditEntry {
                time_ns: Utc::now().timestamp_nanos_opt().unwrap_or(0),
                user_name: who.name.clone(),
                sql: sql.to_string(),
                outcome: Outcome::Cancelled,
                rows_returned: 0,
                duration_ms: 0,
                error: None,
            },
            done: false,
        }
    }

    /// The entries not yet written to the table, as one batch (oldest first).
    pub fn waiting_batch(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        entries_batch(self.waiting().entries.iter())
    }
}

/// `entries` as one batch of [`AUDIT_SCHEMA`].
pub(crate) fn entries_batch<'a>(
    entries: impl Iterator<Item = &'a AuditEntry> + Clone,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from_iter_values(entries.clone().map(|e| e.time_ns)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(entries.clone().map(|e| e.user_name.as_str()))),
        Arc::new(StringArray::from_iter_values(entries.clone().map(|e| e.sql.as_str()))),
        Arc::new(StringArray::from_iter_values(entries.clone().map(|e| e.outcome.as_str()))),
        Arc::new(Int64Array::from_iter_values(entries.clone().map(|e| e.rows_returned))),
        Arc::new(Int64Array::from_iter_values(entries.clone().map(|e| e.duration_ms))),
        Arc::new(StringArray::from_iter(entries.map(|e| e.error.as_deref()))),
    ];
    RecordBatch::try_new(AUDIT_SCHEMA.clone(), columns)
}

/// `sql` with every string and number literal replaced by `?` (identifiers, keywords and layout
/// kept), for the log. Text that does not tokenize has its quoted parts hidden instead.
pub fn literals_hidden(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return quoted_values_hidden(sql);
    };
    tokens
        .iter()
        .map(|token| match token {
            literal if is_literal(literal) => "?".to_string(),
            other => other.to_string(),
        })
        .collect()
}

/// `text` (an error message) with every part between single quotes replaced by `'?'`: DataFusion
/// quotes the values it could not read (`Cannot cast string 'P-1234' to …`).
pub fn quoted_values_hidden(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        // Odd parts are inside quotes; an unclosed quote hides the rest.
        if i % 2 == 0 {
            out.push_str(if i + 1 < rest.len() { "'?'" } else { "'?" });
        } else {
            out.push_str(part);
        }
    }
    out
}

/// A query being audited: counts rows, and records itself once, at `finish` or on drop (a client
/// that disconnects mid-stream is recorded as cancelled).
#[derive(Debug)]
pub struct QueryAudit {
    log: Arc<AuditLog>,
    started: Instant,
    entry: AuditEntry,
    done: bool,
}

impl QueryAudit {
    /// Counts rows sent.
    pub fn add_rows(&mut self, rows: usize) {
        self.entry.rows_returned += rows as i64;
    }

    /// Records the outcome now.
    pub fn finish(&mut self, outcome: Outcome, error: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        self.entry.outcome = outcome;
        self.entry.error = error;
        self.entry.duration_ms = self.started.elapsed().as_millis() as i64;
        self.log.record(self.entry.clone());
    }
}

impl Drop for QueryAudit {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn memory_log(capacity: usize) -> Arc<AuditLog> {
        Arc::new(AuditLog::new(capacity))
    }

    #[test]
    fn entries_are_recorded_once_and_a_full_buffer_drops_new_ones_and_counts_them() {
        let log = memory_log(2);
        let who = Principal { name: "ana".into(), role: Role::Reader };
        let mut a = log.start(&who, "SELECT 1");
        a.add_rows(1);
        a.finish(Outcome::Ok, None);
        drop(a);
        drop(log.start(&who, "SELECT 2"));
        // The buffer is full: this one is left out of the table (its log event is still written).
        log.start(&who, "SELECT x").finish(Outcome::Refused, Some("no".into()));
        let batch = log.waiting_batch().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let outcomes = batch.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((outcomes.value(0), outcomes.value(1)), ("ok", "cancelled"));
        assert_eq!(batch.column(6).null_count(), 2);
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().waiting.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn entries_being_flushed_hold_their_place_and_come_back_first_when_the_flush_fails() {
        let log = memory_log(3);
        let who = Principal { name: "ana".into(), role: Role::Reader };
        let sql_of = |log: &AuditLog| -> Vec<String> { log.waiting().entries.iter().map(|e| e.sql.clone()).collect() };
        drop(log.start(&who, "first"));
        drop(log.start(&who, "second"));
        let taken = log.take_for_flush();
        assert_eq!(taken.len(), 2);
        // Recorded during the flush: the two being written still count against the capacity.
        drop(log.start(&who, "third"));
        drop(log.start(&who, "fourth"));
        assert_eq!(log.stats().dropped.load(Ordering::Relaxed), 1);
        log.flushed(Some(taken));
        assert_eq!(sql_of(&log), ["first", "second", "third"]);
        assert_eq!(log.stats().flush_failures.load(Ordering::Relaxed), 1);
        let taken = log.take_for_flush();
        log.flushed(None);
        assert_eq!(taken.len(), 3);
        assert!(sql_of(&log).is_empty());
        assert_eq!(log.stats().written.load(Ordering::Relaxed), 3);
        assert_eq!(log.stats().waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_log_sees_the_query_without_its_values() {
        let sql = "SELECT patient_id, spo2 FROM vitals_clean WHERE patient_id = 'P-1234' AND spo2 < 88.5 LIMIT 10";
        assert_eq!(
            literals_hidden(sql),
            "SELECT patient_id, spo2 FROM vitals_clean WHERE patient_id = ? AND spo2 < ? LIMIT ?"
        );
        // A quoted identifier is a name, not a value.
        assert_eq!(literals_hidden("select 'a''b', \"spo2\" from t"), "select ?, \"spo2\" from t");
        assert_eq!(
            quoted_values_hidden("Cannot cast string 'P-1234' to value of Int64 type at 'x"),
            "Cannot cast string '?' to value of Int64 type at '?"
        );
        assert_eq!(quoted_values_hidden("no quotes"), "no quotes");
        // Not SQL at all: still no quoted values.
        assert_eq!(literals_hidden("SELECT 'unterminated"), "SELECT '?");
    }
}
