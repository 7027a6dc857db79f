//! A table of the lake: a Delta Lake table under the data location, opened through the location's own
//! object store (a directory, `s3://`, `memory://`). Writers append files or replace a table's content
//! in one commit, with the application transactions (`txn`) that make their writes exactly once;
//! readers take the snapshot of a version: never half a commit, never a file twice.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
/// A Delta application transaction (`txn`): an application id and its version, committed with data.
pub use deltalake_core::kernel::Transaction;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, StructType};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::prefix::PrefixStore;

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;
use crate::lake::parquet_file::{DataFile, lake_schema, write_data_file};
use arrow::record_batch::RecordBatch;

/// Table properties of every vitalflow table. Commits come several a second: a checkpoint every 50
/// keeps a reader's log replay short; the log and removed files are kept long enough for time travel
/// and for queries that started before a compaction, and no longer (millions of small commit files).
const TABLE_PROPERTIES: [(&str, &str); 4] = [
    ("delta.checkpointInterval", "50"),
    ("delta.logRetentionDuration", "interval 2 days"),
    ("delta.deletedFileRetentionDuration", "interval 1 hours"),
    ("delta.enableExpiredLogCleanup", "true"),
];

/// What a commit says of itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitSummary {
    /// When it was committed, in ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The metadata the writing application added (see [`LakeTable::append_with_metadata`]).
    pub metadata: HashMap<String, serde_json::Value>,
}

/// A data file of a table's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    /// Path relative to the table's directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// One vitalflow table as Delta Lake sees it: its log store and the snapshot last read.
pub struct LakeTable {
    location: DataLocation,
    name: String,
    log_store: LogStoreRef,
    state: DeltaTableState,
}

impl std::fmt::Debug for LakeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTable").field("name", &self.name).field("version", &self.version()).finish()
    }
}

/// The log store of table `name` under `location`, on the location's own object store.
pub fn log_store(location: &DataLocation, name: &str) -> Result<LogStoreRef> {
    let url = location
        .table_url(name)
        .parse::<url::Url>()
        .map_err(|e| LakeError::Location { url: location.table_url(name), reason: e.to_string() })?;
    let root = location.store().clone();
    let prefixed: Arc<dyn object_store::ObjectStore> = Arc::new(PrefixStore::new(root.clone(), location.path(name)));
    Ok(default_logstore(prefixed, root, &url, &StorageConfig::default()))
}

impl LakeTable {
    /// Opens table `name` at its latest version, creating it with `schema` when it does not exist yet
    /// (two processes creating it at once: one creates, the other opens what it created).
    pub async fn open_or_create(location: &DataLocation, name: &str, schema: &SchemaRef) -> Result<LakeTable> {
        let log_store = log_store(location, name)?;
        if let Some(mut table) = Self::try_open(location, name, &log_store, None).await? {
            table.add_missing_columns(schema).await?;
            return Ok(table);
        }
        let delta_err = LakeError::delta(name, "creating");
        let columns: StructType = lake_schema(schema).as_ref().try_into_kernel().map_err(|e| delta_err(e.into()))?;
        let properties: HashMap<String, Option<String>> =
            TABLE_PROPERTIES.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect();
        let created = DeltaTable::new(log_store.clone())
            .create()
            .with_table_name(name)
            .with_columns(columns.fields().cloned())
            .with_configuration(properties)
            .with_save_mode(SaveMode::Ignore)
            .await;
        // Another process creating the same table at once wins the race: open what it created.
        let opened = Self::try_open(location, name, &log_store, None).await?;
        match (created, opened) {
            (_, Some(table)) => Ok(table),
            (Err(e), None) => Err(delta_err(e)),
            (Ok(_), None) => Err(delta_err(DeltaTableError::Generic("table missing right after its creation".into()))),
        }
    }

