//! The driver of one partition group: it takes the files the `vitals_raw` versions after its position
//! added for its partitions, records the batch as pending, runs the ETL SQL, commits the outputs with
//! its own transactions and then moves its position on, in the checkpoint the groups share.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, GroupPosition, PendingBatch, save_etl_checkpoint};
use vitalflow_udf_model::lake::handoff::Handoff;
use vitalflow_udf_model::lake::names::ETL_STATE_TABLE;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, VITALS_RAW_SCHEMA, table};

use super::outputs::{self, OutputTables, ReplaceTurns};
use super::partition_group::PartitionGroup;
use super::{BatchReport, EtlStats, FAULT_ENV, INPUT_TABLE, MicroBatch, STATE_TABLE};
use crate::catalog::parquet_table::parquet_table;
use crate::cluster::{ClusterJobs, NamedJob};
use crate::config::EtlConfig;
use crate::error::{Error, Result};

/// Most landed files, and bytes of them, one micro-batch takes: a backlog is worked off in bounded
/// steps, large enough that many small files (a quiet ward, short flush intervals) catch up quickly.
const MAX_FILES_PER_BATCH: usize = 2048;
const MAX_BYTES_PER_BATCH: u64 = 128 << 20;
/// Most `vitals_raw` commits read for one micro-batch (one small read each).
const MAX_COMMITS_PER_BATCH: usize = 2048;

/// What the groups of one driver share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) location: DataLocation,
    pub(super) sql: String,
    pub(super) config: EtlConfig,
    pub(super) stats: Arc<EtlStats>,
    /// The checkpoint as last committed; a group changes its own position under the lock.
    pub(super) checkpoint: tokio::sync::Mutex<EtlCheckpoint>,
    pub(super) turns: ReplaceTurns,
    pub(super) abort_after_output: bool,
    /// The forest the ETL scores with (the trend model), which explains the alerts.
    pub(super) forest: Option<Arc<RiskForest>>,
}

/// One partition group's driver.
pub(super) struct GroupDriver {
    pub(super) group: PartitionGroup,
    /// Its own context: each group registers its input and state under the names the SQL reads.
    pub(super) ctx: SessionContext,
    pub(super) shared: Arc<Shared>,
    /// The tables the group reads (`vitals_raw`, the state) and commits to.
    tables: OutputTables,
    /// The state files the current batch starts from.
    state_urls: Vec<String>,
    /// The scheduler's jobs when it runs in this process: a batch past its deadline is cancelled there.
    pub(super) jobs: Option<ClusterJobs>,
    /// Until when (ms since the epoch) this process holds the ETL lease of the location; `None`:
    /// no lease is used (tests, benchmarks).
    pub(super) lease_deadline: Option<Arc<AtomicI64>>,
    /// Where each patient is (`patient_movements`), re-read when that table moves on.
    stays: crate::stays::Stays,
}

impl GroupDriver {
    /// The driver of `group`, on its own context `ctx`.
    pub(super) async fn new(group: PartitionGroup, ctx: SessionContext, shared: Arc<Shared>) -> Result<GroupDriver> {
        let tables = OutputTables::open(&shared.location, group).await?;
        Ok(GroupDriver {
            group,
            ctx,
            shared,
            tables,
            state_urls: Vec::new(),
            jobs: None,
            lease_deadline: None,
            stays: Default::default(),
        })
    }

