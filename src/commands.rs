//! One function per subcommand: apply its flags, start the library, wait for a signal, stop.

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::client::ensure_topic;
use vitalflow_ingest::produce::{ProduceSpec, produce_simulated};
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::simulate::{VitalsSimulator, training_rows};
use vitalflow_udf_model::train::{ForestParams, permutation_importance, report_text, train_forest};

use crate::cli::{
    BenchArgs, EvaluateArgs, ExecutorArgs, IngestArgs, PredictArgs, SchedulerArgs, SimulateArgs, StatusArgs, TrainArgs,
};
use crate::config::VitalflowConfig;
use crate::process::{load_model, open_data, shutdown_on_signal, write_ready_file};

/// `vitalflow scheduler`.
pub async fn scheduler(config: VitalflowConfig, args: SchedulerArgs) -> anyhow::Result<()> {
    let forest = load_model(&config)?;
    let location = open_data(&config)?;
    let shutdown = shutdown_on_signal();
    let process = vitalflow_scheduler::start(&config.scheduler_process(), location, forest, shutdown.clone())
        .await
        .context("starting the scheduler process")?;
    write_ready_file(args.service.ready_file.as_deref(), &process.addrs)?;
    eprintln!(
        "vitalflow scheduler: Ballista on {}, Flight SQL on {}, HTTP API on {}",
        process.addrs.scheduler,
        process.addrs.flight_sql.map_or("(off)".to_string(), |a| format!("grpc://{a}")),
        process.addrs.http.map_or("(off)".to_string(), |a| format!("http://{a}"))
    );
    shutdown.cancelled().await;
    process.stop().await;
    Ok(())
}

/// `vitalflow status`: the ETL's progress as the store shows it.
pub async fn status(config: VitalflowConfig, args: StatusArgs) -> anyhow::Result<()> {
    let location = open_data(&config)?;
    let progress =
        vitalflow_scheduler::etl::progress::read_progress(&location, None).await.context("reading the ETL progress")?;
    if args.json {
        println!("{}", serde_json::to_string(&progress).context("printing the progress")?);
    } else {
        print!("ETL of {}\n{}", location.url(), vitalflow_scheduler::etl::progress::render(&progress));
    }
    Ok(())
}

/// `vitalflow migrate`.
pub async fn migrate(config: VitalflowConfig) -> anyhow::Result<()> {
    let location = open_data(&config)?;
    // The positions are recorded under the cluster's and the topic's ids, as ingest records them (a topic
    // that no longer exists has no id: its positions then mean nothing to the topic created next).
    let (source, _) = vitalflow_ingest::client::kafka_source(&config.kafka)
        .await
        .context("reading the Kafka cluster and topic ids, which the migrated positions are recorded under")?;
    let report = vitalflow_udf_model::lake::migrate::migrate(&location, &source).await.context("migrating")?;
    for (table, rows) in &report.rows {
        println!("{table:<16} {rows} rows");
    }
    println!(
        "Migrated {} to Delta Lake tables; {} earlier files moved under {}/{}/ (delete them once satisfied).",
        location.url(),
        report.moved_files,
        location.url().as_str().trim_end_matches('/'),
        vitalflow_udf_model::lake::migrate::BACKUP_DIR
    );
    Ok(())
}

/// `vitalflow executor`.
pub async fn executor(config: VitalflowConfig, args: ExecutorArgs) -> anyhow::Result<()> {
    let forest = load_model(&config)?;
    // Its tasks read the tables' files: an S3 data location's store, with `[storage.options]`, is theirs.
    if config.storage.data_url.starts_with("s3") {
        open_data(&config)?;
    }
    // Ballista's executor stops on SIGINT and SIGTERM itself, telling the scheduler and draining its
    // tasks first: the process leaves signals to it and never cancels this token.
    let executor = vitalflow_executor::start(&config.executor, &config.cluster, forest, CancellationToken::new())
        .await
        .context("starting the executor")?;
    write_ready_file(args.service.ready_file.as_deref(), &executor.ports)?;
    executor.join().await.context("running the executor")
}