    /// Adds the nullable columns of `schema` that the table lacks (written by an earlier vitalflow):
    /// its older rows read them as NULL. A missing column that may not be NULL is an error naming it.
    async fn add_missing_columns(&mut self, schema: &SchemaRef) -> Result<()> {
        let missing = |table: &LakeTable| -> Vec<arrow::datatypes::Field> {
            let present = table.state.schema();
            schema.fields().iter().filter(|f| !present.contains(f.name())).map(|f| f.as_ref().clone()).collect()
        };
        let wanted = missing(self);
        if wanted.is_empty() {
            return Ok(());
        }
        let name = self.name.clone();
        let delta_err = LakeError::delta(&name, "adding columns");
        if let Some(required) = wanted.iter().find(|f| !f.is_nullable()) {
            let reason =
                format!("the table has no column {}, which may not be NULL in its older rows", required.name());
            return Err(delta_err(DeltaTableError::Generic(reason)));
        }
        let added: StructType = lake_schema(&Arc::new(arrow::datatypes::Schema::new(wanted)))
            .as_ref()
            .try_into_kernel()
            .map_err(|e| delta_err(e.into()))?;
        let added: Vec<_> = added.fields().cloned().collect();
        let added = self.delta_table().await?.add_columns().with_fields(added).await;
        self.refresh().await?;
        // Another process opening the table at once may have added them first: then the commit conflicted.
        match added {
            Err(e) if !missing(self).is_empty() => Err(delta_err(e)),
            _ => {
                tracing::info!(table = %self.name, version = self.version(), "Added the table's new nullable columns.");
                Ok(())
            }
        }
    }

    /// Opens table `name` at `version` (latest when `None`); `None` when the table does not exist.
    pub async fn open(location: &DataLocation, name: &str, version: Option<i64>) -> Result<Option<LakeTable>> {
        let log_store = log_store(location, name)?;
        Self::try_open(location, name, &log_store, version).await
    }

