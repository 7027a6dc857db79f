//! vitalflow's session: settings, functions and tables, the same for every context (the client
//! contexts of the ETL driver and Flight SQL, and the scheduler's session builder).

use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::utils::default_session_builder;
use ballista_scheduler::SessionBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use vitalflow_executor::ClusterCredentials;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::bounded::{ValueLimit, register_bounded};
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::store_registry::LakeObjectStores;
use vitalflow_udf_model::udf::register_all;

use crate::catalog::codec::VitalflowLogicalCodec;
use crate::catalog::lake_table::{DeltaSnapshotTable, SnapshotAt};
use crate::catalog::time_travel::{TABLE_AT, TableAt, lake_tables};
use crate::error::{Error, Result};

/// Settings of every vitalflow session. Strings stay `Utf8`: Flight SQL clients (JDBC, Grafana) do not
/// all read `Utf8View`, which DataFusion would otherwise produce from Parquet and SQL types.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_logical_extension_codec(Arc::new(VitalflowLogicalCodec::default()));
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    config
}

/// The scheduler's session builder: Ballista's defaults (the value-building ones bound by `max_value`)
/// plus vitalflow's functions, so that plans naming them deserialize, and the [`runtime_env`] of every
/// context that plans scans.
pub fn scheduler_session_builder(forest: Arc<RiskForest>, max_value: ValueLimit) -> SessionBuilder {
    Arc::new(move |config| {
        let runtime = runtime_env()?;
        let state = default_session_builder(config)?;
        // new_from_existing would give the session a new id; Ballista keys sessions by it.
        let id = state.session_id().to_string();
        let mut state =
            SessionStateBuilder::new_from_existing(state).with_session_id(id).with_runtime_env(runtime).build();
        register_bounded(&mut state, max_value)?;
        register_all(&mut state, &forest)?;
        Ok(state)
    })
}

/// The runtime of every context that plans scans: listings are never cached (a session lives as long
/// as its client; the lake's tables list their files from their Delta snapshot, other listings must
/// see files written since the last query).
pub fn runtime_env() -> datafusion::error::Result<Arc<RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .with_object_store_registry(Arc::new(LakeObjectStores::default()))
        .build_arc()
}

/// An in-process DataFusion context (no Ballista) with vitalflow's settings, functions and tables:
/// for benchmarks, the reference the cluster's answers are checked against, and the ETL driver in tests.
pub fn local_context(location: &DataLocation, forest: &Arc<RiskForest>) -> Result<SessionContext> {
    let runtime = runtime_env().map_err(|source| Error::Query { step: "creating the runtime".into(), source })?;
    local_context_on(runtime, location, forest)
}

/// The front door's in-process context: [`local_context`] whose queries together hold at most
/// `memory_mb` MiB (DataFusion's accounted memory) and whose value-building functions are bound by
/// `max_value`.
pub fn front_door_local_context(
    location: &DataLocation,
    forest: &Arc<RiskForest>,
    memory_mb: u64,
    max_value: ValueLimit,
) -> Result<SessionContext> {
    let step = |step: &'static str| move |source| Error::Query { step: step.to_string(), source };
    let shared = runtime_env().map_err(step("creating the runtime"))?;
    let runtime = RuntimeEnvBuilder::from_runtime_env(&shared)
        .with_memory_limit(usize::try_from(memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX), 1.0)
        .build_arc()
        .map_err(step("creating the runtime"))?;
    let mut ctx = local_context_on(runtime, location, forest)?;
    register_bounded(&mut ctx, max_value).map_err(step("bounding functions"))?;
    Ok(ctx)
}

/// [`local_context`] on `runtime`.
fn local_context_on(
    runtime: Arc<RuntimeEnv>,
    location: &DataLocation,
    forest: &Arc<RiskForest>,
) -> Result<SessionContext> {
    let step = |step: &'static str| move |source| Error::Query { step: step.to_string(), source };
    let mut state = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    register_all(&mut state, forest).map_err(step("registering functions"))?;
    let ctx = SessionContext::new_with_state(state);
    register_tables(&ctx, location)?;
    Ok(ctx)
}

/// A Ballista client context on the scheduler at `host:port`, with vitalflow's functions and tables;
/// its connections (to the scheduler, and to executors for results) present the cluster's `credentials`.
pub async fn remote_context(
    scheduler: &str,
    credentials: &ClusterCredentials,
    location: &DataLocation,
    forest: &Arc<RiskForest>,
) -> Result<SessionContext> {
    remote_context_with(scheduler, credentials, location, forest, session_config()).await
}

/// Settings of the ETL driver's session. Ballista 55's adaptive planner is off: on the ETL's
/// window plan over small batches it plans sorts with no partitions, which DataFusion 55 rejects
/// (`topk_emitter_count > 0`) and the executor dies; the static planner runs the same plan.
/// A micro-batch is small: two shuffle partitions per stage keep its tasks few (the default, one
/// per core of the client, makes dozens of near-empty tasks per stage).
pub fn etl_session_config() -> SessionConfig {
    session_config().set_bool(ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED, false).with_target_partitions(2)
}

/// [`remote_context`] with `config` instead of [`session_config`].
pub async fn remote_context_with(
    scheduler: &str,
    credentials: &ClusterCredentials,
    location: &DataLocation,
    forest: &Arc<RiskForest>,
    config: SessionConfig,
) -> Result<SessionContext> {
    let config = credentials.session_config(config);
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let mut ctx = SessionContext::remote_with_state(&format!("df://{scheduler}"), state)
        .await
        .map_err(|source| Error::Query { step: format!("connecting to scheduler {scheduler}"), source })?;
    // remote_with_state drops functions registered on the state: register them on the context.
    register_all(&mut ctx, forest).map_err(|source| Error::Query { step: "registering functions".into(), source })?;
    register_tables(&ctx, location)?;
    Ok(ctx)
}

/// Registers the lake's tables under `location` (each its latest Delta snapshot when a query plans)
/// and the `table_at` time-travel function.
pub fn register_tables(ctx: &SessionContext, location: &DataLocation) -> Result<()> {
    for (name, schema) in lake_tables() {
        let table = DeltaSnapshotTable::new(location, name, schema, SnapshotAt::Latest);
        ctx.register_table(name, Arc::new(table))
            .map_err(|source| Error::Query { step: format!("registering table {name}"), source })?;
    }
    ctx.register_udtf(TABLE_AT, Arc::new(TableAt::new(location)));
    Ok(())
}

/// The bound tests start schedulers with: the default of `flight_sql.max_value_mb`.
#[cfg(test)]
pub(crate) fn test_value_limit() -> ValueLimit {
    ValueLimit::from_mb(crate::config::FlightSqlConfig::default().max_value_mb, "flight_sql.max_value_mb")
}
