//! The audit log of the Flight SQL front door: who ran which SQL, when, how it ended and how many
//! rows it returned. Each entry is written as a log event (target `vitalflow::audit`, the durable
//! record: ship logs to keep it) and kept in a bounded in-memory window that admins query as the
//! table `audit_log`.
//!
//! Log files travel further than the data (aggregators, support tickets), so the log event carries the
//! SQL and the error with their literals replaced by `?`: a patient id or a value in a `WHERE` stays
//! out of the logs. The admin-only `audit_log` table keeps the text as it was sent.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;

use crate::front_door::auth::Principal;
use crate::front_door::sql_limits::is_literal;

/// The SQL name admins query.
pub const AUDIT_TABLE: &str = "audit_log";

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

/// The bounded window of recent entries.
#[derive(Debug)]
pub struct AuditLog {
    entries: Mutex<VecDeque<AuditEntry>>,
    capacity: usize,
}

impl AuditLog {
    /// A log keeping the last `capacity` entries in memory.
    pub fn new(capacity: usize) -> AuditLog {
        AuditLog { entries: Mutex::new(VecDeque::with_capacity(capacity.min(4096))), capacity }
    }

    /// Writes the entry as a log event and keeps it in the window.
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
        if self.capacity == 0 {
            return;
        }
        // A poisoned lock only means another thread panicked mid-push; the deque is still valid.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
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

    /// The window as one batch (oldest first).
    pub fn snapshot(&self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(entries.iter().map(|e| e.time_ns)).with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.user_name.as_str()))),
            Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.sql.as_str()))),
            Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.outcome.as_str()))),
            Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.rows_returned))),
            Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.duration_ms))),
            Arc::new(StringArray::from_iter(entries.iter().map(|e| e.error.as_deref()))),
        ];
        RecordBatch::try_new(AUDIT_SCHEMA.clone(), columns)
    }
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

    #[test]
    fn entries_are_recorded_once_and_the_window_is_bounded() {
        let log = Arc::new(AuditLog::new(2));
        let who = Principal { name: "ana".into(), role: Role::Reader };
        let mut a = log.start(&who, "SELECT 1");
        a.add_rows(1);
        a.finish(Outcome::Ok, None);
        drop(a);
        drop(log.start(&who, "SELECT 2"));
        log.start(&who, "SELECT x").finish(Outcome::Refused, Some("no".into()));
        let batch = log.snapshot().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let outcomes = batch.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((outcomes.value(0), outcomes.value(1)), ("cancelled", "refused"));
        assert_eq!(batch.column(6).null_count(), 1);
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
