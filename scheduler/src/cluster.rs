//! The Ballista scheduler with vitalflow's session builder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig as BallistaSchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use vitalflow_executor::ClusterCredentials;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::bounded::ValueLimit;

use crate::catalog::session::scheduler_session_builder;
use crate::cluster_executors::ClusterExecutors;
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
    /// Its executors.
    pub executors: ClusterExecutors,
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

    /// Jobs the scheduler holds in memory: (running or queued, finished and kept for
    /// `scheduler.finished_job_seconds`); `None` when they cannot be listed.
    pub async fn held(&self) -> Option<(usize, usize)> {
        let jobs = self.server.state.task_manager.get_all_jobs().await.ok()?;
        let running = jobs.iter().filter(|j| j.end_time == 0).count();
        Some((running, jobs.len() - running))
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

/// Binds and starts the scheduler's gRPC server; it stops when `shutdown` is cancelled. The server
/// demands the cluster's `credentials` (its TLS, its key on every request), and the scheduler's own
/// clients (to the executors) present them. `max_value` bounds the value-building functions where
/// the scheduler plans (it folds constants: `repeat('x', 1e9)` would run here).
pub async fn start_scheduler(
    config: &SchedulerConfig,
    credentials: ClusterCredentials,
    forest: Arc<RiskForest>,
    max_value: ValueLimit,
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
        // Executors poll for tasks, so that they need no gRPC server of their own (see the executor crate).
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: config.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: 5.min(config.executor_timeout_seconds.max(1)),
        no_executors_grace_period_seconds: config.executor_timeout_seconds,
        // At least a second: 0 would keep every finished job for good.
        finished_job_state_clean_up_interval_seconds: config.finished_job_seconds.max(1),
        override_session_builder: Some(scheduler_session_builder(forest, max_value)),
        // The lake tables travel to the scheduler as Delta snapshot tables and resolve there.
        override_logical_codec: Some(Arc::new(crate::catalog::codec::VitalflowLogicalCodec::default())),
        override_create_grpc_client_endpoint: credentials.endpoint_override(),
        use_tls: credentials.tls.is_some(),
        ..BallistaSchedulerConfig::default()
    });
    let ballista = |step| move |source| Error::Ballista { step, source };
    let cluster =
        BallistaCluster::new_from_config(&ballista_config).await.map_err(ballista("creating cluster state"))?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, ballista_config)
        .await
        .map_err(ballista("creating scheduler"))?;
    let jobs = ClusterJobs { server: server.clone() };
    let executors = ClusterExecutors::new(server.clone());
    let grpc = credentials.server(tonic::transport::Server::builder())?;
    let task = tokio::spawn(serve_grpc(listener, grpc, server, credentials, shutdown));
    tracing::info!(%addr, "Ballista scheduler listening.");
    Ok(RunningScheduler { addr, task, jobs, executors })
}

