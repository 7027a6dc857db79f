//! Stopping running queries on request (CancelFlightInfo, and Flight SQL's older CancelQuery).
//!
//! A query runs only while the DoGet stream of its ticket is open. Each such stream registers
//! under its caller and its ticket's statement handle; a cancel request names the tickets of a
//! FlightInfo, and every open stream of the same caller with one of those tickets ends with
//! `CANCELLED`, which drops its Ballista job (and so cancels it). A caller cancels only its own queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::FlightInfo;
use arrow_flight::sql::{Any, Command};
use bytes::Bytes;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Who runs which ticket: the caller's name and the statement handle the ticket carries.
type RunKey = (String, Bytes);

/// The cancel tokens of the open streams, by who runs which ticket (a ticket may run more than once).
type OpenStreams = HashMap<RunKey, Vec<(u64, CancellationToken)>>;

/// The open result streams, by caller and ticket.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunningQueries {
    streams: Arc<Mutex<OpenStreams>>,
    next_id: Arc<AtomicU64>,
}

/// One open stream's registration; dropping it (the stream ended) removes it.
#[derive(Debug)]
pub(crate) struct RunningQuery {
    key: RunKey,
    id: u64,
    token: CancellationToken,
    registry: RunningQueries,
}

impl RunningQuery {
    /// Completes when the query is cancelled.
    pub(crate) fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        let mut streams = self.registry.lock();
        if let Some(entries) = streams.get_mut(&self.key) {
            entries.retain(|(id, _)| *id != self.id);
            if entries.is_empty() {
                streams.remove(&self.key);
            }
        }
    }
}

impl RunningQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenStreams> {
        // A poisoned lock only means another thread panicked mid-update; the map is still valid.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream of `user` serving the ticket whose statement handle is `handle`.
    pub(crate) fn register(&self, user: &str, handle: Bytes) -> RunningQuery {
        let key = (user.to_string(), handle);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock().entry(key.clone()).or_default().push((id, token.clone()));
        RunningQuery { key, id, token, registry: self.clone() }
    }

    /// Cancels the open streams of `user` for the tickets of `info`; how many there were.
    pub(crate) fn cancel(&self, user: &str, info: &FlightInfo) -> Result<usize, Status> {
        let mut cancelled = 0;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else { continue };
            let key = (user.to_string(), ticket_handle(&ticket.ticket)?);
            if let Some(entries) = self.lock().get(&key) {
                for (_, token) in entries {
                    token.cancel();
                    cancelled += 1;
                }
            }
        }
        Ok(cancelled)
    }
}

/// The statement handle inside one of this server's tickets.
pub(crate) fn ticket_handle(ticket: &[u8]) -> Result<Bytes, Status> {
    let not_ours = |why: String| {
        Status::invalid_argument(format!("ticket is not a Flight SQL query ticket of this server: {why}"))
    };
    let any = Any::decode(ticket).map_err(|e| not_ours(format!("not a protobuf Any ({e})")))?;
    match Command::try_from(any).map_err(|e| not_ours(e.to_string()))? {
        Command::TicketStatementQuery(t) => Ok(t.statement_handle),
        Command::CommandPreparedStatementQuery(p) => Ok(p.prepared_statement_handle),
        other => Err(not_ours(format!("{} runs no query", other.type_url()))),
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
    use arrow_flight::{FlightEndpoint, Ticket};

    use super::*;

    fn info_for(handle: &'static [u8]) -> FlightInfo {
        let ticket = TicketStatementQuery { statement_handle: Bytes::from_static(handle) }.as_any().encode_to_vec();
        FlightInfo::new().with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
    }

    #[test]
    fn a_cancel_reaches_the_callers_streams_of_that_ticket_only() {
        let running = RunningQueries::default();
        let mine = running.register("alice", Bytes::from_static(b"q1"));
        let other_query = running.register("alice", Bytes::from_static(b"q2"));
        let other_user = running.register("bob", Bytes::from_static(b"q1"));
        assert_eq!(running.cancel("alice", &info_for(b"q1")).unwrap(), 1);
        assert!(mine.token.is_cancelled());
        assert!(!other_query.token.is_cancelled() && !other_user.token.is_cancelled());
        drop(mine);
        assert_eq!(running.cancel("alice", &info_for(b"q1")).unwrap(), 0, "an ended stream is forgotten");
        let garbage = FlightInfo::new().with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(vec![0xff, 1, 2])));
        assert_eq!(running.cancel("alice", &garbage).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
