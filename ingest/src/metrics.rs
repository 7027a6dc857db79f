//! `/metrics`: the ingest counters in Prometheus' text format, on a small HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
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

/// Binds `host:port` and serves `GET /metrics` until `shutdown`.
pub async fn serve_metrics(host: &str, port: u16, stats: Arc<IngestStats>, shutdown: CancellationToken) -> Result<MetricsServer> {
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::Config(format!("binding the metrics endpoint to {host}:{port}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::Config(format!("metrics endpoint address: {e}")))?;
    let app = Router::new().route("/metrics", get(render)).with_state(stats);
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
