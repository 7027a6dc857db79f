//! The Flight SQL front door: statement queries, prepared statements with parameters, and the
//! metadata calls JDBC, ADBC, Grafana and pyarrow make, over vitalflow's tables, read-only, with
//! authentication, per-query limits and an audit log. Queries run on the Ballista cluster and
//! stream to the client.
//!
//! Statement handles carry the SQL (and bound parameters) themselves (`proto/flight_sql.proto`), so
//! the server keeps no per-client state and any instance can answer any ticket. Every FlightInfo
//! has exactly one endpoint, without a location: the ticket is served by this server (Grafana
//! rejects more than one endpoint).

mod handle;
mod metadata;
mod query;
mod server;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use self::handle::StatementHandle;
use self::query::{QueryLimits, client_schema, parameter_schema, plan, query_status, to_client_batch};
pub use self::server::{RunningFlightSql, start_flight_sql};
use crate::cluster::{ClusterJobs, NamedJob};
use crate::config::FlightSqlConfig;
use crate::error::{Error, Result};
use crate::front_door::audit::{AuditLog, Outcome};
use crate::front_door::auth::{Authenticator, Principal};

type DoGetStream = <FlightSqlEndpoint as FlightService>::DoGetStream;

/// The Flight SQL service over a client context of the cluster.
#[derive(Clone)]
pub struct FlightSqlEndpoint {
    ctx: datafusion::prelude::SessionContext,
    auth: Arc<Authenticator>,
    audit: Arc<AuditLog>,
    limits: QueryLimits,
    sql_info: Arc<SqlInfoData>,
    xdbc_info: Arc<XdbcTypeInfoData>,
    /// The scheduler's jobs, when it runs in this process: lets an abandoned query's job be cancelled.
    jobs: Option<ClusterJobs>,
    queries: Arc<AtomicU64>,
    /// Where `etl_progress` reads from.
    progress: Option<Arc<ProgressSource>>,
    /// An in-process context with the same tables and functions, for queries of small tables.
    local: Option<datafusion::prelude::SessionContext>,
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

/// The caller the authentication layer put on the request.
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller on this request"))
}

fn encode_error(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("encoding: {e}"))
}

/// A FlightInfo with one endpoint whose ticket this server serves, and the schema clients will receive.
fn flight_info(ticket: Vec<u8>, schema: &SchemaRef, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(encode_error)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(true))
}

/// One batch as a Flight stream (schema message first).
fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(encoded))
}

impl FlightSqlEndpoint {
    /// The service; `ctx` must have vitalflow's tables and functions registered.
    pub fn new(ctx: datafusion::prelude::SessionContext, config: &FlightSqlConfig) -> Result<FlightSqlEndpoint> {
        config.validate()?;
        let timeout = i32::try_from(config.query_timeout_seconds).unwrap_or(i32::MAX);
        let sql_info = metadata::sql_info(timeout).map_err(|e| Error::Config(format!("building SqlInfo: {e}")))?;
        let xdbc_info = metadata::xdbc_type_info().map_err(|e| Error::Config(format!("building type info: {e}")))?;
        Ok(FlightSqlEndpoint {
            ctx,
            auth: Arc::new(Authenticator::new(&config.auth)?),
            audit: Arc::new(AuditLog::new(config.audit_window)),
            limits: QueryLimits {
                timeout: Duration::from_secs(config.query_timeout_seconds),
                max_result_bytes: config.max_result_mb.saturating_mul(1024 * 1024),
            },
            sql_info: Arc::new(sql_info),
            xdbc_info: Arc::new(xdbc_info),
            jobs: None,
            queries: Arc::new(AtomicU64::new(0)),
            progress: None,
            local: None,
        })
    }

    /// Plans queries that read only small tables (`patient_latest`) on `ctx`, in this process, instead of
    /// as Ballista jobs.
    pub fn with_local_context(mut self, ctx: datafusion::prelude::SessionContext) -> FlightSqlEndpoint {
        self.local = Some(ctx);
        self
    }

