//! Kafka and ingest settings. `Default` is the only place a default is written.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the vitals topic lives; shared by ingest and the simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic of vitals records (the seed's topic name).
    pub topic: String,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`), passed through as given.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "raw-patient".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// The ingest consumer's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Consumer group; processes with the same group share the topic's partitions.
    pub group_id: String,
    /// Land buffered records at least this often, in milliseconds (bounds end-to-end latency).
    pub flush_interval_ms: u64,
    /// Land as soon as this many records are buffered (bounds memory and file size).
    pub flush_records: usize,
    /// Larger messages are dead-lettered unread, in bytes (a vitals record is ~250 bytes).
    pub max_message_bytes: usize,
    /// Interface of the `/metrics` endpoint (loopback: metrics are for a local scraper unless opened up).
    pub metrics_host: String,
    /// Port of the `/metrics` endpoint; 0 picks a free port.
    pub metrics_port: u16,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_id: "vitalflow-ingest".into(),
            flush_interval_ms: 200,
            flush_records: 10_000,
            max_message_bytes: 64 * 1024,
            metrics_host: "127.0.0.1".into(),
            metrics_port: 9464,
        }
    }
}

impl IngestConfig {
    /// Flush interval as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.flush_interval_ms == 0 {
            return Err(Error::Config("ingest.flush_interval_ms must be above 0".into()));
        }
        if self.flush_records == 0 {
            return Err(Error::Config("ingest.flush_records must be above 0".into()));
        }
        if self.group_id.trim().is_empty() {
            return Err(Error::Config("ingest.group_id must not be empty".into()));
        }
        Ok(())
    }
}
