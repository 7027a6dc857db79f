//! The executor's probe endpoints, for Kubernetes and load balancers (Ballista's executor has none):
//! `/healthz` answers 200 while its Flight server accepts connections, `/readyz` 200 while it does and
//! the scheduler is reachable too. Each answer names what it checked.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// How long a probe waits for one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the probes connect.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// This executor's Flight server (host as seen from this process).
    pub(crate) flight: (String, u16),
    /// The scheduler it registers with.
    pub(crate) scheduler: (String, u16),
}

/// Binds `host:port` (0: a free port) so that the port is known before the executor registers.
pub(crate) async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    TcpListener::bind((host, port)).await.map_err(|source| Error::Port { host: host.into(), source })
}

/// Serves the probes on `listener` until `stop` is cancelled (when the executor has ended).
pub(crate) async fn serve(listener: TcpListener, targets: Targets, stop: CancellationToken) {
    let app = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(targets);
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
        tracing::warn!(error = %error, "Executor health endpoint stopped.");
    }
}

async fn reachable((host, port): &(String, u16)) -> bool {
    matches!(tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), *port))).await, Ok(Ok(_)))
}

/// The checks in order, each `(name, passed)`; the answer is 200 when all pass.
fn answer(checks: Vec<(&'static str, bool)>) -> Response {
    let ok = checks.iter().all(|(_, passed)| *passed);
    let body = json!({
        "status": if ok { "ok" } else { "failing" },
        "checks": checks.iter().map(|(name, passed)| (name.to_string(), json!(passed))).collect::<serde_json::Map<_, _>>(),
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn healthz(State(t): State<Targets>) -> Response {
    answer(vec![("flight", reachable(&t.flight).await)])
}

async fn readyz(State(t): State<Targets>) -> Response {
    let (flight, scheduler) = tokio::join!(reachable(&t.flight), reachable(&t.scheduler));
    answer(vec![("flight", flight), ("scheduler", scheduler)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe's status and JSON body.
    async fn read(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }

    #[tokio::test]
    async fn probes_pass_only_while_their_targets_accept_connections() {
        let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open_port = open.local_addr().expect("addr").port();
        // A port nothing listens on: bound, read and released.
        let closed_port = crate::resolve_port("127.0.0.1", 0).expect("port");
        let local = |p: u16| ("127.0.0.1".to_string(), p);
        let targets = Targets { flight: local(open_port), scheduler: local(closed_port) };

        assert_eq!(read(healthz(State(targets.clone())).await).await.0, StatusCode::OK);
        let (status, body) = read(readyz(State(targets.clone())).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"], json!({ "flight": true, "scheduler": false }));
        drop(open);
        let (status, body) = read(healthz(State(targets)).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, json!({ "status": "failing", "checks": { "flight": false } }));
    }
}
