//! The durable `audit_log`: a Delta table under the data location (`audit_log/`, like every other
//! table), to which each front door appends the entries of its [`AuditLog`] buffer every
//! [`FLUSH_INTERVAL`], or as soon as 1,000 wait, and once more when it stops.
//!
//! Several schedulers may append at once: each commit only adds its own file and is marked a blind
//! append (`isBlindAppend`), so Delta's conflict check lets concurrent appends, OPTIMIZE and the
//! retention DELETE all commit (delta-rs retries the commit on the newer version).
//!
//! A query of `audit_log` reads the committed table and the entries still waiting in this process's
//! buffer, taken under the lock a flush holds from its commit until its entries leave the buffer: an
//! entry is seen once, never twice or not at all, and an admin sees their own query at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::lake::{DataLocation, LakeError, LakeTable, write_data_file};

use crate::catalog::lake_table::{DeltaSnapshotTable, SnapshotAt};
use crate::error::{Error, Result};
use crate::front_door::audit::{AUDIT_SCHEMA, AUDIT_TABLE, AuditEntry, AuditLog, entries_batch};

/// How long an entry waits at most (while the store answers) before it is in the Delta table.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Prefix of the table's data files.
const FILE_PREFIX: &str = "audit";

/// The Delta table `audit_log` as one front door writes it from its [`AuditLog`] and reads it.
#[derive(Debug)]
pub(crate) struct AuditLake {
    log: Arc<AuditLog>,
    location: DataLocation,
    /// The table as this process last saw it (`None` until it exists). Its lock keeps a flush (commit,
    /// then its entries leave the buffer) and a query's snapshot (table, then buffer) apart.
    table: tokio::sync::Mutex<Option<LakeTable>>,
}

impl AuditLake {
    /// The table `audit_log` under `location`, written from `log`; nothing is read or created before
    /// the first flush or query.
    pub(crate) fn new(log: Arc<AuditLog>, location: DataLocation) -> AuditLake {
        AuditLake { log, location, table: tokio::sync::Mutex::new(None) }
    }

    /// Appends every entry waiting in the log in one commit (creating the table on the first); returns
    /// how many. On failure the entries go back to the buffer for the next flush.
    pub(crate) async fn flush(&self) -> Result<usize> {
        let log = &self.log;
        let mut table = self.table.lock().await;
        let entries = log.take_for_flush();
        if entries.is_empty() {
            log.flushed(None);
            return Ok(0);
        }
        match self.append(&mut table, &entries).await {
            Ok(()) => {
                log.flushed(None);
                Ok(entries.len())
            }
            Err(error) => {
                // Opened again next time: the snapshot held may be what failed.
                *table = None;
                log.flushed(Some(entries));
                Err(error)
            }
        }
    }

    async fn append(&self, table: &mut Option<LakeTable>, entries: &[AuditEntry]) -> Result<()> {
        let batch = entries_batch(entries.iter())
            .map_err(|e| Error::Query { step: "building audit entries".into(), source: e.into() })?;
        let table = match table {
            Some(table) => table,
            None => table.insert(LakeTable::open_or_create(&self.location, AUDIT_TABLE, &AUDIT_SCHEMA).await?),
        };
        let file = write_data_file(&self.location, AUDIT_TABLE, FILE_PREFIX, &[batch]).await?;
        match table.append_with_metadata(std::slice::from_ref(&file), vec![], blind_append()).await {
            // Only a change of the table's metadata conflicts with a blind append: another scheduler that
            // created the table at the same moment committing the same schema. Once more on its version.
            Err(LakeError::Conflict { .. }) => {
                table.refresh().await?;
                table.append_with_metadata(&[file], vec![], blind_append()).await?;
            }
            appended => {
                appended?;
            }
        }
        Ok(())
    }

