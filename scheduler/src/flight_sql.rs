//! A minimal Arrow Flight SQL endpoint: statement queries and prepared statements over vitalflow's
//! tables, read-only, run on the Ballista cluster and streamed to the client. (Authentication, TLS,
//! catalog metadata and limits are the front-door issue's.)
//!
//! Statement handles are the SQL text itself, so the server keeps no per-client state and any
//! instance can answer any ticket.

use std::net::SocketAddr;
use std::pin::Pin;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetSqlInfo, CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::config::FlightSqlConfig;
use crate::error::{Error, Result};

type DoGetStream = <FlightSqlEndpoint as FlightService>::DoGetStream;

/// The Flight SQL service over a client context of the cluster.
#[derive(Clone)]
pub struct FlightSqlEndpoint {
    ctx: SessionContext,
    sql_info: std::sync::Arc<SqlInfoData>,
}

impl std::fmt::Debug for FlightSqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightSqlEndpoint").finish_non_exhaustive()
    }
}

/// SQL that only reads: no DDL, no DML, no `SET` or other statements.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// A client mistake (bad SQL, unknown table, a write) is `invalid_argument`; anything else is ours.
fn query_status(e: DataFusionError) -> Status {
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            Status::invalid_argument(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

impl FlightSqlEndpoint {
    /// The service; `ctx` must have vitalflow's tables and functions registered.
    pub fn new(ctx: SessionContext) -> Result<FlightSqlEndpoint> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "vitalflow");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        let sql_info = info.build().map_err(|e| Error::Config(format!("building SqlInfo: {e}")))?;
        Ok(FlightSqlEndpoint { ctx, sql_info: std::sync::Arc::new(sql_info) })
    }

    /// Plans `sql` read-only.
    async fn plan(&self, sql: &str) -> Result<DataFrame, Status> {
        self.ctx.sql_with_options(sql, read_only()).await.map_err(query_status)
    }

    fn flight_info(handle: Bytes, schema: &SchemaRef, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let ticket = Ticket::new(TicketStatementQuery { statement_handle: handle }.as_any().encode_to_vec());
        Ok(FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor)
            .with_ordered(true))
    }

    /// Runs `sql` and streams it, under the schema announced in the FlightInfo.
    async fn stream(&self, sql: &str) -> Result<Response<DoGetStream>, Status> {
        let frame = self.plan(sql).await?;
        let schema: SchemaRef = frame.schema().inner().clone();
        let announced = schema.clone();
        let batches = frame
            .execute_stream()
            .await
            .map_err(query_status)?
            .map(move |b| {
                let b = b.map_err(|e| FlightError::ExternalError(Box::new(e)))?;
                // Executors may report other nullability than the plan: clients compare with FlightInfo.
                if b.schema() == announced {
                    Ok(b)
                } else {
                    RecordBatch::try_new(announced.clone(), b.columns().to_vec()).map_err(FlightError::Arrow)
                }
            });
        let encoded = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from);
        Ok(Response::new(Box::pin(encoded)))
    }
}

fn handle_sql(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle).map_err(|_| Status::invalid_argument("statement handle is not UTF-8 SQL"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlEndpoint {
    type FlightService = FlightSqlEndpoint;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let reply = HandshakeResponse { protocol_version: 0, payload: Bytes::new() };
        Ok(Response::new(Box::pin(futures::stream::once(async { Ok(reply) }))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let frame = self.plan(&query.query).await?;
        let schema = frame.schema().inner().clone();
        Ok(Response::new(Self::flight_info(Bytes::from(query.query), &schema, request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream(handle_sql(&ticket.statement_handle)?).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let frame = self.plan(&query.query).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(frame.schema().as_arrow(), &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding schema: {e}")))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Bytes::from(query.query),
            dataset_schema,
            parameter_schema: Bytes::new(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let frame = self.plan(handle_sql(&cmd.prepared_statement_handle)?).await?;
        let schema = frame.schema().inner().clone();
        Ok(Response::new(Self::flight_info(cmd.prepared_statement_handle, &schema, request.into_inner())?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream(handle_sql(&cmd.prepared_statement_handle)?).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        Err(Status::unimplemented(format!(
            "parameter binding is not supported yet; inline the values in the SQL ({} bytes of SQL received)",
            cmd.prepared_statement_handle.len()
        )))
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        let batch = builder.build();
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async move { batch }))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(encoded)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A running Flight SQL server.
#[derive(Debug)]
pub struct RunningFlightSql {
    /// Bound address.
    pub addr: SocketAddr,
    /// Server task; ends when the shutdown token is cancelled.
    pub task: JoinHandle<()>,
}

/// Binds and serves `endpoint` until `shutdown`.
pub async fn start_flight_sql(
    config: &FlightSqlConfig,
    endpoint: FlightSqlEndpoint,
    shutdown: CancellationToken,
) -> Result<RunningFlightSql> {
    let bind = format!("{}:{}", config.bind_host, config.port);
    let bind_err = |source| Error::Bind { what: "flight sql", addr: bind.clone(), source };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    // Set on the incoming stream: tonic ignores its builder's nodelay with serve_with_incoming.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        let served = Server::builder()
            .add_service(FlightServiceServer::new(endpoint))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "Flight SQL server stopped.");
        }
    });
    tracing::info!(%addr, "Flight SQL listening.");
    Ok(RunningFlightSql { addr, task })
}
