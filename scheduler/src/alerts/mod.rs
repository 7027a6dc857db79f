//! Delivery of `risk_alerts` to a Kafka topic and a webhook (`[alerts]`), one loop per sink; the
//! lifecycle of the alerts a ward acts on (`alert_events`) goes to the same sinks as `alert_event`
//! messages ([`alert_events`]), in loops of their own.
//!
//! The table is the truth; a sink is a copy of it a receiver can trust:
//! - **Only committed alerts.** A sink reads the `risk_alerts` commits after the version it has read
//!   (each adds one micro-batch's file, `batch-<id>-…`), and sends a batch only once the ETL checkpoint
//!   has committed it (`last_batch_id`); a file no commit added (a crash's leftover) is never seen.
//! - **At least once.** After a batch's alerts are acknowledged (Kafka: by the broker; webhook: a 2xx
//!   answer), the sink records the batch id and the table version in its own checkpoint,
//!   `_checkpoints/alerts-<sink>.json`.
//!   A crash between the two sends that batch again after the restart: every message carries
//!   `alert_id` (`topic/partition/offset` of the reading) for receivers to drop repeats by.
//! - **The ETL never waits.** A sink that is down is retried with a doubling wait (up to
//!   `alerts.max_backoff_seconds`) while the ETL goes on committing; its alerts wait in the table.
//!   Failures are logged (WARN), counted on `/metrics` and kept as the sink's last error.
//! - **A new sink starts now.** A sink without a checkpoint starts after the batch committed when it
//!   first runs: turning a webhook on does not page anyone with last month's alerts (they stay
//!   queryable in `risk_alerts`).

mod alert_events;
mod kafka;
#[cfg(test)]
mod tests;
mod webhook;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::KafkaConfig;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::LakeTable;
use vitalflow_udf_model::schema::RISK_ALERTS_SCHEMA;
use vitalflow_udf_model::schema::table;

use crate::config::AlertsConfig;
use crate::error::{Error, Result};
use crate::table_rows::read_table_file;
use vitalflow_udf_model::lake::checkpoint::{
    DeliveryCheckpoint, load_delivery_checkpoint, load_etl_checkpoint, save_delivery_checkpoint,
};
use vitalflow_udf_model::schema::TOP_REASONS;

/// One alert as a sink sends it: JSON, the `risk_alerts` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// `topic/partition/offset` of the reading that raised it: unique, for receivers to de-duplicate by.
    pub alert_id: String,
    /// The patient.
    pub patient_id: String,
    /// Time of the reading, RFC 3339 in UTC with milliseconds.
    pub event_time: String,
    /// Always `High`.
    pub risk: String,
    /// The patient's previous known risk level; `null` for a first reading.
    pub previous_risk: Option<String>,
    /// The model's probability of `High`.
    pub probability_high: Option<f64>,
    /// NEWS2 score of the reading.
    pub news2_score: Option<i32>,
    /// The clinical rubric's score of the reading.
    pub rubric_score: Option<i32>,
    /// Model that scored it.
    pub model_version: String,
    /// ETL micro-batch that wrote it.
    pub etl_batch_id: i64,
    /// The three inputs that pushed P(High) up most, with their contributions (`explain_trend_risk`);
    /// `null` when the model cannot explain or the row was written before alerts carried reasons.
    #[serde(default)]
    pub top_reasons: Option<String>,
}

impl AlertMessage {
    /// The alert as a sink sends it: keyed by patient, with header `alert_id`.
    fn outgoing(&self) -> Result<Outgoing> {
        let body =
            serde_json::to_value(self).map_err(|e| Error::Config(format!("encoding alert {}: {e}", self.alert_id)))?;
        Ok(Outgoing { key: self.patient_id.clone(), headers: vec![("alert_id", self.alert_id.clone())], body })
    }
}

/// One message as a sink sends it: its JSON body (the webhook posts an array of them), and for Kafka its
/// key (the patient, so that a patient's messages keep their order) and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The Kafka key: the patient id.
    pub key: String,
    /// Kafka headers.
    pub headers: Vec<(&'static str, String)>,
    /// The message.
    pub body: serde_json::Value,
}

/// Counters and state of one sink, for `/metrics` and `vitalflow status`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Whether this sink is configured and running.
    pub enabled: AtomicBool,
    /// Alerts acknowledged by the sink (a batch re-sent after a restart counts again).
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub failures: AtomicU64,
    /// Id of the last micro-batch whose alerts the sink has acknowledged.
    pub last_batch_id: AtomicU64,
    /// The last failure; cleared by the next success.
    pub last_error: Mutex<Option<String>>,
}

impl SinkStats {
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }

    /// The last failure, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Counters of every sink.
