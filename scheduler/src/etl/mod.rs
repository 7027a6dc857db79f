//! The continuous ETL driver. Ballista runs batch jobs; continuity is ours, as in Spark's micro-batch
//! engine: each [`MicroBatch`] takes the data files the `vitals_raw` versions since the last batch
//! added, runs the ETL SQL on the cluster, commits its outputs, then records the batch in the checkpoint.
//!
//! Exactly-once output. A batch's input (its files, the `vitals_raw` version they end at, and the
//! version of the ETL state it starts from) is recorded in the checkpoint (as pending) before it runs,
//! so a re-run after a crash reads exactly the same. Every output commit carries the Delta
//! transaction `(vitalflow-etl, batch id)`: a re-run skips each table its first attempt committed.

mod alert_reasons;
mod outputs;
pub mod progress;
pub mod role;
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
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, PendingBatch, load_etl_checkpoint, save_etl_checkpoint};
use vitalflow_udf_model::lake::handoff::Handoff;
use vitalflow_udf_model::lake::names::ETL_STATE_TABLE;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, VITALS_RAW_SCHEMA, table};
use vitalflow_udf_model::udf::ExplainRisk;

use crate::catalog::cluster_plan::cluster_refusal;
use crate::catalog::parquet_table::parquet_table;
use crate::cluster::{ClusterJobs, NamedJob};
use crate::config::EtlConfig;
use crate::error::{Error, Result};
use outputs::OutputTables;

/// Name under which a micro-batch's input files are visible to the ETL SQL.
pub const INPUT_TABLE: &str = "new_vitals_raw";

/// Name under which the ETL state (each patient's recent clean readings) is visible to the ETL SQL.
pub const STATE_TABLE: &str = "etl_state";

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
/// Most `vitals_raw` commits read for one micro-batch (one small read each).
const MAX_COMMITS_PER_BATCH: usize = 2048;

/// One unit of ETL work.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Id; names the output files and is the version of the ETL's transactions.
    pub id: i64,
    /// Input `vitals_raw` objects.
    pub files: Vec<Path>,
    /// The `vitals_raw` version the input ends at.
    pub raw_version: i64,
    /// The ETL state version the batch starts from.
    pub state_version: i64,
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
    /// The tables the driver reads (`vitals_raw`, its state) and commits to.
    tables: OutputTables,
    /// The state files the current batch starts from.
    state_urls: Vec<String>,
    /// The scheduler's jobs when it runs in this process: a batch past its deadline is cancelled there.
    jobs: Option<ClusterJobs>,
    /// Until when (ms since the epoch) this process holds the ETL lease of the location; `None`:
    /// no lease is used (tests, benchmarks).
    lease_deadline: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// The forest the ETL scores with (the trend model), which explains the alerts.
    forest: Option<Arc<RiskForest>>,
}