    async fn try_open(
        location: &DataLocation,
        name: &str,
        log_store: &LogStoreRef,
        version: Option<i64>,
    ) -> Result<Option<LakeTable>> {
        let mut looked_again = false;
        loop {
            match DeltaTableState::try_new(log_store.as_ref(), version.map(|v| v as u64)).await {
                Ok(state) => {
                    return Ok(Some(LakeTable {
                        location: location.clone(),
                        name: name.to_string(),
                        log_store: log_store.clone(),
                        state,
                    }));
                }
                Err(DeltaTableError::NotATable(_)) => return Ok(None),
                Err(DeltaTableError::InvalidVersion(_)) if version.is_some() => return Ok(None),
                // The kernel says so in several ways (no directory, an empty log): no log object, no table.
                Err(_) if !has_log(location, name).await? => return Ok(None),
                // The log appeared after the kernel looked (another process creating the table at once,
                // as two ingest processes starting together do): look again, once.
                Err(_) if !looked_again => looked_again = true,
                Err(e) => return Err(LakeError::delta(name, "opening")(e)),
            }
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version of the snapshot held.
    pub fn version(&self) -> i64 {
        self.state.version() as i64
    }

    /// Whether the snapshot's schema (the Delta log's, not the files') has column `name`.
    pub fn has_column(&self, name: &str) -> bool {
        self.state.schema().contains(name)
    }

    /// The log store, for Delta operations (OPTIMIZE, VACUUM, DELETE).
    pub fn log_store(&self) -> &LogStoreRef {
        &self.log_store
    }

    /// The table as delta-rs's [`DeltaTable`] at the snapshot held.
    pub async fn delta_table(&self) -> Result<DeltaTable> {
        let mut table = DeltaTable::new(self.log_store.clone());
        table.load_version(self.state.version()).await.map_err(LakeError::delta(&self.name, "loading"))?;
        Ok(table)
    }

    /// Moves the snapshot to the latest version.
    pub async fn refresh(&mut self) -> Result<()> {
        self.state.update(self.log_store.as_ref(), None).await.map_err(LakeError::delta(&self.name, "refreshing"))
    }

    /// The data files of the snapshot.
    pub fn files(&self) -> Vec<TableFile> {
        self.state
            .log_data()
            .iter()
            .map(|f| TableFile { path: f.path().into_owned(), size: f.size().max(0) as u64 })
            .collect()
    }

    /// Rows of the snapshot, from the files' statistics (every vitalflow file records its row count).
    pub fn row_count(&self) -> u64 {
        self.state.log_data().iter().filter_map(|f| f.num_records()).map(|n| n as u64).sum()
    }

    /// The last version application `app_id` committed to this table (see [`crate::lake::names`]).
    pub async fn txn_version(&self, app_id: &str) -> Result<Option<i64>> {
        self.state
            .transaction_version(self.log_store.as_ref(), app_id)
            .await
            .map_err(LakeError::delta(&self.name, "reading application transactions"))
    }

    /// Appends `files` (already written under the table's directory) in one commit together with
    /// `txns`; returns the new version. A commit racing another writer's is retried by delta-rs
    /// unless that writer moved one of the same applications on (a zombie after a rebalance): then
    /// [`LakeError::Conflict`].
    pub async fn append(&mut self, files: &[DataFile], txns: Vec<Transaction>) -> Result<i64> {
        self.append_with_metadata(files, txns, HashMap::new()).await
    }

    /// [`LakeTable::append`] with `metadata` recorded in the commit (read back by [`LakeTable::commit_summary`]).
    pub async fn append_with_metadata(
        &mut self,
        files: &[DataFile],
        txns: Vec<Transaction>,
        metadata: HashMap<String, serde_json::Value>,
    ) -> Result<i64> {
        let actions = files.iter().map(|f| Action::Add(add_action(f))).collect();
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        self.commit(actions, txns, metadata, operation).await
    }

    /// Writes `batches` as one data file named `<prefix>-<unique>.parquet` and appends it in one
    /// commit with `txns`; returns the new version.
    pub async fn append_batches(
        &mut self,
        prefix: &str,
        batches: &[RecordBatch],
        txns: Vec<Transaction>,
    ) -> Result<i64> {
        let file = write_data_file(&self.location, &self.name, prefix, batches).await?;
        self.append(&[file], txns).await
    }

    /// Writes `batches` as one data file and makes it the table's whole content in one commit.
    pub async fn replace_batches(
        &mut self,
        prefix: &str,
        batches: &[RecordBatch],
        txns: Vec<Transaction>,
    ) -> Result<i64> {
        self.replace_part_batches("", prefix, batches, txns).await
    }

    /// Writes `batches` as one data file named `<part><prefix>-<unique>.parquet` and makes it, in one
    /// commit with `txns`, the part of the table whose file names begin with `part`: files of other
    /// parts stay. Writers of different parts commit side by side (Delta sees no conflict in removes
    /// of different files); an empty `part` is the whole table.
    pub async fn replace_part_batches(
        &mut self,
        part: &str,
        prefix: &str,
        batches: &[RecordBatch],
        txns: Vec<Transaction>,
    ) -> Result<i64> {
        let file = write_data_file(&self.location, &self.name, &format!("{part}{prefix}"), batches).await?;
        self.replace_part(part, &[file], txns).await
    }

    /// Replaces the whole content of the table by `files` in one commit with `txns`.
    pub async fn replace(&mut self, files: &[DataFile], txns: Vec<Transaction>) -> Result<i64> {
        self.replace_part("", files, txns).await
    }

    /// Replaces the files whose names begin with `part` by `files` in one commit with `txns`.
    async fn replace_part(&mut self, part: &str, files: &[DataFile], txns: Vec<Transaction>) -> Result<i64> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = self
            .state
            .log_data()
            .iter()
            .filter(|f| f.path().starts_with(part))
            .map(|f| {
                let mut remove = f.remove_action(true);
                remove.deletion_timestamp = Some(now);
                Action::Remove(remove)
            })
            .collect();
        actions.extend(files.iter().map(|f| Action::Add(add_action(f))));
        let operation = DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: None, predicate: None };
        self.commit(actions, txns, HashMap::new(), operation).await
    }

