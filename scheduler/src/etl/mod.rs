//! The continuous ETL driver. Ballista runs batch jobs; continuity is ours, as in Spark's micro-batch
//! engine: each [`MicroBatch`] takes the data files the `vitals_raw` versions since the last batch
//! added, runs the ETL SQL on the cluster, commits its outputs, then records the batch in the checkpoint.
//! The Kafka partitions are dealt into partition groups ([`partition_group`]), each with micro-batches
//! of its own running beside the others' ([`group_driver`]), so that a cluster works on several at once
//! and a slow partition does not hold the others up.
//!
//! Exactly-once output. A batch's input (its files, the `vitals_raw` version they end at, and the
//! version of the ETL state it starts from) is recorded in the checkpoint (as pending) before it runs,
//! so a re-run after a crash reads exactly the same. Every output commit carries the Delta transaction
//! `(the group's application id, batch id)`: a re-run skips each table its first attempt committed.

mod admission;
mod alert_reasons;
pub mod batch_cost;
mod group_driver;
mod outputs;
pub mod partition_group;
pub mod progress;
mod regroup;
pub mod role;
pub mod sql;
pub(crate) use outputs::count_rows;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, load_etl_checkpoint};
use vitalflow_udf_model::udf::ExplainRisk;

use crate::catalog::cluster_plan::cluster_refusal;
use crate::catalog::session::register_tables;
use crate::cluster::ClusterJobs;
use crate::config::EtlConfig;
use crate::error::{Error, Result};
use group_driver::{GroupDriver, Shared};
use partition_group::PartitionGroup;

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
    /// The recent batches' input rows and times.
    pub costs: batch_cost::BatchCosts,
}

impl EtlStats {
    pub(super) fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// The driver: the ETL SQL, the checkpoint, and a [`GroupDriver`] per partition group, each with its
/// own client context on the cluster.
pub struct EtlDriver {
    shared: Arc<Shared>,
    groups: Vec<GroupDriver>,
}

/// The forest `ctx`'s ETL scoring functions use (that of its `explain_trend_risk`: the trend model, or
/// the six-vital model of a file without one); `None` when it has none.
fn context_forest(ctx: &SessionContext) -> Option<Arc<RiskForest>> {
    use datafusion::execution::FunctionRegistry;
    let udf = ctx.udf("explain_trend_risk").ok()?;
    udf.inner().downcast_ref::<ExplainRisk>().map(|e| e.forest().clone())
}

/// A context like `ctx` (its functions, settings and cluster) with a catalog of its own holding the lake
/// tables: each group registers its input under the same names as the others.
fn group_context(ctx: &SessionContext, location: &DataLocation) -> Result<SessionContext> {
    let options = ctx.copied_config();
    let (catalog_name, schema_name) =
        (options.options().catalog.default_catalog.clone(), options.options().catalog.default_schema.clone());
    let catalog = MemoryCatalogProvider::new();
    catalog
        .register_schema(&schema_name, Arc::new(MemorySchemaProvider::new()))
        .map_err(|source| Error::Query { step: "creating a partition group's catalog".into(), source })?;
    let catalogs = MemoryCatalogProviderList::new();
    catalogs.register_catalog(catalog_name, Arc::new(catalog));
    let state = SessionStateBuilder::new_from_existing(ctx.state()).with_catalog_list(Arc::new(catalogs)).build();
    let group_ctx = SessionContext::new_with_state(state);
    register_tables(&group_ctx, location)?;
    Ok(group_ctx)
}

/// The drivers of `count` groups: the first on `ctx`, the others on contexts like it.
async fn group_drivers(ctx: &SessionContext, shared: &Arc<Shared>, count: usize) -> Result<Vec<GroupDriver>> {
    let mut drivers = Vec::with_capacity(count);
    for group in PartitionGroup::all(count) {
        let ctx = if group.index == 0 { ctx.clone() } else { group_context(ctx, &shared.location)? };
        drivers.push(GroupDriver::new(group, ctx, shared.clone()).await?);
    }
    Ok(drivers)
}

impl std::fmt::Debug for EtlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtlDriver").field("groups", &self.groups.len()).finish_non_exhaustive()
    }
}

