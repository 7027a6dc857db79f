//! The continuous ETL driver. Ballista runs batch jobs; continuity is ours, as in Spark's micro-batch
//! engine: each [`MicroBatch`] takes the landed `vitals_raw` files not yet processed, runs the ETL SQL
//! on the cluster, writes `vitals_clean/batch-<id>.parquet`, then records the batch in the checkpoint.
//!
//! Exactly-once output: the output file is named after the batch id and written before the checkpoint,
//! so a batch re-run after a crash overwrites its own file instead of adding a second one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::cast;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::DataLocation;
use vitalflow_ingest::landing::write_parquet;
use vitalflow_ingest::source::LandedRange;
use vitalflow_udf_model::schema::{VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA, table};

use crate::config::EtlConfig;
use crate::error::{Error, Result};
use crate::session::parquet_table;

/// The ETL SQL shipped with vitalflow.
pub const DEFAULT_SQL: &str = include_str!("../../deploy/etl/vitals_clean.sql");

/// Name under which a micro-batch's input files are visible to the ETL SQL.
pub const INPUT_TABLE: &str = "new_vitals_raw";

/// Object path of the checkpoint, relative to the data location.
const CHECKPOINT: &str = "_checkpoints/etl.json";

/// Fault-injection hook for the exactly-once tests: when this environment variable is `after-output`,
/// the process aborts after writing a micro-batch's output and before recording it in the checkpoint,
/// the window a crash-safe driver must survive without a duplicate.
pub const FAULT_ENV: &str = "VITALFLOW_FAULT_ETL";

/// Most landed files one micro-batch takes, so that a backlog is worked off in bounded steps.
const MAX_FILES_PER_BATCH: usize = 256;

/// What has been processed: the truth the driver resumes from. Its size is bounded by the number of
/// partitions, not of files, so it stays small however long the pipeline runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlCheckpoint {
    /// Id of the last committed micro-batch (0 before the first).
    pub last_batch_id: i64,
    /// Per `topic/partition`, the last source offset whose landed file has been processed.
    pub processed_offsets: BTreeMap<String, i64>,
}

impl EtlCheckpoint {
    fn key(range: &LandedRange) -> String {
        format!("{}/{}", range.topic, range.partition)
    }

    /// Whether a landed file still needs processing.
    fn is_new(&self, range: &LandedRange) -> bool {
        self.processed_offsets.get(&Self::key(range)).is_none_or(|done| range.last > *done)
    }

    fn record(&mut self, range: &LandedRange) {
        self.processed_offsets
            .entry(Self::key(range))
            .and_modify(|done| *done = (*done).max(range.last))
            .or_insert(range.last);
    }
}

/// One unit of ETL work.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Id; names the output file.
    pub id: i64,
    /// Input `vitals_raw` objects.
    pub files: Vec<Path>,
}

/// What one micro-batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// The batch id.
    pub id: i64,
    /// Input files.
    pub files: usize,
    /// Rows written to `vitals_clean`.
    pub rows_out: usize,
    /// Time taken.
    pub elapsed: Duration,
}

/// Counters of the driver.
#[derive(Debug, Default)]
pub struct EtlStats {
    /// Micro-batches committed.
    pub batches: AtomicU64,
    /// Rows written to `vitals_clean`.
    pub rows_out: AtomicU64,
    /// Micro-batches that failed and will be retried.
    pub failures: AtomicU64,
}

/// The driver: a client context on the cluster, the data location, the SQL and the checkpoint.
pub struct EtlDriver {
    ctx: SessionContext,
    location: DataLocation,
    sql: String,
    checkpoint: EtlCheckpoint,
    stats: Arc<EtlStats>,
    abort_after_output: bool,
}

impl std::fmt::Debug for EtlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtlDriver").field("checkpoint_batch", &self.checkpoint.last_batch_id).finish_non_exhaustive()
    }
}

