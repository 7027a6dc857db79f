//! `vitalflow up`: the whole pipeline in one process on 127.0.0.1, plus the dashboard as a child
//! process — the seed's start script, without anything installed or started by hand.
//!
//! One process runs: the embedded broker (unless a real Kafka is configured), the simulator, ingest,
//! a Ballista scheduler with one in-process executor (standalone), the ETL driver, Flight SQL and the
//! HTTP API. `vitalflow stop` ends a `--detach`ed (or any) `up` through the pid file in `<data>/_run`.

pub mod broker;
pub mod dashboard;
pub mod pipeline;
pub mod run_dir;
pub mod supervised_executor;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::client::ensure_topic;
use vitalflow_ingest::produce::{ProduceSpec, produce_simulated};
use vitalflow_udf_model::simulate::VitalsSimulator;

use crate::cli::UpArgs;
use crate::config::VitalflowConfig;
use crate::process::{load_model, open_data, shutdown_on_signal, write_ready_file};
use crate::up::broker::{free_port_or, start_embedded_broker};
use crate::up::dashboard::Dashboard;
use crate::up::pipeline::{LocalPipeline, local_only};
use crate::up::run_dir::RunDir;

/// What `up` runs where, written to the ready file and printed.
#[derive(Debug, Clone, Serialize)]
pub struct UpAddrs {
    /// Kafka bootstrap servers (embedded or configured).
    pub kafka: String,
    /// Whether `kafka` is the embedded broker.
    pub embedded_broker: bool,
    /// Ballista scheduler gRPC.
    pub scheduler: SocketAddr,
    /// Flight SQL.
    pub flight_sql: Option<SocketAddr>,
    /// HTTP API.
    pub http: Option<SocketAddr>,
    /// Streamlit dashboard, when enabled (it answers once its venv is ready).
    pub dashboard: Option<SocketAddr>,
    /// Where the tables live.
    pub data: String,
    /// Process id of `up`.
    pub pid: u32,
}

/// `vitalflow up`.
pub async fn up(mut config: VitalflowConfig, args: UpArgs, external_kafka: bool) -> anyhow::Result<()> {
    let location = open_data(&config)?;
    let run_dir = RunDir::new(&location)?;
    if args.detach {
        return run_dir.detach();
    }
    run_dir.claim()?;
    let result = run(&mut config, args, external_kafka, &location, &run_dir).await;
    run_dir.release();
    result
}

async fn run(
    config: &mut VitalflowConfig,
    args: UpArgs,
    external_kafka: bool,
    location: &vitalflow_udf_model::lake::DataLocation,
    run_dir: &RunDir,
) -> anyhow::Result<()> {
    check_and_localise(config)?;
    let shutdown = shutdown_on_signal();
    let forest = load_model(config)?;

    let broker = if external_kafka {
        None
    } else {
        let port = free_port_or(config.up.broker_port)?;
        let broker = start_embedded_broker(port).await.context("starting the embedded broker")?;
        config.kafka.brokers = broker.addr.to_string();
        Some(broker)
    };
    ensure_topic(&config.kafka, config.kafka.partitions).await.context("creating the vitals topic")?;

    let pipeline = LocalPipeline::start(config, location, forest, shutdown.clone()).await?;
    let scheduler = &pipeline.scheduler;
    let simulator = spawn_simulator(config, shutdown.clone());

    let dashboard_port = if config.up.dashboard { Some(free_port_or(config.up.dashboard_port)?) } else { None };
    let addrs = UpAddrs {
        kafka: config.kafka.brokers.clone(),
        embedded_broker: broker.is_some(),
        scheduler: scheduler.addrs.scheduler,
        flight_sql: scheduler.addrs.flight_sql,
        http: scheduler.addrs.http,
        dashboard: dashboard_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        data: location.url().to_string(),
        pid: std::process::id(),
    };
    print_banner(&addrs, config);
    write_ready_file(args.service.ready_file.as_deref(), &addrs)?;
    write_ready_file(Some(&run_dir.file(run_dir::ADDRS_FILE)), &addrs)?;

    let dashboard = match (dashboard_port, addrs.flight_sql) {
        (Some(port), Some(flight_sql)) => {
            start_dashboard(config, port, flight_sql, addrs.http, run_dir, &shutdown).await
        }
        (Some(_), None) => {
            eprintln!("vitalflow up: the dashboard needs Flight SQL, which is switched off; dashboard not started.");
            None
        }
        _ => None,
    };

    shutdown.cancelled().await;
    eprintln!("vitalflow up: stopping…");
    if let Some(dashboard) = dashboard {
        tokio::task::spawn_blocking(move || dashboard.stop(Duration::from_secs(5))).await.ok();
    }
    let _ = simulator.await;
    pipeline.stop().await;
    if let Some(broker) = broker {
        broker.stop();
    }
    eprintln!("vitalflow up: stopped.");
    Ok(())
}