    /// Serves the `etl_progress` table (listed by GetTables) from `source`.
    pub fn with_etl_progress(mut self, source: ProgressSource) -> Result<FlightSqlEndpoint> {
        // A placeholder with the schema, so that GetTables lists it; queries naming it run on a snapshot.
        let placeholder =
            datafusion::datasource::MemTable::try_new(crate::etl::progress::PROGRESS_SCHEMA.clone(), vec![vec![]])
                .map_err(|source| Error::Query { step: "registering etl_progress".into(), source })?;
        self.ctx
            .register_table(crate::etl::progress::PROGRESS_TABLE, Arc::new(placeholder))
            .map_err(|source| Error::Query { step: "registering etl_progress".into(), source })?;
        self.progress = Some(Arc::new(source));
        Ok(self)
    }

    /// Cancels the Ballista job of a query that times out, fails or loses its client.
    pub fn with_cluster_jobs(mut self, jobs: ClusterJobs) -> FlightSqlEndpoint {
        self.jobs = Some(jobs);
        self
    }

    /// The authenticator, shared with the transport layer.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        self.auth.clone()
    }

    /// The schema a statement's results will have, refusing what the policy refuses.
    async fn announce(&self, who: &Principal, handle: &StatementHandle) -> Result<SchemaRef, Status> {
        let frame = self.plan_timed(who, handle).await?;
        Ok(client_schema(frame.schema().inner()))
    }

    async fn plan_timed(
        &self,
        who: &Principal,
        handle: &StatementHandle,
    ) -> Result<datafusion::prelude::DataFrame, Status> {
        let parameters = handle.parameters()?;
        let planning = plan(
            &self.ctx,
            self.local.as_ref(),
            &self.audit,
            self.progress.as_deref(),
            who,
            &handle.sql,
            parameters.as_ref(),
        );
        tokio::time::timeout(self.limits.timeout, planning).await.map_err(|_| self.timeout_status())?
    }

    fn timeout_status(&self) -> Status {
        Status::deadline_exceeded(format!(
            "query exceeded the time limit of {} s (flight_sql.query_timeout_seconds)",
            self.limits.timeout.as_secs()
        ))
    }

    /// Runs the statement and streams it under the announced schema, within the limits, audited.
    async fn stream(&self, who: &Principal, handle: &StatementHandle) -> Result<Response<DoGetStream>, Status> {
        let mut audit = self.audit.start(who, &handle.sql);
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let name = format!("flight-sql/{}/{}", who.name, self.queries.fetch_add(1, Ordering::Relaxed));
        let job = NamedJob::new(name, self.jobs.clone());
        let started = async {
            let frame = job.named(self.plan_timed(who, handle).await?);
            let schema = client_schema(frame.schema().inner());
            let run = tokio::time::timeout_at(deadline, frame.execute_stream());
            let batches = run.await.map_err(|_| self.timeout_status())?.map_err(query_status)?;
            Ok::<_, Status>((schema, batches))
        };
        let (schema, batches) = match started.await {
            Ok(started) => started,
            Err(status) => {
                audit.finish(Outcome::Refused, Some(status.message().to_string()));
                return Err(status);
            }
        };
        let (limits, timeout) = (self.limits, self.timeout_status());
        let announced = schema.clone();
        // One state threaded through the stream: batches, bytes so far, the audit entry.
        let state = (batches, 0u64, audit, job, false);
        let limited = futures::stream::unfold(state, move |(mut batches, mut bytes, mut audit, mut job, ended)| {
            let (announced, timeout) = (announced.clone(), timeout.clone());
            async move {
                if ended {
                    return None;
                }
                let item = match tokio::time::timeout_at(deadline, batches.next()).await {
                    Err(_) => Err(timeout),
                    Ok(None) => {
                        audit.finish(Outcome::Ok, None);
                        job.finish();
                        return None;
                    }
                    Ok(Some(Err(e))) => Err(query_status(e)),
                    Ok(Some(Ok(batch))) => {
                        bytes += batch.get_array_memory_size() as u64;
                        if bytes > limits.max_result_bytes {
                            Err(Status::resource_exhausted(format!(
                                "query result exceeds {} MiB (flight_sql.max_result_mb); narrow the time range or aggregate",
                                limits.max_result_bytes / (1024 * 1024)
                            )))
                        } else {
                            to_client_batch(batch, &announced).map_err(encode_error)
                        }
                    }
                };
                match item {
                    Ok(batch) => {
                        audit.add_rows(batch.num_rows());
                        Some((Ok(batch), (batches, bytes, audit, job, false)))
                    }
                    Err(status) => {
                        audit.finish(Outcome::Failed, Some(status.message().to_string()));
                        Some((Err(FlightError::Tonic(Box::new(status))), (batches, bytes, audit, job, true)))
                    }
                }
            }
        });
        // The schema goes first even when there are no rows.
        let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(limited).map_err(Status::from);
        Ok(Response::new(Box::pin(encoded)))
    }

    /// Audits a statement refused before it could run (at GetFlightInfo or CreatePreparedStatement).
    fn refused<T>(&self, who: &Principal, sql: &str, result: Result<T, Status>) -> Result<T, Status> {
        if let Err(status) = &result {
            self.audit.start(who, sql).finish(Outcome::Refused, Some(status.message().to_string()));
        }
        result
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlEndpoint {
    type FlightService = FlightSqlEndpoint;

    /// Basic credentials (or a bearer token) in the `authorization` header in, a bearer token out, in
    /// the `authorization` response header (where Go, Java and pyarrow clients look) and the payload.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let who = self.auth.check_header(header).map_err(|e| {
            tracing::warn!(error = %e, "Flight SQL handshake refused.");
            Status::unauthenticated(e.to_string())
        })?;
        let token = self.auth.issue_token(&who);
        let bearer = format!("Bearer {token}");
        let reply = HandshakeResponse { protocol_version: 0, payload: Bytes::from(token) };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::once(async { Ok(reply) })));
        let value = MetadataValue::try_from(bearer).map_err(|e| Status::internal(format!("token header: {e}")))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = principal(&request)?;
        let handle = StatementHandle::new(query.query);
        let schema = self.refused(&who, &handle.sql, self.announce(&who, &handle).await)?;
        let ticket = TicketStatementQuery { statement_handle: handle.to_bytes() }.as_any().encode_to_vec();
        Ok(Response::new(flight_info(ticket, &schema, request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = principal(&request)?;
        self.stream(&who, &StatementHandle::from_bytes(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = principal(&request)?;
        let handle = StatementHandle::new(query.query);
        let frame = self.refused(&who, &handle.sql, self.plan_timed(&who, &handle).await)?;
        let options = IpcWriteOptions::default();
        let ipc = |schema: &arrow::datatypes::Schema| -> Result<Bytes, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options).try_into().map_err(encode_error)?;
            Ok(bytes)
        };
        // Never empty for a query: JDBC reads an empty dataset schema as an update count.
        let dataset_schema = ipc(&client_schema(frame.schema().inner()))?;
        let parameter_schema = ipc(&parameter_schema(&frame)?)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.to_bytes(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let who = principal(&request)?;
        let handle = StatementHandle::from_bytes(&cmd.prepared_statement_handle)?;
        let schema = self.refused(&who, &handle.sql, self.announce(&who, &handle).await)?;
        Ok(Response::new(flight_info(cmd.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = principal(&request)?;
        self.stream(&who, &StatementHandle::from_bytes(&cmd.prepared_statement_handle)?).await
    }

    /// Parameter binding: the client sends one row per execution; the answer is a new handle carrying
    /// the values, which the client uses for GetFlightInfo.
    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::from_bytes(&cmd.prepared_statement_handle)?;
        let stream = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading bound parameters: {e}")))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.to_bytes()) });
        };
        if rows != 1 {
            return Err(Status::invalid_argument(format!(
                "bind exactly one row of parameters per query execution, got {rows}"
            )));
        }
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.with_parameters(first)?.to_bytes()) })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing to free: the handle is the statement.
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.sql_info.schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        // An empty list means every info (the builder's contract).
        let batch = query.into_builder(&self.sql_info).build().map_err(encode_error)?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::catalogs(&self.ctx)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::db_schemas(&self.ctx, query)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(metadata::tables(&self.ctx, query).await?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for t in metadata::TABLE_TYPES {
            builder.append(t);
        }
        Ok(batch_stream(builder.build().map_err(encode_error)?))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.xdbc_info.schema();
        Ok(Response::new(flight_info(query.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = query.into_builder(&self.xdbc_info).build().map_err(encode_error)?;
        Ok(batch_stream(batch))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(flight_info(
            query.as_any().encode_to_vec(),
            &metadata::PRIMARY_KEYS_SCHEMA,
            request.into_inner(),
        )?))
    }

    /// vitalflow's tables are append-only event logs without primary keys: always empty, never an error.
    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(metadata::PRIMARY_KEYS_SCHEMA.clone())))
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        let _ = request;
        Err(Status::unimplemented(format!("DoGet of {} is not supported by vitalflow", message.type_url)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
