//! The `vitalflow` command: wires the crates together. Every subcommand is a library call.

#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod logging;
pub mod process;
pub mod up;

use crate::cli::{Cli, Command};
use crate::config::VitalflowConfig;

/// Loads the configuration (defaults, file, environment) and applies the global flags.
pub fn effective_config(cli: &Cli) -> anyhow::Result<VitalflowConfig> {
    config_with_flags(cli.config.as_deref(), cli.data.as_deref(), cli.kafka.as_deref(), cli.topic.as_deref())
}

/// Loads the configuration (defaults, `file`, environment) and lays the global flags `--data`,
/// `--kafka` and `--topic` over it; `vitalflow` and `vitalflow-bench` take the same ones.
pub fn config_with_flags(
    file: Option<&std::path::Path>,
    data: Option<&str>,
    kafka: Option<&str>,
    topic: Option<&str>,
) -> anyhow::Result<VitalflowConfig> {
    let mut config = config::load(file, std::env::vars())?;
    if let Some(data) = data {
        config.storage.data_url = data.to_string();
    }
    if let Some(brokers) = kafka {
        config.kafka.brokers = brokers.to_string();
    }
    if let Some(topic) = topic {
        config.kafka.topic = topic.to_string();
    }
    Ok(config)
}

/// Whether a real Kafka is configured (flag, file or environment); `up` and the benchmarks embed a
/// broker otherwise.
pub fn external_kafka(kafka_flag: bool, config: &VitalflowConfig) -> bool {
    kafka_flag || config.kafka.brokers != vitalflow_ingest::KafkaConfig::default().brokers
}

/// The global flags as given, for passing on to `vitalflow-bench`.
fn global_flags(cli: &Cli) -> Vec<std::ffi::OsString> {
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    if let Some(file) = &cli.config {
        flags.extend(["--config".into(), file.into()]);
    }
    for (flag, value) in [("--data", &cli.data), ("--kafka", &cli.kafka), ("--topic", &cli.topic)] {
        if let Some(value) = value {
            flags.extend([flag.into(), value.into()]);
        }
    }
    if let Some(format) = clap::ValueEnum::to_possible_value(&cli.log_format) {
        flags.extend(["--log-format".into(), format.get_name().into()]);
    }
    flags
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = effective_config(&cli)?;
    // `up` embeds a broker unless a real Kafka is configured (flag, file or environment).
    let external_kafka = external_kafka(cli.kafka.is_some(), &config);
    let globals = global_flags(&cli);
    match cli.command {
        Command::Scheduler(args) => commands::scheduler(config, args).await,
        Command::Executor(args) => commands::executor(config, args).await,
        Command::Ingest(args) => commands::ingest(config, args).await,
        Command::Simulate(args) => commands::simulate(config, args).await,
        Command::Train(args) => commands::train(config, args),
        Command::Up(args) => up::up(config, args, external_kafka).await,
        Command::Stop => {
            let location = process::open_data(&config)?;
            up::run_dir::RunDir::new(&location)?.stop(std::time::Duration::from_secs(60))
        }
        Command::Predict(args) => commands::predict(config, args).await,
        Command::Bench(args) => commands::bench(globals, args),
        Command::Status(args) => commands::status(config, args).await,
        Command::Config => {
            // Secrets never reach a terminal or a log.
            print!("{}", config::redacted_toml(&config)?);
            Ok(())
        }
        Command::HashPassword => commands::hash_password(),
    }
}
