//! The continuous ETL driver. Ballista runs batch jobs; continuity is ours, as in Spark's micro-batch
//! engine: each [`MicroBatch`] takes the landed `vitals_raw` files not yet processed, runs the ETL SQL
//! on the cluster, writes its outputs, then records the batch in the checkpoint.
//!
//! Exactly-once output. A batch's file list is recorded in the checkpoint (as pending) before it runs,
//! so a re-run after a crash takes exactly the same rows. Every output file is named after the batch
//! id (`vitals_clean/batch-<id>`, `dead_letters/etl-batch-<id>`, `risk_alerts/batch-<id>`,
//! `patient_latest/v-<id>`, `_etl_state/v-<id>`) and written before the checkpoint, so the re-run
//! overwrites (or deletes) its own files instead of adding second ones.

mod outputs;
pub mod progress;
pub mod sql;
pub(crate) use outputs::count_rows;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path;

use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, PendingBatch, load_etl_checkpoint, save_etl_checkpoint};
use vitalflow_udf_model::lake::names::landed_range;
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, VITALS_RAW_SCHEMA, table};

use crate::catalog::parquet_table::parquet_table;
use crate::cluster::{ClusterJobs, NamedJob};
use crate::config::EtlConfig;
use crate::error::{Error, Result};
use vitalflow_udf_model::lake::versions::{current, list_versions, retire_versions};

/// Name under which a micro-batch's input files are visible to the ETL SQL.
pub const INPUT_TABLE: &str = "new_vitals_raw";

/// Name under which the ETL state (each patient's recent clean readings) is visible to the ETL SQL.
pub const STATE_TABLE: &str = "etl_state";

/// Directory of the ETL's state: each patient's last `etl.window_readings` clean readings, one
/// version per batch (see [`vitalflow_udf_model::lake::versions`]).
pub const STATE_DIR: &str = "_etl_state";

/// Stage written into `dead_letters.stage` for rows the ETL rejects.
pub const STAGE: &str = "etl";

/// Fault-injection hook for the exactly-once tests: when this environment variable is `after-output`,
/// the process aborts after writing a micro-batch's output and before recording it in the checkpoint,
/// the window a crash-safe driver must survive without a duplicate.
pub const FAULT_ENV: &str = "VITALFLOW_FAULT_ETL";

/// Most landed files, and bytes of them, one micro-batch takes: a backlog is worked off in bounded
/// steps, large enough that many small files (a quiet ward, short flush intervals) catch up quickly.
const MAX_FILES_PER_BATCH: usize = 2048;
const MAX_BYTES_PER_BATCH: u64 = 128 << 20;

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
    /// Rows written to `dead_letters` (stage 'etl').
    pub rejected: usize,
    /// Rows written to `risk_alerts`.
    pub alerts: usize,
    /// Time taken.
    pub elapsed: Duration,
    /// Of which running the ETL SQL, planning included.
    pub sql: Duration,
    /// Of which splitting its result into the outputs and the next state.
    pub split: Duration,
    /// Of which writing the outputs and the checkpoint.
    pub write: Duration,
}

/// Counters of the driver.
#[derive(Debug, Default)]
pub struct EtlStats {
    /// Micro-batches committed.
    pub batches: AtomicU64,
    /// Rows written to `vitals_clean`.
    pub rows_out: AtomicU64,
    /// Rows written to `dead_letters` by the ETL.
    pub rejected: AtomicU64,
    /// Rows written to `risk_alerts`.
    pub alerts: AtomicU64,
    /// Micro-batches that failed and will be retried.
    pub failures: AtomicU64,
    /// Id of the last committed micro-batch.
    pub last_batch_id: AtomicU64,
    /// The last failure, for `vitalflow status` and `etl_progress`; cleared by the next commit.
    pub last_error: std::sync::Mutex<Option<String>>,
    /// Delivery of the committed alerts to Kafka and the webhook.
    pub delivery: Arc<crate::alerts::AlertDeliveryStats>,
}