fn check_and_localise(config: &mut VitalflowConfig) -> anyhow::Result<()> {
    config.simulator.validate()?;
    local_only(config);
    Ok(())
}

fn spawn_simulator(config: &VitalflowConfig, shutdown: CancellationToken) -> JoinHandle<()> {
    let kafka = config.kafka.clone();
    let sim = config.simulator.clone();
    tokio::spawn(async move {
        let mut simulator = VitalsSimulator::with_settings(sim.patients, sim.seed, sim.ward);
        let spec = ProduceSpec { count: None, rate_per_sec: sim.rate_per_sec };
        if let Err(error) = produce_simulated(&kafka, &mut simulator, spec, shutdown).await {
            tracing::error!(error = %error, "The simulator stopped.");
        }
    })
}

/// Makes the venv (first run) and starts Streamlit; a failure only costs the dashboard.
async fn start_dashboard(
    config: &VitalflowConfig,
    port: u16,
    flight_sql: SocketAddr,
    http: Option<SocketAddr>,
    run_dir: &RunDir,
    shutdown: &CancellationToken,
) -> Option<Dashboard> {
    let python = config.up.python.clone();
    let prepare = tokio::task::spawn_blocking(move || dashboard::prepare(&python, &dashboard::cache_dir()));
    let env = tokio::select! {
        env = prepare => env,
        _ = shutdown.cancelled() => return None,
    };
    let env = match env.context("preparing the dashboard").and_then(|r| r) {
        Ok(env) => env,
        Err(error) => {
            eprintln!(
                "vitalflow up: dashboard not started: {error:#}\n  (the pipeline, Flight SQL and HTTP keep running)"
            );
            return None;
        }
    };
    // Spawned from this future, which runs on the main thread for the life of `up` (see Dashboard::spawn).
    let log = run_dir.file("dashboard.log");
    let http = http.map(|addr| format!("http://{addr}"));
    let mut dashboard = match Dashboard::spawn(&env, port, &format!("grpc://{flight_sql}"), http.as_deref(), &log) {
        Ok(d) => d,
        Err(error) => {
            eprintln!("vitalflow up: dashboard not started: {error:#}");
            return None;
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if dashboard::healthy(port).await {
            eprintln!("vitalflow up: dashboard ready at http://127.0.0.1:{port}");
            break;
        }
        if dashboard.exited() || tokio::time::Instant::now() > deadline {
            eprintln!("vitalflow up: the dashboard did not come up; see {}", log.display());
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    Some(dashboard)
}

fn print_banner(addrs: &UpAddrs, config: &VitalflowConfig) {
    let off = || "(off)".to_string();
    let kafka =
        if addrs.embedded_broker { format!("{} (embedded, in memory)", addrs.kafka) } else { addrs.kafka.clone() };
    eprintln!(
        "\nvitalflow up (pid {pid}) — everything on 127.0.0.1, Ctrl-C stops it all\n\
         \x20 Kafka               {kafka}, topic {topic}\n\
         \x20 Simulator           {patients} patients, {rate} readings/s\n\
         \x20 Ingest → Delta Lake {data}\n\
         \x20 Ballista            scheduler {scheduler} + 1 executor, ETL every ≥{interval} ms\n\
         \x20 Flight SQL          {flight}\n\
         \x20 HTTP API            {http}\n\
         \x20 Dashboard           {dashboard}\n",
        pid = addrs.pid,
        topic = config.kafka.topic,
        patients = config.simulator.patients,
        rate = config.simulator.rate_per_sec,
        data = addrs.data,
        scheduler = addrs.scheduler,
        interval = config.etl.min_interval_ms,
        flight = addrs.flight_sql.map_or_else(off, |a| format!("grpc://{a}")),
        http = addrs.http.map_or_else(off, |a| format!("http://{a}/predict_batch  http://{a}/healthz")),
        dashboard = addrs.dashboard.map_or_else(off, |a| format!("http://{a} (starting)")),
    );
}