impl EtlDriver {
    /// Loads the checkpoint (none yet means a fresh start) and checks that the SQL plans.
    pub async fn new(ctx: SessionContext, location: DataLocation, sql: String, stats: Arc<EtlStats>) -> Result<EtlDriver> {
        let checkpoint = load_checkpoint(&location).await?;
        let abort_after_output = std::env::var(FAULT_ENV).is_ok_and(|v| v == "after-output");
        let driver = EtlDriver { ctx, location, sql, checkpoint, stats, abort_after_output };
        // Plan against an empty input so a broken SQL file fails at start-up, not at the first reading.
        driver.register_input(&[])?;
        let planned = driver
            .ctx
            .sql(&driver.sql)
            .await
            .map_err(|source| Error::Query { step: "planning the ETL SQL".into(), source })?;
        // And its output must fit vitals_clean: a missing column fails now, not every batch.
        conform(&RecordBatch::new_empty(planned.schema().inner().clone()), 0)?;
        Ok(driver)
    }

    /// The checkpoint as last committed.
    pub fn checkpoint(&self) -> &EtlCheckpoint {
        &self.checkpoint
    }

    /// Runs micro-batches every `min_interval` until `shutdown`; failures are retried with backoff.
    pub async fn run(mut self, config: &EtlConfig, shutdown: CancellationToken) {
        let mut backoff = config.min_interval();
        loop {
            let wait = match self.run_once().await {
                Ok(_) => {
                    backoff = config.min_interval();
                    config.min_interval()
                }
                Err(error) if !error.is_retryable() => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %error, "ETL driver stopped: fix the cause and restart; nothing is lost, landed files wait.");
                    break;
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "ETL micro-batch failed; retrying.");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("ETL driver stopped.");
    }

    /// Runs one micro-batch over the files landed since the last one; `None` when there were none.
    pub async fn run_once(&mut self) -> Result<Option<BatchReport>> {
        let Some(batch) = self.next_batch().await? else { return Ok(None) };
        let started = Instant::now();
        self.register_input(&batch.files)?;
        let step = |what: &str| format!("micro-batch {}: {what}", batch.id);
        let frame = self.ctx.sql(&self.sql).await.map_err(|source| Error::Query { step: step("planning"), source })?;
        let results: Vec<RecordBatch> = frame
            .execute_stream()
            .await
            .map_err(|source| Error::Query { step: step("starting"), source })?
            .try_collect()
            .await
            .map_err(|source| Error::Query { step: step("running"), source })?;
        let conformed = results
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(b, batch.id))
            .collect::<Result<Vec<_>>>()?;
        let rows_out: usize = conformed.iter().map(RecordBatch::num_rows).sum();
        if rows_out > 0 {
            let path = self.location.path(&format!("{}/batch-{:012}.parquet", table::VITALS_CLEAN, batch.id));
            write_parquet(&self.location, &path, &conformed).await?;
        }
        if self.abort_after_output {
            tracing::warn!(batch = batch.id, "{FAULT_ENV}: aborting between output and checkpoint.");
            std::process::abort();
        }
        let mut next = self.checkpoint.clone();
        next.last_batch_id = batch.id;
        for range in batch.files.iter().filter_map(landed_range) {
            next.record(&range);
        }
        save_checkpoint(&self.location, &next).await?;
        self.checkpoint = next;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows_out.fetch_add(rows_out as u64, Ordering::Relaxed);
        let report = BatchReport { id: batch.id, files: batch.files.len(), rows_out, elapsed: started.elapsed() };
        tracing::debug!(batch = report.id, files = report.files, rows = report.rows_out, elapsed_ms = report.elapsed.as_millis() as u64, "Micro-batch committed.");
        Ok(Some(report))
    }

    /// The landed files not yet processed (the listing is recursive), at most [`MAX_FILES_PER_BATCH`].
    /// Sorted by file name, so each partition's files come in offset order and a cut keeps every
    /// partition's earliest files.
    async fn next_batch(&self) -> Result<Option<MicroBatch>> {
        let prefix = self.location.path(table::VITALS_RAW);
        let listed: Vec<_> = self
            .location
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store { step: format!("listing {prefix}"), source })?;
        let mut files: Vec<Path> = listed
            .into_iter()
            .map(|m| m.location)
            .filter(|p| landed_range(p).is_some_and(|r| self.checkpoint.is_new(&r)))
            .collect();
        // By file name, not path: ingest files sit in date/hour folders (the hour of a range's first
        // record), and a partition's ranges must still come in offset order for a cut to be safe.
        files.sort_by(|a, b| a.filename().cmp(&b.filename()).then_with(|| a.cmp(b)));
        files.truncate(MAX_FILES_PER_BATCH);
        Ok((!files.is_empty()).then(|| MicroBatch { id: self.checkpoint.last_batch_id + 1, files }))
    }

    /// Makes `files` the content of [`INPUT_TABLE`].
    fn register_input(&self, files: &[Path]) -> Result<()> {
        let urls: Vec<String> = files.iter().map(|p| self.location.object_url(p)).collect();
        // An empty input still needs a URL to plan against: the table directory, filtered to nothing.
        let table = if urls.is_empty() {
            parquet_table(&[self.location.table_url("_empty_input")], VITALS_RAW_SCHEMA.clone())?
        } else {
            parquet_table(&urls, VITALS_RAW_SCHEMA.clone())?
        };
        let register = |step: &str, r: datafusion::error::Result<_>| {
            r.map(|_| ()).map_err(|source| Error::Query { step: format!("{step} {INPUT_TABLE}"), source })
        };
        register("dropping", self.ctx.deregister_table(INPUT_TABLE))?;
        register("registering", self.ctx.register_table(INPUT_TABLE, Arc::new(table)))
    }
}

