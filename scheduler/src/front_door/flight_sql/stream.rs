//! Results on the wire: a query's batches streamed under the announced schema within the limits,
//! audited and cancellable, and how every result (query or metadata) is encoded as Flight data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::{Response, Status};

use super::admission::Slot;
use super::cancel::RunningQuery;
use super::handle::StatementHandle;
use super::status::query_status;
use super::wire_types::{WireTypes, to_client_batch};
use super::{DoGetStream, FlightSqlEndpoint};
use crate::cluster::NamedJob;
use crate::front_door::audit::Outcome;
use crate::front_door::auth::Principal;

/// A result that could not be encoded: our fault.
pub(crate) fn encode_error(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("encoding: {e}"))
}

/// A FlightInfo with one endpoint whose ticket this server serves, and the schema clients will receive.
pub(crate) fn flight_info(
    ticket: Vec<u8>,
    schema: &SchemaRef,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(encode_error)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(true))
}

/// One batch as a Flight stream.
pub(crate) fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let schema = batch.schema();
    Response::new(encode(schema, futures::stream::once(async move { Ok(batch) })))
}

/// `batches` as Flight data under `schema`: the schema first, then the batches, and one empty batch
/// when none had rows, so that every client gets a batch to read the columns from (the encoder drops
/// empty batches, so the empty one is encoded here).
pub(crate) fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> DoGetStream {
    let (rows_sent, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (saw_rows, saw_error) = (rows_sent.clone(), failed.clone());
    let batches = batches.inspect(move |item| match item {
        Ok(batch) if batch.num_rows() > 0 => saw_rows.store(true, Ordering::Relaxed),
        Ok(_) => {}
        Err(_) => saw_error.store(true, Ordering::Relaxed),
    });
    let encoded = FlightDataEncoderBuilder::new().with_schema(schema.clone()).build(batches).map_err(Status::from);
    let tail = futures::stream::once(async move {
        (!rows_sent.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed)).then(|| empty_batch(&schema))
    })
    .filter_map(|message| async move { message });
    Box::pin(encoded.chain(tail))
}

/// The Flight data of a batch of no rows under `schema`.
fn empty_batch(schema: &SchemaRef) -> Result<FlightData, Status> {
    let mut messages =
        arrow_flight::utils::batches_to_flight_data(schema, vec![RecordBatch::new_empty(schema.clone())])
            .map_err(encode_error)?;
    // The schema message comes first; the batch is the last message.
    messages.pop().ok_or_else(|| Status::internal("encoding an empty batch gave no message"))
}

impl FlightSqlEndpoint {
    /// Runs the statement and streams it under the announced schema, within the limits, audited,
    /// until it ends or a cancel request for `ticket_handle` (the handle its ticket carries) arrives.
    pub(super) async fn stream(
        &self,
        who: &Principal,
        handle: &StatementHandle,
        ticket_handle: Bytes,
        types: WireTypes,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut audit = self.audit.start(who, &handle.sql);
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let name = format!("flight-sql/{}/{}", who.name, self.queries.fetch_add(1, Ordering::Relaxed));
        let job = NamedJob::new(name, self.jobs.clone());
        let running = self.running.register(&who.name, ticket_handle);
        let started = async {
            // Waiting for a slot counts against the time limit; the slot goes with the stream below.
            let slot = self.admission.admit(&who.name, deadline, || self.timeout_status()).await?;
            let frame = job.named(self.plan_timed(who, handle, true, deadline).await?);
            let schema = types.client_schema(frame.schema().inner());
            let run = tokio::time::timeout_at(deadline, frame.execute_stream());
            let batches = run.await.map_err(|_| self.timeout_status())?.map_err(query_status)?;
            Ok::<_, Status>((schema, batches, slot))
        };
        let (schema, batches, slot) = match started.await {
            Ok(started) => started,
            Err(status) => {
                audit.finish(Outcome::Refused, Some(status.message().to_string()));
                return Err(status);
            }
        };
        let (limits, timeout) = (self.limits, self.timeout_status());
        let announced = schema.clone();
        // One state threaded through the stream: batches, bytes so far, the audit entry, and what the
        // query holds until the stream ends or is dropped.
        let state = (batches, 0u64, audit, Held { job, running, _slot: slot }, false);
        let limited = futures::stream::unfold(state, move |(mut batches, mut bytes, mut audit, mut held, ended)| {
            let (announced, timeout) = (announced.clone(), timeout.clone());
            async move {
                if ended {
                    return None;
                }
                // A cancel request wins over a batch that is ready at the same time.
                let next = tokio::select! {
                    biased;
                    () = held.running.cancelled() => None,
                    next = tokio::time::timeout_at(deadline, batches.next()) => Some(next),
                };
                let Some(next) = next else {
                    audit.finish(Outcome::Cancelled, Some("cancelled by a cancel request".into()));
                    let status = Status::cancelled("the query was stopped by a cancel request (CancelFlightInfo)");
                    let state = (batches, bytes, audit, held, true);
                    return Some((Err(FlightError::Tonic(Box::new(status))), state));
                };
                let item = match next {
                    Err(_) => Err(timeout),
                    Ok(None) => {
                        audit.finish(Outcome::Ok, None);
                        held.job.finish();
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
                        Some((Ok(batch), (batches, bytes, audit, held, false)))
                    }
                    Err(status) => {
                        audit.finish(Outcome::Failed, Some(status.message().to_string()));
                        Some((Err(FlightError::Tonic(Box::new(status))), (batches, bytes, audit, held, true)))
                    }
                }
            }
        });
        Ok(Response::new(encode(schema, limited)))
    }
}

/// What a streaming query holds until its stream ends or is dropped (the client gone).
struct Held {
    /// Its Ballista job: dropped unfinished, it is cancelled.
    job: NamedJob,
    /// Its registration for cancel requests.
    running: RunningQuery,
    /// Its slot among its user's queries.
    _slot: Slot,
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow_flight::decode::FlightRecordBatchStream;

    use super::*;

    async fn decoded(stream: DoGetStream) -> Vec<RecordBatch> {
        let flight = stream.map_err(FlightError::from);
        FlightRecordBatchStream::new_from_flight_data(flight).try_collect().await.unwrap()
    }

    #[tokio::test]
    async fn a_result_without_rows_still_carries_one_empty_batch_and_rows_carry_none_extra() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let none = decoded(encode(schema.clone(), futures::stream::empty())).await;
        assert_eq!(none.len(), 1);
        assert_eq!((none[0].num_rows(), none[0].schema()), (0, schema.clone()));

        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let some = decoded(encode(schema, futures::stream::iter([Ok(batch.clone())]))).await;
        assert_eq!(some, vec![batch]);
    }
}
