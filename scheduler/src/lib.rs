#![doc = include_str!("../README.md")]

/// Delivery of committed `risk_alerts` to a Kafka topic and a webhook.
pub mod alerts;
/// What SQL sees: sessions with vitalflow's functions and the lake's tables registered.
pub mod catalog;
/// The Ballista scheduler, started in this process.
pub mod cluster;
/// Settings of the scheduler process; `Default` is the only place a default is written.
pub mod config;
/// The crate's error type.
pub mod error;
/// The continuous ETL: the micro-batch driver, its SQL, its outputs and where it stands.
pub mod etl;
/// Flight SQL, the HTTP API, sign-in and the audit log.
pub mod front_door;
/// Compaction and retention of the lake's tables.
pub mod maintenance;
/// The process's Prometheus exposition (ETL and alert delivery).
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::DataLocation;

pub use config::{
    AlertsConfig, CompactionConfig, EtlConfig, EtlEngine, FlightSqlConfig, HttpConfig, RetentionConfig, SchedulerConfig,
};
pub use error::{Error, Result};

use crate::catalog::session;
use crate::etl::{EtlDriver, EtlStats};
use crate::front_door::flight_sql::{FlightSqlEndpoint, ProgressSource, start_flight_sql};

/// Everything the scheduler process runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerProcessConfig {
    /// The Ballista scheduler.
    pub scheduler: SchedulerConfig,
    /// The ETL driver.
    pub etl: EtlConfig,
    /// The Flight SQL endpoint.
    pub flight_sql: FlightSqlConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// Background compaction of small files.
    pub compaction: CompactionConfig,
    /// Deleting old data.
    pub retention: RetentionConfig,
    /// Delivery of alerts to Kafka and a webhook (beside the ETL driver).
    pub alerts: AlertsConfig,
    /// The brokers and security settings the Kafka alert sink produces with.
    pub kafka: vitalflow_ingest::KafkaConfig,
}

/// Addresses a started scheduler process listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerAddrs {
    /// Ballista scheduler gRPC.
    pub scheduler: SocketAddr,
    /// Flight SQL, when enabled.
    pub flight_sql: Option<SocketAddr>,
    /// The HTTP API, when enabled.
    pub http: Option<SocketAddr>,
}

/// A started scheduler process: its addresses, counters and tasks.
#[derive(Debug)]
pub struct SchedulerProcess {
    /// Where it listens.
    pub addrs: SchedulerAddrs,
    /// ETL counters.
    pub etl_stats: Arc<EtlStats>,
    tasks: Vec<JoinHandle<()>>,
    scheduler_task: JoinHandle<()>,
    shutdown: CancellationToken,
    scheduler_shutdown: CancellationToken,
}

impl SchedulerProcess {
    /// Stops the ETL driver, Flight SQL, the HTTP API and the scheduler, and waits for them all.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.scheduler_shutdown.cancel();
        let _ = self.scheduler_task.await;
    }
}

/// Starts the Ballista scheduler, then the ETL driver and Flight SQL as clients of it, and the HTTP API.
pub async fn start(
    config: &SchedulerProcessConfig,
    location: DataLocation,
    forest: Arc<RiskForest>,
    shutdown: CancellationToken,
) -> Result<SchedulerProcess> {
    config.etl.validate()?;
    config.compaction.validate()?;
    config.alerts.validate()?;
    if config.flight_sql.enabled || config.http.enabled {
        // Fail before starting anything: no users with auth on, half a TLS pair.
        config.flight_sql.validate()?;
        front_door::auth::Authenticator::new(&config.flight_sql.auth)?;
    }
    // Fails before anything starts when the SQL file is unreadable.
    etl::sql::load(&config.etl)?;
    // The scheduler stops last, once its clients (the ETL, Flight SQL) have finished.
    let scheduler_shutdown = CancellationToken::new();
    let scheduler = cluster::start_scheduler(&config.scheduler, forest.clone(), scheduler_shutdown.clone()).await?;
    let target = format!("{}:{}", config.scheduler.external_host, scheduler.addr.port());
    let etl_stats = Arc::new(EtlStats::default());
    let mut tasks = Vec::new();
    if config.etl.enabled {
        let ctx = match config.etl.run_on {
            EtlEngine::Cluster => {
                session::remote_context_with(&target, &location, &forest, session::etl_session_config()).await?
            }
            EtlEngine::InProcess => session::local_context(&location, &forest)?,
        };
        let driver = EtlDriver::new(ctx, location.clone(), &config.etl, etl_stats.clone())
            .await?
            .with_cluster_jobs(scheduler.jobs.clone());
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move { driver.run(token).await }));
        // Beside the driver, reading what it commits; never in its way.
        tasks.extend(alerts::start_delivery(
            &config.alerts,
            &config.kafka,
            &location,
            etl_stats.delivery.clone(),
            &shutdown,
        )?);
    }
    // Beside the ETL driver, whose checkpoint says what is settled: one compactor per data location.
    if config.etl.enabled && (config.compaction.enabled || config.retention.days > 0) {
        let (location, compaction, retention, token) =
            (location.clone(), config.compaction.clone(), config.retention.clone(), shutdown.clone());
        tasks.push(tokio::spawn(maintenance::run(location, compaction, retention, token)));
    }
    let mut flight_sql = None;
    // One authenticator for Flight SQL and HTTP, so that a token from the handshake works on both.
    let mut authenticator = None;
    if config.flight_sql.enabled {
        let ctx = session::remote_context(&target, &location, &forest).await?;
        let progress =
            ProgressSource { location: location.clone(), stats: config.etl.enabled.then(|| etl_stats.clone()) };
        let endpoint = FlightSqlEndpoint::new(ctx, &config.flight_sql)?
            .with_cluster_jobs(scheduler.jobs.clone())
            .with_local_context(session::local_context(&location, &forest)?)
            .with_etl_progress(progress)?;
        authenticator = Some(endpoint.authenticator());
        let running = start_flight_sql(&config.flight_sql, endpoint, shutdown.clone()).await?;
        flight_sql = Some(running.addr);
        tasks.push(running.task);
    }
    let mut http = None;
    if config.http.enabled {
        let auth = match authenticator {
            Some(auth) => auth,
            None => Arc::new(front_door::auth::Authenticator::new(&config.flight_sql.auth)?),
        };
        let etl = config.etl.enabled.then(|| etl_stats.clone());
        let running = front_door::http::start_http(&config.http, forest.clone(), auth, etl, shutdown.clone()).await?;
        http = Some(running.addr);
        tasks.push(running.task);
    }
    Ok(SchedulerProcess {
        addrs: SchedulerAddrs { scheduler: scheduler.addr, flight_sql, http },
        etl_stats,
        tasks,
        scheduler_task: scheduler.task,
        shutdown,
        scheduler_shutdown,
    })
}
