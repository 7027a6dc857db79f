//! The embedded Kafka-protocol broker of `up`: tansu with memory storage, on 127.0.0.1 only.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

/// A running in-process broker. Its records live in memory and are gone when it stops;
/// the landed Parquet tables stay.
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// Bootstrap address for clients.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// `preferred`, when free on 127.0.0.1, else a port the OS picks (0 always picks).
pub fn free_port_or(preferred: u16) -> anyhow::Result<u16> {
    if preferred != 0 && TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Starts tansu on `127.0.0.1:port` and waits until it accepts connections.
pub async fn start_embedded_broker(port: u16) -> anyhow::Result<EmbeddedBroker> {
    // Listener and advertised listener must both be an IP URL: a hostname makes tansu bind every interface.
    let listener = Url::parse(&format!("tcp://127.0.0.1:{port}"))?;
    let incarnation = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    // Each start is a new in-memory cluster whose offsets begin at 0: a cluster id of its own makes
    // ingest start fresh positions for it instead of skipping offsets below the earlier run's.
    let cluster_id = format!("vitalflow-up-{}", uuid::Uuid::new_v4().simple());
    let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
        .node_id(1)
        .cluster_id(cluster_id)
        .incarnation_id(uuid::Uuid::from_u128(incarnation))
        .advertised_listener(listener.clone())
        .storage(Url::parse("memory://tansu/")?)
        .listener(listener)
        .silent(true)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("starting the embedded broker: {e:?}"))?;
    // serve(), not main(): main() installs its own SIGINT/SIGTERM handlers and clears the terminal.
    let task = tokio::spawn(async move {
        if let Err(error) = broker.serve(tokio::time::Instant::now()).await {
            tracing::error!(error = ?error, "The embedded broker stopped.");
        }
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(!task.is_finished(), "the embedded broker stopped while starting on {addr}");
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the embedded broker did not listen on {addr} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(EmbeddedBroker { addr, task })
}
