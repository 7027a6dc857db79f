//! The Flight SQL front door: statement queries, prepared statements with parameters, and the
//! metadata calls JDBC, ADBC, Grafana and pyarrow make, over vitalflow's tables, read-only, with
//! authentication, per-query limits and an audit log. Queries run on the Ballista cluster and
//! stream to the client.
//!
//! Statement handles carry the SQL (and bound parameters) themselves (`proto/flight_sql.proto`), so
//! the server keeps no per-client state and any instance can answer any ticket. Every FlightInfo
//! has exactly one endpoint, without a location: the ticket is served by this server (Grafana
//! rejects more than one endpoint).
//!
//! Modules by job: `rpc` answers each Flight SQL call, `service` the plain Flight calls around them
//! (GetSchema, ListFlights, PollFlightInfo) and checks tickets; `admission` bounds each user's queries
//! at once; `query` and `parameters` plan SQL, `stream` sends results, `cancel` stops them, `status` words their errors; `metadata`, `keys` and
//! `sql_info` describe the tables and the server; `refusal` says what is refused and why; `handle`
//! seals statement handles.

mod admission;
mod cancel;
mod handle;
mod keys;
mod metadata;
mod parameters;
mod query;
mod refusal;
mod rpc;
mod server;
mod service;
mod sql_info;
mod statement_policy;
mod status;
mod stream;
mod wire_types;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use tonic::{Request, Status};

use self::admission::Admission;
pub use self::admission::AdmissionStats;
use self::cancel::RunningQueries;
use self::handle::{HandleKey, StatementHandle};
use self::query::{PlanInputs, QueryLimits, plan_bounded};
pub use self::server::{RunningFlightSql, start_flight_sql};
pub use self::wire_types::NAIVE_TIMESTAMPS_HEADER;
use self::wire_types::WireTypes;
use crate::cluster::ClusterJobs;
use crate::config::FlightSqlConfig;
use crate::error::{Error, Result};
use crate::front_door::audit::{AUDIT_SCHEMA, AUDIT_TABLE, AuditLog, Outcome};
use crate::front_door::audit_lake::AuditLake;
use crate::front_door::auth::{Authenticator, Principal};

type DoGetStream = <FlightSqlEndpoint as FlightService>::DoGetStream;

/// The Flight SQL service over a client context of the cluster.
#[derive(Clone)]
pub struct FlightSqlEndpoint {
    ctx: datafusion::prelude::SessionContext,
    auth: Arc<Authenticator>,
    audit: Arc<AuditLog>,
    /// The Delta table the audit log is written to, and read from.
    audit_lake: Arc<AuditLake>,
    limits: QueryLimits,
    sql_info: Arc<SqlInfoData>,
    xdbc_info: Arc<XdbcTypeInfoData>,
    /// The scheduler's jobs, when it runs in this process: lets an abandoned query's job be cancelled.
    jobs: Option<ClusterJobs>,
    queries: Arc<AtomicU64>,
    /// Open result streams, for cancel requests.
    running: RunningQueries,
    /// Where `etl_progress` reads from.
    progress: Option<Arc<ProgressSource>>,
    /// An in-process context with the same tables and functions, for queries of small tables.
    local: Option<datafusion::prelude::SessionContext>,
    /// Most bytes of files a query may scan to run on `local` (`flight_sql.in_process_max_scan_mb`).
    in_process_max_scan_bytes: u64,
    /// Seals the handles clients get and opens the ones they send back.
    handles: HandleKey,
    /// How many queries each user runs at once, and how many wait.
    admission: Arc<Admission>,
}

/// The sources of the `etl_progress` table: the store, and the driver's counters when it runs here.
#[derive(Debug)]
pub struct ProgressSource {
    /// The data location whose checkpoints and landed files are read.
    pub location: vitalflow_udf_model::lake::DataLocation,
    /// The ETL driver's counters, when it runs in this process.
    pub stats: Option<Arc<crate::etl::EtlStats>>,
}

impl std::fmt::Debug for FlightSqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlEndpoint").field("auth", &self.auth).finish_non_exhaustive()
    }
}

/// Registers an empty table `name` with `schema` on `ctx`, so that listings show a table whose rows
/// are read elsewhere when a query names it.
fn register_placeholder(ctx: &datafusion::prelude::SessionContext, name: &str, schema: SchemaRef) -> Result<()> {
    let step = || format!("registering {name}");
    let placeholder = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
        .map_err(|source| Error::Query { step: step(), source })?;
    ctx.register_table(name, Arc::new(placeholder)).map_err(|source| Error::Query { step: step(), source })?;
    Ok(())
}

/// The caller the authentication layer put on the request.
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller on this request"))
}