/// `vitalflow ingest`.
pub async fn ingest(config: VitalflowConfig, args: IngestArgs) -> anyhow::Result<()> {
    // Before opening (and creating) the data location; `start` checks it again for its other callers.
    config.ingest.validate()?;
    let location = open_data(&config)?;
    let ingest = vitalflow_ingest::start(&config.kafka, &config.ingest, location, shutdown_on_signal())
        .await
        .context("starting ingest")?;
    write_ready_file(
        args.service.ready_file.as_deref(),
        &serde_json::json!({ "metrics": ingest.metrics.to_string() }),
    )?;
    ingest.join().await.context("running ingest")
}

/// `vitalflow simulate`.
pub async fn simulate(config: VitalflowConfig, args: SimulateArgs) -> anyhow::Result<()> {
    config.simulator.validate()?;
    ensure_topic(&config.kafka, config.kafka.partitions).await.context("creating the topic")?;
    let mut simulator =
        VitalsSimulator::with_settings(config.simulator.patients, config.simulator.seed, config.simulator.ward);
    let spec = ProduceSpec { count: args.count, rate_per_sec: config.simulator.rate_per_sec };
    let sent = produce_simulated(&config.kafka, &mut simulator, spec, shutdown_on_signal())
        .await
        .context("producing readings")?;
    eprintln!(
        "vitalflow simulate: {sent} readings acknowledged by {} on topic {}",
        config.kafka.brokers, config.kafka.topic
    );
    Ok(())
}