#[derive(Debug, Default)]
pub struct AlertDeliveryStats {
    /// The Kafka topic.
    pub kafka: SinkStats,
    /// The webhook.
    pub webhook: SinkStats,
    /// The Kafka topic's `alert_event` messages.
    pub kafka_events: SinkStats,
    /// The webhook's `alert_event` messages.
    pub webhook_events: SinkStats,
}

impl AlertDeliveryStats {
    /// Each sink with its name.
    pub fn sinks(&self) -> [(&'static str, &SinkStats); 4] {
        [
            (kafka::NAME, &self.kafka),
            (webhook::NAME, &self.webhook),
            (alert_events::KAFKA_NAME, &self.kafka_events),
            (alert_events::WEBHOOK_NAME, &self.webhook_events),
        ]
    }
}

/// The batch id in a `risk_alerts` data file's name (`batch-<id>-<unique>.parquet`).
fn alert_batch_id(name: &str) -> Option<i64> {
    name.strip_prefix("batch-")?.split('-').next()?.parse().ok()
}

/// A committed micro-batch's `risk_alerts` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFile {
    /// The batch.
    pub batch_id: i64,
    /// The `risk_alerts` version that added it.
    pub version: i64,
    /// The object.
    pub path: object_store::path::Path,
}

/// The `risk_alerts` files added after `delivered` (a batch and the version read up to) by batches
/// up to `committed`, in commit order; and the version up to which every commit has been looked at
/// (it stops before a batch the ETL has not committed yet). Batches without alerts add no file.
pub async fn committed_alert_files(
    location: &DataLocation,
    held: &mut Option<LakeTable>,
    delivered: DeliveryCheckpoint,
    committed: i64,
) -> Result<(Vec<AlertFile>, i64)> {
    // The table stays open between polls and is brought up to date (a full log replay per poll is not).
    match held {
        Some(table) => table.refresh().await?,
        None => *held = LakeTable::open(location, table::RISK_ALERTS, None).await?,
    }
    let Some(alerts) = held.as_ref() else {
        return Ok((Vec::new(), delivered.alerts_version));
    };
    let mut files = Vec::new();
    let mut read_up_to = alerts.version();
    for (version, file) in alerts.added_since(delivered.alerts_version, 100_000).await? {
        let Some(batch_id) = alert_batch_id(&file.path) else { continue };
        if batch_id > committed {
            read_up_to = version - 1;
            break;
        }
        // Read by version, not by batch id: partition groups commit their batches side by side, so a
        // batch may commit after a higher one of another group.
        let path = location.path(&format!("{}/{}", table::RISK_ALERTS, file.path));
        files.push(AlertFile { batch_id, version, path });
    }
    Ok((files, read_up_to.max(delivered.alerts_version)))
}

/// The alerts in one `risk_alerts` file.
pub async fn read_alerts(location: &DataLocation, path: &object_store::path::Path) -> Result<Vec<AlertMessage>> {
    let mut alerts = Vec::new();
    for batch in read_table_file(location, path, &RISK_ALERTS_SCHEMA).await? {
        alerts.extend(messages(&batch).map_err(|e| Error::Config(format!("{path}: {e}")))?);
    }
    Ok(alerts)
}

/// `risk_alerts` rows as messages.
fn messages(batch: &RecordBatch) -> std::result::Result<Vec<AlertMessage>, String> {
    fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> std::result::Result<&'a T, String> {
        let column = batch.column_by_name(name).ok_or_else(|| format!("no column {name}"))?;
        column.as_any().downcast_ref::<T>().ok_or_else(|| format!("column {name} is {}", column.data_type()))
    }
    fn opt<A: Array, T>(array: &A, i: usize, value: impl Fn(&A, usize) -> T) -> Option<T> {
        (!array.is_null(i)).then(|| value(array, i))
    }
    let alert_id = col::<StringArray>(batch, "alert_id")?;
    let patient_id = col::<StringArray>(batch, "patient_id")?;
    let event_time = col::<TimestampNanosecondArray>(batch, "event_time")?;
    let risk = col::<StringArray>(batch, "risk")?;
    let previous_risk = col::<StringArray>(batch, "previous_risk")?;
    let probability_high = col::<Float64Array>(batch, "probability_high")?;
    let news2_score = col::<Int32Array>(batch, "news2_score")?;
    let rubric_score = col::<Int32Array>(batch, "rubric_score")?;
    let model_version = col::<StringArray>(batch, "model_version")?;
    let etl_batch_id = col::<Int64Array>(batch, "etl_batch_id")?;
    // Absent from files written before alerts carried reasons.
    let top_reasons = col::<StringArray>(batch, TOP_REASONS).ok();
    Ok((0..batch.num_rows())
        .map(|i| AlertMessage {
            alert_id: alert_id.value(i).to_string(),
            patient_id: patient_id.value(i).to_string(),
            event_time: chrono::DateTime::from_timestamp_nanos(event_time.value(i))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            risk: risk.value(i).to_string(),
            previous_risk: opt(previous_risk, i, |a, i| a.value(i).to_string()),
            probability_high: opt(probability_high, i, Float64Array::value),
            news2_score: opt(news2_score, i, Int32Array::value),
            rubric_score: opt(rubric_score, i, Int32Array::value),
            model_version: model_version.value(i).to_string(),
            etl_batch_id: etl_batch_id.value(i),
            top_reasons: top_reasons.and_then(|c| opt(c, i, |a, i| a.value(i).to_string())),
        })
        .collect())
}

