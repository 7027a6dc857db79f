//! The Ballista scheduler with vitalflow's session builder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig as BallistaSchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;

use crate::catalog::session::scheduler_session_builder;
use crate::config::SchedulerConfig;
use crate::error::{Error, Result};

/// A running Ballista scheduler.
#[derive(Debug)]
pub struct RunningScheduler {
    /// Address its gRPC server listens on.
    pub addr: SocketAddr,
    /// The server task; ends when the shutdown token given to [`start_scheduler`] is cancelled.
    pub task: JoinHandle<()>,
    /// Cancels jobs of this scheduler.
    pub jobs: ClusterJobs,
}

/// The scheduler's jobs, as seen from inside its process: the Flight SQL front door and the ETL driver
/// name each of their jobs ([`NamedJob`]) and cancel one whose caller gave up on it.
#[derive(Clone)]
pub struct ClusterJobs {
    server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
}

impl std::fmt::Debug for ClusterJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterJobs").field("scheduler_id", &self.server.scheduler_id).finish()
    }
}

impl ClusterJobs {
    /// Cancels every queued or running job named `job_name`; returns how many were cancelled.
    pub async fn cancel_named(&self, job_name: &str) -> usize {
        // get_all_jobs: Ballista 55's get_running_jobs lists only completed jobs in its memory state.
        let jobs = match self.server.state.task_manager.get_all_jobs().await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(%error, job_name, "Listing jobs to cancel failed.");
                return 0;
            }
        };
        let mut cancelled = 0;
        for job in jobs.into_iter().filter(|j| j.job_name == job_name && j.end_time == 0) {
            match self.server.cancel_job(job.job_id.clone()).await {
                Ok(()) => cancelled += 1,
                Err(error) => tracing::warn!(%error, job_id = %job.job_id, "Cancelling a job failed."),
            }
        }
        cancelled
    }
}

/// One Ballista job, named so that it can be found again. Dropped before [`NamedJob::finish`] (time
/// limit, error, caller gone), it cancels the job: a Ballista client only stops reading, and the job
/// would go on holding executor slots.
pub struct NamedJob {
    name: String,
    jobs: Option<ClusterJobs>,
    finished: bool,
}

impl NamedJob {
    /// A job called `name`, cancelled through `jobs` (none: the scheduler runs elsewhere, nothing to cancel).
    pub fn new(name: String, jobs: Option<ClusterJobs>) -> NamedJob {
        NamedJob { name, jobs, finished: false }
    }

    /// `frame`, to run as this job.
    pub fn named(&self, frame: datafusion::prelude::DataFrame) -> datafusion::prelude::DataFrame {
        use ballista::prelude::SessionConfigExt;
        let (mut state, plan) = frame.into_parts();
        let config = state.config().clone().with_ballista_job_name(&self.name);
        *state.config_mut() = config;
        datafusion::prelude::DataFrame::new(state, plan)
    }

    /// The results ran to the end: nothing to cancel.
    pub fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for NamedJob {
    fn drop(&mut self) {
        let (Some(jobs), false) = (self.jobs.take(), self.finished) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let name = std::mem::take(&mut self.name);
        runtime.spawn(async move {
            // The job may still be on its way to the scheduler: look again for a few seconds.
            for _ in 0..5 {
                if jobs.cancel_named(&name).await > 0 {
                    tracing::info!(job_name = %name, "Cancelled an abandoned job.");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Binds and starts the scheduler's gRPC server; it stops when `shutdown` is cancelled.
pub async fn start_scheduler(
    config: &SchedulerConfig,
    forest: Arc<RiskForest>,
    shutdown: CancellationToken,
) -> Result<RunningScheduler> {
    let bind = format!("{}:{}", config.bind_host, config.port);
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(|source| Error::Bind {
        what: "ballista scheduler",
        addr: bind.clone(),
        source,
    })?;
    let addr =
        listener.local_addr().map_err(|source| Error::Bind { what: "ballista scheduler", addr: bind, source })?;
    let ballista_config = Arc::new(BallistaSchedulerConfig {
        bind_host: config.bind_host.clone(),
        // The real port, also when 0 was asked for: executors are told to call back here.
        bind_port: addr.port(),
        external_host: config.external_host.clone(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        executor_timeout_seconds: config.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: 5.min(config.executor_timeout_seconds.max(1)),
        no_executors_grace_period_seconds: config.executor_timeout_seconds,
        override_session_builder: Some(scheduler_session_builder(forest)),
        // patient_latest travels to the scheduler as a VersionedTable and resolves there.
        override_logical_codec: Some(Arc::new(crate::catalog::versioned_table::VitalflowLogicalCodec::default())),
        ..BallistaSchedulerConfig::default()
    });
    let ballista = |step| move |source| Error::Ballista { step, source };
    let cluster =
        BallistaCluster::new_from_config(&ballista_config).await.map_err(ballista("creating cluster state"))?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, ballista_config)
        .await
        .map_err(ballista("creating scheduler"))?;
    let jobs = ClusterJobs { server: server.clone() };
    // Ballista's server takes no shutdown signal: leaving the select drops it, closing its listener.
    let task = tokio::spawn(async move {
        tokio::select! {
            served = start_grpc_service_with_listener(listener, server) => {
                if let Err(error) = served {
                    tracing::error!(error = %error, "Ballista scheduler stopped.");
                }
            }
            () = shutdown.cancelled() => {}
        }
    });
    tracing::info!(%addr, "Ballista scheduler listening.");
    Ok(RunningScheduler { addr, task, jobs })
}
