//! Settings of the scheduler process. `Default` is the only place a default is written.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Ballista scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Address the scheduler's gRPC server binds.
    pub bind_host: String,
    /// Host executors and clients use to reach the scheduler.
    pub external_host: String,
    /// gRPC port; 0 picks a free port.
    pub port: u16,
    /// An executor silent this long is dead and its tasks run elsewhere, in seconds
    /// (Ballista's default of 180 s is minutes of a stalled pipeline).
    pub executor_timeout_seconds: u64,
    /// Seconds a finished job's state (plan, stages, metrics) stays in the scheduler's memory for status
    /// requests; its clients read a job's result as soon as it finishes. The ETL runs a job per
    /// micro-batch, several a second: Ballista's default of an hour held thousands of them.
    pub finished_job_seconds: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            bind_host: "127.0.0.1".into(),
            external_host: "127.0.0.1".into(),
            port: 50050,
            executor_timeout_seconds: 20,
            finished_job_seconds: 60,
        }
    }
}

/// Where the ETL's micro-batches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EtlEngine {
    /// As Ballista jobs on the executors.
    Cluster,
    /// On a DataFusion context in the driver's process: no executors needed and no job round trips,
    /// for a small ward, and the reference the cluster's results are checked against.
    InProcess,
}

/// Which readings the ETL scores (gives a risk, and so may raise a rise to High).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreReadings {
    /// Every clean reading, a device's stream included.
    All,
    /// Only readings a person validated (`validated`: HL7 v2 OBX-11 F/C, FHIR final/amended/corrected
    /// with a performer, flat JSON `"validated": true`); the others are kept in `vitals_clean` with risk
    /// NULL and `unscored_reason` `not_validated`, as cleared early-warning products score only
    /// nurse-validated observations.
    Validated,
}

/// The continuous ETL driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EtlConfig {
    /// Run the driver in this process.
    pub enabled: bool,
    /// Where micro-batches run: `cluster` or `in_process`.
    pub run_on: EtlEngine,
    /// Shortest time between the starts of two micro-batches, in milliseconds; with nothing new, how
    /// often the ETL looks for landed rows (ingest in the same process, as in `up`, tells it at once).
    pub min_interval_ms: u64,
    /// SQL file turning `new_vitals_raw` into `vitals_clean` rows; empty uses the shipped
    /// `scheduler/src/etl/vitals_clean.sql`.
    pub sql_file: String,
    /// How long a patient's last value of a vital stands in for a reading that lacks it, in seconds
    /// (`${carry_forward_seconds}` in the SQL): a monitor that skips glucose still gets a risk.
    pub carry_forward_seconds: u64,
    /// Readings in each per-patient rolling window of `vitals_clean`, the current one included; also
    /// how many recent readings per patient the ETL keeps as state.
    pub window_readings: u32,
    /// Which readings get a risk: `all` (default), or `validated` (only readings a person confirmed;
    /// `${score_only_validated}` in the SQL). docs/etl.md says when to choose which.
    pub score: ScoreReadings,
    /// Longest a micro-batch's cluster job may run, in seconds; past it the job is cancelled and the
    /// batch re-runs (the same rows: exactly once holds), so one stuck job cannot stall the pipeline.
    pub batch_timeout_seconds: u64,
    /// How long the ETL lease of the data location lasts unless renewed (every third of it), in seconds:
    /// a second scheduler on the same location stands by and takes over this long after the holder died.
    pub lease_seconds: u64,
    /// Micro-batches running side by side, each over its own share of the Kafka partitions (partition
    /// modulo this number; a patient's readings all come on one partition): a cluster with several
    /// executors works on several at once, and a slow partition does not hold the others up. On one
    /// small host one group is fastest (groups compete for its cores); on a cluster, set it to about the
    /// number of executors. A change takes effect at the next start.
    pub partition_groups: u32,
    /// Only readings of admitted patients are scored: a reading whose patient was not admitted at its
    /// time (no admission or transfer in `patient_movements` by then, or discharged since) goes to
    /// `dead_letters` with reason `not_admitted`. Off: patients are admitted implicitly by their readings.
    pub require_admission: bool,
}

