#![doc = include_str!("../README.md")]

use std::net::TcpListener;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::extension::SessionConfigExt;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::bounded::{ValueLimit, register_bounded};
use vitalflow_udf_model::lake::store_registry::LakeObjectStores;
use vitalflow_udf_model::udf::register_all;

pub mod cluster_config;
pub mod cluster_key;
pub mod cluster_tls;
mod flight;
mod health;
mod scratch;

pub use cluster_config::{ClusterConfig, ClusterCredentials};
pub use cluster_key::ClusterKey;

/// Errors of the executor crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A port could not be reserved.
    #[error("reserving a port on {host}: {source}")]
    Port {
        /// Bind host.
        host: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Registering our functions failed.
    #[error("registering vitalflow functions: {0}")]
    Functions(#[from] datafusion::error::DataFusionError),
    /// A setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Ballista executor stopped with an error.
    #[error("ballista executor: {0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One Ballista executor. `Default` is the only place a default is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// Address the executor's servers bind.
    pub bind_host: String,
    /// Host the scheduler and other executors use to reach this one.
    pub external_host: String,
    /// Arrow Flight port for shuffle data; 0 picks a free port (two executors on a host must differ).
    pub flight_port: u16,
    /// Scheduler to register with, as `host:port`; empty: `scheduler.external_host` and `scheduler.port` of the
    /// same configuration (`vitalflow executor` fills it in). Replaces `scheduler_host` and `scheduler_port`.
    pub scheduler_address: String,
    /// Tasks run at once; 0 uses every core.
    pub concurrent_tasks: usize,
    /// Port of the HTTP probes `/healthz` and `/readyz` (on `bind_host`); 0 picks a free port.
    pub health_port: u16,
    /// Seconds between heartbeats; the scheduler's executor timeout must be a few of these.
    pub heartbeat_interval_seconds: u64,
    /// Directory for shuffle and spill files; empty: `vitalflow-executor-<pid>-<port>` in the system's
    /// temporary directory, removed when the executor ends (after a kill, by the next executor to start).
    pub work_dir: String,
    /// Memory one task may hold, in MiB. A query needing more fails with "Resources exhausted"
    /// (operators that can spill to `work_dir` spill first) and the executor stays up.
    /// 0 leaves it to Ballista: its share of the host's (or cgroup's) memory per task slot.
    pub memory_limit_mb: u64,
    /// Largest value a function that builds values from a count (`repeat`, `lpad`, `array_repeat`,
    /// `range`, …) may make in one call of a task, in MiB, summed over one batch of rows: such values
    /// are allocated outside `memory_limit_mb`'s accounting, so past this the task fails with
    /// "Resources exhausted" instead of allocating (see `flight_sql.max_value_mb`).
    pub max_value_mb: u64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            bind_host: "127.0.0.1".into(),
            external_host: "127.0.0.1".into(),
            flight_port: 50051,
            health_port: 50053,
            scheduler_address: String::new(),
            concurrent_tasks: 0,
            heartbeat_interval_seconds: 5,
            work_dir: String::new(),
            memory_limit_mb: 0,
            max_value_mb: 256,
        }
    }
}

impl ExecutorConfig {
    /// The scheduler's host and port, from `scheduler_address`.
    pub fn scheduler(&self) -> Result<(String, u16)> {
        let address = self.scheduler_address.trim();
        let invalid = || Error::Config(format!("executor.scheduler_address {address:?} is not host:port"));
        let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse().map_err(|_| invalid())?;
        if host.is_empty() {
            return Err(invalid());
        }
        Ok((host.to_string(), port))
    }
}

/// A port to use: `port`, or a free one the OS picks when it is 0. Ballista advertises the configured
/// port to the scheduler, so 0 cannot be passed through; the brief race is accepted in tests.
fn resolve_port(host: &str, port: u16) -> Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    let listener = TcpListener::bind((host, 0)).map_err(|source| Error::Port { host: host.into(), source })?;
    bound_port(listener.local_addr(), host)
}

/// The port of a listener's address (`local_addr()`), bound on `host`.
fn bound_port(addr: std::io::Result<std::net::SocketAddr>, host: &str) -> Result<u16> {
    addr.map(|a| a.port()).map_err(|source| Error::Port { host: host.into(), source })
}

/// The function registry every executor needs: DataFusion's defaults, those building values from a
/// count bounded by `max_value` ([`register_bounded`]), plus vitalflow's functions.
pub fn function_registry(forest: &Arc<RiskForest>, max_value: ValueLimit) -> Result<Arc<BallistaFunctionRegistry>> {
    let mut state = SessionStateBuilder::new().with_default_features().build();
    register_bounded(&mut state, max_value)?;
    register_all(&mut state, forest)?;
    Ok(Arc::new(BallistaFunctionRegistry::from(&state)))
}

/// The ports an executor will use, resolved before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExecutorPorts {
    /// Arrow Flight port.
    pub flight: u16,
    /// Port of `/healthz` and `/readyz`.
    pub health: u16,
}