/// `vitalflow train`.
pub fn train(_config: VitalflowConfig, args: TrainArgs) -> anyhow::Result<()> {
    let defaults = ForestParams::default();
    let params = ForestParams {
        trees: args.trees.unwrap_or(defaults.trees),
        max_depth: args.max_depth.unwrap_or(defaults.max_depth),
        max_samples: args.max_samples.unwrap_or(defaults.max_samples),
        max_features: args.max_features.unwrap_or(defaults.max_features),
        high_weight_boost: args.high_weight_boost.unwrap_or(defaults.high_weight_boost),
        seed: args.seed,
        rubric_feature: !args.without_rubric_feature,
        ..defaults
    };
    if let Some(path) = &args.trend_into {
        return add_trend_model(path, &args);
    }
    if let Some(path) = &args.calibrate {
        return recalibrate(path, &args);
    }
    let train_rows = training_rows(args.rows, args.seed);
    if let Some(path) = &args.covers_of {
        return record_covers(path, &args.out, &train_rows, &params);
    }
    let test_rows = training_rows(args.test_rows, args.seed.wrapping_add(1));
    eprintln!(
        "training {} trees (depth ≤ {}, {} bootstrap rows and {} features per tree) on {} simulated rows",
        params.trees,
        params.max_depth,
        params.max_samples,
        params.max_features,
        train_rows.features.len()
    );
    let progress = indicatif::ProgressBar::new(params.trees as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} trees, {elapsed} elapsed, about {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Drawn on a terminal; when stderr is a pipe, one line per tree tells a log what is happening.
    let plain = progress.is_hidden();
    let version = args.version.clone().unwrap_or_else(|| format!("rf-{}", &train_rows.hash()[..12]));
    let mut file = train_forest(&train_rows, &params, &version, |done| {
        progress.set_position(done as u64);
        if plain {
            eprintln!("tree {done}/{} done", params.trees);
        }
    })?;
    progress.finish_and_clear();
    let forest = RiskForest::from_model(&file)?;
    let (model, rubric) = vitalflow_udf_model::train::evaluate(&forest, &test_rows);
    let importance = permutation_importance(&forest, &test_rows, args.seed);
    let named: serde_json::Map<String, serde_json::Value> = vitalflow_udf_model::schema::MODEL_FEATURES
        .iter()
        .zip(importance)
        .map(|(v, i)| (v.column().to_string(), i.into()))
        .collect();
    file.metrics = Some(serde_json::json!({
        "held_out_rows": test_rows.features.len(),
        "held_out_data_hash": test_rows.hash(),
        "forest": model,
        "rubric_on_measurements": rubric,
        "permutation_importance_macro_f1": named,
    }));
    let mut report = report_text(test_rows.features.len(), &model, &rubric, &importance);
    if !args.without_trend {
        let (trend, trend_report) = train_trend_model(&args, &version)?;
        file.trend = Some(Box::new(trend));
        report += &trend_report;
    }
    // Validated as any model is loaded, the trend model included.
    RiskForest::from_model(&file)?;
    std::fs::write(&args.out, serde_json::to_vec(&file)?).with_context(|| format!("writing {}", args.out.display()))?;
    println!("model {} written to {}", file.version, args.out.display());
    print!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, format!("model {}\n{report}", file.version))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The trend model of `vitalflow train` (its inputs: `trend::default_inputs`), calibrated, and its report.
fn train_trend_model(args: &TrainArgs, version: &str) -> anyhow::Result<(vitalflow_udf_model::ModelFile, String)> {
    use vitalflow_udf_model::train::{train_trend, trend_params, trend_rows};
    use vitalflow_udf_model::trend::{TrendSettings, default_inputs};

    let inputs = default_inputs();
    let rows = trend_rows(args.rows, args.seed, &inputs, TrendSettings::default())?;
    let params = trend_params(args.seed);
    eprintln!(
        "training the trend model: {} trees on {} readings of simulated patients ({} inputs)",
        params.trees,
        rows.values.len(),
        inputs.len()
    );
    let mut file = train_trend(&rows, &params, version, |done| eprintln!("trend tree {done}/{} done", params.trees))?;
    let report = calibrate_trend_model(&mut file, args)?;
    Ok((file, report))
}

/// Fits the trend model's calibration on a calibration ward (`--test-rows` readings, seed `--seed` + 2),
/// records its held-out figures (seed `--seed` + 1) in the file, and returns the report.
fn calibrate_trend_model(file: &mut vitalflow_udf_model::ModelFile, args: &TrainArgs) -> anyhow::Result<String> {
    use vitalflow_udf_model::train::{calibrate, evaluate_trend, reliability, trend_report_text, trend_rows};
    use vitalflow_udf_model::trend::{TrendInput, TrendSettings};

    let inputs: Vec<TrendInput> = file
        .features
        .iter()
        .map(|name| {
            TrendInput::parse(name)
                .with_context(|| format!("the trend model's input {name:?} is not one vitalflow derives"))
        })
        .collect::<anyhow::Result<_>>()?;
    let settings = TrendSettings::default();
    let seed = args.seed.wrapping_add(2);
    let ward = trend_rows(args.test_rows, seed, &inputs, settings)?;
    let test = trend_rows(args.test_rows, args.seed.wrapping_add(1), &inputs, settings)?;
    file.calibration = None;
    let forest = RiskForest::from_trend_model(file).context("the trend model")?;
    file.calibration = calibrate(
        &forest,
        &ward,
        format!("isotonic, {} readings of a calibration ward, seed {seed}", ward.values.len()),
    );
    let forest = RiskForest::from_trend_model(file).context("the calibrated trend model")?;
    let (model, measured) = evaluate_trend(&forest, &test);
    let (own, calibrated) = (reliability(&forest, &test, false), reliability(&forest, &test, true));
    file.metrics = Some(serde_json::json!({
        "held_out_rows": test.values.len(),
        "held_out_data_hash": test.hash(),
        "forest": model,
        "ward_score_on_measurements": measured,
        "reliability": own,
        "reliability_calibrated": calibrated,
    }));
    Ok(trend_report_text(test.values.len(), &model, &measured, &own, &calibrated))
}

/// `vitalflow train --calibrate`: the model file at `path` with its trend model calibrated again, its
/// trees unchanged, written to --out.
fn recalibrate(path: &std::path::Path, args: &TrainArgs) -> anyhow::Result<()> {
    let mut file = vitalflow_udf_model::ModelFile::read(path)?;
    if let Some(version) = &args.version {
        file.version.clone_from(version);
    }
    let version = file.version.clone();
    let Some(trend) = file.trend.as_deref_mut() else {
        anyhow::bail!(
            "{} has no trend model to calibrate (the six-vital model's P(High) is used as it comes)",
            path.display()
        );
    };
    trend.version = version;
    let report = calibrate_trend_model(trend, args)?;
    write_trained(&file, args, &report, &format!("trend model of {} calibrated now", path.display()))
}

/// `vitalflow train --trend-into`: the model file at `path` with a trend model trained now, its
/// six-vital model unchanged, written to --out.
fn add_trend_model(path: &std::path::Path, args: &TrainArgs) -> anyhow::Result<()> {
    let mut file = vitalflow_udf_model::ModelFile::read(path)?;
    if let Some(version) = &args.version {
        file.version.clone_from(version);
    }
    let (trend, report) = train_trend_model(args, &file.version)?;
    file.trend = Some(Box::new(trend));
    write_trained(&file, args, &report, &format!("six-vital model of {}, trend model trained now", path.display()))
}

/// Validates `file`, writes it to --out and the report to stdout and --report.
fn write_trained(
    file: &vitalflow_udf_model::ModelFile,
    args: &TrainArgs,
    report: &str,
    what: &str,
) -> anyhow::Result<()> {
    RiskForest::from_model(file)?;
    file.write(&args.out)?;
    println!("model {} written to {} ({what})", file.version, args.out.display());
    print!("{report}");
    if let Some(report_path) = &args.report {
        std::fs::write(report_path, format!("model {}\n{report}", file.version))
            .with_context(|| format!("writing {}", report_path.display()))?;
    }
    Ok(())
}

/// `vitalflow train --covers-of`: the model file at `path` with its node covers, written to `out`.
fn record_covers(
    path: &std::path::Path,
    out: &std::path::Path,
    rows: &vitalflow_udf_model::train::LabelledRows,
    params: &ForestParams,
) -> anyhow::Result<()> {
    let mut file = vitalflow_udf_model::ModelFile::read(path)?;
    if file.training.data_hash != rows.hash() {
        anyhow::bail!(
            "{}: its training rows hash to {}, the rows of --rows {} --seed {} to {}: give the rows it was trained on",
            path.display(),
            file.training.data_hash,
            rows.features.len(),
            params.seed,
            rows.hash()
        );
    }
    let boost = file.training.params.get("high_weight_boost").and_then(serde_json::Value::as_f64);
    let params =
        ForestParams { high_weight_boost: boost.map_or(params.high_weight_boost, |b| b as f32), ..params.clone() };
    vitalflow_udf_model::train::record_covers(&mut file, rows, &params)?;
    // Validated as any model is loaded: the covers add up.
    let forest = RiskForest::from_model(&file)?;
    file.write(out)?;
    eprintln!(
        "model {} written to {} with the node covers of its {} training rows ({} trees, unchanged)",
        file.version,
        out.display(),
        rows.features.len(),
        forest.tree_count()
    );
    Ok(())
}

/// `vitalflow predict`: the SQL functions over a file, as the ETL runs them.
pub async fn predict(config: VitalflowConfig, args: PredictArgs) -> anyhow::Result<()> {
    use datafusion::prelude::{SessionConfig, SessionContext};

    let forest = load_model(&config)?;
    // One partition: the output rows stay in the input's order.
    let mut ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    vitalflow_udf_model::udf::register_all(&mut ctx, &forest)?;
    let input = args.input.display().to_string();
    crate::input_file::register_file(&ctx, "input", &args.input).await?;
    let (sql, needs) = scoring_sql(&ctx, &forest, args.trend, args.explain).await?;
    let batches = ctx
        .sql(&sql)
        .await
        .with_context(|| format!("scoring {input} (it needs the columns {needs})"))?
        .collect()
        .await
        .with_context(|| format!("scoring {input}"))?;
    let sink: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = arrow::csv::Writer::new(std::io::BufWriter::new(sink));
    for batch in &batches {
        writer.write(batch).context("writing the scores")?;
    }
    Ok(())
}

/// The SQL `vitalflow predict` runs over the registered `input`, and the columns it needs: the
/// six-vital model's functions over the six vitals, or (`trend`) the ETL's scoring model's over its
/// arguments, an argument the input lacks passed as NULL (missing, as the trees route it).
async fn scoring_sql(
    ctx: &datafusion::prelude::SessionContext,
    forest: &std::sync::Arc<RiskForest>,
    trend: bool,
    explain: bool,
) -> anyhow::Result<(String, String)> {
    use arrow::datatypes::DataType;
    use vitalflow_udf_model::udf::{ExplainRisk, ForestRole};

    let (role, predict, probability, why) = if trend {
        (ForestRole::Trend, "predict_trend_risk", "trend_risk_probability", "explain_trend_risk")
    } else {
        (ForestRole::SixVitals, "predict_risk", "risk_probability", "explain_risk")
    };
    let scoring = role.of(forest);
    let input = ctx.table("input").await.context("the input")?;
    let names: Vec<String> = scoring.arguments().iter().map(|(name, _)| name.clone()).collect();
    let args = if trend {
        let present = |name: &str| input.schema().field_with_unqualified_name(name).is_ok();
        let arguments: Vec<String> = scoring
            .arguments()
            .iter()
            .map(|(name, data_type)| match (present(name), data_type) {
                (true, _) => name.clone(),
                (false, DataType::Boolean) => "CAST(NULL AS BOOLEAN)".into(),
                (false, DataType::Utf8) => "CAST(NULL AS VARCHAR)".into(),
                (false, _) => "CAST(NULL AS DOUBLE)".into(),
            })
            .collect();
        arguments.join(", ")
    } else {
        names.join(", ")
    };
    let why_columns = if explain {
        let fields = ExplainRisk::fields(&scoring);
        fields.iter().map(|f| format!(", {why}({args})['{0}'] AS why_{0}", f.name())).collect::<String>()
    } else {
        String::new()
    };
    let calibrated = if trend {
        format!(", calibrated_probability_high({probability}({args})['High']) AS p_high_calibrated")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {predict}({args}) AS risk, {probability}({args})['High'] AS p_high{calibrated}, \
         {probability}({args})['Medium'] AS p_medium, {probability}({args})['Low'] AS p_low{why_columns} FROM input"
    );
    let needs = if trend { format!("any of {}", names.join(", ")) } else { names.join(", ") };
    Ok((sql, needs))
}

/// `vitalflow evaluate`: the model against NEWS2 and the rubric at matched alert rates, on a simulated
/// held-out ward or on a recorded history with its events.
pub async fn evaluate(config: VitalflowConfig, args: EvaluateArgs) -> anyhow::Result<()> {
    use vitalflow_udf_model::evaluate::{EvaluationOptions, evaluate_recorded, render};

    let forest = load_model(&config)?;
    let option_defaults = EvaluationOptions::default();
    let options = EvaluationOptions {
        resamples: args.resamples.unwrap_or(option_defaults.resamples),
        alert_rates: args.alert_rates.clone().unwrap_or_else(|| option_defaults.alert_rates.clone()),
        lookback_hours: args.lookback_hours.unwrap_or(option_defaults.lookback_hours),
        episode_gap_hours: args.episode_gap_hours.unwrap_or(option_defaults.episode_gap_hours),
        // The simulated ward's seed seeds its resampling too.
        bootstrap_seed: args.seed.unwrap_or(option_defaults.bootstrap_seed),
    };
    let report = match (&args.history, &args.events) {
        (Some(history), Some(events)) => {
            let readings = crate::recorded::read_history(&config, &forest, history).await?;
            let recorded = crate::recorded::read_events(events).await?;
            eprintln!(
                "evaluating model {} on {} recorded readings of {history} with {} events of {}",
                forest.version(),
                readings.len(),
                recorded.len(),
                events.display()
            );
            let events_name = events.display().to_string();
            evaluate_recorded(&forest, readings, &recorded, history, &events_name, &options)
                .with_context(|| format!("evaluating on {history}"))?
        }
        _ => evaluate_simulated(&forest, &args, &options)?,
    };
    let json = render::json(&report)?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render::text(&report));
    }
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, render::html(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `vitalflow evaluate` on the simulated held-out ward its flags describe.
fn evaluate_simulated(
    forest: &RiskForest,
    args: &EvaluateArgs,
    options: &vitalflow_udf_model::evaluate::EvaluationOptions,
) -> anyhow::Result<vitalflow_udf_model::evaluate::report::EvaluationReport> {
    use vitalflow_udf_model::evaluate::evaluate_simulated_ward;
    use vitalflow_udf_model::evaluate::ward::{TRAINING_SEEDS, WardSettings};

    let defaults = WardSettings::default();
    let ward = WardSettings {
        patients: args.patients.unwrap_or(defaults.patients),
        hours: args.hours.unwrap_or(defaults.hours),
        seed: args.seed.unwrap_or(defaults.seed),
        seconds_per_reading: args.seconds_per_reading.unwrap_or(defaults.seconds_per_reading),
        episode_rate_per_hour: args.episode_rate.unwrap_or(defaults.episode_rate_per_hour),
        ill_at_start: args.ill_at_start.unwrap_or(defaults.ill_at_start),
    };
    if TRAINING_SEEDS.contains(&ward.seed) {
        eprintln!(
            "warning: seed {} is a training seed of `vitalflow train`; a held-out ward should use another",
            ward.seed
        );
    }
    eprintln!(
        "evaluating model {} on a simulated ward of {} patients × {} h (seed {}), a reading every {} s",
        forest.version(),
        ward.patients,
        ward.hours,
        ward.seed,
        ward.seconds_per_reading
    );
    evaluate_simulated_ward(forest, &ward, options).context("evaluating on the simulated ward")
}

/// `vitalflow bench ...`: the benchmarks are their own binary, `vitalflow-bench`, built with the `bench`
/// feature. Runs it with the same arguments when it sits beside this binary; otherwise says how to build it.
pub fn bench(cli_globals: Vec<std::ffi::OsString>, args: BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the vitalflow binary")?;
    let bench = exe.with_file_name(format!("vitalflow-bench{}", std::env::consts::EXE_SUFFIX));
    if !bench.is_file() {
        anyhow::bail!(
            "the benchmarks are a separate binary, built with the `bench` feature:\n  \
             cargo run --release --features bench --bin vitalflow-bench -- {}",
            args.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
    }
    let status = std::process::Command::new(&bench)
        .args(cli_globals)
        .args(&args.args)
        .status()
        .with_context(|| format!("starting {}", bench.display()))?;
    if !status.success() {
        anyhow::bail!("{} failed ({status})", bench.display());
    }
    Ok(())
}

/// Reads a password (hidden on a terminal, or a line from a pipe) and prints its `password_hash`.
pub fn hash_password() -> anyhow::Result<()> {
    let password = crate::password_input::read_password()?;
    let hash = vitalflow_scheduler::front_door::auth::hash_password(
        &password,
        vitalflow_scheduler::front_door::auth::PBKDF2_ITERATIONS,
    );
    println!("password_hash = \"{hash}\"");
    Ok(())
}