impl Default for EtlConfig {
    fn default() -> Self {
        EtlConfig {
            enabled: true,
            run_on: EtlEngine::Cluster,
            min_interval_ms: 250,
            sql_file: String::new(),
            carry_forward_seconds: 900,
            window_readings: 5,
            score: ScoreReadings::All,
            batch_timeout_seconds: 120,
            lease_seconds: 15,
            partition_groups: 1,
            require_admission: false,
        }
    }
}

impl EtlConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.min_interval_ms < 10 {
            return Err(Error::Config(format!(
                "etl.min_interval_ms is {}, at least 10 is needed",
                self.min_interval_ms
            )));
        }
        if self.window_readings == 0 {
            return Err(Error::Config("etl.window_readings is 0, at least 1 (the reading itself) is needed".into()));
        }
        if self.lease_seconds < 3 {
            return Err(Error::Config(format!("etl.lease_seconds is {}, at least 3 is needed", self.lease_seconds)));
        }
        if self.batch_timeout_seconds == 0 {
            return Err(Error::Config("etl.batch_timeout_seconds is 0, at least 1 is needed".into()));
        }
        if !(1..=64).contains(&self.partition_groups) {
            return Err(Error::Config(format!(
                "etl.partition_groups is {}, it must be between 1 and 64",
                self.partition_groups
            )));
        }
        Ok(())
    }

    /// Minimum interval as a duration.
    pub fn min_interval(&self) -> Duration {
        Duration::from_millis(self.min_interval_ms)
    }

    /// The ETL lease's time to live.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    /// Batch timeout as a duration.
    pub fn batch_timeout(&self) -> Duration {
        Duration::from_secs(self.batch_timeout_seconds)
    }
}

/// Delivery of `risk_alerts` to a Kafka topic and a webhook: at least once, only for committed
/// micro-batches, resuming from each sink's own checkpoint (see [`crate::alerts`]). Runs beside the
/// ETL driver (`etl.enabled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Kafka topic (on the brokers of `[kafka]`, with its security settings) each alert is produced
    /// to, keyed by patient id; created with one partition when missing. Empty turns it off. On by
    /// default: every vitalflow deployment already has the Kafka its vitals come from.
    pub kafka_topic: String,
    /// URL each committed micro-batch's alerts are POSTed to as one JSON array (`http://` or
    /// `https://`); empty (the default) turns it off.
    pub webhook_url: String,
    /// Sent as `Authorization: Bearer <token>` with each webhook request; empty sends no header.
    pub webhook_token_secret: String,
    /// Longest one webhook request or one Kafka delivery may take before it counts as failed and is
    /// retried, in milliseconds.
    pub timeout_ms: u64,
    /// How often delivery looks for newly committed micro-batches, in milliseconds.
    pub poll_interval_ms: u64,
    /// Longest wait between two attempts while a sink is down, in seconds (the wait doubles from
    /// `poll_interval_ms` up to this).
    pub max_backoff_seconds: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            kafka_topic: "risk-alerts".into(),
            webhook_url: String::new(),
            webhook_token_secret: String::new(),
            timeout_ms: 10_000,
            poll_interval_ms: 250,
            max_backoff_seconds: 30,
        }
    }
}

impl AlertsConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.timeout_ms == 0 || self.poll_interval_ms < 10 || self.max_backoff_seconds == 0 {
            return Err(Error::Config(
                "alerts.timeout_ms and alerts.max_backoff_seconds must be above 0, alerts.poll_interval_ms at least 10"
                    .into(),
            ));
        }
        if !self.webhook_url.is_empty() {
            let url = url::Url::parse(&self.webhook_url)
                .map_err(|e| Error::Config(format!("alerts.webhook_url {:?} is not a URL: {e}", self.webhook_url)))?;
            if !["http", "https"].contains(&url.scheme()) || url.host().is_none() {
                return Err(Error::Config(format!(
                    "alerts.webhook_url {:?} must be an http:// or https:// URL",
                    self.webhook_url
                )));
            }
        }
        if self.webhook_url.is_empty() && !self.webhook_token_secret.is_empty() {
            return Err(Error::Config("alerts.webhook_token_secret is set but alerts.webhook_url is empty".into()));
        }
        Ok(())
    }

    /// The webhook and Kafka timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The alerts a ward acts on (`alerts`, `alert_events`): which rises to High become an alert, when one
