//! vitalflow's session: settings, functions and tables, the same for every context (the client
//! contexts of the ETL driver and Flight SQL, and the scheduler's session builder).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::utils::default_session_builder;
use ballista_scheduler::SessionBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::schema::{
    DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA, table,
};
use vitalflow_udf_model::udf::register_all;

use crate::catalog::parquet_table::parquet_table;
use crate::catalog::versioned_table::{VersionedTable, VitalflowLogicalCodec};
use crate::error::{Error, Result};
use vitalflow_udf_model::lake::coverage::ResolvingStore;

/// Settings of every vitalflow session. Strings stay `Utf8`: Flight SQL clients (JDBC, Grafana) do not
/// all read `Utf8View`, which DataFusion would otherwise produce from Parquet and SQL types.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_ballista_logical_extension_codec(Arc::new(VitalflowLogicalCodec::default()));
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    // Ingest lands vitals_raw in date=/hour= folders; tables are read whole, sub-folders included.
    options.execution.listing_table_ignore_subdirectory = false;
    config
}

/// The scheduler's session builder: Ballista's defaults plus vitalflow's functions, so that plans
/// naming them deserialize, and the [`runtime_env`] that resolves table listings.
pub fn scheduler_session_builder(forest: Arc<RiskForest>) -> SessionBuilder {
    Arc::new(move |config| {
        let runtime = runtime_env()?;
        let state = default_session_builder(config)?;
        // new_from_existing would give the session a new id; Ballista keys sessions by it.
        let id = state.session_id().to_string();
        let mut state =
            SessionStateBuilder::new_from_existing(state).with_session_id(id).with_runtime_env(runtime).build();
        register_all(&mut state, &forest)?;
        Ok(state)
    })
}

/// The runtime of every context that plans scans: listings are never cached (a session lives as long
/// as its client and must see every file landed since its last query) and hide files covered by a
/// compacted one (see [`vitalflow_udf_model::lake::coverage`]).
pub fn runtime_env() -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()?;
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    runtime.register_object_store(ObjectStoreUrl::local_filesystem().as_ref(), Arc::new(ResolvingStore::new(local)));
    Ok(runtime)
}

/// An in-process DataFusion context (no Ballista) with vitalflow's settings, functions and tables:
/// for benchmarks, the reference the cluster's answers are checked against, and the ETL driver in tests.
pub fn local_context(location: &DataLocation, forest: &Arc<RiskForest>) -> Result<SessionContext> {
    let step = |step: &'static str| move |source| Error::Query { step: step.to_string(), source };
    let mut state = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime_env().map_err(step("creating the runtime"))?)
        .with_default_features()
        .build();
    register_all(&mut state, forest).map_err(step("registering functions"))?;
    let ctx = SessionContext::new_with_state(state);
    register_tables(&ctx, location)?;
    register_etl_tables(&ctx, location)?;
    Ok(ctx)
}

/// A Ballista client context on the scheduler at `host:port`, with vitalflow's functions and tables.
pub async fn remote_context(
    scheduler: &str,
    location: &DataLocation,
    forest: &Arc<RiskForest>,
) -> Result<SessionContext> {
    remote_context_with(scheduler, location, forest, session_config()).await
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
    location: &DataLocation,
    forest: &Arc<RiskForest>,
    config: SessionConfig,
) -> Result<SessionContext> {
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let mut ctx = SessionContext::remote_with_state(&format!("df://{scheduler}"), state)
        .await
        .map_err(|source| Error::Query { step: format!("connecting to scheduler {scheduler}"), source })?;
    // remote_with_state drops functions registered on the state: register them on the context.
    register_all(&mut ctx, forest).map_err(|source| Error::Query { step: "registering functions".into(), source })?;
    register_tables(&ctx, location)?;
    register_etl_tables(&ctx, location)?;
    Ok(ctx)
}

/// Registers `vitals_raw`, `vitals_clean` and `dead_letters` as Parquet tables under `location`.
pub fn register_tables(ctx: &SessionContext, location: &DataLocation) -> Result<()> {
    let tables: [(&str, &SchemaRef); 3] = [
        (table::VITALS_RAW, &VITALS_RAW_SCHEMA),
        (table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA),
        (table::DEAD_LETTERS, &DEAD_LETTERS_SCHEMA),
    ];
    for (name, schema) in tables {
        let t = parquet_table(&[location.table_url(name)], schema.clone())?;
        ctx.register_table(name, Arc::new(t))
            .map_err(|source| Error::Query { step: format!("registering table {name}"), source })?;
    }
    Ok(())
}

/// Registers the tables the ETL keeps as versions (`patient_latest`) and the one it appends to
/// (`risk_alerts`).
pub fn register_etl_tables(ctx: &SessionContext, location: &DataLocation) -> Result<()> {
    let register = |name: &str, table: Arc<dyn datafusion::catalog::TableProvider>| {
        ctx.register_table(name, table)
            .map(|_| ())
            .map_err(|source| Error::Query { step: format!("registering table {name}"), source })
    };
    register(
        table::PATIENT_LATEST,
        Arc::new(VersionedTable::new(location, table::PATIENT_LATEST, PATIENT_LATEST_SCHEMA.clone())),
    )?;
    let alerts = parquet_table(&[location.table_url(table::RISK_ALERTS)], RISK_ALERTS_SCHEMA.clone())?;
    register(table::RISK_ALERTS, Arc::new(alerts))
}
