//! The transport of the front door: listener (TCP_NODELAY), optional TLS, and the authentication
//! layer that checks every call before the Flight SQL service sees it.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TcpIncoming, TlsConnectInfo};
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::FlightSqlEndpoint;
use super::service::FrontDoorService;
use crate::config::FlightSqlConfig;
use crate::error::{Error, Result};
use crate::front_door::audit_lake::{flush_at_exit, run_flusher};
use crate::front_door::auth::Authenticator;

/// The one call that may arrive without a token: it is where Basic credentials become one.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Largest gRPC message accepted or sent: clients (Go's default) refuse messages over 4 MiB.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Authenticates every call but the handshake and hands the caller's [`crate::front_door::auth::Principal`] to
/// the service in the request extensions. A layer, not per-method checks, so no call is forgotten.
#[derive(Clone)]
struct Authenticated<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The check may hash a password (awaited, off the async workers): the service that was made
        // ready goes into the future, a clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if request.uri().path() == HANDSHAKE_PATH {
            return Box::pin(inner.call(request));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            let header = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            match auth.check_header(header, peer_ip(request.extensions())).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => {
                    tracing::warn!(error = %error, path = request.uri().path(), "Flight SQL call refused.");
                    Ok(Status::unauthenticated(error.to_string()).into_http())
                }
            }
        })
    }
}

/// The client's address, as tonic records it for the connection (plain TCP or TLS).
pub(super) fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    let tcp = extensions
        .get::<TcpConnectInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(|tls| tls.get_ref()));
    tcp.and_then(TcpConnectInfo::remote_addr).map(|addr| addr.ip())
}

/// A running Flight SQL server.
#[derive(Debug)]
pub struct RunningFlightSql {
    /// Bound address.
    pub addr: SocketAddr,
    /// Server task; ends when the shutdown token is cancelled, once the audit log is written.
    pub task: JoinHandle<()>,
}

fn tls_config(config: &FlightSqlConfig) -> Result<Option<ServerTlsConfig>> {
    if config.tls_cert_path.is_empty() {
        return Ok(None);
    }
    let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|e| Error::Config(format!("flight_sql.{what} {path:?}: {e}")))
    };
    let cert = read("tls_cert_path", &config.tls_cert_path)?;
    let key = read("tls_key_path", &config.tls_key_path)?;
    Ok(Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key))))
}

/// Binds and serves `endpoint` until `shutdown`.
pub async fn start_flight_sql(
    config: &FlightSqlConfig,
    endpoint: FlightSqlEndpoint,
    shutdown: CancellationToken,
) -> Result<RunningFlightSql> {
    config.validate()?;
    let mut builder = Server::builder();
    if let Some(tls) = tls_config(config)? {
        // With both ring and aws-lc-rs linked, rustls has no default provider and would panic: pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        builder =
            builder.tls_config(tls).map_err(|e| Error::Config(format!("flight_sql TLS certificate or key: {e}")))?;
    }
    let bind = format!("{}:{}", config.bind_host, config.port);
    let bind_err = |source| Error::Bind { what: "flight sql", addr: bind.clone(), source };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    // Set on the incoming stream: tonic ignores its builder's nodelay with serve_with_incoming.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let auth = endpoint.authenticator();
    let audit = endpoint.audit_lake.clone();
    let flusher = tokio::spawn(run_flusher(audit.clone(), shutdown.clone()));
    let service = FlightServiceServer::new(FrontDoorService::new(endpoint))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let task = tokio::spawn(async move {
        let served = builder
            .add_service(Authenticated { inner: service, auth })
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(error = %error, "Flight SQL server stopped.");
        }
        // The flusher's last flush ran when the shutdown began; queries that ended since are flushed here.
        let _ = flusher.await;
        flush_at_exit(&audit).await;
    });
    let scheme = if config.tls_cert_path.is_empty() { "grpc" } else { "grpc+tls" };
    tracing::info!(%addr, scheme, auth_required = config.auth.required, "Flight SQL listening.");
    Ok(RunningFlightSql { addr, task })
}
