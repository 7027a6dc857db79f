//! `up`'s one executor, replaced when it is lost: when its task ends while the process is not stopping
//! (an error, a panic, its Flight server failed), or when the scheduler has heard nothing from it for
//! `scheduler.executor_timeout_seconds`. Without this an executor lost once leaves `up` running with no
//! ETL and no cluster queries until someone restarts it.
//!
//! Each executor runs on a tokio runtime of its own, shut down when it is replaced: Ballista's executor
//! leaves its loop polling for work running after its own task returns, and that loop would keep a
//! replaced executor registered beside the new one. A runtime of its own also keeps the executor's
//! servers apart from the scheduler's and the ETL's worker threads.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_executor::{ClusterConfig, ExecutorConfig, ExecutorService};
use vitalflow_scheduler::cluster_executors::{ClusterExecutors, ExecutorLoss};
use vitalflow_udf_model::RiskForest;

/// How often the executor is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a stopping executor may take to drain before its runtime is shut down under it.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// The wait before the first new executor, doubled after each failed start up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An executor that ran this long was healthy: the wait starts again from [`FIRST_BACKOFF`].
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What every executor is started with.
#[derive(Clone)]
pub struct ExecutorSettings {
    /// Its settings (the scheduler's address included).
    pub config: ExecutorConfig,
    /// The cluster's key and TLS.
    pub cluster: ClusterConfig,
    /// The model its functions score with.
    pub forest: Arc<RiskForest>,
}

/// The executor and the task that replaces it when lost; ends when the shutdown token is cancelled.
pub struct SupervisedExecutor {
    task: JoinHandle<()>,
}

impl SupervisedExecutor {
    /// Starts the first executor (an error here, such as a missing certificate, stops `up`), then
    /// watches it through the scheduler's view of its executors.
    pub async fn start(
        settings: ExecutorSettings,
        executors: ClusterExecutors,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SupervisedExecutor> {
        let first = RunningExecutor::start(&settings, &shutdown).await?;
        Ok(SupervisedExecutor { task: tokio::spawn(supervise(first, settings, executors, shutdown)) })
    }

    /// Waits until the supervision has ended (after the shutdown token was cancelled) and the last
    /// executor has stopped.
    pub async fn join(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "The executor's supervision ended abnormally.");
        }
    }
}

/// Watches `running`, replaces it when it is lost, until `shutdown`.
async fn supervise(
    mut running: RunningExecutor,
    settings: ExecutorSettings,
    executors: ClusterExecutors,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let loss = running.watch(&executors, &shutdown).await;
        let lived = running.began.elapsed();
        let how = running.stop().await;
        let Some(loss) = loss else { return };
        executors.record_replaced(loss);
        tracing::error!(
            reason = loss.label(),
            ended = %how,
            "The executor was lost; starting a new one."
        );
        if lived > HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        running = loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match RunningExecutor::start(&settings, &shutdown).await {
                Ok(started) => break started,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "Starting a new executor failed; trying again.")
                }
            }
        };
        tracing::info!(flight_port = running.service.ports.flight, "A new executor started.");
    }
}

/// A runtime that is shut down without waiting when dropped: dropping a tokio runtime the plain way
/// blocks, which panics inside another runtime's task.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(Runtime::handle)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// One executor on its runtime.
struct RunningExecutor {
    runtime: OwnRuntime,
    service: ExecutorService,
    /// Stops this executor only (a child of the process's shutdown token).
    stop: CancellationToken,
    /// When it started, on both clocks: the scheduler's heartbeats are wall-clock seconds.
    began: Instant,
    began_at: SystemTime,
}

impl RunningExecutor {
    async fn start(settings: &ExecutorSettings, shutdown: &CancellationToken) -> anyhow::Result<RunningExecutor> {
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("vitalflow-executor")
                .enable_all()
                .build()
                .context("starting the executor's runtime")?,
        ));
        let Some(handle) = runtime.handle() else { anyhow::bail!("the executor's runtime is gone") };
        let stop = shutdown.child_token();
        let ExecutorSettings { config, cluster, forest } = settings.clone();
        let token = stop.clone();
        // Started on its runtime, so that every task it spawns lives there.
        let started = handle.spawn(async move { vitalflow_executor::start(&config, &cluster, forest, token).await });
        let service = match started.await {
            Ok(started) => started.context("starting the executor")?,
            Err(error) => anyhow::bail!("starting the executor panicked: {error}"),
        };
        Ok(RunningExecutor { runtime, service, stop, began: Instant::now(), began_at: SystemTime::now() })
    }

    /// Waits until the executor is lost (`Some`) or `shutdown` is cancelled (`None`).
    async fn watch(&self, executors: &ClusterExecutors, shutdown: &CancellationToken) -> Option<ExecutorLoss> {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                _ = tick.tick() => {}
            }
            if shutdown.is_cancelled() {
                return None;
            }
            if self.service.is_finished() {
                return Some(ExecutorLoss::Ended);
            }
            // Silent since its last heartbeat, or since it started if the scheduler has none (not yet
            // registered, or already dropped as dead).
            let heard =
                executors.last_heard(self.service.ports.flight).await.map_or(self.began_at, |at| at.max(self.began_at));
            if SystemTime::now().duration_since(heard).is_ok_and(|silence| silence > executors.timeout()) {
                return Some(ExecutorLoss::Silent);
            }
        }
    }

    /// Stops the executor (it tells the scheduler and drains its tasks), waits up to [`STOP_WAIT`], then
    /// shuts its runtime down with whatever is left on it (dropped). Says how it ended.
    async fn stop(self) -> String {
        let RunningExecutor { runtime, service, stop, .. } = self;
        stop.cancel();
        let Some(handle) = runtime.handle() else { return "gone".into() };
        // Joined on its runtime: a panic of the executor comes back as an error here, not in this task.
        let joined = handle.spawn(service.join());
        match tokio::time::timeout(STOP_WAIT, joined).await {
            Ok(Ok(Ok(()))) => "stopped".to_string(),
            Ok(Ok(Err(error))) => format!("with an error: {error}"),
            Ok(Err(panic)) => format!("with a panic: {panic}"),
            Err(_) => format!("not stopped within {} s", STOP_WAIT.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests;