/// A running executor: its ports, and the task that runs it.
#[derive(Debug)]
pub struct ExecutorService {
    /// The ports it serves on (0 in the config resolved to free ones).
    pub ports: ExecutorPorts,
    task: JoinHandle<Result<()>>,
    shutdown: CancellationToken,
    /// Where shuffle and spill files go; removed when the service is dropped (when vitalflow made it).
    _scratch: scratch::ScratchDir,
}

impl ExecutorService {
    /// Waits until the executor ends: on `shutdown`, on SIGINT or SIGTERM (Ballista listens for those
    /// itself, then tells the scheduler and drains its tasks), or on an error.
    pub async fn join(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            // The task is never aborted: only a panic ends it early, and it is passed on.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Whether the executor has ended (see [`ExecutorService::join`]), without waiting.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Cancels the shutdown token and waits until the executor has stopped.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.join().await
    }
}

/// Starts one executor with vitalflow's functions and returns once its ports are known, before it
/// registers with the scheduler (a registration failure ends the task: see [`ExecutorService::join`]).
/// The executor polls the scheduler for tasks and serves no gRPC port of its own: its one server, Flight,
/// refuses requests without the key of `cluster`, and its clients (to the scheduler, to other executors)
/// present it. Cancelling `shutdown` stops it as SIGTERM does (see [`flight::server_provider`]).
pub async fn start(
    config: &ExecutorConfig,
    cluster: &ClusterConfig,
    forest: Arc<RiskForest>,
    shutdown: CancellationToken,
) -> Result<ExecutorService> {
    let (scheduler_host, scheduler_port) = config.scheduler()?;
    if config.max_value_mb == 0 {
        return Err(Error::Config("executor.max_value_mb must be above 0".into()));
    }
    let credentials = cluster.credentials(&[("executor.bind_host", &config.bind_host)])?;
    let probes = health::bind(&config.bind_host, config.health_port).await?;
    let ports = ExecutorPorts {
        flight: resolve_port(&config.bind_host, config.flight_port)?,
        health: bound_port(probes.local_addr(), &config.bind_host)?,
    };
    let scratch = scratch::ScratchDir::prepare(&config.work_dir, &std::env::temp_dir(), ports.flight)?;
    let work_dir = scratch.path().display().to_string();
    // The probes connect to our own server: through loopback when it binds every interface.
    let own_host = if config.bind_host == "0.0.0.0" { "127.0.0.1".to_string() } else { config.bind_host.clone() };
    let targets =
        health::Targets { flight: (own_host, ports.flight), scheduler: (scheduler_host.clone(), scheduler_port) };
    let slots = match config.concurrent_tasks {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Ballista splits the pool evenly across task slots: a task's share is the configured limit.
    let memory_pool_size = (config.memory_limit_mb > 0).then(|| config.memory_limit_mb * 1024 * 1024 * slots as u64);
    let process = ExecutorProcessConfig {
        bind_host: config.bind_host.clone(),
        external_host: Some(config.external_host.clone()),
        port: ports.flight,
        scheduler_host: scheduler_host.clone(),
        scheduler_port,
        vcores: slots,
        memory_pool_size,
        // Pulled, not pushed: a pushing scheduler needs a gRPC server on every executor, and Ballista
        // offers no way to guard that server with the cluster key.
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        work_dir: Some(work_dir.clone()),
        executor_heartbeat_interval_seconds: config.heartbeat_interval_seconds,
        print_thread_info: false,
        override_function_registry: Some(function_registry(
            &forest,
            ValueLimit::from_mb(config.max_value_mb, "executor.max_value_mb"),
        )?),
        override_create_grpc_client_endpoint: credentials.endpoint_override(),
        override_arrow_flight_service: Some(flight::server_provider(credentials.clone(), shutdown.clone())),
        // Each task's session: shuffle reads from other executors present the credentials too.
        override_config_producer: Some(task_config_producer(credentials)),
        override_runtime_producer: Some(runtime_producer(&work_dir)),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(
        scheduler = %format!("{scheduler_host}:{scheduler_port}"),
        flight_port = ports.flight,
        health_port = ports.health,
        model_version = forest.version(),
        "Executor starting."
    );
    let ended = CancellationToken::new();
    let probes = tokio::spawn(health::serve(probes, targets, ended.clone()));
    let task = tokio::spawn(async move {
        let result = start_executor_process(Arc::new(process)).await;
        // The probes go with the executor, however it ended.
        ended.cancel();
        let _ = probes.await;
        Ok(result?)
    });
    Ok(ExecutorService { ports, task, shutdown, _scratch: scratch })
}

/// The session settings of every task: Ballista's defaults, and the cluster's credentials on the
/// clients it opens.
fn task_config_producer(credentials: ClusterCredentials) -> ballista_core::ConfigProducer {
    Arc::new(move || credentials.session_config(SessionConfig::new_with_ballista()))
}

/// Each task's runtime: spill files under `work_dir`, and the lake's object stores, S3 included
/// ([`LakeObjectStores`]).
fn runtime_producer(work_dir: &str) -> ballista_core::RuntimeProducer {
    let temp = work_dir.to_string();
    Arc::new(move |_| {
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_temp_file_path(temp.clone())
            .with_object_store_registry(Arc::new(LakeObjectStores::default()))
            .build()?;
        Ok(Arc::new(runtime))
    })
}