    /// `audit_log` as a query reads it now: the latest committed version and the entries still waiting.
    pub(crate) async fn query_table(&self) -> Result<AuditLogTable> {
        let mut table = self.table.lock().await;
        match table.as_mut() {
            Some(table) => table.refresh().await?,
            None => *table = LakeTable::open(&self.location, AUDIT_TABLE, None).await?,
        }
        let committed = table.as_ref().map(|t| {
            DeltaSnapshotTable::new(&self.location, AUDIT_TABLE, AUDIT_SCHEMA.clone(), SnapshotAt::Version(t.version()))
        });
        let waiting = self
            .log
            .waiting_batch()
            .map_err(|e| Error::Query { step: "reading waiting audit entries".into(), source: e.into() })?;
        drop(table);
        let waiting = MemTable::try_new(AUDIT_SCHEMA.clone(), vec![vec![waiting]])
            .map_err(|source| Error::Query { step: "reading waiting audit entries".into(), source })?;
        Ok(AuditLogTable { committed, waiting })
    }
}

/// Commit metadata marking an append that read nothing: Delta's conflict check then lets concurrent
/// appends of other schedulers, OPTIMIZE and the retention DELETE commit beside it.
fn blind_append() -> HashMap<String, serde_json::Value> {
    HashMap::from([("isBlindAppend".to_string(), serde_json::Value::Bool(true))])
}

/// Flushes `lake` every [`FLUSH_INTERVAL`] (sooner when enough wait) until `shutdown`,
/// then once more. A failure is warned about when it starts and noted when writing works again; the
/// entries wait in the buffer meanwhile.
pub(crate) async fn run_flusher(lake: Arc<AuditLake>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(FLUSH_INTERVAL) => false,
            _ = lake.log.flush_wanted.notified() => false,
        };
        match lake.flush().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("The audit table is written again.");
            }
            Ok(_) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Writing the audit table failed; its entries wait in memory and are retried every second.");
            }
            Err(_) => {}
        }
        if stopping {
            break;
        }
    }
}

/// The last flush, once nothing more can be recorded (the server has stopped).
pub(crate) async fn flush_at_exit(lake: &AuditLake) {
    if let Err(error) = lake.flush().await {
        let lost = lake.log.waiting().entries.len();
        tracing::error!(%error, lost, "Writing the audit table at shutdown failed: these entries are only in the log events.");
    }
}

/// `audit_log` for one query: a committed snapshot of the Delta table and the waiting entries.
#[derive(Debug)]
pub(crate) struct AuditLogTable {
    /// `None` while the table does not exist yet (a data location from before it, nothing flushed).
    committed: Option<DeltaSnapshotTable>,
    waiting: MemTable,
}

#[async_trait]
impl TableProvider for AuditLogTable {
    fn schema(&self) -> SchemaRef {
        AUDIT_SCHEMA.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Used to skip row groups of the committed files; the filter is still applied above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut inputs = Vec::with_capacity(2);
        if let Some(committed) = &self.committed {
            inputs.push(committed.scan(session, projection, filters, limit).await?);
        }
        inputs.push(self.waiting.scan(session, projection, &[], limit).await?);
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use arrow::array::{AsArray, RecordBatch};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::front_door::audit::Outcome;
    use crate::maintenance::retention::expire_audit_before;

    fn entry(user: &str, sql: &str, time_ns: i64) -> AuditEntry {
        AuditEntry {
            time_ns,
            user_name: user.into(),
            sql: sql.into(),
            outcome: Outcome::Ok,
            rows_returned: 1,
            duration_ms: 2,
            error: None,
        }
    }

    fn now_ns() -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap()
    }

