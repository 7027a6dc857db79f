//! Every Flight SQL call, answered: queries and prepared statements (planned by `query`, streamed by
//! `stream`), the metadata listings, cancellation, and the refusals `refusal` spells out.

use std::pin::Pin;

use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{DoPutError, FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionCreatePreparedSubstraitPlanRequest, ActionEndSavepointRequest, ActionEndTransactionRequest, Any, Command,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, RenewFlightEndpointRequest, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::Stream;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::handle::StatementHandle;
use super::parameters::{parameter_schema, read_parameter_row};
use super::refusal::Refusal;
use super::stream::{batch_stream, encode_error, flight_info};
use super::wire_types::WireTypes;
use super::{DoGetStream, FlightSqlEndpoint, cancel, keys, metadata, principal};
use crate::front_door::table_access::role_view;

/// Flight's action that cancels the queries of a FlightInfo.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";
/// Flight's action that extends a ticket's life.
const RENEW_FLIGHT_ENDPOINT: &str = "RenewFlightEndpoint";

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
        let peer = request.remote_addr().map(|addr| addr.ip());
        let (_, token) = self.auth.sign_in(header, peer).await.map_err(|e| {
            tracing::warn!(error = %e, "Flight SQL handshake refused.");
            Status::unauthenticated(e.to_string())
        })?;
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
        // A statement cannot bind values: a placeholder in it is refused now, by name.
        let schema =
            self.refused(&who, &handle.sql, self.announce(&who, &handle, true, WireTypes::of(&request)).await)?;
        let ticket = TicketStatementQuery { statement_handle: self.handles.seal(&handle) }.as_any().encode_to_vec();
        Ok(Response::new(flight_info(ticket, &schema, request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = principal(&request)?;
        let handle = self.handles.open(&ticket.statement_handle)?;
        self.stream(&who, &handle, ticket.statement_handle, WireTypes::of(&request)).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let who = principal(&request)?;
        let handle = StatementHandle::new(query.query);
        let frame = self.refused(&who, &handle.sql, self.plan_admitted(&who, &handle, false).await)?;
        let options = IpcWriteOptions::default();
        let ipc = |schema: &arrow::datatypes::Schema| -> Result<Bytes, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options).try_into().map_err(encode_error)?;
            Ok(bytes)
        };
        // Never empty for a query: JDBC reads an empty dataset schema as an update count.
        let dataset_schema = ipc(&WireTypes::of(&request).client_schema(frame.schema().inner()))?;
        let parameter_schema = ipc(&parameter_schema(&frame)?)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.handles.seal(&handle),
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
        let handle = self.handles.open(&cmd.prepared_statement_handle)?;
        // Executing: a parameter without a value is refused here, by name, not by a failed job.
        let schema =
            self.refused(&who, &handle.sql, self.announce(&who, &handle, true, WireTypes::of(&request)).await)?;
        Ok(Response::new(flight_info(cmd.as_any().encode_to_vec(), &schema, request.into_inner())?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = principal(&request)?;
        let handle = self.handles.open(&cmd.prepared_statement_handle)?;
        self.stream(&who, &handle, cmd.prepared_statement_handle, WireTypes::of(&request)).await
    }

    /// Parameter binding: the client sends one row per execution; the answer is a new handle carrying
    /// the values, which the client uses for GetFlightInfo.
    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.bind_parameters(&cmd, request.into_inner()).await
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
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let who = principal(&request)?;
        let visible = role_view(&self.ctx, &self.ctx, who.role);
        Ok(batch_stream(metadata::tables(&visible, query, WireTypes::of(&request)).await?))
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
            &keys::PRIMARY_KEYS_SCHEMA,
            request.into_inner(),
        )?))
    }

    /// Each table's documented key (see `keys`); none for a table without one.
    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(keys::primary_keys(&self.ctx, &query).await?))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        foreign_keys_info(query.as_any().encode_to_vec(), request)
    }

    /// No table references another: the key listings are empty.
    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(keys::FOREIGN_KEYS_SCHEMA.clone())))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(keys::FOREIGN_KEYS_SCHEMA.clone())))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(RecordBatch::new_empty(keys::FOREIGN_KEYS_SCHEMA.clone())))
    }

    /// The older Flight SQL cancel: stops the caller's running queries of the FlightInfo's tickets.
    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let who = principal(&request)?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("CancelQuery: info is not a serialized FlightInfo: {e}")))?;
        self.running.cancel(&who.name, &info)?;
        // CANCEL_RESULT_CANCELLED: the same number as CancelStatus's (the enum is not exported).
        Ok(ActionCancelQueryResult { result: CancelStatus::Cancelled as i32 })
    }

    /// Flight's own actions: CancelFlightInfo (stops the caller's running queries of the FlightInfo's
    /// tickets; a query not running has nothing left to stop) and RenewFlightEndpoint (tickets never
    /// expire: the endpoint comes back as it was).
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let who = principal(&request)?;
        let action = request.into_inner();
        let bad = |what: &str, e: prost::DecodeError| {
            Status::invalid_argument(format!("{what}: body is not a {what}Request: {e}"))
        };
        let body = match action.r#type.as_str() {
            CANCEL_FLIGHT_INFO => {
                let info =
                    CancelFlightInfoRequest::decode(action.body)
                        .map_err(|e| bad(CANCEL_FLIGHT_INFO, e))?
                        .info
                        .ok_or_else(|| Status::invalid_argument("CancelFlightInfo: the request names no FlightInfo"))?;
                self.running.cancel(&who.name, &info)?;
                CancelFlightInfoResult { status: CancelStatus::Cancelled as i32 }.encode_to_vec()
            }
            RENEW_FLIGHT_ENDPOINT => {
                let endpoint = RenewFlightEndpointRequest::decode(action.body)
                    .map_err(|e| bad(RENEW_FLIGHT_ENDPOINT, e))?
                    .endpoint
                    .ok_or_else(|| Status::invalid_argument("RenewFlightEndpoint: the request names no endpoint"))?;
                let ticket = endpoint.ticket.as_ref().map(|t| t.ticket.clone()).unwrap_or_default();
                self.handles.open(&cancel::ticket_handle(&ticket)?)?;
                endpoint.encode_to_vec()
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?}: ListActions lists the actions this server takes"
                )));
            }
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::once(async move { Ok::<_, Status>(result) }))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok::<_, Status>(ActionType { r#type: name.into(), description: description.into() })
        };
        Some(vec![
            action(CANCEL_FLIGHT_INFO, "Stops the caller's running queries of a FlightInfo's tickets."),
            action(RENEW_FLIGHT_ENDPOINT, "Tickets never expire: returns the endpoint unchanged."),
        ])
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.refuse_call(&request, Refusal::SubstraitPlan)
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_call(&request, Refusal::SubstraitPlan)
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.refuse_call(&request, Refusal::PreparedSubstraitPlan)
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.refuse_call(&request, Refusal::BeginTransaction)
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.refuse_call(&request, Refusal::EndTransaction)
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.refuse_call(&request, Refusal::BeginSavepoint)
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.refuse_call(&request, Refusal::EndSavepoint)
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_call(&request, Refusal::StatementUpdate)
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_call(&request, Refusal::PreparedStatementUpdate)
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.refuse_call(&request, Refusal::Ingest)
    }

    async fn get_flight_info_fallback(
        &self,
        command: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::invalid_argument(format!(
            "GetFlightInfo of {} is not a Flight SQL query or metadata command",
            command.type_url()
        )))
    }

    async fn do_get_fallback(&self, _request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        Err(Status::invalid_argument(format!(
            "ticket of type {} was not issued by this server: use the ticket of a FlightInfo",
            message.type_url
        )))
    }

    async fn do_put_fallback(
        &self,
        _request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        Err(super::refusal::put_not_supported(&message.type_url))
    }

    async fn do_put_error_callback(
        &self,
        _request: Request<PeekableFlightDataStream>,
        error: DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        Err(Status::invalid_argument(format!(
            "DoPut: {error}; the first message must carry a FlightDescriptor with a Flight SQL command"
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl FlightSqlEndpoint {
    /// DoPut of a prepared statement: the one row of values in `messages` (read bounded) bound to
    /// the statement, answered as a new handle.
    pub(super) async fn bind_parameters(
        &self,
        cmd: &CommandPreparedStatementQuery,
        messages: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = self.handles.open(&cmd.prepared_statement_handle)?;
        let bound = match read_parameter_row(messages).await? {
            Some(row) => handle.with_parameters(&row)?,
            None => handle,
        };
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(self.handles.seal(&bound)) })
    }
}

/// The FlightInfo of a foreign key listing.
fn foreign_keys_info(ticket: Vec<u8>, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
    Ok(Response::new(flight_info(ticket, &keys::FOREIGN_KEYS_SCHEMA, request.into_inner())?))
}