    async fn commit(
        &mut self,
        actions: Vec<Action>,
        txns: Vec<Transaction>,
        metadata: HashMap<String, serde_json::Value>,
        operation: DeltaOperation,
    ) -> Result<i64> {
        let properties = CommitProperties::default().with_application_transactions(txns).with_metadata(metadata);
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(&self.state), self.log_store.clone(), operation)
            .await;
        match committed {
            Ok(done) => {
                self.state = done.snapshot;
                Ok(self.version())
            }
            Err(DeltaTableError::Transaction { source }) if is_conflict(&source) => {
                Err(LakeError::Conflict { table: self.name.clone(), reason: source.to_string() })
            }
            Err(e) => Err(LakeError::delta(&self.name, "committing")(e)),
        }
    }

    /// Data files landed by applications (commits carrying a Delta transaction: ingest's flushes,
    /// the ETL's batches; not compaction or retention rewrites) in versions after `after` up to the
    /// latest, each with its version, in commit order; at most `max_commits` commits are read.
    pub async fn added_since(&self, after: i64, max_commits: usize) -> Result<Vec<(i64, TableFile)>> {
        let latest = self.version();
        let store = self.log_store.object_store(None);
        let mut added = Vec::new();
        for version in (after + 1..=latest).take(max_commits) {
            let bytes = deltalake_core::logstore::read_commit_entry(store.as_ref(), version as u64)
                .await
                .map_err(LakeError::delta(&self.name, "reading a commit"))?;
            // A commit older than the log's retention is gone: the caller fell too far behind.
            let Some(bytes) = bytes else {
                return Err(LakeError::Delta {
                    table: self.name.clone(),
                    step: format!("reading commit {version}"),
                    source: Box::new(DeltaTableError::Generic("the commit has been removed by log retention".into())),
                });
            };
            let actions = deltalake_core::logstore::get_actions(version as u64, &bytes)
                .map_err(LakeError::delta(&self.name, "parsing a commit"))?;
            if !actions.iter().any(|a| matches!(a, Action::Txn(_))) {
                continue;
            }
            for action in actions {
                if let Action::Add(add) = action
                    && add.data_change
                {
                    // vitalflow's file names need no URL encoding.
                    added.push((version, TableFile { path: add.path, size: add.size.max(0) as u64 }));
                }
            }
        }
        Ok(added)
    }

    /// When version `version` was committed (ms since the epoch), from its commit file.
    pub async fn commit_time(&self, version: i64) -> Result<Option<i64>> {
        Ok(self.commit_summary(version).await?.and_then(|c| c.timestamp_ms))
    }

    /// The commit information of version `version`: its time and the application's metadata.
    pub async fn commit_summary(&self, version: i64) -> Result<Option<CommitSummary>> {
        let store = self.log_store.object_store(None);
        let bytes = deltalake_core::logstore::read_commit_entry(store.as_ref(), version.max(0) as u64)
            .await
            .map_err(LakeError::delta(&self.name, "reading a commit"))?;
        let Some(bytes) = bytes else { return Ok(None) };
        let actions = deltalake_core::logstore::get_actions(version as u64, &bytes)
            .map_err(LakeError::delta(&self.name, "parsing a commit"))?;
        Ok(actions.into_iter().find_map(|a| match a {
            Action::CommitInfo(info) => Some(CommitSummary { timestamp_ms: info.timestamp, metadata: info.info }),
            _ => None,
        }))
    }

    /// The newest version of table `name` committed at or before `at_ms` (ms since the epoch); `None`
    /// when the table is younger or does not exist.
    pub async fn version_at(location: &DataLocation, name: &str, at_ms: i64) -> Result<Option<i64>> {
        let log_store = log_store(location, name)?;
        let mut table = DeltaTable::new(log_store);
        let Some(at) = chrono::DateTime::from_timestamp_millis(at_ms) else { return Ok(None) };
        match table.load_with_datetime(at).await {
            Ok(()) => Ok(table.version().map(|v| v as i64)),
            Err(DeltaTableError::NotATable(_)) | Err(DeltaTableError::InvalidDateTimeString { .. }) => Ok(None),
            Err(e) => Err(LakeError::delta(name, "finding a version by time")(e)),
        }
    }
}

/// Whether table `name` has a Delta log object.
async fn has_log(location: &DataLocation, name: &str) -> Result<bool> {
    let prefix = location.path(&format!("{name}/_delta_log"));
    let mut listed = location.store().list(Some(&prefix));
    match futures::StreamExt::next(&mut listed).await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(source)) => Err(LakeError::store("list", &prefix, source)),
    }
}

/// Whether a failed commit lost a race it must not win: another writer moved one of its
/// application transactions on, or removed what it read.
fn is_conflict(error: &deltalake_core::kernel::transaction::TransactionError) -> bool {
    use deltalake_core::kernel::transaction::TransactionError;
    matches!(error, TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_))
}