impl EtlStats {
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// The driver: a client context on the cluster, the data location, the SQL and the checkpoint.
pub struct EtlDriver {
    ctx: SessionContext,
    location: DataLocation,
    sql: String,
    config: EtlConfig,
    checkpoint: EtlCheckpoint,
    stats: Arc<EtlStats>,
    abort_after_output: bool,
    /// The state version the current batch starts from.
    state_url: Option<String>,
    /// The scheduler's jobs when it runs in this process: a batch past its deadline is cancelled there.
    jobs: Option<ClusterJobs>,
}

impl std::fmt::Debug for EtlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtlDriver").field("checkpoint_batch", &self.checkpoint.last_batch_id).finish_non_exhaustive()
    }
}

impl EtlDriver {
    /// Loads the checkpoint (none yet means a fresh start) and checks that the SQL plans.
    pub async fn new(
        ctx: SessionContext,
        location: DataLocation,
        config: &EtlConfig,
        stats: Arc<EtlStats>,
    ) -> Result<EtlDriver> {
        config.validate()?;
        let sql = sql::load(config)?;
        let checkpoint = load_etl_checkpoint(&location).await?;
        stats.last_batch_id.store(checkpoint.last_batch_id.max(0) as u64, Ordering::Relaxed);
        let abort_after_output = std::env::var(FAULT_ENV).is_ok_and(|v| v == "after-output");
        let driver = EtlDriver {
            ctx,
            location,
            sql,
            config: config.clone(),
            checkpoint,
            stats,
            abort_after_output,
            state_url: None,
            jobs: None,
        };
        // Plan against an empty input so a broken SQL file fails at start-up, not at the first reading.
        driver.register_input(&[])?;
        let planned = driver
            .ctx
            .sql(&driver.sql)
            .await
            .map_err(|source| Error::Query { step: "planning the ETL SQL".into(), source })?;
        // And its output must fit the outputs: a missing column fails now, not every batch.
        outputs::check_columns(planned.schema().inner())?;
        Ok(driver)
    }

    /// Cancels a batch's job in `jobs` when it runs past `etl.batch_timeout_seconds`.
    pub fn with_cluster_jobs(mut self, jobs: ClusterJobs) -> EtlDriver {
        self.jobs = Some(jobs);
        self
    }

    /// The checkpoint as last committed.
    pub fn checkpoint(&self) -> &EtlCheckpoint {
        &self.checkpoint
    }