impl EtlDriver {
    /// Loads the checkpoint (none yet means a fresh start), moves it to `etl.partition_groups` groups
    /// when it has another count ([`regroup`]) and checks that the SQL plans.
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
        let recorded = checkpoint.group_positions().len();
        let shared = Arc::new(Shared {
            location,
            sql,
            config: config.clone(),
            stats,
            checkpoint: tokio::sync::Mutex::new(checkpoint),
            turns: Default::default(),
            abort_after_output: std::env::var(FAULT_ENV).is_ok_and(|v| v == "after-output"),
            forest,
        });
        let count = config.partition_groups as usize;
        if recorded != count {
            regroup::regroup(&ctx, &shared, recorded, count).await?;
        }
        let last = shared.checkpoint.lock().await.last_batch_id;
        shared.stats.last_batch_id.store(last.max(0) as u64, Ordering::Relaxed);
        let groups = group_drivers(&ctx, &shared, count).await?;
        let driver = EtlDriver { shared, groups };
        // Plan against an empty input so a broken SQL file fails at start-up, not at the first reading.
        let first = driver.first_group();
        first.register_input(&[])?;
        let planned = first
            .ctx
            .sql(&driver.shared.sql)
            .await
            .map_err(|source| Error::Query { step: "planning the ETL SQL".into(), source })?;
        // And its output must fit the outputs: a missing column fails now, not every batch.
        outputs::check_columns(planned.schema().inner())?;
        Ok(driver)
    }

    fn first_group(&self) -> &GroupDriver {
        // `PartitionGroup::all` makes at least one.
        &self.groups[0]
    }

    /// Refuses ETL SQL that the cluster would run differently than one process does
    /// ([`cluster_refusal`]): checked at start when the ETL runs on the cluster.
    pub async fn check_runs_on_cluster(&self) -> Result<()> {
        let planning = |source| Error::Query { step: "planning the ETL SQL".into(), source };
        let plan = self.first_group().ctx.state().create_logical_plan(&self.shared.sql).await.map_err(planning)?;
        match cluster_refusal(&plan) {
            Some(why) => Err(Error::Config(format!("the ETL SQL: {why}"))),
            None => Ok(()),
        }
    }

    /// Cancels a batch's job in `jobs` when it runs past `etl.batch_timeout_seconds`.
    pub fn with_cluster_jobs(mut self, jobs: ClusterJobs) -> EtlDriver {
        for group in &mut self.groups {
            group.jobs = Some(jobs.clone());
        }
        self
    }

    /// Commits a batch only while the ETL lease, renewed elsewhere, lasts (see [`role`]).
    pub fn with_lease_deadline(mut self, deadline: Arc<std::sync::atomic::AtomicI64>) -> EtlDriver {
        for group in &mut self.groups {
            group.lease_deadline = Some(deadline.clone());
        }
        self
    }

    /// The checkpoint as last committed.
    pub async fn checkpoint(&self) -> EtlCheckpoint {
        self.shared.checkpoint.lock().await.clone()
    }

    /// Runs every group's micro-batches until `shutdown`, or until a group fails in a way retrying
    /// cannot mend ([`GroupDriver::run`]): then every group stops.
    pub async fn run(self, shutdown: CancellationToken) {
        let stop = shutdown.child_token();
        futures::future::join_all(self.groups.into_iter().map(|group| group.run(stop.clone()))).await;
        tracing::info!("ETL driver stopped.");
    }

    /// Runs one micro-batch of every group with files landed since its last one, side by side; reports
    /// them as one (the highest id, the sums of files and rows, the longest times); `None` when no
    /// group had any.
    pub async fn run_once(&mut self) -> Result<Option<BatchReport>> {
        let reports = futures::future::try_join_all(self.groups.iter_mut().map(GroupDriver::run_once)).await?;
        Ok(reports.into_iter().flatten().reduce(|a, b| BatchReport {
            id: a.id.max(b.id),
            files: a.files + b.files,
            rows_out: a.rows_out + b.rows_out,
            rejected: a.rejected + b.rejected,
            alerts: a.alerts + b.alerts,
            elapsed: a.elapsed.max(b.elapsed),
            sql: a.sql.max(b.sql),
            split: a.split.max(b.split),
            write: a.write.max(b.write),
        }))
    }
}