/// resolves or escalates by itself (see [`crate::ward_alerts`]). Runs beside the ETL driver (`etl.enabled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WardAlertsConfig {
    /// Keep the `alerts` table in this process: raise alerts from `risk_alerts`, resolve and escalate
    /// them on time, and take the HTTP API's actions on them. Only with the ETL driver (`etl.enabled`).
    pub enabled: bool,
    /// How often new `risk_alerts` rows, the patients' latest readings and the escalation clock are
    /// looked at, in milliseconds.
    pub poll_interval_ms: u64,
    /// The rules of a ward that has no entry in `wards`, and of readings that name no ward (ward `default`).
    pub default_ward: WardRules,
    /// Rules by ward name; a ward not listed follows `default_ward`.
    pub wards: std::collections::BTreeMap<String, WardRules>,
    /// One `feed_down` alert when no reading of any patient has arrived for this many minutes (this
    /// process's clock: ingest, Kafka or the ETL stopped); 0 never raises one.
    pub feed_down_minutes: u64,
}

impl Default for WardAlertsConfig {
    fn default() -> Self {
        WardAlertsConfig {
            enabled: true,
            poll_interval_ms: 1_000,
            default_ward: WardRules::default(),
            wards: std::collections::BTreeMap::new(),
            feed_down_minutes: 10,
        }
    }
}

impl WardAlertsConfig {
    /// The rules of `ward`.
    pub fn rules(&self, ward: &str) -> &WardRules {
        self.wards.get(ward).unwrap_or(&self.default_ward)
    }

    /// Checks values before anything starts; a wrong value names its ward and key.
    pub fn validate(&self) -> Result<()> {
        if self.poll_interval_ms < 10 {
            return Err(Error::Config("ward_alerts.poll_interval_ms must be at least 10".into()));
        }
        let wards = std::iter::once(("default_ward".to_string(), &self.default_ward))
            .chain(self.wards.iter().map(|(name, rules)| (format!("wards.{name}"), rules)));
        for (name, rules) in wards {
            rules.validate().map_err(|reason| Error::Config(format!("ward_alerts.{name}.{reason}")))?;
        }
        Ok(())
    }
}

/// One ward's alert rules. Times of readings (event time) run the re-alert and auto-resolve timers;
/// the escalation timer runs on the wall clock (it waits for people).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WardRules {
    /// A rise to High whose P(High) is below this raises no alert (0 raises one for every rise that
    /// passes the re-alert rule).
    pub min_probability_high: f64,
    /// After a patient's alert is resolved or dismissed, a new rise within this many minutes (of
    /// reading time) raises no alert, unless NEWS2 or P(High) rose by the margins below.
    pub realert_quiet_minutes: u64,
    /// A rise within the quiet time raises an alert when its NEWS2 is at least this much above that
    /// of the patient's last alert.
    pub realert_news2_rise: i32,
    /// A rise within the quiet time raises an alert when its P(High) is at least this much above
    /// that of the patient's last alert (0 to 1).
    pub realert_probability_rise: f64,
    /// An alert resolves by itself once the patient's risk has stayed below High for this many
    /// minutes of reading time; 0 never resolves by itself.
    pub auto_resolve_minutes: u64,
    /// An alert nobody acknowledged escalates by itself after this many minutes (wall clock); 0 never
    /// escalates by itself.
    pub escalate_after_minutes: u64,
    /// A `no_data` alert when a patient's latest reading is this many minutes (of reading time) behind
    /// the newest reading of the ward; it resolves itself when the patient's readings resume. 0 never
    /// raises one.
    pub no_data_minutes: u64,
}

impl Default for WardRules {
    fn default() -> Self {
        WardRules {
            min_probability_high: 0.0,
            realert_quiet_minutes: 60,
            realert_news2_rise: 2,
            realert_probability_rise: 0.15,
            auto_resolve_minutes: 30,
            escalate_after_minutes: 15,
            no_data_minutes: 30,
        }
    }
}

