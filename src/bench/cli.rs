//! The command line of `vitalflow-bench`: the global flags of `vitalflow` and one subcommand per benchmark.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cli::GlobalArgs;

/// vitalflow-bench: benchmarks that time vitalflow and its reference in one run and print both with the ratio.
///
/// Configuration layers, later winning: defaults, the TOML file (--config, or ./vitalflow.toml),
/// VITALFLOW__SECTION__KEY environment variables, then flags.
#[derive(Debug, Parser)]
#[command(name = "vitalflow-bench", version, about, long_about)]
pub struct BenchCli {
    /// The flags `vitalflow` takes too.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The benchmark.
    #[command(subcommand)]
    pub bench: Bench,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// The risk forest's inference against scikit-learn's predict on the same forest, one core.
    Model(BenchModelArgs),
    /// The dashboard's queries on vitalflow's DataFusion session against DuckDB, same Parquet.
    Queries(BenchQueriesArgs),
    /// Records/s landed as Parquet by ingest, per core, against the raw consume rate of the topic.
    Ingest(BenchIngestArgs),
    /// Produce → readable with its risk over Flight SQL, per record (p50/p99), the whole pipeline running.
    E2e(BenchE2eArgs),
    /// The ETL's rows/s on one core: the shipped one-pass SQL against the window-pass SQL it replaced,
    /// on the same landed rows.
    Etl(BenchEtlArgs),
    /// The dashboards' queries (Streamlit's and every Grafana panel's) from many Flight SQL clients at
    /// once during ingest at the seed's pace: per-query p50/p90/p99, errors and the ETL's lag, beside the goals.
    Load(BenchLoadArgs),
    /// `vitalflow up` left running at the seed's pace: CPU, memory and file count per interval, and
    /// their drift after the warm-up.
    Soak(BenchSoakArgs),
}

/// `vitalflow-bench etl`.
#[derive(Debug, Args)]
pub struct BenchEtlArgs {
    /// Landed rows, run as one micro-batch.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Patients they belong to.
    #[arg(long, default_value_t = 2_000)]
    pub patients: usize,
    /// The simulator's seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The core the benchmark is pinned to.
    #[arg(long, default_value_t = 0)]
    pub core: usize,
}

/// `vitalflow-bench load`.
#[derive(Debug, Args)]
pub struct BenchLoadArgs {
    /// Flight SQL clients, each on its own connection, sending queries one after another.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds the clients run (after every patient is in `patient_latest`).
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Patients on the simulated ward.
    #[arg(long, default_value_t = 50)]
    pub patients: usize,
    /// Readings per second across the ward (the seed's pace: one per patient per second).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Use the embedded tansu broker even when a Kafka is configured (--kafka, file or environment).
    #[arg(long)]
    pub embedded: bool,
}

/// `vitalflow-bench soak`.
#[derive(Debug, Args)]
pub struct BenchSoakArgs {
    /// Minutes `up` runs.
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// Minutes at the start left out of the drift.
    #[arg(long, default_value_t = 5.0)]
    pub warmup_minutes: f64,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 60.0)]
    pub interval_seconds: f64,
    /// Patients on the simulated ward.
    #[arg(long, default_value_t = 50)]
    pub patients: usize,
    /// Readings per second across the ward (the seed's pace: one per patient per second).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
}

/// `vitalflow-bench e2e`.
#[derive(Debug, Args)]
pub struct BenchE2eArgs {
    /// Records produced per second.
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Seconds of producing.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Seconds at the start left out of the figures (start-up, first batches).
    #[arg(long, default_value_t = 10.0)]
    pub warmup: f64,
    /// Use the embedded tansu broker even when a Kafka is configured (--kafka, file or environment).
    #[arg(long)]
    pub embedded: bool,
}

/// `vitalflow-bench queries`.
#[derive(Debug, Args)]
pub struct BenchQueriesArgs {
    /// Python with `duckdb` installed.
    #[arg(long, env = "VITALFLOW_PYTHON", default_value = "python3")]
    pub python: String,
    /// Readings generated.
    #[arg(long, default_value_t = 10_000_000)]
    pub readings: usize,
    /// Patients they belong to.
    #[arg(long, default_value_t = 2_000)]
    pub patients: usize,
    /// Timed runs per query (after one warm-up); the median is printed.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// `vitalflow-bench ingest`.
#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Records produced to a fresh topic and then landed.
    #[arg(long, default_value_t = 2_000_000)]
    pub records: u64,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Use the embedded tansu broker even when a Kafka is configured (--kafka, file or environment).
    #[arg(long)]
    pub embedded: bool,
    /// Internal: run one measured side in this process (the benchmark starts its workers itself).
    #[arg(long, hide = true, value_enum)]
    pub worker: Option<BenchIngestWorker>,
}

/// The measured sides of `vitalflow-bench ingest`, each run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchIngestWorker {
    /// Read every record and do nothing (the ceiling).
    Raw,
    /// The ingest loop, landing Parquet.
    Land,
}

/// `vitalflow-bench model`.
#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// Python with numpy and scikit-learn, and the peers' packages (the venv of
    /// `deploy/python-env.sh clients/requirements-bench.txt`).
    #[arg(long, env = "VITALFLOW_PYTHON", default_value = "python3")]
    pub python: String,
    /// Simulated rows scikit-learn's forest is trained on.
    #[arg(long, default_value_t = 50_000)]
    pub train_rows: usize,
    /// Simulated rows scored (the largest batch is capped at this).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Trees in scikit-learn's forest (the seed's setting).
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 100, 10_000, 1_000_000])]
    pub batches: Vec<usize>,
    /// Seconds spent timing each batch size on each side (at least one call).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// The core both sides are pinned to.
    #[arg(long, default_value_t = 0)]
    pub core: usize,
    /// Compiled-forest peers timed on the same forest (`onnxruntime`, `treelite`); their packages are
    /// in clients/requirements-bench.txt. Empty for none.
    #[arg(long, value_delimiter = ',', default_values_t = ["onnxruntime".to_string(), "treelite".to_string()])]
    pub peers: Vec<String>,
}