fn add_action(file: &DataFile) -> Add {
    Add {
        path: file.path.clone(),
        partition_values: HashMap::new(),
        size: file.bytes as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        // The row count lets readers (and `status`) count without opening files.
        stats: Some(format!("{{\"numRecords\":{}}}", file.rows)),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::lake::parquet_file::write_data_file;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("offset", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
        ]))
    }

    fn rows(offsets: std::ops::Range<i64>) -> RecordBatch {
        let times: Vec<i64> = offsets.clone().map(|o| o * 1_000_000_000).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(offsets)),
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn processes_creating_the_same_tables_at_once_all_open_them() {
        // As ingest processes started together do: each opens or creates the same tables.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
            let opens = (0..4).map(|_| {
                let location = location.clone();
                tokio::spawn(
                    async move { LakeTable::open_or_create(&location, "t", &schema()).await.map(|t| t.version()) },
                )
            });
            // Every one opens it (a creator that lost the race may add a commit of the same schema).
            for open in futures::future::join_all(opens).await {
                let version = open.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert!(version <= 3, "round {round}: version {version}");
            }
        }
    }

    #[tokio::test]
    async fn a_table_of_an_earlier_version_gets_the_new_nullable_columns_once() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let mut old = LakeTable::open_or_create(&location, "t", &schema()).await.unwrap();
        let file = write_data_file(&location, "t", "p0", &[rows(0..10)]).await.unwrap();
        old.append(&[file], vec![]).await.unwrap();
        let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("note", DataType::Utf8, true));
        let wider = Arc::new(Schema::new(fields.clone()));

        let table = LakeTable::open_or_create(&location, "t", &wider).await.unwrap();
        assert_eq!(table.version(), 2, "one commit adds the column");
        let names: Vec<String> = table.state.schema().field_names().cloned().collect();
        assert_eq!(names, ["offset", "t", "note"]);
        assert_eq!(table.row_count(), 10, "the older rows stay");
        let again = LakeTable::open_or_create(&location, "t", &wider).await.unwrap();
        assert_eq!(again.version(), 2, "nothing to add the second time");

        fields.push(Field::new("required", DataType::Int64, false));
        let err = LakeTable::open_or_create(&location, "t", &Arc::new(Schema::new(fields))).await.unwrap_err();
        assert!(err.to_string().contains("no column required"), "{err}");
    }

    #[tokio::test]
    async fn appends_are_exactly_once_through_application_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let mut writer = LakeTable::open_or_create(&location, "t", &schema()).await.unwrap();
        assert_eq!(writer.version(), 0);
        let file = write_data_file(&location, "t", "p0", &[rows(0..10)]).await.unwrap();
        let v = writer.append(&[file], vec![Transaction::new("app-p0", 9)]).await.unwrap();
        assert_eq!(v, 1);
        assert_eq!(writer.txn_version("app-p0").await.unwrap(), Some(9));
        assert_eq!(writer.row_count(), 10);

        // A second writer (a zombie) opened before the first one's next commit.
        let mut zombie = LakeTable::open(&location, "t", None).await.unwrap().unwrap();
        let next = write_data_file(&location, "t", "p0", &[rows(10..20)]).await.unwrap();
        writer.append(&[next], vec![Transaction::new("app-p0", 19)]).await.unwrap();
        let stale = write_data_file(&location, "t", "p0", &[rows(10..15)]).await.unwrap();
        let refused = zombie.append(&[stale], vec![Transaction::new("app-p0", 14)]).await;
        assert!(matches!(refused, Err(LakeError::Conflict { .. })), "{refused:?}");

        // Another application's commit racing is fine.
        let other = write_data_file(&location, "t", "p1", &[rows(0..3)]).await.unwrap();
        zombie.append(&[other], vec![Transaction::new("app-p1", 2)]).await.unwrap();

        let mut reader = LakeTable::open(&location, "t", None).await.unwrap().unwrap();
        reader.refresh().await.unwrap();
        assert_eq!(reader.row_count(), 23);
        assert_eq!(reader.files().len(), 3);
        let added = reader.added_since(1, 100).await.unwrap();
        assert_eq!(added.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![2, 3]);
        // Time travel: version 1 holds the first file only.
        let old = LakeTable::open(&location, "t", Some(1)).await.unwrap().unwrap();
        assert_eq!(old.row_count(), 10);
    }

    #[tokio::test]
    async fn replace_swaps_the_whole_content_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let mut table = LakeTable::open_or_create(&location, "latest", &schema()).await.unwrap();
        for batch in 1..=3 {
            let file = write_data_file(&location, "latest", "v", &[rows(0..batch)]).await.unwrap();
            table.replace(&[file], vec![Transaction::new("etl", batch)]).await.unwrap();
        }
        assert_eq!(table.files().len(), 1);
        assert_eq!(table.row_count(), 3);
        assert_eq!(table.txn_version("etl").await.unwrap(), Some(3));
        // Each replacement adds its file as new data.
        assert_eq!(table.added_since(0, 10).await.unwrap().len(), 3);
    }
}
