#![doc = include_str!("../README.md")]

/// Delivery of committed `risk_alerts` to a Kafka topic and a webhook.
pub mod alerts;
/// The audit log of Flight SQL queries.
pub mod audit;
/// Users, tokens and credential checks (Flight SQL, and the HTTP API).
pub mod auth;
pub mod cluster;
pub mod compaction;
pub mod config;
pub mod coverage;
pub mod error;
pub mod etl;
pub mod flight_sql;
pub mod http;
/// Where the ETL stands (`vitalflow status`, the `etl_progress` table).
pub mod progress;
pub mod retention;
pub mod session;
pub mod versioned;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::DataLocation;
use vitalflow_udf_model::RiskForest;

pub use config::{
    AlertsConfig, CompactionConfig, EtlConfig, EtlEngine, FlightSqlConfig, HttpConfig, RetentionConfig, SchedulerConfig,
};
pub use error::{Error, Result};

use crate::etl::{EtlDriver, EtlStats};
use crate::flight_sql::{FlightSqlEndpoint, ProgressSource, start_flight_sql};

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
}

impl SchedulerProcess {
    /// Stops the ETL driver and Flight SQL, waits for them, then stops the scheduler.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.scheduler_task.abort();
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
        auth::Authenticator::new(&config.flight_sql.auth)?;
    }
    // Fails before anything starts when the SQL file is unreadable.
    config.etl.sql()?;
    let scheduler = cluster::start_scheduler(&config.scheduler, forest.clone()).await?;
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
        tasks.push(tokio::spawn(compaction::run(location, compaction, retention, token)));
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
            None => Arc::new(auth::Authenticator::new(&config.flight_sql.auth)?),
        };
        let etl = config.etl.enabled.then(|| etl_stats.clone());
        let running = http::start_http(&config.http, forest.clone(), auth, etl, shutdown.clone()).await?;
        http = Some(running.addr);
        tasks.push(running.task);
    }
    Ok(SchedulerProcess {
        addrs: SchedulerAddrs { scheduler: scheduler.addr, flight_sql, http },
        etl_stats,
        tasks,
        scheduler_task: scheduler.task,
        shutdown,
    })
}