/// A destination of alerts.
enum Sink {
    Kafka(kafka::KafkaSink),
    Webhook(webhook::WebhookSink),
}

impl Sink {
    fn name(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => kafka::NAME,
            Sink::Webhook(_) => webhook::NAME,
        }
    }

    /// Sends `messages`; `Ok` once the sink has acknowledged every one.
    async fn send(&mut self, messages: &[Outgoing]) -> Result<()> {
        match self {
            Sink::Kafka(sink) => sink.send(messages).await,
            Sink::Webhook(sink) => sink.send(messages).await,
        }
    }
}

/// One sink's delivery loop.
struct Delivery {
    sink: Sink,
    location: DataLocation,
    stats: Arc<AlertDeliveryStats>,
    /// Last batch acknowledged and the version read up to; `None` until the checkpoint is loaded.
    delivered: Option<DeliveryCheckpoint>,
    /// `risk_alerts`, once it exists.
    alerts: Option<LakeTable>,
}

impl Delivery {
    fn stats(&self) -> &SinkStats {
        match self.sink {
            Sink::Kafka(_) => &self.stats.kafka,
            Sink::Webhook(_) => &self.stats.webhook,
        }
    }

    /// Delivers every committed batch not yet delivered; whether anything was sent.
    async fn deliver_pending(&mut self) -> Result<bool> {
        let name = self.sink.name();
        let committed = load_etl_checkpoint(&self.location).await?.last_batch_id;
        let delivered = match self.delivered {
            Some(delivered) => delivered,
            None => {
                let start = match load_delivery_checkpoint(&self.location, name).await? {
                    Some(checkpoint) => checkpoint,
                    None => {
                        // A new sink starts now (module doc); recorded so that a restart does not move it.
                        let alerts_version = match LakeTable::open(&self.location, table::RISK_ALERTS, None).await? {
                            Some(t) => t.version(),
                            None => -1,
                        };
                        let start = DeliveryCheckpoint { last_batch_id: committed, alerts_version };
                        save_delivery_checkpoint(&self.location, name, start).await?;
                        tracing::info!(
                            sink = name,
                            after_batch = committed,
                            "Alert delivery starts with the next committed micro-batch; earlier alerts stay in risk_alerts."
                        );
                        start
                    }
                };
                self.delivered = Some(start);
                self.stats().last_batch_id.store(start.last_batch_id.max(0) as u64, Ordering::Relaxed);
                start
            }
        };
        if committed <= delivered.last_batch_id {
            return Ok(false);
        }
        let mut sent = false;
        let (files, read_up_to) = committed_alert_files(&self.location, &mut self.alerts, delivered, committed).await?;
        for file in files {
            let alerts = read_alerts(&self.location, &file.path).await?;
            let messages = alerts.iter().map(AlertMessage::outgoing).collect::<Result<Vec<_>>>()?;
            self.sink.send(&messages).await?;
            // The batch id moves on only at the end: a lower batch may still follow in the table.
            self.record(
                DeliveryCheckpoint { last_batch_id: delivered.last_batch_id, alerts_version: file.version },
                alerts.len(),
            )
            .await?;
            tracing::debug!(sink = name, batch = file.batch_id, alerts = alerts.len(), "Alerts delivered.");
            sent = true;
        }
        // Batches without alerts add no file: the sink is now current up to `committed`.
        if self.delivered.is_some_and(|d| d.last_batch_id < committed || d.alerts_version < read_up_to) {
            self.record(DeliveryCheckpoint { last_batch_id: committed, alerts_version: read_up_to }, 0).await?;
        }
        Ok(sent)
    }

