//! The `vitalflow` command: wires the crates together. Every subcommand is a library call.

#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod flags;
pub mod input_file;
pub mod logging;
pub mod password_input;
pub mod process;
pub mod recorded;
pub mod up;

use crate::cli::{Cli, Command};
use crate::config::VitalflowConfig;

/// The configuration a command runs with, layered in one order, later layers winning: built-in
/// defaults, the TOML file, `VITALFLOW__SECTION__KEY` environment variables ([`config::load`]), then
/// command-line flags ([`flags::apply`]); settings that default to another setting are filled last
/// ([`VitalflowConfig::derive_defaults`]).
pub fn effective_config(cli: &Cli) -> anyhow::Result<VitalflowConfig> {
    let mut config = config::load(cli.global.config.as_deref(), std::env::vars())?;
    flags::apply(cli, &mut config)?;
    config.derive_defaults();
    Ok(config)
}

/// The configuration `vitalflow-bench` runs with: the same layers, with the global flags `--data`,
/// `--kafka` and `--topic` it shares with `vitalflow`.
pub fn config_with_flags(global: &cli::GlobalArgs) -> anyhow::Result<VitalflowConfig> {
    let mut config = config::load(global.config.as_deref(), std::env::vars())?;
    flags::apply_globals(&mut config, global);
    config.derive_defaults();
    Ok(config)
}

/// Whether a real Kafka is configured (flag, file or environment); `up` and the benchmarks embed a
/// broker otherwise.
pub fn external_kafka(kafka_flag: bool, config: &VitalflowConfig) -> bool {
    kafka_flag || config.kafka.brokers != vitalflow_ingest::KafkaConfig::default().brokers
}

/// The global flags as given, for passing on to `vitalflow-bench`.
fn global_flags(global: &cli::GlobalArgs) -> Vec<std::ffi::OsString> {
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    if let Some(file) = &global.config {
        flags.extend(["--config".into(), file.into()]);
    }
    for (flag, value) in [("--data", &global.data), ("--kafka", &global.kafka), ("--topic", &global.topic)] {
        if let Some(value) = value {
            flags.extend([flag.into(), value.into()]);
        }
    }
    if let Some(format) = clap::ValueEnum::to_possible_value(&global.log_format) {
        flags.extend(["--log-format".into(), format.get_name().into()]);
    }
    flags
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = effective_config(&cli)?;
    // `up` embeds a broker unless a real Kafka is configured (flag, file or environment).
    let external_kafka = external_kafka(cli.global.kafka.is_some(), &config);
    let globals = global_flags(&cli.global);
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
        Command::Evaluate(args) => commands::evaluate(config, args).await,
        Command::Bench(args) => commands::bench(globals, args),
        Command::Status(args) => commands::status(config, args).await,
        Command::Migrate => commands::migrate(config).await,
        Command::Config(args) if args.markdown => {
            print!("{}", config::reference_markdown()?);
            Ok(())
        }
        Command::Config(_) => {
            // Secrets never reach a terminal or a log.
            print!("{}", config::redacted_toml(&config)?);
            Ok(())
        }
        Command::HashPassword => commands::hash_password(),
    }
}
