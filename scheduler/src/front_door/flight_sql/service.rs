//! The Flight service clients talk to: the Flight SQL calls of [`FlightSqlEndpoint`], plus the plain
//! Flight calls arrow-flight's Flight SQL server leaves unanswered (GetSchema, ListFlights,
//! PollFlightInfo), and tickets and commands checked before they are decoded, so that a garbage
//! one (SQL bytes that are not UTF-8 included) is answered `INVALID_ARGUMENT` in words, not `INTERNAL`
//! with a protobuf decoder's message, as arrow-flight's dispatcher answers it. DoPut is dispatched
//! here for that reason.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{ActionCreatePreparedStatementRequest, Any, Command};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::StreamExt;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::FlightSqlEndpoint;
use super::refusal::{Refusal, put_not_supported};
use super::wire_types::WireTypes;

/// Flight SQL's action creating a prepared statement (arrow-flight keeps its constant to itself).
const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";

/// [`FlightSqlEndpoint`] as a complete Flight service.
#[derive(Debug, Clone)]
pub(crate) struct FrontDoorService {
    sql: FlightSqlEndpoint,
}

impl FrontDoorService {
    /// The service answering with `sql`.
    pub(crate) fn new(sql: FlightSqlEndpoint) -> FrontDoorService {
        FrontDoorService { sql }
    }
}

/// The Flight SQL command in `bytes` (a descriptor's command or a ticket), refused in words when
/// it is none.
fn flight_sql_command(bytes: &[u8], what: &str) -> Result<Command, Status> {
    let garbage =
        |why: String| Status::invalid_argument(format!("{what} is not a Flight SQL command of this server ({why})"));
    let any = Any::decode(bytes).map_err(|e| garbage(format!("not a protobuf Any: {e}")))?;
    let command = Command::try_from(any).map_err(|e| garbage(e.to_string()))?;
    if let Command::Unknown(any) = &command {
        return Err(garbage(format!("unknown type {:?}", any.type_url)));
    }
    Ok(command)
}

/// Refuses a CreatePreparedStatement action whose body is no request with UTF-8 SQL.
fn check_action_body(action: &Action) -> Result<(), Status> {
    if action.r#type != CREATE_PREPARED_STATEMENT {
        return Ok(());
    }
    let garbage = |why: String| {
        Status::invalid_argument(format!(
            "the {CREATE_PREPARED_STATEMENT} body is not an ActionCreatePreparedStatementRequest ({why})"
        ))
    };
    let any = Any::decode(&*action.body).map_err(|e| garbage(format!("not a protobuf Any: {e}")))?;
    match any.unpack::<ActionCreatePreparedStatementRequest>() {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(garbage(format!("type {:?}", any.type_url))),
        Err(e) => Err(garbage(e.to_string())),
    }
}