impl FlightSqlEndpoint {
    /// The service; `ctx` must have vitalflow's tables and functions registered. The audit log is
    /// written to the table `audit_log` under `location` once [`start_flight_sql`] serves it.
    pub fn new(
        ctx: datafusion::prelude::SessionContext,
        config: &FlightSqlConfig,
        location: vitalflow_udf_model::lake::DataLocation,
    ) -> Result<FlightSqlEndpoint> {
        config.validate()?;
        // Listed (to admins: `table_access`) by GetTables and information_schema; queries naming it
        // read its Delta table and the entries waiting to be written.
        register_placeholder(&ctx, AUDIT_TABLE, AUDIT_SCHEMA.clone())?;
        let audit = Arc::new(AuditLog::new(config.audit_window));
        let audit_lake = Arc::new(AuditLake::new(audit.clone(), location));
        let sql_info = sql_info::sql_info().map_err(|e| Error::Config(format!("building SqlInfo: {e}")))?;
        let xdbc_info = sql_info::xdbc_type_info().map_err(|e| Error::Config(format!("building type info: {e}")))?;
        Ok(FlightSqlEndpoint {
            ctx,
            auth: Arc::new(Authenticator::new(&config.auth)?),
            audit,
            audit_lake,
            limits: QueryLimits {
                timeout: Duration::from_secs(config.query_timeout_seconds),
                max_result_bytes: config.max_result_mb.saturating_mul(1024 * 1024),
                sql: crate::front_door::sql_limits::SqlLimits::from(config),
            },
            sql_info: Arc::new(sql_info),
            xdbc_info: Arc::new(xdbc_info),
            jobs: None,
            queries: Arc::new(AtomicU64::new(0)),
            running: RunningQueries::default(),
            progress: None,
            local: None,
            in_process_max_scan_bytes: config.in_process_max_scan_mb.saturating_mul(1024 * 1024),
            handles: HandleKey::new(&config.auth.token_secret, config.max_sql_bytes),
            admission: Admission::new(config.max_queries_per_user, config.max_queued_per_user),
        })
    }

    /// Plans queries that read only small tables (`patient_latest`), or few enough bytes
    /// (`flight_sql.in_process_max_scan_mb`), on `ctx`, in this process, instead of as Ballista jobs.
    pub fn with_local_context(mut self, ctx: datafusion::prelude::SessionContext) -> FlightSqlEndpoint {
        self.local = Some(ctx);
        self
    }

    /// Serves the `etl_progress` table (listed by GetTables) from `source`.
    pub fn with_etl_progress(mut self, source: ProgressSource) -> Result<FlightSqlEndpoint> {
        // Listed by GetTables; queries naming it run on a snapshot.
        register_placeholder(
            &self.ctx,
            crate::etl::progress::PROGRESS_TABLE,
            crate::etl::progress::PROGRESS_SCHEMA.clone(),
        )?;
        self.progress = Some(Arc::new(source));
        Ok(self)
    }

    /// Cancels the Ballista job of a query that times out, fails or loses its client.
    pub fn with_cluster_jobs(mut self, jobs: ClusterJobs) -> FlightSqlEndpoint {
        self.jobs = Some(jobs);
        self
    }

    /// The audit log's counters, for `/metrics`.
    pub fn audit_stats(&self) -> Arc<crate::front_door::audit::AuditStats> {
        self.audit.stats()
    }

    /// The authenticator, shared with the transport layer.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.clone()
    }

    /// The counters of queries that waited for or were refused a slot of their user (for `/metrics`).
    pub fn admission_stats(&self) -> Arc<AdmissionStats> {
        self.admission.stats()
    }

    /// The schema a statement's results will have, refusing what the policy refuses. `executing`:
    /// the statement is about to run, so every parameter needs a value.
    async fn announce(
        &self,
        who: &Principal,
        handle: &StatementHandle,
        executing: bool,
        types: WireTypes,
    ) -> Result<SchemaRef, Status> {
        let frame = self.plan_admitted(who, handle, executing).await?;
        Ok(types.client_schema(frame.schema().inner()))
    }

    /// Plans a statement that is not run yet (GetFlightInfo, a prepared statement) in a slot of the
    /// caller's, within the time limit.
    async fn plan_admitted(
        &self,
        who: &Principal,
        handle: &StatementHandle,
        executing: bool,
    ) -> Result<datafusion::prelude::DataFrame, Status> {
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let _slot = self.admission.admit(&who.name, deadline, || self.timeout_status()).await?;
        self.plan_timed(who, handle, executing, deadline).await
    }

    /// Plans a statement, answering `DEADLINE_EXCEEDED` once `deadline` passes.
    async fn plan_timed(
        &self,
        who: &Principal,
        handle: &StatementHandle,
        executing: bool,
        deadline: tokio::time::Instant,
    ) -> Result<datafusion::prelude::DataFrame, Status> {
        let inputs = PlanInputs {
            ctx: self.ctx.clone(),
            local: self.local.clone(),
            in_process_max_scan_bytes: self.in_process_max_scan_bytes,
            audit: self.audit_lake.clone(),
            progress: self.progress.clone(),
            who: who.clone(),
            sql: handle.sql.clone(),
            parameters: handle.parameters()?,
            executing,
        };
        plan_bounded(inputs, &self.limits, deadline).await
    }

    fn timeout_status(&self) -> Status {
        self.limits.timeout_status()
    }

    /// Audits a statement refused before it could run (at GetFlightInfo or CreatePreparedStatement).
    fn refused<T>(&self, who: &Principal, sql: &str, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result {
            self.audit.start(who, sql).finish(Outcome::Refused, Some(status.message().to_string()));
        }
        result
    }

    /// Refuses a whole call (a transaction, a Substrait plan, a write), audited under the call's name.
    fn refuse_call<T, R>(&self, request: &Request<R>, refusal: refusal::Refusal) -> Result<T, Status> {
        let status = refusal.status();
        if let Ok(who) = principal(request) {
            self.audit.start(&who, refusal.call()).finish(Outcome::Refused, Some(status.message().to_string()));
        }
        Err(status)
    }
}
