//! The command line: one clap enum of subcommands; each flag is an optional override of the config.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// vitalflow: a real-time patient-vitals risk pipeline on Kafka, Arrow, DataFusion Ballista and Flight SQL.
///
/// Configuration layers, later winning: defaults, the TOML file (--config, or ./vitalflow.toml),
/// VITALFLOW__SECTION__KEY environment variables, then flags.
#[derive(Debug, Parser)]
#[command(name = "vitalflow", version, about, long_about)]
pub struct Cli {
    /// The flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The flags every command of `vitalflow` and `vitalflow-bench` takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "VITALFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where tables live: a directory or URL (overrides storage.data_url).
    #[arg(long, global = true)]
    pub data: Option<String>,
    /// Kafka bootstrap servers (overrides kafka.brokers).
    #[arg(long, global = true)]
    pub kafka: Option<String>,
    /// Topic of vitals records (overrides kafka.topic).
    #[arg(long, global = true)]
    pub topic: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VITALFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// vitalflow's processes and tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Ballista scheduler with the continuous ETL driver and the Flight SQL endpoint.
    Scheduler(SchedulerArgs),
    /// Run one Ballista executor with vitalflow's SQL functions.
    Executor(ExecutorArgs),
    /// Consume the vitals topic and land it as Parquet (vitals_raw) with dead letters.
    Ingest(IngestArgs),
    /// Produce simulated vitals readings to the topic (the seed's JSON).
    Simulate(SimulateArgs),
    /// Train the risk forest on simulated data and write a model file.
    Train(TrainArgs),
    /// Run everything in one process on 127.0.0.1 (embedded broker, simulator, ingest, Ballista, ETL,
    /// Flight SQL, HTTP API) plus the Streamlit dashboard: the zero-setup local demo.
    Up(UpArgs),
    /// Stop the `vitalflow up` running on the data directory (--data).
    Stop,
    /// Score a CSV or Parquet file of vitals with the risk model and print or write the labels.
    Predict(PredictArgs),
    /// Compare the risk model with NEWS2 and the rubric on a simulated held-out ward: AUROC per reading,
    /// then episode sensitivity, PPV per alert and lead time at matched alert rates (alerts per 35 patients
    /// per day), with bootstrap intervals and where the model and NEWS2 disagree.
    Evaluate(EvaluateArgs),
    /// Benchmarks: time vitalflow and its reference in one run and print both with the ratio (runs the
    /// `vitalflow-bench` binary, built with `cargo build --release --features bench`).
    Bench(BenchArgs),
    /// Show where the ETL stands: batches committed, rows, lag behind ingest, alert delivery; read from
    /// the data location (--data), so it works with every process stopped.
    Status(StatusArgs),
    /// Convert, once, a data location written by an earlier vitalflow (plain Parquet files) into Delta
    /// Lake tables, every row exactly once and the ETL's progress kept; the old files are moved under
    /// `_pre_delta/`. Needs the Kafka cluster ingest reads (--kafka), to record its positions.
    Migrate,
    /// Print the effective configuration as TOML (secrets shown as "<redacted>"), or with --markdown the
    /// reference of every setting.
    Config(ConfigArgs),
    /// Read a password from standard input and print the `password_hash` for a
    /// `[[flight_sql.auth.users]]` entry (salted PBKDF2-HMAC-SHA256).
    HashPassword,
}

/// Options every long-running service shares.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Write the bound addresses as JSON to this file once listening (for scripts and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

/// `vitalflow config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the reference of every setting (key, type, default, meaning) as Markdown tables instead,
    /// as `docs/configuration.md` holds it.
    #[arg(long)]
    pub markdown: bool,
}