    /// Runs micro-batches every `min_interval` until `shutdown`; failures are retried with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let min_interval = self.config.min_interval();
        let mut backoff = min_interval;
        loop {
            // Stopping mid-batch is a crash the checkpoint is made for (the pending batch re-runs at the
            // next start), and a batch can wait forever once the executors are gone: `up`'s in-process
            // Ballista executor stops on Ctrl-C by itself.
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                attempt = self.run_once() => attempt,
            };
            let wait = match attempt {
                Ok(_) => {
                    backoff = min_interval;
                    min_interval
                }
                Err(error) if !error.is_retryable() => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_error(Some(error.to_string()));
                    tracing::error!(error = %error, "ETL driver stopped: fix the cause and restart; nothing is lost, landed files wait.");
                    break;
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.stats.set_error(Some(error.to_string()));
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
        if self.checkpoint.pending.as_ref().is_none_or(|p| p.id != batch.id) {
            // Recorded before running: a re-run after a crash takes exactly these files.
            let mut intent = self.checkpoint.clone();
            intent.pending =
                Some(PendingBatch { id: batch.id, files: batch.files.iter().map(|p| p.to_string()).collect() });
            save_etl_checkpoint(&self.location, &intent).await?;
            self.checkpoint = intent;
        }
        self.register_inputs(&batch.files).await?;
        let step = |what: &str| format!("micro-batch {}: {what}", batch.id);
        // Named, so that a job past the deadline (or of a driver that gave up) is cancelled.
        let mut job = NamedJob::new(format!("etl/batch-{}", batch.id), self.jobs.clone());
        let run = async {
            let frame =
                self.ctx.sql(&self.sql).await.map_err(|source| Error::Query { step: step("planning"), source })?;
            job.named(frame)
                .execute_stream()
                .await
                .map_err(|source| Error::Query { step: step("starting"), source })?
                .try_collect::<Vec<RecordBatch>>()
                .await
                .map_err(|source| Error::Query { step: step("running"), source })
        };
        let timeout = self.config.batch_timeout();
        let sql_began = Instant::now();
        let results = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::BatchTimeout { batch: batch.id, seconds: timeout.as_secs() })??;
        job.finish();
        let sql = sql_began.elapsed();
        let split_began = Instant::now();
        let rows_in = outputs::count_rows(&self.location, &batch.files).await?;
        let split =
            outputs::Outputs::build(results, rows_in, batch.id, self.state_url.as_deref(), &self.config).await?;
        let write_began = Instant::now();
        let split_time = write_began - split_began;
        let written = split.write(&self.location, batch.id).await?;
        if self.abort_after_output {
            tracing::warn!(batch = batch.id, "{FAULT_ENV}: aborting between output and checkpoint.");
            std::process::abort();
        }
        let mut next = self.checkpoint.clone();
        next.last_batch_id = batch.id;
        next.pending = None;
        next.totals.rows_out += written.clean as u64;
        next.totals.rejected += written.rejected as u64;
        next.totals.alerts += written.alerts as u64;
        next.committed_at_ms = chrono::Utc::now().timestamp_millis();
        for range in batch.files.iter().filter_map(landed_range) {
            next.record(&range);
        }
        save_etl_checkpoint(&self.location, &next).await?;
        let write = write_began.elapsed();
        self.checkpoint = next;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows_out.fetch_add(written.clean as u64, Ordering::Relaxed);
        self.stats.rejected.fetch_add(written.rejected as u64, Ordering::Relaxed);
        self.stats.alerts.fetch_add(written.alerts as u64, Ordering::Relaxed);
        self.stats.last_batch_id.store(batch.id.max(0) as u64, Ordering::Relaxed);
        self.stats.set_error(None);
        // After the commit: superseded versions past their grace period.
        for dir in [table::PATIENT_LATEST, STATE_DIR] {
            if let Err(error) = retire_versions(&self.location, dir, batch.id, self.config.version_grace()).await {
                tracing::warn!(error = %error, dir, "Could not delete superseded versions; will retry after the next batch.");
            }
        }
        let report = BatchReport {
            id: batch.id,
            files: batch.files.len(),
            rows_out: written.clean,
            rejected: written.rejected,
            alerts: written.alerts,
            elapsed: started.elapsed(),
            sql,
            split: split_time,
            write,
        };
        tracing::debug!(
            batch = report.id,
            files = report.files,
            rows = report.rows_out,
            rejected = report.rejected,
            alerts = report.alerts,
            elapsed_ms = report.elapsed.as_millis() as u64,
            sql_ms = sql.as_millis() as u64,
            split_ms = split_time.as_millis() as u64,
            write_ms = write.as_millis() as u64,
            "Micro-batch committed."
        );
        Ok(Some(report))
    }

    /// The pending batch if a crash interrupted one; else the landed files not yet processed (the
    /// listing is recursive), at most [`MAX_FILES_PER_BATCH`]. Sorted by file name, so each
    /// partition's files come in offset order and a cut keeps every partition's earliest files.
    async fn next_batch(&self) -> Result<Option<MicroBatch>> {
        if let Some(pending) = &self.checkpoint.pending {
            return Ok(Some(MicroBatch {
                id: pending.id,
                files: pending.files.iter().map(|f| Path::from(f.as_str())).collect(),
            }));
        }
        let prefix = self.location.path(table::VITALS_RAW);
        // A listing is no snapshot: a file put while it runs can be missed while a later file of the
        // same partition (written after it) is seen, and taking that one would mark the missed one as
        // processed. Files in place before the listing began are all seen, and every later file of a
        // partition was written after a missed one: so only files older than the listing are taken.
        // The margin covers the file system's coarse clock (a tick), or an object store's own clock.
        let settle = chrono::Duration::milliseconds(if self.location.url().scheme() == "file" { 100 } else { 2_000 });
        let listing_began = chrono::Utc::now() - settle;
        let listed: Vec<_> = self
            .location
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store { step: format!("listing {prefix}"), source })?;
        let mut listed: Vec<_> = listed
            .into_iter()
            .filter(|m| m.last_modified < listing_began)
            .filter(|m| landed_range(&m.location).is_some_and(|r| self.checkpoint.is_new(&r)))
            .collect();
        // By file name, not path: ingest files sit in date/hour folders (the hour of a range's first
        // record), and a partition's ranges must still come in offset order for a cut to be safe.
        listed.sort_by(|a, b| {
            a.location.filename().cmp(&b.location.filename()).then_with(|| a.location.cmp(&b.location))
        });
        let mut bytes = 0;
        let files: Vec<Path> = listed
            .into_iter()
            .take(MAX_FILES_PER_BATCH)
            .enumerate()
            // The first file always, however large: a batch must make progress.
            .take_while(|(i, m)| {
                bytes += m.size;
                *i == 0 || bytes <= MAX_BYTES_PER_BATCH
            })
            .map(|(_, m)| m.location)
            .collect();
        Ok((!files.is_empty()).then(|| MicroBatch { id: self.checkpoint.last_batch_id + 1, files }))
    }

    /// Makes `files` the content of [`INPUT_TABLE`] and the newest committed state [`STATE_TABLE`].
    async fn register_inputs(&mut self, files: &[Path]) -> Result<()> {
        let dir = self.location.path(STATE_DIR);
        let versions = list_versions(self.location.store().as_ref(), &dir)
            .await
            .map_err(|source| Error::Store { step: format!("listing {dir}"), source })?;
        let path = match current(&versions, self.checkpoint.last_batch_id) {
            Some(version) => version.path.clone(),
            None => {
                // Version 0, the empty state: a real file, because Ballista 55 fails stages that
                // union a scan with an empty table (its task metrics do not match the stage's).
                let path =
                    self.location.path(&format!("{STATE_DIR}/{}", vitalflow_udf_model::lake::names::version_file(0)));
                let empty = RecordBatch::new_empty(PATIENT_LATEST_SCHEMA.clone());
                vitalflow_udf_model::lake::write_parquet(&self.location, &path, &[empty]).await?;
                path
            }
        };
        self.state_url = Some(self.location.object_url(&path));
        self.register_input(files)
    }

    /// Makes `files` the content of [`INPUT_TABLE`], and `state_url` (none: empty) of [`STATE_TABLE`].
    fn register_input(&self, files: &[Path]) -> Result<()> {
        let urls: Vec<String> = files.iter().map(|p| self.location.object_url(p)).collect();
        self.register(INPUT_TABLE, &urls, VITALS_RAW_SCHEMA.clone())?;
        let state: Vec<String> = self.state_url.iter().cloned().collect();
        self.register(STATE_TABLE, &state, PATIENT_LATEST_SCHEMA.clone())
    }

    fn register(&self, name: &str, urls: &[String], schema: arrow::datatypes::SchemaRef) -> Result<()> {
        // An empty input still needs a URL to plan against: a directory that never holds files.
        let table = if urls.is_empty() {
            parquet_table(&[self.location.table_url("_empty_input")], schema)?
        } else {
            parquet_table(urls, schema)?
        };
        let register = |step: &str, r: datafusion::error::Result<_>| {
            r.map(|_| ()).map_err(|source| Error::Query { step: format!("{step} {name}"), source })
        };
        register("dropping", self.ctx.deregister_table(name))?;
        register("registering", self.ctx.register_table(name, Arc::new(table)))
    }
}
