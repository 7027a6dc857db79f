//! Kafka and ingest settings. `Default` is the only place a default is written.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the vitals topic lives; shared by ingest and the simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic of vitals records (the seed's topic name).
    pub topic: String,
    /// Partitions of the vitals topic when vitalflow creates it (`up`, `simulate`, `bench e2e`); an existing
    /// topic keeps its own. At most this many ingest processes share the load; the others stand by.
    pub partitions: i32,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl` (librdkafka's `security.protocol`).
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, for the `sasl_*` protocols.
    pub sasl_mechanism: String,
    /// SASL user name.
    pub sasl_username: String,
    /// SASL password (redacted by `vitalflow config`; prefer `VITALFLOW__KAFKA__SASL_PASSWORD`).
    pub sasl_password: String,
    /// PEM file of the CA(s) that signed the brokers' certificates; empty: the system's CAs.
    pub ssl_ca_location: String,
    /// PEM client certificate, for brokers that require one (mutual TLS).
    pub ssl_certificate_location: String,
    /// PEM private key of the client certificate.
    pub ssl_key_location: String,
    /// Extra librdkafka properties for every client, passed through as given (they win over the keys above).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "raw-patient".into(),
            partitions: 3,
            security_protocol: "plaintext".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: String::new(),
            ssl_ca_location: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// Printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

impl KafkaConfig {
    /// The librdkafka properties of the security keys that are set, in the order librdkafka reads them.
    pub fn security_properties(&self) -> Vec<(&'static str, &str)> {
        [
            ("security.protocol", self.security_protocol.as_str()),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// Checks the security keys before a client is made, naming the key at fault.
    pub fn validate(&self) -> Result<()> {
        if self.partitions < 1 {
            return Err(Error::Config(format!("kafka.partitions is {}, at least 1 is needed", self.partitions)));
        }
        let protocol = self.security_protocol.to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return Err(Error::Config(format!(
                "kafka.security_protocol {:?} is not one of plaintext, ssl, sasl_plaintext, sasl_ssl",
                self.security_protocol
            )));
        }
        if protocol.starts_with("sasl") {
            let mechanism = self.sasl_mechanism.to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                return Err(Error::Config(format!(
                    "kafka.sasl_mechanism {:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (needed by security_protocol {protocol})",
                    self.sasl_mechanism
                )));
            }
            if self.sasl_username.is_empty() || self.sasl_password.is_empty() {
                return Err(Error::Config(format!(
                    "kafka.sasl_username and kafka.sasl_password are needed by security_protocol {protocol}"
                )));
            }
            if protocol == "sasl_plaintext" && mechanism == "PLAIN" {
                tracing::warn!(
                    "kafka.security_protocol sasl_plaintext with PLAIN sends the password unencrypted; use sasl_ssl."
                );
            }
        } else if !self.sasl_mechanism.is_empty() || !self.sasl_username.is_empty() || !self.sasl_password.is_empty() {
            return Err(Error::Config(format!(
                "kafka.sasl_* keys are set but kafka.security_protocol is {protocol}; use sasl_ssl"
            )));
        }
        for (key, path) in [
            ("ssl_ca_location", &self.ssl_ca_location),
            ("ssl_certificate_location", &self.ssl_certificate_location),
            ("ssl_key_location", &self.ssl_key_location),
        ] {
            if !path.is_empty() && !std::path::Path::new(path).is_file() {
                return Err(Error::Config(format!("kafka.{key} {path:?} is not a readable file")));
            }
        }
        Ok(())
    }

    /// A copy safe to print: the password and any secret-looking extra property replaced by [`REDACTED`].
    pub fn redacted(&self) -> KafkaConfig {
        let mut c = self.clone();
        if !c.sasl_password.is_empty() {
            c.sasl_password = REDACTED.into();
        }
        for (k, v) in &mut c.properties {
            if k.contains("password") || k.contains("secret") || k.ends_with(".pem") || k.contains("jaas") {
                *v = REDACTED.into();
            }
        }
        c
    }
}

/// The ingest consumer's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Consumer group; processes with the same group share the topic's partitions.
    pub group_id: String,
    /// Land buffered records at least this often, in milliseconds (bounds end-to-end latency); an ETL
    /// in the same process (`up`) that waits for rows has them landed at once.
    pub flush_interval_ms: u64,
    /// Land as soon as this many records are buffered (bounds memory and file size).
    pub flush_records: usize,
    /// Larger messages are dead-lettered unread, in bytes (a vitals record is ~250 bytes).
    pub max_message_bytes: usize,
    /// Also produce every dead letter to this topic (empty: off). The `dead_letters` table stays the
    /// truth; the topic gets each at least once, duplicates keyed alike (see `dead_letter_topic.rs`).
    pub dead_letter_topic: String,
    /// Interface of the `/metrics` endpoint (loopback: metrics are for a local scraper unless opened up).
    pub metrics_host: String,
    /// Port of the `/metrics` endpoint; 0 picks a free port.
    pub metrics_port: u16,
    /// HL7 v2 messages on the vitals topic (ORU^R01 of bedside monitors, IHE PCD-01).
    pub hl7: Hl7Config,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_id: "vitalflow-ingest".into(),
            flush_interval_ms: 200,
            // Each flush commits once per table, a fixed ~50 ms of CPU in delta-rs: a backlog lands in
            // large flushes, while flush_interval_ms alone bounds a live stream's latency.
            flush_records: 100_000,
            max_message_bytes: 64 * 1024,
            dead_letter_topic: String::new(),
            metrics_host: "127.0.0.1".into(),
            metrics_port: 9464,
            hl7: Hl7Config::default(),
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
        self.hl7.timezone()?;
        Ok(())
    }
}

/// How HL7 v2 messages are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7Config {
    /// The assigning authority whose PID-3 identifier is the patient id, matched against PID-3.4's
    /// namespace id or universal id (e.g. `Imaginary Hospital`); empty: PID-3's first identifier. A message
    /// with no identifier of this authority is a dead letter (`missing_field`).
    pub patient_id_authority: String,
    /// IANA time zone (e.g. `Europe/Berlin`) of OBX-14 / OBR-7 times sent without a UTC offset. Empty: such a
    /// message is a dead letter (`time_without_zone`); a local time is never taken as UTC. A local time that
    /// a daylight-saving change repeats or skips is a dead letter too (`invalid_time`): send the offset.
    pub default_timezone: String,
}

impl Hl7Config {
    /// The zone of times without an offset; `None` when none is configured.
    pub fn timezone(&self) -> Result<Option<chrono_tz::Tz>> {
        let name = self.default_timezone.trim();
        if name.is_empty() {
            return Ok(None);
        }
        name.parse::<chrono_tz::Tz>().map(Some).map_err(|_| {
            Error::Config(format!(
                "ingest.hl7.default_timezone {name:?} is not an IANA time zone name (e.g. Europe/Berlin, UTC)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_keys_are_checked_and_secrets_redacted() {
        let mut k = KafkaConfig::default();
        k.validate().unwrap();
        assert!(k.security_properties() == vec![("security.protocol", "plaintext")]);
        k.security_protocol = "sasl_ssl".into();
        let e = k.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.sasl_mechanism"), "{e}");
        k.sasl_mechanism = "SCRAM-SHA-256".into();
        assert!(k.validate().unwrap_err().to_string().contains("sasl_password"));
        k.sasl_username = "ingest".into();
        k.sasl_password = "s3cret".into();
        k.validate().unwrap();
        k.ssl_ca_location = "/nonexistent/ca.pem".into();
        assert!(k.validate().unwrap_err().to_string().contains("kafka.ssl_ca_location"));
        k.properties.insert("ssl.key.password".into(), "k3y".into());
        let shown = format!("{:?}", k.redacted());
        assert!(!shown.contains("s3cret") && !shown.contains("k3y"), "{shown}");
        assert_eq!(k.redacted().sasl_username, "ingest");
        k.security_protocol = "tls".into();
        assert!(k.validate().unwrap_err().to_string().contains("\"tls\" is not one of"));
    }

    #[test]
    fn the_hl7_time_zone_is_an_iana_name_or_nothing() {
        let mut c = IngestConfig::default();
        assert_eq!(c.hl7.timezone().unwrap(), None);
        c.hl7.default_timezone = "Europe/Berlin".into();
        c.validate().unwrap();
        assert_eq!(c.hl7.timezone().unwrap(), Some(chrono_tz::Europe::Berlin));
        c.hl7.default_timezone = "CEST".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("ingest.hl7.default_timezone \"CEST\""), "{e}");
    }
}
