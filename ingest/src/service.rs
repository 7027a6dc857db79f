//! Ingest as a service, started as the scheduler and the executor are: [`start`] binds the `/metrics`
//! endpoint, spawns the consumer loop ([`crate::source::run`]) and returns an [`IngestService`] with the
//! bound address. Cancelling the shutdown token stops both; the loop lands what it buffered first.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{IngestConfig, KafkaConfig};
use crate::error::Result;
use crate::events::IngestStats;
use crate::metrics::serve_metrics;
use vitalflow_udf_model::lake::DataLocation;

/// A running ingest consumer and its metrics endpoint.
#[derive(Debug)]
pub struct IngestService {
    /// Where `/metrics`, `/healthz` and `/readyz` answer (port 0 in the config picks a free one).
    pub metrics: SocketAddr,
    /// The counters the endpoint renders.
    pub stats: Arc<IngestStats>,
    task: JoinHandle<Result<()>>,
    shutdown: CancellationToken,
}

impl IngestService {
    /// Waits until the loop ends, on `shutdown` or on an error, and its endpoint has stopped.
    pub async fn join(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            // The task is never aborted: only a panic ends it early, and it is passed on.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Cancels the shutdown token and waits until the buffered records are landed and the loop is done.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.join().await
    }
}

/// Checks the configuration, binds the metrics endpoint (`ingest.metrics_host:metrics_port`) and spawns
/// the consumer loop on `kafka.topic`, landing under `location` until `shutdown` is cancelled. Needs a
/// multi-threaded tokio runtime (see [`crate::source::run`]).
pub async fn start(
    kafka: &KafkaConfig,
    config: &IngestConfig,
    location: DataLocation,
    shutdown: CancellationToken,
) -> Result<IngestService> {
    config.validate()?;
    vitalflow_udf_model::lake::format::ensure_current_format(&location).await?;
    let stats = Arc::new(IngestStats::default());
    // The endpoint stops with the loop, whether the token or an error ended it.
    let endpoint_stop = shutdown.child_token();
    let endpoint =
        serve_metrics(&config.metrics_host, config.metrics_port, stats.clone(), endpoint_stop.clone()).await?;
    let metrics = endpoint.addr;
    let (kafka, config, loop_stats, token) = (kafka.clone(), config.clone(), stats.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        let result = crate::source::run(&kafka, &config, &location, loop_stats, token).await;
        endpoint_stop.cancel();
        let _ = endpoint.task.await;
        result
    });
    Ok(IngestService { metrics, stats, task, shutdown })
}
