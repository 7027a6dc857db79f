//! Ingest's small HTTP server: `/metrics` (the counters in Prometheus' text format), `/healthz`
//! (liveness: the process serves) and `/readyz` (readiness: the Kafka consumer has joined its group),
//! for Kubernetes probes and load balancers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::IngestStats;

/// A running metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    /// The bound address (port 0 in the config picks a free one).
    pub addr: SocketAddr,
    /// The server task; ends when the shutdown token is cancelled.
    pub task: JoinHandle<()>,
}

/// Binds `host:port` and serves `GET /metrics`, `/healthz` and `/readyz` until `shutdown`.
pub async fn serve_metrics(
    host: &str,
    port: u16,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> Result<MetricsServer> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::Config(format!("binding the metrics endpoint to {host}:{port}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::Config(format!("metrics endpoint address: {e}")))?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(stats);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(error) = served {
            tracing::warn!(error = %error, "Metrics endpoint stopped.");
        }
    });
    tracing::info!(addr = %addr, "Metrics on /metrics.");
    Ok(MetricsServer { addr, task })
}

async fn render(State(stats): State<Arc<IngestStats>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], stats.render_prometheus())
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// 200 once the consumer is in its group (it then owns its share of the partitions, maybe none when
/// there are more ingest processes than partitions); 503 while it is still connecting or joining.
async fn readyz(State(stats): State<Arc<IngestStats>>) -> Response {
    if stats.in_group() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        let body =
            serde_json::json!({ "status": "not ready", "reason": "the Kafka consumer has not joined its group yet" });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A plain HTTP/1.1 GET (blocking I/O on a blocking thread: no client crate needed).
    async fn get(addr: SocketAddr, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.write_all(request.as_bytes()).expect("write");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            answer
        })
        .await
        .expect("request thread")
    }

    #[tokio::test]
    async fn readyz_answers_503_until_the_consumer_joins_its_group_and_healthz_200_throughout() {
        let stats = Arc::new(IngestStats::default());
        let shutdown = CancellationToken::new();
        let server = serve_metrics("127.0.0.1", 0, stats.clone(), shutdown.clone()).await.expect("serve");
        assert!(get(server.addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let before = get(server.addr, "/readyz").await;
        assert!(before.starts_with("HTTP/1.1 503"), "{before}");
        assert!(before.contains("has not joined its group"), "{before}");
        stats.joined();
        let after = get(server.addr, "/readyz").await;
        assert!(after.starts_with("HTTP/1.1 200") && after.contains("\"ready\""), "{after}");
        assert!(get(server.addr, "/metrics").await.contains("vitalflow_ingest_records_in_total 0"));
        shutdown.cancel();
        server.task.await.expect("server task");
    }
}