    /// Runs micro-batches until `shutdown` (which it cancels itself on a failure that cannot pass by
    /// retrying), starting them at most every `min_interval`; other failures are retried with backoff. With nothing new it waits for ingest's word that rows landed (ingest in
    /// this process, [`Handoff`]) or for `min_interval`, whichever comes first.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let min_interval = self.shared.config.min_interval();
        let handoff = Handoff::of(&self.shared.location);
        let mut landings = handoff.watch_landings();
        let stats = self.shared.stats.clone();
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
                        _ = landings.wait_landed() => {}
                    }
                    continue;
                }
                Err(error) if !error.is_retryable() => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    stats.set_error(Some(error.to_string()));
                    tracing::error!(group = self.group.index, error = %error, "ETL driver stopped: fix the cause and restart; nothing is lost, landed files wait.");
                    // The other groups stop too: a driver runs whole or not at all.
                    shutdown.cancel();
                    break;
                }
                Err(error) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    stats.set_error(Some(error.to_string()));
                    tracing::warn!(group = self.group.index, error = %error, retry_in_ms = backoff.as_millis() as u64, "ETL micro-batch failed; retrying.");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// This group's position in `checkpoint`.
    fn position(&self, checkpoint: &EtlCheckpoint) -> GroupPosition {
        checkpoint.group_positions().get(self.group.index).cloned().unwrap_or_default()
    }

    /// Saves `checkpoint` with this group's position changed by `change`, and makes it the shared one.
    async fn save_position(
        &self,
        checkpoint: &mut EtlCheckpoint,
        change: impl FnOnce(&mut GroupPosition, &mut EtlCheckpoint),
    ) -> Result<()> {
        let mut next = checkpoint.clone();
        let mut groups = next.group_positions();
        groups.resize(self.group.count, GroupPosition::default());
        let mut position = groups[self.group.index].clone();
        change(&mut position, &mut next);
        groups[self.group.index] = position;
        next.set_groups(groups);
        save_etl_checkpoint(&self.shared.location, &next).await?;
        *checkpoint = next;
        Ok(())
    }

    /// Runs one micro-batch over the group's files landed since its last one; `None` when there were none.
    pub(super) async fn run_once(&mut self) -> Result<Option<BatchReport>> {
        let Some(batch) = self.next_batch().await? else { return Ok(None) };
        let started = Instant::now();
        let shared = self.shared.clone();
        self.register_inputs(&batch).await?;
        let step = |what: &str| format!("micro-batch {}: {what}", batch.id);
        // Named, so that a job past the deadline (or of a driver that gave up) is cancelled.
        let mut job = NamedJob::new(format!("etl/batch-{}", batch.id), self.jobs.clone());
        let run = async {
            let frame =
                self.ctx.sql(&shared.sql).await.map_err(|source| Error::Query { step: step("planning"), source })?;
            job.named(frame)
                .execute_stream()
                .await
                .map_err(|source| Error::Query { step: step("starting"), source })?
                .try_collect::<Vec<RecordBatch>>()
                .await
                .map_err(|source| Error::Query { step: step("running"), source })
        };
        let timeout = shared.config.batch_timeout();
        let sql_began = Instant::now();
        let results = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Error::BatchTimeout { batch: batch.id, seconds: timeout.as_secs() })??;
        job.finish();
        let sql = sql_began.elapsed();
        let split_began = Instant::now();
        let rows_in = outputs::count_rows(&shared.location, &batch.files).await?;
        self.stays = std::mem::take(&mut self.stays).refreshed(&shared.location).await?;
        let split = outputs::Outputs::build(
            results,
            rows_in,
            batch.id,
            &self.state_urls,
            &shared.config,
            shared.forest.as_deref(),
            &self.stays,
        )
        .await?;
        let write_began = Instant::now();
        let split_time = write_began - split_began;
        let written = split.write(&mut self.tables, self.group, batch.id, &shared.turns).await?;
        if shared.abort_after_output {
            tracing::warn!(batch = batch.id, "{FAULT_ENV}: aborting between output and checkpoint.");
            std::process::abort();
        }
        // The fence against a driver that lost its lease while paused: the checkpoint is the commit point.
        if let Some(deadline) = &self.lease_deadline
            && chrono::Utc::now().timestamp_millis() >= deadline.load(Ordering::Relaxed)
        {
            return Err(Error::LeaseExpired { batch: batch.id });
        }
        {
            let mut checkpoint = shared.checkpoint.lock().await;
            self.save_position(&mut checkpoint, |position, next| {
                position.last_batch_id = batch.id;
                position.raw_version = batch.raw_version;
                position.pending = None;
                next.totals.rows_out += written.clean as u64;
                next.totals.rejected += written.rejected as u64;
                next.totals.alerts += written.alerts as u64;
                next.committed_at_ms = chrono::Utc::now().timestamp_millis();
            })
            .await?;
            shared.stats.last_batch_id.store(checkpoint.last_batch_id.max(0) as u64, Ordering::Relaxed);
        }
        let write = write_began.elapsed();
        let stats = &shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.rows_out.fetch_add(written.clean as u64, Ordering::Relaxed);
        stats.rejected.fetch_add(written.rejected as u64, Ordering::Relaxed);
        stats.alerts.fetch_add(written.alerts as u64, Ordering::Relaxed);
        stats.set_error(None);
        stats.costs.record(rows_in, started.elapsed());
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
            group = self.group.index,
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

    /// The group's pending batch if a crash interrupted one; else, recorded as pending under a new id,
    /// the group's data files the `vitals_raw` versions after its position added, whole commits at a
    /// time, at most [`MAX_FILES_PER_BATCH`] files and [`MAX_BYTES_PER_BATCH`] bytes (the first commit
    /// always: a batch must make progress). Versions that added none of the group's files are recorded
    /// as read.
    pub(super) async fn next_batch(&mut self) -> Result<Option<MicroBatch>> {
        let location = self.shared.location.clone();
        let as_batch = |pending: &PendingBatch| MicroBatch {
            id: pending.id,
            files: pending.files.iter().map(|f| location.path(&format!("{}/{f}", table::VITALS_RAW))).collect(),
            raw_version: pending.raw_version,
            state_version: pending.state_version,
        };
        let read = self.shared.checkpoint.lock().await.clone();
        let position = self.position(&read);
        if let Some(pending) = &position.pending {
            return Ok(Some(as_batch(pending)));
        }
        self.tables.raw.refresh().await?;
        let latest = self.tables.raw.version();
        if latest <= position.raw_version {
            return Ok(None);
        }
        let added = self.tables.raw.added_since(position.raw_version, MAX_COMMITS_PER_BATCH).await?;
        let read_up_to = (position.raw_version + MAX_COMMITS_PER_BATCH as i64).min(latest);
        let group = self.group;
        let ours: Vec<_> = added
            .into_iter()
            .filter(|(version, file)| {
                let partition = PartitionGroup::partition_of(&file.path);
                group.holds(partition) && !read.has_processed(*version, partition)
            })
            .collect();
        let mut files: Vec<String> = Vec::new();
        let (mut bytes, mut end) = (0, read_up_to);
        let mut versions = ours.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        versions.dedup();
        for version in versions {
            let of_version: Vec<_> = ours.iter().filter(|(v, _)| *v == version).map(|(_, f)| f).collect();
            let size: u64 = of_version.iter().map(|f| f.size).sum();
            if !files.is_empty()
                && (files.len() + of_version.len() > MAX_FILES_PER_BATCH || bytes + size > MAX_BYTES_PER_BATCH)
            {
                end = version - 1;
                break;
            }
            bytes += size;
            files.extend(of_version.iter().map(|f| f.path.clone()));
        }
        let mut checkpoint = self.shared.checkpoint.lock().await;
        if files.is_empty() {
            self.save_position(&mut checkpoint, |position, _| position.raw_version = end).await?;
            return Ok(None);
        }
        self.tables.state.refresh().await?;
        let pending = PendingBatch {
            id: checkpoint.next_batch_id(),
            files,
            raw_version: end,
            state_version: self.tables.state.version(),
        };
        // Recorded before running: a re-run after a crash reads exactly this.
        let batch = as_batch(&pending);
        self.save_position(&mut checkpoint, |position, _| position.pending = Some(pending)).await?;
        Ok(Some(batch))
    }

    /// Makes the batch's files the content of [`INPUT_TABLE`] and the group's part of the state it
    /// starts from [`STATE_TABLE`].
    async fn register_inputs(&mut self, batch: &MicroBatch) -> Result<()> {
        let location = &self.shared.location;
        // The state table as last read, unless a re-run needs an older version.
        let files = if self.tables.state.version() == batch.state_version {
            self.tables.state.files()
        } else {
            LakeTable::open(location, ETL_STATE_TABLE, Some(batch.state_version))
                .await?
                .ok_or_else(|| Error::Config(format!("the ETL state version {} is gone", batch.state_version)))?
                .files()
        };
        let base = location.path(ETL_STATE_TABLE);
        let part = self.group.file_part();
        self.state_urls = files
            .iter()
            .filter(|f| f.path.starts_with(&part))
            .map(|f| location.object_url(&Path::from(format!("{base}/{}", f.path))))
            .collect();
        self.register_input(&batch.files)
    }

    /// Makes `files` the content of [`INPUT_TABLE`], and the state files (none: empty) of [`STATE_TABLE`].
    pub(super) fn register_input(&self, files: &[Path]) -> Result<()> {
        let urls: Vec<String> = files.iter().map(|p| self.shared.location.object_url(p)).collect();
        self.register(INPUT_TABLE, &urls, VITALS_RAW_SCHEMA.clone())?;
        self.register(STATE_TABLE, &self.state_urls, PATIENT_LATEST_SCHEMA.clone())
    }

    fn register(&self, name: &str, urls: &[String], schema: arrow::datatypes::SchemaRef) -> Result<()> {
        // An empty input still needs a URL to plan against: a directory that never holds files.
        let table = if urls.is_empty() {
            parquet_table(&[self.shared.location.table_url("_empty_input")], schema)?
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
