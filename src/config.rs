//! The one configuration of every vitalflow process, and how it is layered.
//!
//! Layers, later ones winning: built-in defaults (each crate's `Default`), then the TOML file
//! (`--config`, or `./vitalflow.toml` when present), then environment variables
//! `VITALFLOW__SECTION__KEY` (e.g. `VITALFLOW__KAFKA__BROKERS`), then command-line flags.
//! Unknown keys in the file or the environment fail at start-up: a typo never silently keeps a default.

mod reference;

use std::path::Path;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use vitalflow_executor::{ClusterConfig, ExecutorConfig};
use vitalflow_ingest::{IngestConfig, KafkaConfig};
use vitalflow_scheduler::{
    AlertsConfig, CompactionConfig, EtlConfig, FlightSqlConfig, HttpConfig, RetentionConfig, SchedulerConfig,
    SchedulerProcessConfig, WardAlertsConfig,
};
use vitalflow_udf_model::simulate::SimulatorSettings;

pub use reference::{END_MARKER, START_MARKER, between_markers, reference_markdown, with_reference};

/// The whole configuration, one section per component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VitalflowConfig {
    /// Where tables live: a directory or an object-store URL.
    pub storage: StorageConfig,
    /// The risk model.
    pub model: ModelConfig,
    /// The vitals topic.
    pub kafka: KafkaConfig,
    /// The ingest consumer.
    pub ingest: IngestConfig,
    /// The Ballista scheduler.
    pub scheduler: SchedulerConfig,
    /// The continuous ETL driver.
    pub etl: EtlConfig,
    /// The Flight SQL endpoint.
    pub flight_sql: FlightSqlConfig,
    /// The HTTP API (`/predict_batch`, `/healthz`).
    pub http: HttpConfig,
    /// Background compaction of small files (scheduler process).
    pub compaction: CompactionConfig,
    /// Deleting old data (scheduler process): the data tables after `days` (off by default), the audit
    /// log after `audit_days`.
    pub retention: RetentionConfig,
    /// Alerts to a Kafka topic and a webhook (scheduler process, beside the ETL driver).
    pub alerts: AlertsConfig,
    /// The alerts a ward acts on: muting, auto-resolve, escalation (scheduler process, beside the ETL driver).
    pub ward_alerts: WardAlertsConfig,
    /// One Ballista executor.
    pub executor: ExecutorConfig,
    /// The secret and the TLS files shared by the scheduler and the executors (Ballista's internal ports).
    pub cluster: ClusterConfig,
    /// `vitalflow simulate`.
    pub simulator: SimulatorConfig,
    /// `vitalflow up`.
    pub up: UpConfig,
}

/// Where tables live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Where the tables (Delta Lake) live, shared by every process: a local directory (created if
    /// missing), a `file://` URL, or `s3://bucket/prefix` (credentials and endpoint from the standard
    /// `AWS_*` environment variables, or `options`).
    pub data_url: String,
    /// Object-store settings with delta-rs's / object_store's key names, e.g. `aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`; they override the
    /// environment. Secrets are redacted by `vitalflow config`.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_url: "./data".into(), options: Default::default() }
    }
}

/// Which model scores readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Path of a model file (JSON); empty uses the model compiled into the binary.
    pub path: String,
}

/// `vitalflow up`, the one-process local demo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UpConfig {
    /// Port of the embedded broker on 127.0.0.1; a free port is used when it is taken.
    pub broker_port: u16,
    /// Start the Streamlit dashboard.
    pub dashboard: bool,
    /// Dashboard port on 127.0.0.1.
    pub dashboard_port: u16,
    /// Python (3.10+) used to make the dashboard's venv.
    pub python: String,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig { broker_port: 9092, dashboard: true, dashboard_port: 8501, python: "python3".into() }
    }
}

/// The simulator: how many patients, how fast, which seed, and what the ward looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Patients on the simulated ward.
    pub patients: usize,
    /// Readings per second across the ward (the seed: one per patient per second); 0 is unpaced.
    pub rate_per_sec: f64,
    /// Seed; the same seed gives the same patients and readings.
    pub seed: u64,
    /// The ward's settings, written beside the keys above (`simulator.missing_rate`, ...).
    #[serde(flatten)]
    pub ward: SimulatorSettings,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig { patients: 50, rate_per_sec: 50.0, seed: 42, ward: SimulatorSettings::default() }
    }
}