/// The source range of a `vitals_raw` object, from its name.
fn landed_range(path: &Path) -> Option<LandedRange> {
    path.filename().and_then(LandedRange::parse)
}

/// Casts an ETL result to `vitals_clean` by column name and appends `etl_batch_id`; a missing column,
/// an impossible cast or a NULL in a required column is an error naming it.
fn conform(batch: &RecordBatch, batch_id: i64) -> Result<RecordBatch> {
    let schema = VITALS_CLEAN_SCHEMA.clone();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if field.name() == "etl_batch_id" {
            columns.push(Arc::new(Int64Array::from(vec![batch_id; batch.num_rows()])));
            continue;
        }
        let column = batch
            .column_by_name(field.name())
            .ok_or_else(|| Error::Config(format!("the ETL SQL has no column {}", field.name())))?;
        let cast_column = cast(column, field.data_type())
            .map_err(|e| Error::Config(format!("ETL column {} ({}) is not {}: {e}", field.name(), column.data_type(), field.data_type())))?;
        columns.push(cast_column);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Config(format!("ETL output does not fit vitals_clean: {e}")))
}

/// The committed checkpoint; a fresh start when there is none.
pub(crate) async fn load_checkpoint(location: &DataLocation) -> Result<EtlCheckpoint> {
    let path = location.path(CHECKPOINT);
    let bytes = match location.store().get(&path).await {
        Ok(found) => found.bytes().await.map_err(|source| Error::Store { step: format!("reading {path}"), source })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(EtlCheckpoint::default()),
        Err(source) => return Err(Error::Store { step: format!("reading {path}"), source }),
    };
    serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint { path: path.to_string(), reason: e.to_string() })
}

async fn save_checkpoint(location: &DataLocation, checkpoint: &EtlCheckpoint) -> Result<()> {
    let path = location.path(CHECKPOINT);
    let json = serde_json::to_vec(checkpoint).map_err(|e| Error::Checkpoint { path: path.to_string(), reason: e.to_string() })?;
    location
        .store()
        .put(&path, PutPayload::from(json))
        .await
        .map_err(|source| Error::Store { step: format!("writing {path}"), source })?;
    Ok(())
}
