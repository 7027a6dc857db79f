//! A real scheduler and real executors: one whose heartbeats stop reaching the scheduler (a TCP relay
//! between them cut, then mended) and one whose Flight server cannot bind its port. Each is replaced,
//! exactly one executor is alive afterwards (the replaced one is gone for good, not polling beside
//! the new one), and a Ballista job runs on the new one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use vitalflow_scheduler::SchedulerProcess;
use vitalflow_scheduler::cluster_executors::ExecutorCounts;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;

use super::{ExecutorSettings, SupervisedExecutor};
use crate::config::VitalflowConfig;
use crate::up::pipeline::local_only;

/// A TCP relay to `target`; while cut, it closes every connection it holds and each new one at once.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let cut = Arc::new(AtomicBool::new(false));
        let is_cut = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    continue;
                }
                let is_cut = is_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else { return };
                    let relay = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let watch = async {
                        while !is_cut.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! { _ = relay => {}, () = watch => {} }
                });
            }
        });
        Relay { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

/// The scheduler of `up` (no ETL, no front door) with a 3-second executor timeout, on `data`.
async fn scheduler(data: &std::path::Path, shutdown: &CancellationToken) -> (VitalflowConfig, SchedulerProcess) {
    let mut config = VitalflowConfig::default();
    local_only(&mut config);
    config.scheduler.port = 0;
    config.scheduler.executor_timeout_seconds = 3;
    config.etl.enabled = false;
    config.flight_sql.enabled = false;
    config.http.enabled = false;
    let location = DataLocation::open(&data.display().to_string()).expect("data location");
    let forest = Arc::new(RiskForest::bundled().expect("bundled model"));
    let process = vitalflow_scheduler::start(&config.scheduler_process(), location, forest, shutdown.clone())
        .await
        .expect("scheduler starts");
    (config, process)
}

fn settings(config: &VitalflowConfig, scheduler: SocketAddr, flight_port: u16) -> ExecutorSettings {
    let mut executor = config.executor.clone();
    executor.scheduler_address = scheduler.to_string();
    (executor.flight_port, executor.health_port) = (flight_port, 0);
    executor.concurrent_tasks = 1;
    ExecutorSettings {
        config: executor,
        cluster: config.cluster.clone(),
        forest: Arc::new(RiskForest::bundled().expect("bundled model")),
    }
}

/// Polls the scheduler's counts until `done` holds, for up to `within`.
async fn wait_for(
    process: &SchedulerProcess,
    within: Duration,
    what: &str,
    done: impl Fn(&ExecutorCounts) -> bool,
) -> ExecutorCounts {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let counts = process.executors.counts().await;
        if done(&counts) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} not reached within {within:?}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exactly one executor alive for `seconds` in a row, once a replaced executor's last heartbeat has
/// aged past the 3-second timeout (one still polling would make two).
async fn one_alive_for(process: &SchedulerProcess, seconds: u64) {
    tokio::time::sleep(Duration::from_secs(4)).await;
    for _ in 0..seconds * 5 {
        let counts = process.executors.counts().await;
        assert_eq!(counts.alive, 1, "exactly one executor alive: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A job through the scheduler that only an executor can run.
async fn job_runs(config: &VitalflowConfig, process: &SchedulerProcess, data: &std::path::Path) {
    let credentials = config.cluster.credentials(&[]).expect("cluster credentials");
    let location = DataLocation::open(&data.display().to_string()).expect("data location");
    let forest = Arc::new(RiskForest::bundled().expect("bundled model"));
    let ctx = vitalflow_scheduler::catalog::session::remote_context(
        &process.addrs.scheduler.to_string(),
        &credentials,
        &location,
        &forest,
    )
    .await
    .expect("a Ballista context");
    let run = async {
        let frame = ctx.sql("SELECT sum(x) AS s FROM (VALUES (1), (2), (39)) AS t(x)").await?;
        frame.collect().await
    };
    let batches =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("the job ends").expect("the job runs");
    let sum = arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string();
    assert!(sum.contains("42"), "the job's answer: {sum}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_the_scheduler_stops_hearing_is_replaced_and_the_old_one_is_gone() {
    let data = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let (config, process) = scheduler(data.path(), &shutdown).await;
    let relay = Relay::start(process.addrs.scheduler).await;
    let supervised =
        SupervisedExecutor::start(settings(&config, relay.addr, 0), process.executors.clone(), shutdown.clone())
            .await
            .expect("the first executor starts");
    wait_for(&process, Duration::from_secs(20), "one executor alive", |c| c.alive == 1).await;

    relay.set_cut(true);
    let counts =
        wait_for(&process, Duration::from_secs(30), "a silent executor replaced", |c| c.replaced_silent >= 1).await;
    assert_eq!(counts.replaced_ended, 0, "{counts:?}");
    relay.set_cut(false);
    // An executor started during the cut is either heard from now or replaced within the timeout.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_for(&process, Duration::from_secs(30), "the new executor alive", |c| c.alive == 1 && c.silent == 0).await;
    one_alive_for(&process, 4).await;
    job_runs(&config, &process, data.path()).await;

    shutdown.cancel();
    supervised.join().await;
    process.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_ends_is_replaced_once_it_can_start_again() {
    let data = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let (config, process) = scheduler(data.path(), &shutdown).await;
    // The executor's Flight port, taken: its server cannot bind, and Ballista ends the executor.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let supervised = SupervisedExecutor::start(
        settings(&config, process.addrs.scheduler, port),
        process.executors.clone(),
        shutdown.clone(),
    )
    .await
    .expect("the first executor starts (its Flight server fails after)");
    wait_for(&process, Duration::from_secs(30), "an ended executor replaced", |c| c.replaced_ended >= 1).await;
    drop(taken);
    wait_for(&process, Duration::from_secs(60), "an executor alive", |c| c.alive == 1).await;
    one_alive_for(&process, 4).await;
    job_runs(&config, &process, data.path()).await;

    shutdown.cancel();
    supervised.join().await;
    process.stop().await;
}
