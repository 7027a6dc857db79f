#![doc = include_str!("../README.md")]

/// Delivery of committed `risk_alerts` to a Kafka topic and a webhook.
pub mod alerts;
/// What SQL sees: sessions with vitalflow's functions and the lake's tables registered.
pub mod catalog;
/// The Ballista scheduler, started in this process.
pub mod cluster;
/// The scheduler's executors: when each was last heard from, and replacements of lost ones.
pub mod cluster_executors;
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
/// Where each patient is, from `patient_movements`: their ward, admitted or discharged.
pub mod stays;
/// Rows of the lake's tables handled by the driver itself: cast to a table's schema, read from one file.
pub mod table_rows;
/// The alerts a ward acts on: muting, the lifecycle, its tables and the one task that changes them.
pub mod ward_alerts;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::bounded::{ValueLimit, register_bounded};
use vitalflow_udf_model::lake::DataLocation;

pub use config::{
    AlertsConfig, CompactionConfig, EtlConfig, EtlEngine, FlightSqlConfig, HttpConfig, RetentionConfig,
    SchedulerConfig, WardAlertsConfig, WardRules,
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
    /// The alerts a ward acts on: muting, auto-resolve, escalation (beside the ETL driver).
    pub ward_alerts: WardAlertsConfig,
    /// The brokers and security settings the Kafka alert sink produces with.
    pub kafka: vitalflow_ingest::KafkaConfig,
    /// The cluster's shared secret, demanded on the Ballista port and presented to the executors.
    pub cluster: vitalflow_executor::ClusterConfig,
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
    /// The Ballista scheduler's executors.
    pub executors: cluster_executors::ClusterExecutors,
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

/// The front door beyond loopback: only with authentication on (else anyone on the network reads
/// patient data without signing in), and only over TLS unless the operator allows plaintext (else
/// passwords, tokens and patient data cross the network in clear).
fn front_door_binds_are_safe(config: &SchedulerProcessConfig) -> Result<()> {
    let doors = [
        (
            "flight_sql",
            &config.flight_sql.bind_host,
            config.flight_sql.enabled,
            &config.flight_sql.tls_cert_path,
            config.flight_sql.allow_plaintext,
        ),
        ("http", &config.http.bind_host, config.http.enabled, &config.http.tls_cert_path, config.http.allow_plaintext),
    ];
    for (door, host, enabled, cert, allow_plaintext) in doors {
        if !enabled || vitalflow_executor::cluster_key::is_loopback(host) {
            continue;
        }
        if !config.flight_sql.auth.required {
            return Err(Error::Config(format!(
                "flight_sql.auth.required is false but {door}.bind_host is {host:?}, not loopback: anyone who \
                 reaches it could read patient data without signing in; turn authentication on or bind 127.0.0.1"
            )));
        }
        if cert.is_empty() && !allow_plaintext {
            return Err(Error::Config(format!(
                "{door}.bind_host is {host:?}, not loopback, and {door}.tls_cert_path is not set: passwords, tokens \
                 and patient data would cross the network in clear; set {door}.tls_cert_path and \
                 {door}.tls_key_path, or {door}.allow_plaintext = true behind a TLS proxy or on a network you trust"
            )));
        }
    }
    Ok(())
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
    config.ward_alerts.validate()?;
    if config.flight_sql.enabled || config.http.enabled {
        // Fail before starting anything: no users with auth on, half a TLS pair.
        config.flight_sql.validate()?;
        front_door::auth::Authenticator::new(&config.flight_sql.auth)?;
        config.http.validate()?;
        front_door_binds_are_safe(config)?;
    }
    // Fails before anything starts when the SQL file is unreadable, or the data of an earlier format.
    etl::sql::load(&config.etl, None)?;
    let credentials = config.cluster.credentials(&[("scheduler.bind_host", &config.scheduler.bind_host)])?;
    vitalflow_udf_model::lake::format::ensure_current_format(&location).await?;
    // The scheduler stops last, once its clients (the ETL, Flight SQL) have finished.
    let scheduler_shutdown = CancellationToken::new();
    // Value-building functions where reader queries plan and run in this process.
    let max_value = ValueLimit::from_mb(config.flight_sql.max_value_mb, "flight_sql.max_value_mb");
    let scheduler = cluster::start_scheduler(
        &config.scheduler,
        credentials.clone(),
        forest.clone(),
        max_value,
        scheduler_shutdown.clone(),
    )
    .await?;
    let target = format!("{}:{}", config.scheduler.external_host, scheduler.addr.port());
    let etl_stats = Arc::new(EtlStats::default());
    let mut tasks = Vec::new();
    // The alerts are kept beside the ETL driver, which writes the rises they come from, by the process
    // holding the ETL lease; the HTTP API reaches that term's keeper through the handle.
    let alert_keeper = if config.etl.enabled && config.ward_alerts.enabled {
        config.ward_alerts.validate()?;
        Some(ward_alerts::AlertKeeperHandle::default())
    } else {
        None
    };
    if config.etl.enabled {
        let ctx = match config.etl.run_on {
            EtlEngine::Cluster => {
                let config = session::etl_session_config();
                session::remote_context_with(&target, &credentials, &location, &forest, config).await?
            }
            EtlEngine::InProcess => session::local_context(&location, &forest)?,
        };
        // Fails at start when the SQL does not plan; the role makes its own driver once it holds the lease.
        let driver = EtlDriver::new(ctx.clone(), location.clone(), &config.etl, etl_stats.clone()).await?;
        if config.etl.run_on == EtlEngine::Cluster {
            driver.check_runs_on_cluster().await?;
        }
        let role = etl::role::EtlRole {
            ward_alerts: config.ward_alerts.clone(),
            alert_keeper: alert_keeper.clone(),
            ctx,
            location: location.clone(),
            etl: config.etl.clone(),
            alerts: config.alerts.clone(),
            kafka: config.kafka.clone(),
            compaction: config.compaction.clone(),
            retention: config.retention.clone(),
            stats: etl_stats.clone(),
            jobs: scheduler.jobs.clone(),
        };
        tasks.push(tokio::spawn(role.run(shutdown.clone())));
    }
    let mut flight_sql = None;
    // One authenticator for Flight SQL and HTTP, so that a token from the handshake works on both.
    let mut authenticator = None;
    let mut admission = None;
    let mut audit_stats = None;
    if config.flight_sql.enabled {
        let mut ctx = session::remote_context(&target, &credentials, &location, &forest).await?;
        register_bounded(&mut ctx, max_value)
            .map_err(|source| Error::Query { step: "bounding functions".into(), source })?;
        let local =
            session::front_door_local_context(&location, &forest, config.flight_sql.in_process_memory_mb, max_value)?;
        let progress =
            ProgressSource { location: location.clone(), stats: config.etl.enabled.then(|| etl_stats.clone()) };
        let endpoint = FlightSqlEndpoint::new(ctx, &config.flight_sql, location.clone())?
            .with_cluster_jobs(scheduler.jobs.clone())
            .with_local_context(local)
            .with_etl_progress(progress)?;
        authenticator = Some(endpoint.authenticator());
        admission = Some(endpoint.admission_stats());
        audit_stats = Some(endpoint.audit_stats());
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
        let services = front_door::http::HttpServices {
            etl: config.etl.enabled.then(|| etl_stats.clone()),
            alerts: alert_keeper,
            jobs: Some(scheduler.jobs.clone()),
            executors: Some(scheduler.executors.clone()),
            queries: admission,
            audit: audit_stats,
        };
        let running =
            front_door::http::start_http(&config.http, forest.clone(), auth, services, shutdown.clone()).await?;
        http = Some(running.addr);
        tasks.push(running.task);
    }
    Ok(SchedulerProcess {
        addrs: SchedulerAddrs { scheduler: scheduler.addr, flight_sql, http },
        etl_stats,
        executors: scheduler.executors,
        tasks,
        scheduler_task: scheduler.task,
        shutdown,
        scheduler_shutdown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_off_is_refused_on_a_door_off_loopback() {
        let mut config = SchedulerProcessConfig::default();
        config.flight_sql.auth.required = false;
        assert!(front_door_binds_are_safe(&config).is_ok(), "both doors on 127.0.0.1 by default");
        config.http.bind_host = "0.0.0.0".into();
        config.http.allow_plaintext = true;
        let err = front_door_binds_are_safe(&config).unwrap_err().to_string();
        assert!(err.contains("http.bind_host") && err.contains("0.0.0.0") && err.contains("auth"), "{err}");
        config.http.enabled = false;
        assert!(front_door_binds_are_safe(&config).is_ok(), "a door that is not served does not count");
        config.flight_sql.bind_host = "10.1.2.3".into();
        config.flight_sql.tls_cert_path = "/certs/door.pem".into();
        assert!(front_door_binds_are_safe(&config).unwrap_err().to_string().contains("flight_sql.bind_host"));
        config.flight_sql.auth.required = true;
        assert!(front_door_binds_are_safe(&config).is_ok());
    }

    #[test]
    fn a_door_off_loopback_needs_tls_or_plaintext_allowed_by_name() {
        let mut config = SchedulerProcessConfig::default();
        config.flight_sql.bind_host = "0.0.0.0".into();
        let err = front_door_binds_are_safe(&config).unwrap_err().to_string();
        assert!(err.contains("flight_sql.tls_cert_path") && err.contains("flight_sql.allow_plaintext"), "{err}");
        config.flight_sql.allow_plaintext = true;
        assert!(front_door_binds_are_safe(&config).is_ok());
        config.http.bind_host = "::".into();
        let err = front_door_binds_are_safe(&config).unwrap_err().to_string();
        assert!(err.contains("http.tls_cert_path") && err.contains("http.allow_plaintext"), "{err}");
        config.http.tls_cert_path = "/certs/door.pem".into();
        assert!(front_door_binds_are_safe(&config).is_ok());
    }
}
