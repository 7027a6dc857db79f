//! `vitalflow-bench ...` (the `bench` feature): benchmarks that time vitalflow and its reference in the
//! same run and print both figures with their ratio. Benchmarks, not tests: nothing here asserts a speed.

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use vitalflow_ingest::KafkaConfig;
use vitalflow_ingest::client::client_config;

use crate::config::VitalflowConfig;

pub mod cli;
pub mod e2e;
pub mod etl;
mod grafana_panels;
pub mod ingest;
pub mod load;
pub mod model;
pub mod queries;
pub mod soak;

/// Runs the benchmark the command line names.
pub async fn run(cli: cli::BenchCli) -> anyhow::Result<()> {
    let config = crate::config_with_flags(&cli.global)?;
    let external_kafka = crate::external_kafka(cli.global.kafka.is_some(), &config);
    match cli.bench {
        cli::Bench::Model(args) => model::run(&args),
        cli::Bench::Queries(args) => queries::run(args).await,
        cli::Bench::Ingest(args) => ingest::run(config, &args, external_kafka).await,
        cli::Bench::E2e(args) => e2e::run(config, &args, external_kafka).await,
        cli::Bench::Etl(args) => etl::run(&args).await,
        cli::Bench::Load(args) => load::run(config, &args, external_kafka).await,
        cli::Bench::Soak(args) => soak::run(&args),
    }
}

/// The Kafka a benchmark produces to, with a fresh topic: the configured one, or the embedded broker
/// of `up` when none is configured or `--embedded` asks for it (named in the output: tansu may itself
/// be the limit).
pub(crate) struct BenchKafka {
    broker: Option<crate::up::broker::EmbeddedBroker>,
    /// Which broker, for the output.
    pub(crate) name: String,
}

impl BenchKafka {
    /// Points `config.kafka` at the broker and at a fresh topic named `<prefix>-<uuid>`.
    pub(crate) async fn open(
        config: &mut VitalflowConfig,
        external_kafka: bool,
        embedded: bool,
        prefix: &str,
    ) -> anyhow::Result<BenchKafka> {
        let broker = if external_kafka && !embedded {
            None
        } else {
            let port = crate::up::broker::free_port_or(0)?;
            let broker = crate::up::broker::start_embedded_broker(port).await?;
            config.kafka.brokers = broker.addr.to_string();
            Some(broker)
        };
        let name = match broker {
            Some(_) => format!("embedded tansu broker (memory storage) on {}", config.kafka.brokers),
            None => format!("Kafka at {}", config.kafka.brokers),
        };
        config.kafka.topic = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        Ok(BenchKafka { broker, name })
    }

    /// Deletes the topic from a configured Kafka (best effort: it only costs disk there), or stops the
    /// embedded broker.
    pub(crate) async fn close(self, kafka: &KafkaConfig) {
        match self.broker {
            Some(broker) => broker.stop(),
            None => {
                let admin: Result<AdminClient<DefaultClientContext>, _> = client_config(kafka).create();
                if let Ok(admin) = admin
                    && let Err(error) = admin.delete_topics(&[&kafka.topic], &AdminOptions::new()).await
                {
                    tracing::warn!(error = %error, topic = %kafka.topic, "Could not delete the benchmark topic.");
                }
            }
        }
    }
}

/// Rows per second, for printing.
pub(crate) fn rows_per_sec(rows: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { rows as f64 / seconds } else { f64::INFINITY }
}

/// Pins every thread of this process to `core` with `taskset`, so that a benchmark measures one core;
/// warns and goes on where taskset is missing (the figures are then marked as unpinned by the caller).
pub(crate) fn pin_to_core(core: usize) -> bool {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-c", "-p", &core.to_string(), &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => true,
        _ => {
            eprintln!("warning: could not pin to core {core} with taskset; figures may use several cores");
            false
        }
    }
}