/// `vitalflow status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the figures as one JSON object (the columns of the `etl_progress` table) for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `vitalflow scheduler`.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Ballista scheduler port, 0 for any free port (overrides scheduler.port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Flight SQL port, 0 for any free port (overrides flight_sql.port).
    #[arg(long)]
    pub flight_sql_port: Option<u16>,
    /// Do not run the ETL driver in this process (overrides etl.enabled).
    #[arg(long)]
    pub no_etl: bool,
    /// Do not run the Flight SQL endpoint in this process (overrides flight_sql.enabled).
    #[arg(long)]
    pub no_flight_sql: bool,
    /// HTTP API port, 0 for any free port (overrides http.port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Do not run the HTTP API in this process (overrides http.enabled).
    #[arg(long)]
    pub no_http: bool,
    /// Shared service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `vitalflow up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Readings per second across the ward (overrides simulator.rate_per_sec).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Patients on the simulated ward (overrides simulator.patients).
    #[arg(long)]
    pub patients: Option<usize>,
    /// Flight SQL port, 0 for any free port (overrides flight_sql.port).
    #[arg(long)]
    pub flight_sql_port: Option<u16>,
    /// HTTP API port, 0 for any free port (overrides http.port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Dashboard port, 0 for any free port (overrides up.dashboard_port).
    #[arg(long)]
    pub dashboard_port: Option<u16>,
    /// Embedded broker port, 0 for any free port (overrides up.broker_port; a free port when it is
    /// taken). Ignored with --kafka.
    #[arg(long)]
    pub broker_port: Option<u16>,
    /// Do not start the Streamlit dashboard, no Python needed (overrides up.dashboard).
    #[arg(long)]
    pub no_dashboard: bool,
    /// Run in the background; `vitalflow stop` stops it. Logs go to <data>/_run/up.log.
    #[arg(long)]
    pub detach: bool,
    /// Shared service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `vitalflow executor`.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Scheduler as host:port (overrides executor.scheduler_address).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Arrow Flight port, 0 for any free port (overrides executor.flight_port).
    #[arg(long)]
    pub flight_port: Option<u16>,
    /// Ignored: executors poll the scheduler and serve no gRPC port (kept so that older scripts run).
    #[arg(long, hide = true)]
    pub grpc_port: Option<u16>,
    /// Port of /healthz and /readyz, 0 for any free port (overrides executor.health_port).
    #[arg(long)]
    pub health_port: Option<u16>,
    /// Tasks run at once (overrides executor.concurrent_tasks).
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,
    /// Shared service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `vitalflow ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Consumer group (overrides ingest.group_id).
    #[arg(long)]
    pub group: Option<String>,
    /// Port of the /metrics endpoint, 0 for any free port (overrides ingest.metrics_port).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Shared service options.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `vitalflow simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Stop after this many readings (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Readings per second across the ward, 0 for unpaced (overrides simulator.rate_per_sec).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Patients on the ward (overrides simulator.patients).
    #[arg(long)]
    pub patients: Option<usize>,
    /// Random seed (overrides simulator.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Encoding: flat (the seed's JSON), aliases (hr, sbp, ..., epoch-ms ts), fhir (R4 Bundles) or hl7v2
    /// (ORU^R01, IHE PCD-01) (overrides simulator.format).
    #[arg(long)]
    pub format: Option<String>,
    /// Fraction of readings with an artefact, 0 for none (overrides simulator.artefact_rate).
    #[arg(long)]
    pub artefact_rate: Option<f64>,
    /// Probability that a vital is missing from a reading, 0 for none (overrides simulator.missing_rate).
    #[arg(long)]
    pub missing_rate: Option<f64>,
    /// New deterioration episodes per patient per simulated hour (overrides simulator.episode_rate_per_hour).
    #[arg(long)]
    pub episode_rate: Option<f64>,
    /// Partitions of the topic when this command creates it (overrides kafka.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
}

/// `vitalflow train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Simulated training rows.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Held-out rows for the report.
    #[arg(long, default_value_t = 30_000)]
    pub test_rows: usize,
    /// Trees in the forest.
    #[arg(long)]
    pub trees: Option<usize>,
    /// Depth limit of each tree.
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Rows in each tree's bootstrap sample.
    #[arg(long)]
    pub max_samples: Option<usize>,
    /// Inputs each tree may split on, drawn per tree (7: all six vitals and the rubric input).
    #[arg(long)]
    pub max_features: Option<usize>,
    /// Extra weight on High rows (above 1 favours High recall).
    #[arg(long)]
    pub high_weight_boost: Option<f32>,
    /// Seed for data and bootstrap.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Version written into the model file (default: `rf-` and the training data hash).
    #[arg(long)]
    pub version: Option<String>,
    /// Where to write the model file.
    #[arg(long, default_value = "model.json")]
    pub out: PathBuf,
    /// Train on the six vitals only, without the rubric's score of them as a seventh input.
    #[arg(long)]
    pub without_rubric_feature: bool,
    /// Instead of training both: train the trend model alone and write this model file with it (its
    /// six-vital model unchanged; --version renames the file's version) to --out.
    #[arg(long, conflicts_with = "covers_of")]
    pub trend_into: Option<PathBuf>,
    /// Train the six-vital model alone, without the trend model the ETL scores with.
    #[arg(long)]
    pub without_trend: bool,
    /// Also write the report (printed on stdout) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Instead of training: record the node covers (what `explain_risk` needs) of this model file,
    /// trained by an earlier `vitalflow train` with --rows and --seed, and write it to --out with its
    /// trees unchanged. Refused when those rows are not the model's training rows (their hash).
    #[arg(long)]
    pub covers_of: Option<PathBuf>,
    /// Instead of training: fit the calibration of this model file's trend model again (on a
    /// calibration ward of --test-rows readings, seed --seed + 2; checked on held-out readings, seed
    /// --seed + 1) and write it to --out with its trees unchanged.
    #[arg(long, conflicts_with_all = ["covers_of", "trend_into"])]
    pub calibrate: Option<PathBuf>,
}

