//! The pipeline's services in one process: the scheduler with the ETL driver, Flight SQL and the HTTP
//! API, one executor (replaced when lost: [`SupervisedExecutor`]), and ingest, each started by its crate's `start(config, shutdown)`. `up` runs it
//! beside the broker and the simulator; `bench e2e` measures it.

use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;

use crate::config::VitalflowConfig;
use crate::up::supervised_executor::{ExecutorSettings, SupervisedExecutor};

/// The local demo's rule: everything on loopback, whatever the file says, and so no sign-in (every
/// caller is the local admin). The Ballista ports still demand a cluster key, random for each run
/// unless one is configured: other local users must not reach around Flight SQL.
pub fn local_only(config: &mut VitalflowConfig) {
    if config.cluster.secret.trim().is_empty() && config.cluster.secret_file.trim().is_empty() {
        config.cluster.secret = vitalflow_executor::ClusterKey::random_secret();
    }
    for host in [
        &mut config.flight_sql.bind_host,
        &mut config.http.bind_host,
        &mut config.scheduler.bind_host,
        &mut config.executor.bind_host,
        &mut config.ingest.metrics_host,
    ] {
        *host = "127.0.0.1".into();
    }
    config.flight_sql.auth.required = false;
}

/// The running services. Each failure is logged when it happens; the others keep running.
pub struct LocalPipeline {
    /// The scheduler process (its addresses and ETL counters).
    pub scheduler: vitalflow_scheduler::SchedulerProcess,
    executor: SupervisedExecutor,
    ingest: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl LocalPipeline {
    /// Starts the scheduler, the executor, then ingest; the scheduler's gRPC port, the executor's ports
    /// and ingest's metrics port are internal, so free ones are taken.
    pub async fn start(
        config: &VitalflowConfig,
        location: &DataLocation,
        forest: Arc<RiskForest>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<LocalPipeline> {
        let mut process_config = config.scheduler_process();
        process_config.scheduler.port = 0;
        let scheduler = vitalflow_scheduler::start(&process_config, location.clone(), forest.clone(), shutdown.clone())
            .await
            .context("starting the scheduler, ETL driver, Flight SQL and HTTP API")?;
        let mut executor_config = config.executor.clone();
        executor_config.scheduler_address =
            format!("{}:{}", process_config.scheduler.external_host, scheduler.addrs.scheduler.port());
        (executor_config.flight_port, executor_config.health_port) = (0, 0);
        let settings = ExecutorSettings { config: executor_config, cluster: config.cluster.clone(), forest };
        let executor = SupervisedExecutor::start(settings, scheduler.executors.clone(), shutdown.clone()).await?;
        let mut ingest_config = config.ingest.clone();
        ingest_config.metrics_port = 0;
        let ingest = vitalflow_ingest::start(&config.kafka, &ingest_config, location.clone(), shutdown.clone())
            .await
            .context("starting ingest")?;
        let ingest = tokio::spawn(async move {
            if let Err(error) = ingest.join().await {
                tracing::error!(error = %error, "Ingest stopped.");
            }
        });
        Ok(LocalPipeline { scheduler, executor, ingest, shutdown })
    }

    /// Cancels the shutdown token and waits: for ingest to land what it holds, for the scheduler (the
    /// ETL finishes its batch on the executor), then for the executor.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.ingest.await;
        self.scheduler.stop().await;
        self.executor.join().await;
    }
}