/// The forest `ctx`'s ETL scoring functions use (that of its `explain_trend_risk`: the trend model, or
/// the six-vital model of a file without one); `None` when it has none.
fn context_forest(ctx: &SessionContext) -> Option<Arc<RiskForest>> {
    use datafusion::execution::FunctionRegistry;
    let udf = ctx.udf("explain_trend_risk").ok()?;
    udf.inner().downcast_ref::<ExplainRisk>().map(|e| e.forest().clone())
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
        let forest = context_forest(&ctx);
        let sql = sql::load(config, forest.as_deref())?;
        let checkpoint = load_etl_checkpoint(&location).await?;
        stats.last_batch_id.store(checkpoint.last_batch_id.max(0) as u64, Ordering::Relaxed);
        let abort_after_output = std::env::var(FAULT_ENV).is_ok_and(|v| v == "after-output");
        let tables = OutputTables::open(&location).await?;
        let driver = EtlDriver {
            ctx,
            location,
            sql,
            config: config.clone(),
            checkpoint,
            stats,
            abort_after_output,
            tables,
            state_urls: Vec::new(),
            jobs: None,
            lease_deadline: None,
            forest,
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

    /// Refuses ETL SQL that the cluster would run differently than one process does
    /// ([`cluster_refusal`]): checked at start when the ETL runs on the cluster.
    pub async fn check_runs_on_cluster(&self) -> Result<()> {
        let planning = |source| Error::Query { step: "planning the ETL SQL".into(), source };
        let plan = self.ctx.state().create_logical_plan(&self.sql).await.map_err(planning)?;
        match cluster_refusal(&plan) {
            Some(why) => Err(Error::Config(format!("the ETL SQL: {why}"))),
            None => Ok(()),
        }
    }

    /// Cancels a batch's job in `jobs` when it runs past `etl.batch_timeout_seconds`.
    pub fn with_cluster_jobs(mut self, jobs: ClusterJobs) -> EtlDriver {
        self.jobs = Some(jobs);
        self
    }

    /// Commits a batch only while the ETL lease, renewed elsewhere, lasts (see [`role`]).
    pub fn with_lease_deadline(mut self, deadline: Arc<std::sync::atomic::AtomicI64>) -> EtlDriver {
        self.lease_deadline = Some(deadline);
        self
    }

    /// The checkpoint as last committed.
    pub fn checkpoint(&self) -> &EtlCheckpoint {
        &self.checkpoint
    }

    /// Runs micro-batches until `shutdown`, starting them at most every `min_interval`; failures are
    /// retried with backoff. With nothing new it waits for ingest's word that rows landed (ingest in
    /// this process, [`Handoff`]) or for `min_interval`, whichever comes first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let min_interval = self.config.min_interval();
        let handoff = Handoff::of(&self.location);
        let mut backoff = min_interval;
        loop {
            let started = Instant::now();
            handoff.set_etl_waiting(false);
            // Stopping mid-batch is a crash the checkpoint is made for (the pending batch re-runs at the
            // next start), and a batch can wait forever once the executors are gone: `up`'s in-process
            // Ballista executor stops on Ctrl-C by itself.
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break,
                attempt = self.run_once() => attempt,
            };
            let wait = match attempt {
                Ok(Some(_)) => {
                    backoff = min_interval;
                    min_interval.saturating_sub(started.elapsed())
                }
                Ok(None) => {
                    backoff = min_interval;
                    handoff.set_etl_waiting(true);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(min_interval) => {}
                        _ = handoff.wait_landed() => {}
                    }
                    continue;
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
            // Recorded before running: a re-run after a crash reads exactly this.
            let mut intent = self.checkpoint.clone();
            intent.pending = Some(PendingBatch {
                id: batch.id,
                files: batch.files.iter().filter_map(|p| p.filename().map(str::to_string)).collect(),
                raw_version: batch.raw_version,
                state_version: batch.state_version,
            });
            save_etl_checkpoint(&self.location, &intent).await?;
            self.checkpoint = intent;
        }
        self.register_inputs(&batch).await?;
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
            outputs::Outputs::build(results, rows_in, batch.id, &self.state_urls, &self.config, self.forest.as_deref())
                .await?;
        let write_began = Instant::now();
        let split_time = write_began - split_began;
        let written = split.write(&mut self.tables, batch.id).await?;
        if self.abort_after_output {
            tracing::warn!(batch = batch.id, "{FAULT_ENV}: aborting between output and checkpoint.");
            std::process::abort();
        }
        // The fence against a driver that lost its lease while paused: the checkpoint is the commit point.
        if let Some(deadline) = &self.lease_deadline
            && chrono::Utc::now().timestamp_millis() >= deadline.load(Ordering::Relaxed)
        {
            return Err(Error::LeaseExpired { batch: batch.id });
        }
        let mut next = self.checkpoint.clone();
        next.last_batch_id = batch.id;
        next.pending = None;
        next.totals.rows_out += written.clean as u64;
        next.totals.rejected += written.rejected as u64;
        next.totals.alerts += written.alerts as u64;
        next.committed_at_ms = chrono::Utc::now().timestamp_millis();
        next.raw_version = batch.raw_version;
        save_etl_checkpoint(&self.location, &next).await?;
        let write = write_began.elapsed();
        self.checkpoint = next;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows_out.fetch_add(written.clean as u64, Ordering::Relaxed);
        self.stats.rejected.fetch_add(written.rejected as u64, Ordering::Relaxed);
        self.stats.alerts.fetch_add(written.alerts as u64, Ordering::Relaxed);
        self.stats.last_batch_id.store(batch.id.max(0) as u64, Ordering::Relaxed);
        self.stats.set_error(None);
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

    /// The pending batch if a crash interrupted one; else the data files the `vitals_raw` versions
    /// after the checkpoint's added, whole commits at a time, at most [`MAX_FILES_PER_BATCH`] files
    /// and [`MAX_BYTES_PER_BATCH`] bytes (the first commit always: a batch must make progress).
    /// Versions that added no data (compaction, a flush of bad records only) are recorded as read.
    async fn next_batch(&mut self) -> Result<Option<MicroBatch>> {
        if let Some(pending) = &self.checkpoint.pending {
            let files =
                pending.files.iter().map(|f| self.location.path(&format!("{}/{f}", table::VITALS_RAW))).collect();
            return Ok(Some(MicroBatch {
                id: pending.id,
                files,
                raw_version: pending.raw_version,
                state_version: pending.state_version,
            }));
        }
        self.tables.raw.refresh().await?;
        let latest = self.tables.raw.version();
        if latest <= self.checkpoint.raw_version {
            return Ok(None);
        }
        let added = self.tables.raw.added_since(self.checkpoint.raw_version, MAX_COMMITS_PER_BATCH).await?;
        let read_up_to = (self.checkpoint.raw_version + MAX_COMMITS_PER_BATCH as i64).min(latest);
        let mut files = Vec::new();
        let (mut bytes, mut end) = (0, read_up_to);
        let mut versions = added.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        versions.dedup();
        for version in versions {
            let of_version: Vec<_> = added.iter().filter(|(v, _)| *v == version).map(|(_, f)| f).collect();
            let size: u64 = of_version.iter().map(|f| f.size).sum();
            if !files.is_empty()
                && (files.len() + of_version.len() > MAX_FILES_PER_BATCH || bytes + size > MAX_BYTES_PER_BATCH)
            {
                end = version - 1;
                break;
            }
            bytes += size;
            files.extend(of_version.iter().map(|f| self.location.path(&format!("{}/{}", table::VITALS_RAW, f.path))));
        }
        if files.is_empty() {
            let mut next = self.checkpoint.clone();
            next.raw_version = end;
            save_etl_checkpoint(&self.location, &next).await?;
            self.checkpoint = next;
            return Ok(None);
        }
        self.tables.state.refresh().await?;
        Ok(Some(MicroBatch {
            id: self.checkpoint.last_batch_id + 1,
            files,
            raw_version: end,
            state_version: self.tables.state.version(),
        }))
    }

    /// Makes the batch's files the content of [`INPUT_TABLE`] and its starting state [`STATE_TABLE`].
    async fn register_inputs(&mut self, batch: &MicroBatch) -> Result<()> {
        // The state table as this driver last committed it, unless a re-run needs an older version.
        let files = if self.tables.state.version() == batch.state_version {
            self.tables.state.files()
        } else {
            LakeTable::open(&self.location, ETL_STATE_TABLE, Some(batch.state_version))
                .await?
                .ok_or_else(|| Error::Config(format!("the ETL state version {} is gone", batch.state_version)))?
                .files()
        };
        let base = self.location.path(ETL_STATE_TABLE);
        self.state_urls =
            files.iter().map(|f| self.location.object_url(&Path::from(format!("{base}/{}", f.path)))).collect();
        self.register_input(&batch.files)
    }

    /// Makes `files` the content of [`INPUT_TABLE`], and the state files (none: empty) of [`STATE_TABLE`].
    fn register_input(&self, files: &[Path]) -> Result<()> {
        let urls: Vec<String> = files.iter().map(|p| self.location.object_url(p)).collect();
        self.register(INPUT_TABLE, &urls, VITALS_RAW_SCHEMA.clone())?;
        self.register(STATE_TABLE, &self.state_urls, PATIENT_LATEST_SCHEMA.clone())
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