/// Serves the scheduler's gRPC service (and nothing else: Ballista's REST API, Flight SQL and Flight
/// proxy stay off) on `listener` through `grpc` (the cluster's TLS), each request checked for the
/// cluster key first. Ballista's own `start_grpc_service_with_listener` has no place for either, so
/// the server is built here.
async fn serve_grpc(
    listener: tokio::net::TcpListener,
    mut grpc: tonic::transport::Server,
    server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    credentials: ClusterCredentials,
    shutdown: CancellationToken,
) {
    let limits = server.state.config.clone();
    let service = SchedulerGrpcServer::new(server)
        .max_encoding_message_size(limits.grpc_server_max_encoding_message_size as usize)
        .max_decoding_message_size(limits.grpc_server_max_decoding_message_size as usize);
    let serve = grpc
        .add_service(InterceptedService::new(service, credentials.request_check()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    // Stopped at once, as Ballista's own server is: its clients (the ETL, Flight SQL) stopped first.
    tokio::select! {
        served = serve => {
            if let Err(error) = served {
                tracing::error!(error = %error, "Ballista scheduler stopped.");
            }
        }
        () = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use ballista::prelude::SessionContextExt;
    use ballista_core::serde::protobuf::execute_query_params::Query;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use ballista_core::serde::protobuf::{ExecuteQueryParams, GetJobStatusParams, execute_query_result};
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    use datafusion_proto::logical_plan::{AsLogicalPlan, DefaultLogicalExtensionCodec};
    use prost::Message;
    use tonic::Code;
    use tonic::transport::Channel;

    use vitalflow_executor::ClusterConfig;

    use super::*;

    const SECRET: &str = "scheduler-test-cluster-secret-0123456789";

    /// The credentials of a process configured with `cluster`.
    fn credentials(cluster: ClusterConfig) -> ClusterCredentials {
        cluster.credentials(&[]).expect("credentials")
    }

    /// A keyed cluster's credentials, `secret` its secret.
    fn keyed(secret: &str) -> ClusterCredentials {
        credentials(ClusterConfig { secret: secret.into(), ..ClusterConfig::default() })
    }

    /// A gRPC connection to the scheduler at `addr`, as a process holding `credentials` opens it.
    async fn connect(addr: SocketAddr, credentials: &ClusterCredentials) -> Result<Channel, String> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
        if let Some(shape) = credentials.endpoint_override() {
            endpoint = shape(endpoint).expect("override");
        }
        endpoint.connect().await.map_err(|e| format!("{e:?}"))
    }

    async fn client(addr: SocketAddr, credentials: &ClusterCredentials) -> SchedulerGrpcClient<Channel> {
        SchedulerGrpcClient::new(connect(addr, credentials).await.expect("connect"))
    }

    /// What an attacker would send: a logical plan reading a file of the scheduler's host.
    async fn file_reading_plan(dir: &std::path::Path) -> Vec<u8> {
        let file = dir.join("private.csv");
        std::fs::write(&file, "patient_id,value\nP1,42\n").expect("write");
        let frame =
            SessionContext::new().read_csv(file.display().to_string(), CsvReadOptions::new()).await.expect("plan");
        let node = LogicalPlanNode::try_from_logical_plan(frame.logical_plan(), &DefaultLogicalExtensionCodec {})
            .expect("encode");
        node.encode_to_vec()
    }

    #[tokio::test]
    async fn the_scheduler_port_refuses_plans_and_ballista_clients_without_the_cluster_key() {
        let key = keyed(SECRET);
        let wrong = keyed(&format!("{SECRET}-wrong"));
        let shutdown = CancellationToken::new();
        let config = SchedulerConfig { port: 0, ..SchedulerConfig::default() };
        let forest = Arc::new(RiskForest::bundled().expect("model"));
        let running = start_scheduler(
            &config,
            key.clone(),
            forest,
            crate::catalog::session::test_value_limit(),
            shutdown.clone(),
        )
        .await
        .expect("scheduler");
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = file_reading_plan(dir.path()).await;
        // As Ballista's client sends it, version header included.
        let params = || {
            let mut request = tonic::Request::new(ExecuteQueryParams {
                session_id: String::new(),
                settings: vec![],
                operation_id: "attack".into(),
                query: Some(Query::LogicalPlan(plan.clone())),
            });
            ballista_core::version::insert_version_header(request.metadata_mut());
            request
        };
        for presented in [ClusterCredentials::default(), wrong] {
            let mut scheduler = client(running.addr, &presented).await;
            let refused = scheduler.execute_query(params()).await.expect_err("a plan without the key is refused");
            assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
            let refused =
                scheduler.get_job_status(GetJobStatusParams { job_id: "x".into() }).await.expect_err("refused");
            assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        }
        // Ballista's own client, as anyone could point it at the port.
        let ctx = SessionContext::remote(&format!("df://{}", running.addr)).await.expect("context");
        let refused = ctx.sql("SELECT 1").await.expect("plan").collect().await.expect_err("refused");
        assert!(refused.to_string().contains("cluster key"), "{refused}");
        // The same plan with the key is taken as a job: the check, nothing else, refused it above.
        let accepted = client(running.addr, &key).await.execute_query(params()).await.expect("accepted");
        let accepted = accepted.into_inner().result;
        assert!(matches!(accepted, Some(execute_query_result::Result::Success(_))), "{accepted:?}");
        shutdown.cancel();
        let _ = running.task.await;
    }

    /// A cluster CA and a certificate it signs, made by the script operators use, in `dir`.
    fn cluster_certs(dir: &std::path::Path) -> ClusterConfig {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cluster-certs.sh");
        let made = std::process::Command::new(script).arg(dir).output().expect("deploy/cluster-certs.sh runs");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let file = |name: &str| dir.join(name).display().to_string();
        ClusterConfig {
            secret: SECRET.into(),
            tls_cert_path: file("cluster.pem"),
            tls_key_path: file("cluster.key"),
            tls_ca_path: file("ca.pem"),
            ..ClusterConfig::default()
        }
    }

    #[tokio::test]
    async fn with_cluster_tls_only_holders_of_a_certificate_of_the_cluster_ca_and_the_key_get_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = cluster_certs(&dir.path().join("ours"));
        let foreign = cluster_certs(&dir.path().join("theirs"));
        let ours = credentials(cluster.clone());
        let shutdown = CancellationToken::new();
        let config = SchedulerConfig { port: 0, ..SchedulerConfig::default() };
        let forest = Arc::new(RiskForest::bundled().expect("model"));
        let limit = crate::catalog::session::test_value_limit();
        let running = start_scheduler(&config, ours.clone(), forest, limit, shutdown.clone()).await.expect("scheduler");
        let status = |channel: Channel| async move {
            SchedulerGrpcClient::new(channel).get_job_status(GetJobStatusParams { job_id: "x".into() }).await
        };
        // In clear, with the right key: no gRPC answer at all.
        let plain = connect(running.addr, &keyed(SECRET)).await;
        if let Ok(channel) = plain {
            let refused = status(channel).await.expect_err("a plaintext request is not served");
            assert_ne!(refused.code(), Code::Ok);
        }
        // TLS with a certificate of another CA (and the right key): the handshake fails both ways.
        let foreign = credentials(foreign);
        assert!(connect(running.addr, &foreign).await.is_err(), "a foreign certificate completes no handshake");
        // Our certificate without the key: through TLS, then refused by the key check.
        let unkeyed = credentials(ClusterConfig { secret: String::new(), ..cluster.clone() });
        let refused = status(connect(running.addr, &unkeyed).await.expect("handshake")).await.expect_err("no key");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        // Both: served (an unknown job is Ballista's own answer, not a refusal).
        let answered = status(connect(running.addr, &ours).await.expect("handshake")).await;
        assert!(answered.as_ref().map_or_else(|e| e.code() != Code::Unauthenticated, |_| true), "{answered:?}");
        shutdown.cancel();
        let _ = running.task.await;
    }
}