/// `vitalflow predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model file, JSON (overrides model.path).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Rows to score: CSV with a header, or Parquet (`.parquet`), with columns heart_rate,
    /// systolic_bp, diastolic_bp, spo2, temperature, glucose (with --trend: any of the trend model's).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the CSV of risk and class probabilities (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Add why each row has its P(High) (`explain_risk`): columns `why_base` and `why_<input>`, one per
    /// model input, adding up to `p_high`.
    #[arg(long)]
    pub explain: bool,
    /// Score with the model the ETL scores with (the trend model) instead of the six-vital model: the
    /// input has any of its arguments (`trend_model_arguments()`), one lacking is missing; adds
    /// `p_high_calibrated`.
    #[arg(long)]
    pub trend: bool,
}

/// The flags of a simulated ward, which a recorded --history replaces.
const SIMULATED_WARD_FLAGS: [&str; 6] =
    ["patients", "hours", "seed", "seconds_per_reading", "episode_rate", "ill_at_start"];

/// `vitalflow evaluate`. The ward's defaults are `WardSettings::default()` in the model crate.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model file, JSON (overrides model.path).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Evaluate on recorded readings instead of a simulated ward (shadow mode): a CSV or Parquet file
    /// with patient_id, event_time (or timestamp) and vitals columns, or `vitals_raw` / `vitals_clean`
    /// of the data location. Needs --events.
    #[arg(long, requires = "events", conflicts_with_all = SIMULATED_WARD_FLAGS)]
    pub history: Option<String>,
    /// The recorded deterioration events of --history's patients (rapid-response calls, ICU transfers,
    /// arrests): a CSV or Parquet file with patient_id and event_time (or timestamp).
    #[arg(long, requires = "history")]
    pub events: Option<PathBuf>,
    /// Patients on the simulated held-out ward (default 2000).
    #[arg(long)]
    pub patients: Option<usize>,
    /// Simulated hours each patient is observed (default 48).
    #[arg(long)]
    pub hours: Option<f64>,
    /// Simulator seed of the ward (default 2026; not the training seeds 7, 8 and 9).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds between two readings of one patient (default 300: one reading per patient per 5 minutes).
    #[arg(long)]
    pub seconds_per_reading: Option<f64>,
    /// New deterioration episodes per patient per hour (default 0.15, about 90 episodes per 35
    /// patients per day; 0.0012 gives about one, a real ward's order).
    #[arg(long)]
    pub episode_rate: Option<f64>,
    /// Share of patients already in an episode when the ward starts (default 0.35).
    #[arg(long)]
    pub ill_at_start: Option<f64>,
    /// Hours before an episode's onset (an event's time) from which an alert counts for it (default 6).
    #[arg(long)]
    pub lookback_hours: Option<f64>,
    /// Runs of a simulated patient's truly-High readings less than this many hours apart are one
    /// episode (default 1).
    #[arg(long, conflicts_with = "history")]
    pub episode_gap_hours: Option<f64>,
    /// Alert budgets, alerts per 35 patients per day, comma-separated (default 0.5,1,2,4).
    #[arg(long, value_delimiter = ',')]
    pub alert_rates: Option<Vec<f64>>,
    /// Bootstrap resamples of patients for the 95% intervals (default 200).
    #[arg(long)]
    pub resamples: Option<usize>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write a self-contained HTML page (tables and an SVG chart of sensitivity) to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// `vitalflow bench`: the benchmarks are their own binary, `vitalflow-bench`, built with the `bench` feature
/// (`cargo build --release --features bench`); this runs it when it sits beside `vitalflow`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The benchmark and its flags, as `vitalflow-bench` takes them: model, queries, ingest or e2e.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}
