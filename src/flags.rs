//! The last configuration layer: command-line flags over defaults, the file and the environment.
//!
//! Every flag that names a setting is an `Option` (or an off switch) with no default of its own, so the
//! default is written once, in the setting's `Default`. [`apply`] is the one place flags reach the
//! configuration; commands read the configuration, never those flags.

use vitalflow_udf_model::simulate::OutputFormat;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::VitalflowConfig;

/// Sets `target` when the flag was given.
fn set<T: Clone>(target: &mut T, flag: &Option<T>) {
    if let Some(value) = flag {
        *target = value.clone();
    }
}

/// Applies the global flags `--data`, `--kafka` and `--topic` (shared with `vitalflow-bench`).
pub fn apply_globals(config: &mut VitalflowConfig, global: &GlobalArgs) {
    set(&mut config.storage.data_url, &global.data);
    set(&mut config.kafka.brokers, &global.kafka);
    set(&mut config.kafka.topic, &global.topic);
}

/// Applies the global flags and those of the command over `config`.
pub fn apply(cli: &Cli, config: &mut VitalflowConfig) -> anyhow::Result<()> {
    apply_globals(config, &cli.global);
    match &cli.command {
        Command::Scheduler(args) => {
            set(&mut config.scheduler.port, &args.port);
            set(&mut config.flight_sql.port, &args.flight_sql_port);
            set(&mut config.http.port, &args.http_port);
            config.etl.enabled &= !args.no_etl;
            config.flight_sql.enabled &= !args.no_flight_sql;
            config.http.enabled &= !args.no_http;
        }
        Command::Executor(args) => {
            // Checked as host:port by `ExecutorConfig::scheduler`, before the executor binds anything.
            set(&mut config.executor.scheduler_address, &args.scheduler);
            set(&mut config.executor.flight_port, &args.flight_port);
            if args.grpc_port.is_some() {
                tracing::warn!(
                    "--grpc-port is deprecated and ignored: executors poll the scheduler and serve no gRPC port."
                );
            }
            set(&mut config.executor.health_port, &args.health_port);
            set(&mut config.executor.concurrent_tasks, &args.concurrent_tasks);
        }
        Command::Ingest(args) => {
            set(&mut config.ingest.group_id, &args.group);
            set(&mut config.ingest.metrics_port, &args.metrics_port);
        }
        Command::Simulate(args) => {
            let s = &mut config.simulator;
            set(&mut s.rate_per_sec, &args.rate);
            set(&mut s.patients, &args.patients);
            set(&mut s.seed, &args.seed);
            if let Some(format) = &args.format {
                s.ward.format = OutputFormat::parse(format)?;
            }
            set(&mut s.ward.artefact_rate, &args.artefact_rate);
            set(&mut s.ward.missing_rate, &args.missing_rate);
            set(&mut s.ward.episode_rate_per_hour, &args.episode_rate);
            set(&mut config.kafka.partitions, &args.partitions);
        }
        Command::Up(args) => {
            set(&mut config.simulator.rate_per_sec, &args.rate);
            set(&mut config.simulator.patients, &args.patients);
            set(&mut config.flight_sql.port, &args.flight_sql_port);
            set(&mut config.http.port, &args.http_port);
            set(&mut config.up.dashboard_port, &args.dashboard_port);
            set(&mut config.up.broker_port, &args.broker_port);
            config.up.dashboard &= !args.no_dashboard;
        }
        Command::Predict(args) => {
            if let Some(model) = &args.model {
                config.model.path = model.display().to_string();
            }
        }
        Command::Evaluate(args) => {
            if let Some(model) = &args.model {
                config.model.path = model.display().to_string();
            }
        }
        Command::Train(_)
        | Command::Stop
        | Command::Migrate
        | Command::Bench(_)
        | Command::Status(_)
        | Command::Config(_)
        | Command::HashPassword => {}
    }
    Ok(())
}