impl SimulatorConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.patients > 0, "simulator.patients must be above 0");
        let rate = self.rate_per_sec;
        anyhow::ensure!(
            rate == 0.0 || (0.01..=1e7).contains(&rate),
            "simulator.rate_per_sec is {rate:?}: use 0 (unpaced) or 0.01 to 10000000"
        );
        self.ward.validate()?;
        Ok(())
    }
}

impl VitalflowConfig {
    /// Fills the settings whose default is another setting, after every layer is applied:
    /// `executor.scheduler_address` defaults to `scheduler.external_host` and `scheduler.port`.
    pub fn derive_defaults(&mut self) {
        if self.executor.scheduler_address.trim().is_empty() {
            self.executor.scheduler_address = format!("{}:{}", self.scheduler.external_host, self.scheduler.port);
        }
    }

    /// The scheduler process's part.
    pub fn scheduler_process(&self) -> SchedulerProcessConfig {
        SchedulerProcessConfig {
            scheduler: self.scheduler.clone(),
            etl: self.etl.clone(),
            flight_sql: self.flight_sql.clone(),
            http: self.http.clone(),
            compaction: self.compaction.clone(),
            retention: self.retention.clone(),
            alerts: self.alerts.clone(),
            ward_alerts: self.ward_alerts.clone(),
            kafka: self.kafka.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "VITALFLOW__";

/// Loads defaults, the file and the environment (flags are applied by the caller).
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<VitalflowConfig> {
    let mut value = toml::Value::try_from(VitalflowConfig::default()).context("serialising defaults")?;
    let implicit = Path::new("vitalflow.toml");
    let file = file.or_else(|| implicit.exists().then_some(implicit));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
        merge(&mut value, toml::Value::Table(table));
    }
    for (key, raw) in env {
        let Some(rest) = key.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_from_env(&mut value, &path, &raw).with_context(|| format!("environment variable {key}"))?;
    }
    for warning in migrate_deprecated(&mut value)? {
        tracing::warn!("{warning}");
    }
    let config: VitalflowConfig = value.try_into().context("invalid configuration")?;
    Ok(config)
}

/// The configuration as TOML for people to read: every non-empty value whose key names a secret or
/// a password (`token_secret`, `sasl_password`, ...) reads "<redacted>". Hashes stay: they are not secrets.
pub fn redacted_toml(config: &VitalflowConfig) -> anyhow::Result<String> {
    fn redact(value: &mut toml::Value) {
        match value {
            toml::Value::Table(table) => {
                for (key, v) in table.iter_mut() {
                    let secret = key.contains("secret") || key.ends_with("password") || key.ends_with("session_token");
                    match v {
                        toml::Value::String(s) if secret && !s.is_empty() => *s = "<redacted>".into(),
                        other => redact(other),
                    }
                }
            }
            toml::Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let shown = VitalflowConfig { kafka: config.kafka.redacted(), ..config.clone() };
    let mut value = toml::Value::try_from(&shown).context("serialising the configuration")?;
    redact(&mut value);
    toml::to_string_pretty(&value).context("printing the configuration")
}

/// Rewrites keys renamed this round to their new names, in place, returning one warning per old key
/// found (in the file or the environment). The old names go in the next round.
fn migrate_deprecated(value: &mut toml::Value) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    // executor.scheduler_host and executor.scheduler_port became executor.scheduler_address = "host:port".
    let scheduler = value.get("scheduler").cloned();
    let Some(executor) = value.get_mut("executor").and_then(toml::Value::as_table_mut) else { return Ok(warnings) };
    // executor.grpc_port went: executors poll the scheduler for tasks and serve no gRPC port.
    if executor.remove("grpc_port").is_some() {
        warnings.push(
            "executor.grpc_port (VITALFLOW__EXECUTOR__GRPC_PORT) is deprecated and ignored: executors poll the \
             scheduler for tasks and serve no gRPC port."
                .into(),
        );
    }
    let host = executor.remove("scheduler_host");
    let port = executor.remove("scheduler_port");
    if host.is_none() && port.is_none() {
        return Ok(warnings);
    }
    for (old, found) in [("scheduler_host", &host), ("scheduler_port", &port)] {
        if found.is_some() {
            warnings.push(format!(
                "executor.{old} (VITALFLOW__EXECUTOR__{}) is deprecated: use executor.scheduler_address = \"host:port\", \
                 or leave it out to use scheduler.external_host and scheduler.port.",
                old.to_ascii_uppercase()
            ));
        }
    }
    let text = |v: Option<&toml::Value>| match v {
        Some(toml::Value::String(s)) => Some(s.trim().to_string()),
        Some(toml::Value::Integer(i)) => Some(i.to_string()),
        _ => None,
    };
    let from_scheduler = |key: &str| text(scheduler.as_ref().and_then(|s| s.get(key)));
    let host = text(host.as_ref()).or_else(|| from_scheduler("external_host")).context("executor.scheduler_host")?;
    let port = text(port.as_ref()).or_else(|| from_scheduler("port")).context("executor.scheduler_port")?;
    let current = executor.get("scheduler_address").and_then(toml::Value::as_str).unwrap_or_default();
    if current.trim().is_empty() {
        executor.insert("scheduler_address".into(), toml::Value::String(format!("{host}:{port}")));
    } else {
        warnings.push(
            "executor.scheduler_address is set: the deprecated scheduler_host and scheduler_port are ignored.".into(),
        );
    }
    Ok(warnings)
}

/// Merges `overlay` into `base`, table by table.
fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Sets `path` from an environment string, typed like the default already there.
fn set_from_env(value: &mut toml::Value, path: &[String], raw: &str) -> anyhow::Result<()> {
    let Some((last, parents)) = path.split_last() else { bail!("empty key") };
    let mut node = value;
    for p in parents {
        let table = node.as_table_mut().with_context(|| format!("{p} is not a section"))?;
        node = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node.as_table_mut().context("not a section")?;
    let typed = match table.get(last) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.trim().parse().with_context(|| format!("{raw:?} is not an integer"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.trim().parse().with_context(|| format!("{raw:?} is not a number"))?)
        }
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.trim().parse().with_context(|| format!("{raw:?} is not true or false"))?)
        }
        // Lists (e.g. Flight SQL users from a Kubernetes or compose secret) as a TOML inline array.
        Some(toml::Value::Array(_)) => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(toml::Value::is_array)
            .with_context(|| {
                format!("not a TOML array such as [{{ name = \"ana\", password_hash = \"...\" }}]: {raw:?}")
            })?,
        _ => toml::Value::String(raw.to_string()),
    };
    table.insert(last.clone(), typed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_configuration_hides_secrets_but_not_hashes() {
        let mut config = VitalflowConfig::default();
        config.flight_sql.auth.token_secret = "hunter2-signing-key".into();
        config.flight_sql.auth.users.push(vitalflow_scheduler::config::UserConfig {
            name: "ana".into(),
            password_hash: "pbkdf2-sha256$1000$c2FsdHNhbHQ$aGFzaA".into(),
            role: vitalflow_scheduler::config::Role::Admin,
        });
        config.storage.options.insert("aws_secret_access_key".into(), "s3-hunter3".into());
        config.storage.options.insert("aws_region".into(), "eu-west-1".into());
        let text = redacted_toml(&config).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("hunter3"), "{text}");
        assert!(text.contains("eu-west-1"), "{text}");
        assert!(text.contains("token_secret = \"<redacted>\""), "{text}");
        assert!(text.contains("pbkdf2-sha256$1000$"), "{text}");
    }

    #[test]
    fn a_list_comes_from_the_environment_as_a_toml_inline_array() {
        let users = r#"[{ name = "grafana", password_hash = "pbkdf2-sha256$1000$c2FsdA$aGFzaA", role = "reader" }]"#;
        let config = load(None, [("VITALFLOW__FLIGHT_SQL__AUTH__USERS".to_string(), users.to_string())]).unwrap();
        assert_eq!(config.flight_sql.auth.users.len(), 1);
        assert_eq!(config.flight_sql.auth.users[0].name, "grafana");
        let err =
            format!("{:#}", load(None, [("VITALFLOW__FLIGHT_SQL__AUTH__USERS".into(), "grafana".into())]).unwrap_err());
        assert!(err.contains("VITALFLOW__FLIGHT_SQL__AUTH__USERS") && err.contains("not a TOML array"), "{err}");
    }

    #[test]
    fn layers_defaults_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vitalflow.toml");
        std::fs::write(&file, "[kafka]\nbrokers = \"kafka:9092\"\ntopic = \"ward-3\"\n[etl]\nmin_interval_ms = 500\n")
            .unwrap();
        let env = [
            ("VITALFLOW__KAFKA__TOPIC".to_string(), "ward-4".to_string()),
            ("VITALFLOW__FLIGHT_SQL__PORT".to_string(), "6000".to_string()),
            ("VITALFLOW__ETL__ENABLED".to_string(), "false".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = load(Some(&file), env).unwrap();
        assert_eq!(c.kafka.brokers, "kafka:9092");
        assert_eq!(c.kafka.topic, "ward-4");
        assert_eq!(c.flight_sql.port, 6000);
        assert!(!c.etl.enabled);
        assert_eq!(c.etl.min_interval_ms, 500);
        assert_eq!(c.ingest, IngestConfig::default());
    }

    #[test]
    fn typos_and_bad_values_fail_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[kafka]\nbrokrs = \"x\"\n").unwrap();
        let err = format!("{:#}", load(Some(&file), []).unwrap_err());
        assert!(err.contains("brokrs"), "{err}");
        let err = format!("{:#}", load(None, [("VITALFLOW__FLIGHT_SQL__PORT".into(), "high".into())]).unwrap_err());
        assert!(err.contains("VITALFLOW__FLIGHT_SQL__PORT") && err.contains("not an integer"), "{err}");
        let err = format!("{:#}", load(None, [("VITALFLOW__NOPE__X".into(), "1".into())]).unwrap_err());
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_executor_finds_the_scheduler_of_the_same_file_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[scheduler]\nexternal_host = \"scheduler\"\nport = 6000\n").unwrap();
        let mut c = load(Some(&file), []).unwrap();
        c.derive_defaults();
        assert_eq!(c.executor.scheduler_address, "scheduler:6000");
        assert_eq!(c.executor.scheduler().unwrap(), ("scheduler".to_string(), 6000));
        let env = [("VITALFLOW__EXECUTOR__SCHEDULER_ADDRESS".to_string(), "other:7000".to_string())];
        let mut c = load(Some(&file), env).unwrap();
        c.derive_defaults();
        assert_eq!(c.executor.scheduler_address, "other:7000");
    }

    #[test]
    fn the_old_scheduler_keys_of_the_executor_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[executor]\nscheduler_host = \"scheduler\"\n").unwrap();
        let c = load(Some(&file), []).unwrap();
        assert_eq!(c.executor.scheduler_address, "scheduler:50050");
        let env = [
            ("VITALFLOW__EXECUTOR__SCHEDULER_HOST".to_string(), "10.0.0.2".to_string()),
            ("VITALFLOW__EXECUTOR__SCHEDULER_PORT".to_string(), "6001".to_string()),
        ];
        let c = load(None, env).unwrap();
        assert_eq!(c.executor.scheduler_address, "10.0.0.2:6001");
    }

    #[test]
    fn an_old_executor_grpc_port_is_accepted_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[executor]\ngrpc_port = 50052\nflight_port = 6000\n").unwrap();
        let c = load(Some(&file), [("VITALFLOW__EXECUTOR__GRPC_PORT".to_string(), "0".to_string())]).unwrap();
        assert_eq!(c.executor.flight_port, 6000);
    }

    #[test]
    fn partitions_and_the_ward_are_plain_keys_of_their_sections() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[simulator]\nmissing_rate = 0\nformat = \"fhir\"\npatients = 7\n").unwrap();
        let env = [("VITALFLOW__KAFKA__PARTITIONS".to_string(), "6".to_string())];
        let c = load(Some(&file), env).unwrap();
        assert_eq!(c.kafka.partitions, 6);
        assert_eq!(c.simulator.patients, 7);
        assert_eq!(c.simulator.ward.missing_rate, 0.0);
        assert_eq!(c.simulator.ward.format, vitalflow_udf_model::simulate::OutputFormat::Fhir);
        assert_eq!(c.simulator.ward.artefact_rate, SimulatorSettings::default().artefact_rate);
        std::fs::write(&file, "[simulator]\nmising_rate = 0\n").unwrap();
        let err = format!("{:#}", load(Some(&file), []).unwrap_err());
        assert!(err.contains("mising_rate"), "{err}");
    }

    /// `docs/configuration.md` holds `vitalflow config --markdown` between its markers.
    #[test]
    fn configuration_reference_in_docs_matches_the_structs() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let generated = reference_markdown().unwrap();
        if std::env::var_os("VITALFLOW_BLESS").is_some() {
            std::fs::write(&path, with_reference(&page, &generated).unwrap()).unwrap();
            return;
        }
        let current = between_markers(&page).expect("docs/configuration.md lacks the config-reference markers");
        assert!(
            current.trim() == generated.trim(),
            "docs/configuration.md differs from the configuration structs; regenerate its reference with\n  \
             VITALFLOW_BLESS=1 cargo test -p vitalflow --lib configuration_reference\n\
             (or paste the output of `vitalflow config --markdown` between its markers)"
        );
    }
}