impl WardRules {
    /// Checks values; the error starts with the key's name.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_probability_high) {
            return Err(format!("min_probability_high must be within 0 to 1, not {}", self.min_probability_high));
        }
        if !(0.0..=1.0).contains(&self.realert_probability_rise) {
            return Err(format!(
                "realert_probability_rise must be within 0 to 1, not {}",
                self.realert_probability_rise
            ));
        }
        if self.realert_news2_rise < 0 {
            return Err(format!("realert_news2_rise must not be negative, not {}", self.realert_news2_rise));
        }
        Ok(())
    }
}

/// The Flight SQL endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// Run the endpoint in this process.
    pub enabled: bool,
    /// Address it binds.
    pub bind_host: String,
    /// Port; 0 picks a free port.
    pub port: u16,
    /// Who may query (`[flight_sql.auth]`); on by default.
    pub auth: AuthConfig,
    /// PEM certificate chain; set with `tls_key_path` to serve `grpc+tls`. Required (or
    /// `allow_plaintext`) when `bind_host` is not loopback.
    pub tls_cert_path: String,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: String,
    /// Serve plain gRPC on an address other than loopback (passwords, tokens and patient data then
    /// cross the network in clear): only behind a TLS proxy or on a network you trust.
    pub allow_plaintext: bool,
    /// Longest one query may run, planning to last row, in seconds; it then fails with a clear error.
    pub query_timeout_seconds: u64,
    /// Most result data one query may return, in MiB of Arrow memory: protects the server from a
    /// runaway `SELECT *`; clients should aggregate or narrow the time range.
    pub max_result_mb: u64,
    /// Most audit entries held in memory until they are appended to the `audit_log` table (every
    /// second, or at once when 1,000 wait). Only fills while the data location is unreachable; then new
    /// entries are left out of the table (counted on `/metrics`; their log events are still written).
    pub audit_window: usize,
    /// Longest SQL text a query may have, in bytes; longer ones are refused before parsing.
    pub max_sql_bytes: usize,
    /// Most operators (`+`, `||`, `AND`, `OR`, `UNION`, …) on one path through a query's expressions,
    /// counted on its tokens before parsing: a longer chain parses into a tree deep enough to overflow
    /// the server's stack. Lists (`IN (…)`, a `SELECT` list) are not chains.
    pub max_expression_terms: usize,
    /// Most brackets a query may have open at once, checked before parsing.
    pub max_nesting_depth: usize,
    /// Queries one signed-in user (user or token name) runs at once, planning to last row streamed;
    /// more wait their turn, so that one reader cannot take every core and all the memory.
    pub max_queries_per_user: usize,
    /// Queries of one user that may wait for a slot (in arrival order, the wait counting against
    /// `query_timeout_seconds`); one more is refused at once with RESOURCE_EXHAUSTED. Room for a
    /// dashboard whose panels all query at once under one account.
    pub max_queued_per_user: usize,
    /// Largest value a function that builds values from a count (`repeat`, `lpad`, `rpad`,
    /// `array_repeat`, `array_resize`, `range` and `generate_series` as arrays) may make in one call,
    /// in MiB, summed over one batch of rows: past it the query fails with RESOURCE_EXHAUSTED instead
    /// of allocating. Applies to queries planned and run in this process; executors have
    /// `executor.max_value_mb`.
    pub max_value_mb: u64,
    /// Memory the queries run in this process together (small tables, `information_schema`,
    /// `etl_progress`) may hold, in MiB; a query needing more fails with RESOURCE_EXHAUSTED.
    pub in_process_memory_mb: u64,
    /// Queries whose files to scan add up to at most this many MiB run in this process too, not as
    /// Ballista jobs: a job's fixed cost is most of a small query's time, and under load every job
    /// waits for the executor slots the ETL's jobs need. 0 (the default until such a query's memory
    /// refusal answers RESOURCE_EXHAUSTED, not INTERNAL): only `patient_latest`, `information_schema`
    /// and `etl_progress` run here.
    pub in_process_max_scan_mb: u64,
}