type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for FrontDoorService {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.sql, request).await
    }

    /// Results are not kept: a query's FlightInfo is made when it is asked for, so there is nothing to list.
    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::empty())))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        flight_sql_command(&request.get_ref().cmd, "the descriptor")?;
        FlightService::get_flight_info(&self.sql, request).await
    }

    /// Queries are planned when asked for, so the FlightInfo is complete at once.
    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        let info = self.get_flight_info(request).await?.into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    /// The schema of a statement, a prepared statement (parameters need no values for this) or a
    /// metadata listing, without running anything.
    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let who = super::principal(&request)?;
        let schema = match flight_sql_command(&request.get_ref().cmd, "the descriptor")? {
            Command::CommandStatementQuery(query) => {
                let handle = super::handle::StatementHandle::new(query.query);
                self.sql.refused(
                    &who,
                    &handle.sql,
                    self.sql.announce(&who, &handle, false, WireTypes::of(&request)).await,
                )?
            }
            Command::CommandPreparedStatementQuery(prepared) => {
                let handle = self.sql.handles.open(&prepared.prepared_statement_handle)?;
                self.sql.refused(
                    &who,
                    &handle.sql,
                    self.sql.announce(&who, &handle, false, WireTypes::of(&request)).await,
                )?
            }
            _ => {
                let info = FlightService::get_flight_info(&self.sql, request).await?.into_inner();
                return Ok(Response::new(SchemaResult { schema: info.schema }));
            }
        };
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let result: SchemaResult = arrow_flight::SchemaAsIpc::new(&schema, &options)
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding the schema: {e}")))?;
        Ok(Response::new(result))
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        flight_sql_command(&request.get_ref().ticket, "the ticket")?;
        FlightService::do_get(&self.sql, request).await
    }

    /// Binds a prepared statement's parameters (read bounded) and refuses every write, after checking
    /// the first message's command as GetFlightInfo's is.
    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let (metadata, extensions, mut messages) = request.into_parts();
        let no_command = || {
            Status::invalid_argument("DoPut: the first message must carry a FlightDescriptor with a Flight SQL command")
        };
        let first = messages.message().await?.ok_or_else(no_command)?;
        let descriptor = first.flight_descriptor.as_ref().ok_or_else(no_command)?;
        let command = flight_sql_command(&descriptor.cmd, "the DoPut descriptor")?;
        let request = Request::from_parts(metadata, extensions, ());
        let refusal = match command {
            Command::CommandPreparedStatementQuery(cmd) => {
                let messages = futures::stream::once(async { Ok(first) }).chain(messages);
                let bound = self.sql.bind_parameters(&cmd, messages).await?;
                let result = PutResult { app_metadata: bound.encode_to_vec().into() };
                let answer: Self::DoPutStream = Box::pin(futures::stream::once(async { Ok(result) }));
                return Ok(Response::new(answer));
            }
            Command::CommandStatementUpdate(_) => Refusal::StatementUpdate,
            Command::CommandPreparedStatementUpdate(_) => Refusal::PreparedStatementUpdate,
            Command::CommandStatementIngest(_) => Refusal::Ingest,
            Command::CommandStatementSubstraitPlan(_) => Refusal::SubstraitPlan,
            other => return Err(put_not_supported(other.type_url())),
        };
        self.sql.refuse_call(&request, refusal)
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("DoExchange is not part of Flight SQL: query with GetFlightInfo and DoGet"))
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        check_action_body(request.get_ref())?;
        FlightService::do_action(&self.sql, request).await
    }

    async fn list_actions(&self, request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.sql, request).await
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, TicketStatementQuery};

    use super::*;

    /// A message of `type_url` whose field 1 (the SQL of a query or a prepared statement) is not UTF-8.
    fn with_sql_not_utf8(type_url: &str) -> Vec<u8> {
        Any { type_url: type_url.into(), value: bytes::Bytes::from_static(b"\x0a\x03\xff\xfeA") }.encode_to_vec()
    }

    #[test]
    fn sql_that_is_not_utf8_is_invalid_argument() {
        let query = with_sql_not_utf8(CommandStatementQuery::type_url());
        let refused = flight_sql_command(&query, "the descriptor").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");

        let action = |body: Vec<u8>| Action { r#type: CREATE_PREPARED_STATEMENT.into(), body: body.into() };
        let refused = check_action_body(&action(with_sql_not_utf8(ActionCreatePreparedStatementRequest::type_url())))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
        assert!(refused.message().contains("ActionCreatePreparedStatementRequest"), "{refused}");
        let good = ActionCreatePreparedStatementRequest { query: "SELECT 1".into(), transaction_id: None };
        assert!(check_action_body(&action(good.as_any().encode_to_vec())).is_ok());
    }

    #[test]
    fn garbage_tickets_are_refused_in_words() {
        for garbage in [&b"\xff\xff\xff"[..], b"not a ticket at all", b"\x0a\x03abc"] {
            let refused = flight_sql_command(garbage, "the ticket").unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            assert!(refused.message().starts_with("the ticket is not a Flight SQL command"), "{refused}");
        }
        let ticket = TicketStatementQuery { statement_handle: bytes::Bytes::from_static(b"h") }.as_any();
        assert!(matches!(
            flight_sql_command(&ticket.encode_to_vec(), "the ticket"),
            Ok(Command::TicketStatementQuery(_))
        ));
    }
}
