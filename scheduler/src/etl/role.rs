//! One ETL per data location. The ETL driver, alert delivery, the alert keeper and maintenance of a
//! location run in the process that holds the location's ETL lease ([`vitalflow_udf_model::lake::lease`]); a second
//! scheduler started on the same location waits as a standby and says so, and takes over when the
//! holder's lease runs out (it was killed, or lost its store). The holder renews every third of
//! `etl.lease_seconds`; a driver whose lease ran out commits no batch (see [`crate::etl::EtlDriver`]),
//! and one that finds the lease taken over stops and stands by.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use datafusion::prelude::SessionContext;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::KafkaConfig;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::lease::Lease;

use crate::alerts;
use crate::cluster::ClusterJobs;
use crate::config::{AlertsConfig, CompactionConfig, EtlConfig, RetentionConfig, WardAlertsConfig};
use crate::etl::{EtlDriver, EtlStats};
use crate::maintenance;
use crate::ward_alerts::{AlertKeeperHandle, start_keeper};

/// The lease's role name.
const ROLE: &str = "etl";

/// Everything the ETL role runs, and with what.
pub struct EtlRole {
    /// The driver's context (on the cluster or in process).
    pub ctx: SessionContext,
    /// The data location.
    pub location: DataLocation,
    /// `[etl]`.
    pub etl: EtlConfig,
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// `[kafka]`, for the alert topic.
    pub kafka: KafkaConfig,
    /// `[compaction]`.
    pub compaction: CompactionConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// The driver's counters.
    pub stats: Arc<EtlStats>,
    /// The scheduler's jobs, for cancelling a batch past its deadline.
    pub jobs: ClusterJobs,
    /// `[ward_alerts]`.
    pub ward_alerts: WardAlertsConfig,
    /// Where the alert keeper of each lease term is reached; `None`: ward alerts are off.
    pub alert_keeper: Option<AlertKeeperHandle>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A name for this process as a lease holder: host, process id and a random part.
fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{host}:{}:{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

impl EtlRole {
    /// Stands by until the lease is this process's, runs the ETL while it holds it, stands by again
    /// if it is lost; until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let owner = owner_name();
        let ttl = self.etl.lease();
        loop {
            let Some(mut lease) = self.standby(&owner, ttl, &shutdown).await else { return };
            tracing::info!(
                owner,
                lease_seconds = ttl.as_secs(),
                "Holding the ETL lease of this data location; the ETL runs here."
            );
            let held = shutdown.child_token();
            let deadline = Arc::new(AtomicI64::new(now_ms() + ttl.as_millis() as i64));
            let tasks = self.start_work(&held, &deadline).await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ttl / 3) => {}
                }
                match lease.renew().await {
                    Ok(true) => deadline.store(now_ms() + ttl.as_millis() as i64, Ordering::Relaxed),
                    Ok(false) => {
                        tracing::warn!(
                            "The ETL lease was taken over by another scheduler (this one was too slow to renew it); standing by."
                        );
                        break;
                    }
                    Err(error) if now_ms() < deadline.load(Ordering::Relaxed) => {
                        tracing::warn!(%error, "Renewing the ETL lease failed; retrying.");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "The ETL lease ran out while the store failed; standing by.");
                        break;
                    }
                }
            }
            held.cancel();
            for task in tasks {
                let _ = task.await;
            }
            if shutdown.is_cancelled() {
                // A clean stop hands the ETL on at once instead of after the lease's time to live.
                if let Err(error) = lease.release().await {
                    tracing::warn!(%error, "Releasing the ETL lease failed; a standby takes over when it runs out.");
                }
                return;
            }
        }
    }

    /// Waits until the lease is taken; `None` on shutdown.
    async fn standby(&self, owner: &str, ttl: Duration, shutdown: &CancellationToken) -> Option<Lease> {
        let mut said = None;
        loop {
            match Lease::try_acquire(&self.location, ROLE, owner, ttl).await {
                Ok(Ok(lease)) => return Some(lease),
                Ok(Err(holder)) => {
                    if said.as_ref() != Some(&holder.owner) {
                        tracing::warn!(
                            holder = %holder.owner,
                            expires_in_ms = holder.expires_at_ms - now_ms(),
                            "ETL standby: another scheduler holds the ETL lease of this data location; this one takes over if that lease runs out."
                        );
                        said = Some(holder.owner);
                    }
                }
                Err(error) => tracing::warn!(%error, "Reading the ETL lease failed; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep((ttl / 3).min(Duration::from_secs(2))) => {}
            }
        }
    }

    /// Starts the driver, alert delivery, the alert keeper and maintenance under `held`.
    async fn start_work(&self, held: &CancellationToken, deadline: &Arc<AtomicI64>) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        match EtlDriver::new(self.ctx.clone(), self.location.clone(), &self.etl, self.stats.clone()).await {
            Ok(driver) => {
                let driver = driver.with_cluster_jobs(self.jobs.clone()).with_lease_deadline(deadline.clone());
                tasks.push(tokio::spawn(driver.run(held.clone())));
            }
            Err(error) => {
                tracing::error!(%error, "The ETL driver could not start; the lease is kept and it is retried at the next renewal.");
            }
        }
        match alerts::start_delivery(&self.alerts, &self.kafka, &self.location, self.stats.delivery.clone(), held) {
            Ok(delivery) => tasks.extend(delivery),
            Err(error) => tracing::error!(%error, "Alert delivery could not start."),
        }
        if let Some(handle) = &self.alert_keeper {
            match start_keeper(&self.location, &self.ward_alerts, handle, held.clone()).await {
                Ok(keeper) => tasks.push(keeper),
                Err(error) => tracing::error!(%error, "The alert keeper could not start; alert actions are refused."),
            }
        }
        if self.compaction.enabled || self.retention.days > 0 || self.retention.audit_days > 0 {
            let (location, compaction, retention) =
                (self.location.clone(), self.compaction.clone(), self.retention.clone());
            tasks.push(tokio::spawn(maintenance::run(location, compaction, retention, held.clone())));
        }
        tasks
    }
}