impl Default for FlightSqlConfig {
    fn default() -> Self {
        FlightSqlConfig {
            enabled: true,
            bind_host: "127.0.0.1".into(),
            port: 50060,
            auth: AuthConfig::default(),
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            allow_plaintext: false,
            query_timeout_seconds: 300,
            max_result_mb: 1024,
            audit_window: 100_000,
            max_sql_bytes: 1024 * 1024,
            max_expression_terms: 1000,
            max_nesting_depth: 32,
            max_queries_per_user: 4,
            max_queued_per_user: 64,
            max_value_mb: 256,
            in_process_memory_mb: 1024,
            in_process_max_scan_mb: 0,
        }
    }
}

impl FlightSqlConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert_path.is_empty() != self.tls_key_path.is_empty() {
            return Err(Error::Config(
                "flight_sql.tls_cert_path and flight_sql.tls_key_path must be set together".into(),
            ));
        }
        if self.query_timeout_seconds == 0 || self.max_result_mb == 0 {
            return Err(Error::Config(
                "flight_sql.query_timeout_seconds and flight_sql.max_result_mb must be above 0".into(),
            ));
        }
        if self.max_queries_per_user == 0 || self.max_value_mb == 0 || self.in_process_memory_mb == 0 {
            return Err(Error::Config(
                "flight_sql.max_queries_per_user, max_value_mb and in_process_memory_mb must be above 0".into(),
            ));
        }
        if self.audit_window == 0 {
            return Err(Error::Config(
                "flight_sql.audit_window must be above 0: it holds the audit entries until they are written to audit_log"
                    .into(),
            ));
        }
        if self.max_sql_bytes == 0 || self.max_expression_terms == 0 || self.max_nesting_depth == 0 {
            return Err(Error::Config(
                "flight_sql.max_sql_bytes, max_expression_terms and max_nesting_depth must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// The HTTP API: the seed's `POST /predict_batch` and `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Run the HTTP API in this process.
    pub enabled: bool,
    /// Address it binds.
    pub bind_host: String,
    /// Port (the seed's FastAPI port); 0 picks a free port.
    pub port: u16,
    /// Most records one `/predict_batch` request may carry; more is refused with 413.
    pub max_batch_records: usize,
    /// PEM certificate chain; set with `tls_key_path` to serve HTTPS. Required (or `allow_plaintext`)
    /// when `bind_host` is not loopback.
    pub tls_cert_path: String,
    /// PEM private key of `tls_cert_path`.
    pub tls_key_path: String,
    /// Serve plain HTTP on an address other than loopback (passwords and tokens then cross the network
    /// in clear): only behind a TLS proxy or on a network you trust.
    pub allow_plaintext: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            bind_host: "127.0.0.1".into(),
            port: 8000,
            max_batch_records: 10_000,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            allow_plaintext: false,
        }
    }
}

impl HttpConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.tls_cert_path.is_empty() != self.tls_key_path.is_empty() {
            return Err(Error::Config("http.tls_cert_path and http.tls_key_path must be set together".into()));
        }
        Ok(())
    }
}

/// Background compaction of the tables' small files into larger ones (Delta OPTIMIZE), and deletion of
/// the files it replaced (VACUUM); readers see one snapshot or the other, never a row twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Run compaction in the scheduler process (with the ETL driver).
    pub enabled: bool,
    /// Seconds between two compaction passes.
    pub interval_seconds: u64,
    /// Size a compacted file grows to, in MiB of Parquet; files of this size or more are left alone.
    pub target_file_mb: u64,
    /// Fewest small files in a table worth an OPTIMIZE (fewer wait for more to land).
    pub min_files: usize,
    /// Seconds the files an OPTIMIZE (or a retention DELETE) replaced stay before VACUUM deletes them,
    /// so that queries planned before still read them, and how far back time travel reaches with
    /// every file; must exceed `flight_sql.query_timeout_seconds`.
    pub grace_seconds: u64,
    /// Minutes the Delta log of the tables written every micro-batch (`vitals_raw`, `vitals_clean`,
    /// `dead_letters`, `patient_latest`, the ETL's state) and of `audit_log` keeps its commits: how far
    /// back `table_at` by version and a table's history reach. Commits the ETL has not read are kept
    /// whatever their age. At least `grace_seconds`; 0 leaves the clean-up to Delta (2 days, at checkpoints).
    pub log_retention_minutes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            interval_seconds: 60,
            target_file_mb: 64,
            min_files: 8,
            grace_seconds: 600,
            log_retention_minutes: 15,
        }
    }
}

