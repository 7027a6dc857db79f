//! The executor's Arrow Flight server (shuffle files to other executors, results to clients): Ballista's
//! own service, started by us so that every request passes the cluster key check first, and so that our
//! shutdown token can stop the executor (Ballista's executor takes no token of its own).

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::error::BallistaError;
use ballista_core::utils::create_grpc_server;
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::flight_service::BallistaFlightService;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::cluster_config::ClusterCredentials;

/// Largest Flight message in either direction: Ballista's default for its built-in server.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// What the executor logs as the reason it stopped when `stop` was cancelled.
pub(crate) const STOP_REASON: &str = "shutdown requested";

/// Ballista's hook (`override_arrow_flight_service`): serves its Flight service on the address it
/// gives, over the cluster's TLS when it has one, refusing requests without its key (every request
/// passes when there is none).
///
/// The handle Ballista watches ends with an error once `stop` is cancelled: Ballista then stops the
/// executor as it does on SIGTERM (it tells the scheduler, drains its running tasks, then signals its
/// own shutdown). The server itself keeps serving until that shutdown, so that the shuffle files of
/// the drained tasks stay readable.
pub(crate) fn server_provider(
    credentials: ClusterCredentials,
    stop: CancellationToken,
) -> Arc<ArrowFlightServerProvider> {
    Arc::new(move |work_dir, address, mut shutdown, grpc_config| {
        let check = credentials.request_check();
        let server = credentials.server(create_grpc_server(&grpc_config));
        let server = tokio::spawn(async move {
            let mut server = server.map_err(|e| BallistaError::Internal(e.to_string()))?;
            let service = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            tracing::info!(%address, "Executor Flight server listening.");
            server
                .add_service(InterceptedService::new(service, check))
                .serve_with_shutdown(address, async move { shutdown.recv().await })
                .await
                .map_err(BallistaError::TonicError)
        });
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = server => served.map_err(BallistaError::TokioError)?,
                () = stop.cancelled() => Err(BallistaError::Internal(STOP_REASON.into())),
            }
        })
    })
}