    async fn record(&mut self, checkpoint: DeliveryCheckpoint, alerts: usize) -> Result<()> {
        save_delivery_checkpoint(&self.location, self.sink.name(), checkpoint).await?;
        self.delivered = Some(checkpoint);
        let stats = self.stats();
        stats.delivered.fetch_add(alerts as u64, Ordering::Relaxed);
        stats.last_batch_id.store(checkpoint.last_batch_id.max(0) as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Delivers until `shutdown` ([`run_delivery`]).
    async fn run(self, poll: Duration, max_backoff: Duration, shutdown: CancellationToken) {
        run_delivery(self, poll, max_backoff, shutdown).await
    }
}

impl Deliver for Delivery {
    fn name(&self) -> &'static str {
        self.sink.name()
    }

    fn stats(&self) -> &SinkStats {
        Delivery::stats(self)
    }

    fn delivered_through(&self) -> i64 {
        self.delivered.map_or(0, |d| d.last_batch_id)
    }

    async fn deliver_pending(&mut self) -> Result<bool> {
        Delivery::deliver_pending(self).await
    }
}

/// One sink's delivery of one table, driven by [`run_delivery`].
trait Deliver {
    /// The sink's name in logs and metrics.
    fn name(&self) -> &'static str;
    /// Its counters.
    fn stats(&self) -> &SinkStats;
    /// The last batch (or event) the sink acknowledged, for the logs.
    fn delivered_through(&self) -> i64;
    /// Sends what is committed and not yet sent; whether anything was sent.
    async fn deliver_pending(&mut self) -> Result<bool>;
}

/// Delivers until `shutdown`: every `poll` when current, with a doubling wait (up to `max_backoff`) while failing.
async fn run_delivery<D: Deliver>(mut delivery: D, poll: Duration, max_backoff: Duration, shutdown: CancellationToken) {
    let name = delivery.name();
    let mut backoff = poll;
    let mut failed_attempts: u64 = 0;
    loop {
        // Stopping mid-send is safe: what was being sent is not recorded, so the next start sends it again.
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => break,
            attempt = delivery.deliver_pending() => attempt,
        };
        let wait = match attempt {
            Ok(sent) => {
                if failed_attempts > 0 {
                    tracing::info!(sink = name, failed_attempts, "Alert delivery recovered.");
                }
                failed_attempts = 0;
                backoff = poll;
                delivery.stats().set_error(None);
                // Straight on after sending: more may have been committed meanwhile.
                if sent { Duration::ZERO } else { poll }
            }
            Err(error) => {
                failed_attempts += 1;
                let stats = delivery.stats();
                stats.failures.fetch_add(1, Ordering::Relaxed);
                stats.set_error(Some(error.to_string()));
                tracing::warn!(sink = name, error = %error, failed_attempts, delivered_through = delivery.delivered_through(), retry_in_ms = backoff.as_millis() as u64, "Alert delivery failed; the alerts wait in their table and are retried.");
                let wait = backoff;
                backoff = (backoff * 2).min(max_backoff);
                wait
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(sink = name, "Alert delivery stopped.");
}

/// Starts one delivery loop per configured sink; their tasks end at `shutdown`.
pub fn start_delivery(
    config: &AlertsConfig,
    kafka: &KafkaConfig,
    location: &DataLocation,
    stats: Arc<AlertDeliveryStats>,
    shutdown: &CancellationToken,
) -> Result<Vec<JoinHandle<()>>> {
    config.validate()?;
    let poll = Duration::from_millis(config.poll_interval_ms);
    let max_backoff = Duration::from_secs(config.max_backoff_seconds).max(poll);
    let mut tasks = Vec::new();
    for sink in sinks(config, kafka)? {
        tracing::info!(sink = sink.name(), "Alert delivery on.");
        let delivery =
            Delivery { sink, location: location.clone(), stats: stats.clone(), delivered: None, alerts: None };
        delivery.stats().enabled.store(true, Ordering::Relaxed);
        tasks.push(tokio::spawn(delivery.run(poll, max_backoff, shutdown.clone())));
    }
    // The alerts' lifecycle, on sinks of their own (a producer or client each).
    for sink in sinks(config, kafka)? {
        let delivery = alert_events::EventDelivery::new(sink, location, stats.clone());
        tracing::info!(sink = delivery.name(), "Alert event delivery on.");
        delivery.stats().enabled.store(true, Ordering::Relaxed);
        tasks.push(tokio::spawn(run_delivery(delivery, poll, max_backoff, shutdown.clone())));
    }
    Ok(tasks)
}

/// The configured sinks.
fn sinks(config: &AlertsConfig, kafka: &KafkaConfig) -> Result<Vec<Sink>> {
    let mut sinks = Vec::new();
    if !config.kafka_topic.is_empty() {
        sinks.push(Sink::Kafka(kafka::KafkaSink::new(kafka, &config.kafka_topic, config.timeout())?));
    }
    if !config.webhook_url.is_empty() {
        sinks.push(Sink::Webhook(webhook::WebhookSink::new(
            &config.webhook_url,
            &config.webhook_token_secret,
            config.timeout(),
        )?));
    }
    Ok(sinks)
}