impl CompactionConfig {
    /// Checks values before anything starts.
    pub fn validate(&self) -> Result<()> {
        if self.interval_seconds == 0 || self.target_file_mb == 0 || self.min_files < 2 {
            return Err(Error::Config(
                "compaction.interval_seconds and target_file_mb must be above 0, min_files at least 2".into(),
            ));
        }
        if self.log_retention_minutes > 0 && self.log_retention_minutes.saturating_mul(60) < self.grace_seconds {
            return Err(Error::Config(format!(
                "compaction.log_retention_minutes ({}) must cover grace_seconds ({}): time travel within the grace \
                 period needs the log",
                self.log_retention_minutes, self.grace_seconds
            )));
        }
        Ok(())
    }

    /// Target size in bytes.
    pub fn target_bytes(&self) -> u64 {
        self.target_file_mb.saturating_mul(1024 * 1024)
    }
}

/// Deleting old data. Clinical data is kept until someone decides otherwise (`days` is off by
/// default); the audit log is kept a year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete rows of `vitals_raw`, `vitals_clean` and `dead_letters` landed more than this many days
    /// ago (Delta DELETE); 0 keeps everything. Rows the ETL has not processed are always kept.
    /// Runs every `compaction.interval_seconds`, also when compaction itself is off.
    pub days: u64,
    /// Delete entries of `audit_log` older than this many days (by `time`, Delta DELETE) in the same
    /// pass; 0 keeps them forever. A year by default: long enough for an incident review, bounded.
    pub audit_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { days: 0, audit_days: 365 }
    }
}

/// Authentication settings (`[flight_sql.auth]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Every call needs credentials. Only `vitalflow up` (bound to 127.0.0.1) turns this off;
    /// with it on, at least one user or token must be configured: there is no default password.
    pub required: bool,
    /// Users who sign in with a password (Basic), then use the bearer token they get back.
    pub users: Vec<UserConfig>,
    /// Static bearer tokens, e.g. for Grafana or a service account.
    pub tokens: Vec<TokenConfig>,
    /// Lifetime of an issued token, in seconds. Grafana handshakes once per datasource and keeps
    /// the token for as long as the datasource lives, so the default is a week.
    pub token_ttl_seconds: u64,
    /// Key signing issued tokens, at least 32 characters (`openssl rand -hex 32`); empty draws a random
    /// one at start (tokens then end with the process). A new key revokes every token issued before.
    pub token_secret: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: true,
            users: Vec::new(),
            tokens: Vec::new(),
            token_ttl_seconds: 7 * 24 * 3600,
            token_secret: String::new(),
        }
    }
}

/// A user who signs in with a password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name, as written in the audit log.
    pub name: String,
    /// Salted hash of the password, `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64): made by
    /// `vitalflow hash-password`. The file never holds the password.
    pub password_hash: String,
    /// What the user may do.
    #[serde(default)]
    pub role: Role,
}

/// A static bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who uses the token, as written in the audit log.
    pub name: String,
    /// Lower-case hex SHA-256 of the token.
    pub token_sha256: String,
    /// What the holder may do.
    #[serde(default)]
    pub role: Role,
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries vitalflow's tables.
    #[default]
    Reader,
    /// Also acts on alerts (acknowledge, escalate, dismiss, resolve) through the HTTP API.
    Clinician,
    /// Also reads the audit log, and acts on alerts as a clinician does.
    Admin,
}

impl Role {
    /// Whether a caller of this role may change an alert's state.
    pub fn may_act_on_alerts(self) -> bool {
        matches!(self, Role::Clinician | Role::Admin)
    }
}