    /// The SQL of every row of `audit_log` as a query through `lake` reads it, in time order.
    async fn queried(lake: &AuditLake) -> Vec<String> {
        let table = lake.query_table().await.unwrap();
        let ctx = SessionContext::new_with_config_rt(
            crate::catalog::session::session_config(),
            crate::catalog::session::runtime_env().unwrap(),
        );
        ctx.register_table(AUDIT_TABLE, Arc::new(table)).unwrap();
        let batches: Vec<RecordBatch> =
            ctx.sql("SELECT sql FROM audit_log ORDER BY time, sql").await.unwrap().collect().await.unwrap();
        batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().map(str::to_string)).collect()
    }

    fn location(dir: &tempfile::TempDir) -> DataLocation {
        DataLocation::open(dir.path().to_str().unwrap()).unwrap()
    }

    /// A front door's audit log writing to the data location in `dir`.
    fn front_door(dir: &tempfile::TempDir, capacity: usize) -> Arc<AuditLake> {
        Arc::new(AuditLake::new(Arc::new(AuditLog::new(capacity)), location(dir)))
    }

    #[tokio::test]
    async fn flushed_and_waiting_entries_are_read_once_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let lake = front_door(&dir, 100);
        let log = lake.log.clone();
        assert!(queried(&lake).await.is_empty(), "a location without the table reads as empty");
        let t = now_ns();
        log.record(entry("ana", "SELECT 'P-1'", t));
        log.record(entry("bo", "SELECT 2", t + 1));
        assert_eq!(lake.flush().await.unwrap(), 2);
        log.record(entry("ana", "SELECT 3", t + 2));
        // Committed and waiting together, each once.
        assert_eq!(queried(&lake).await, ["SELECT 'P-1'", "SELECT 2", "SELECT 3"]);
        assert_eq!(lake.flush().await.unwrap(), 1);
        assert_eq!(lake.flush().await.unwrap(), 0, "nothing waits: no commit");
        assert_eq!(log.stats().written.load(Ordering::Relaxed), 3);

        // A new process on the same location reads what the first committed.
        let restarted = front_door(&dir, 100);
        assert_eq!(queried(&restarted).await, ["SELECT 'P-1'", "SELECT 2", "SELECT 3"]);
        let table = LakeTable::open(&location(&dir), AUDIT_TABLE, None).await.unwrap().unwrap();
        assert_eq!((table.version(), table.row_count()), (2, 3), "created, then one commit per flush");
    }

    #[tokio::test]
    async fn a_flush_that_fails_keeps_its_entries_for_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let lake = front_door(&dir, 100);
        let log = lake.log.clone();
        // A file where the table's directory belongs: every write under it fails.
        let blocker = dir.path().join(AUDIT_TABLE);
        std::fs::write(&blocker, b"not a directory").unwrap();
        let t = now_ns();
        log.record(entry("ana", "SELECT 1", t));
        assert!(lake.flush().await.is_err());
        log.record(entry("ana", "SELECT 2", t + 1));
        assert_eq!(log.stats().flush_failures.load(Ordering::Relaxed), 1);
        assert_eq!(log.waiting().entries.len(), 2);

        std::fs::remove_file(&blocker).unwrap();
        assert_eq!(lake.flush().await.unwrap(), 2);
        assert_eq!(queried(&lake).await, ["SELECT 1", "SELECT 2"]);
    }

    #[tokio::test]
    async fn front_doors_appending_at_once_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let doors: Vec<Arc<AuditLake>> = (0..4).map(|_| front_door(&dir, 100)).collect();
        let t = now_ns();
        for round in 0..3 {
            for (i, door) in doors.iter().enumerate() {
                door.log.record(entry("ana", &format!("door {i} round {round}"), t + round));
            }
            // Every door commits at once from the snapshot it last saw.
            let flushes = doors.iter().map(|door| {
                let door = door.clone();
                tokio::spawn(async move { door.flush().await })
            });
            for flushed in futures::future::join_all(flushes).await {
                assert_eq!(flushed.unwrap().unwrap(), 1, "round {round}");
            }
        }
        assert_eq!(queried(&front_door(&dir, 1)).await.len(), 12);
    }

    #[tokio::test]
    async fn retention_deletes_old_entries_only_and_the_flusher_writes_the_rest_when_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let lake = front_door(&dir, 100);
        let log = lake.log.clone();
        let day_ns = 86_400 * 1_000_000_000_i64;
        log.record(entry("ana", "last year", now_ns() - 400 * day_ns));
        log.record(entry("ana", "yesterday", now_ns() - day_ns));
        lake.flush().await.unwrap();
        let cutoff_ms = chrono::Utc::now().timestamp_millis() - 365 * 86_400_000;
        assert_eq!(expire_audit_before(&location(&dir), cutoff_ms).await.unwrap(), 1);
        assert_eq!(queried(&lake).await, ["yesterday"]);

        let shutdown = CancellationToken::new();
        let flusher = tokio::spawn(run_flusher(lake.clone(), shutdown.clone()));
        log.record(entry("ana", "today", now_ns()));
        shutdown.cancel();
        flusher.await.unwrap();
        assert!(log.waiting().entries.is_empty(), "written when the flusher stopped");
        assert_eq!(queried(&front_door(&dir, 1)).await, ["yesterday", "today"]);
    }
}
