//! `vitalflow bench load`: the dashboards' queries from many clients at once while the pipeline ingests
//! at the seed's pace, and whether the ETL keeps up meanwhile.
//!
//! One run: a fresh topic on the configured Kafka (or the embedded broker), a fresh data directory, and
//! in this process the pipeline as `up` runs it (scheduler with the ETL driver and Flight SQL, one
//! executor, ingest). A producer sends `--patients` simulated patients' readings at `--rate` per second.
//! Once every patient is in `patient_latest`, `--clients` Flight SQL clients (one connection each) send
//! the queries of the Streamlit dashboard (clients/streamlit/app.py) and of the provisioned Grafana
//! dashboards, one after another with no pause, for `--seconds`; each query's time runs from the
//! request to its last batch. The ETL's lag (`lag_seconds` and `lag_records` of `etl_progress`, read by
//! the function that serves that table) is sampled every second throughout. The figures are printed
//! beside the goals ([`GOAL_QUERY_P99`], [`GOAL_LAG`], no errors); nothing is asserted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use vitalflow_scheduler::etl::progress::read_progress;
use vitalflow_udf_model::lake::DataLocation;

use super::BenchKafka;
use super::cli::BenchLoadArgs;
use super::e2e::{BenchPipeline, SendTimes, produce_paced};
use super::grafana_panels::{PanelQuery, panel_queries};
use crate::config::VitalflowConfig;

/// Every dashboard query's p99 must stay under this.
const GOAL_QUERY_P99: Duration = Duration::from_secs(1);

/// The ETL's lag must stay under this throughout.
const GOAL_LAG: Duration = Duration::from_secs(2);

/// Longest wait for every patient to reach `patient_latest` before the clients start.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Error messages kept for the report (the count covers all).
const ERRORS_KEPT: usize = 5;

/// The patient the patient views show (ids are `P` and three digits from P001).
const PATIENT: &str = "P007";

/// A query the clients send: how to write it at a moment.
#[derive(Clone)]
enum Query {
    /// Fixed SQL (the Streamlit dashboard's).
    Fixed(String),
    /// A Grafana panel's, expanded for the refresh's time range.
    Panel(PanelQuery),
}

impl Query {
    fn sql(&self) -> anyhow::Result<String> {
        match self {
            Query::Fixed(sql) => Ok(sql.clone()),
            Query::Panel(p) => p.expand(chrono::Utc::now(), PATIENT),
        }
    }
}

/// The Streamlit dashboard's queries, then every Grafana panel's.
fn dashboard_queries() -> anyhow::Result<Vec<(String, Query)>> {
    let streamlit = super::queries::queries(PATIENT)
        .into_iter()
        .map(|(name, sql, _)| (format!("streamlit: {name}"), Query::Fixed(sql)));
    let grafana = panel_queries()?.into_iter().map(|p| (p.name.clone(), Query::Panel(p)));
    Ok(streamlit.chain(grafana).collect())
}

/// What the clients saw, per query (by index in the query list).
#[derive(Default)]
struct Tally {
    times: BTreeMap<usize, Vec<Duration>>,
    errors: BTreeMap<usize, u64>,
    messages: Vec<String>,
}

/// Runs the benchmark.
pub async fn run(config: VitalflowConfig, args: &BenchLoadArgs, external_kafka: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.seconds > 0.0 && args.rate > 0.0 && args.patients > 0,
        "--clients, --seconds, --rate and --patients must be above 0"
    );
    let queries = dashboard_queries()?;
    let mut config = config;
    let kafka = BenchKafka::open(&mut config, external_kafka, args.embedded, "vitalflow-bench-load").await?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let result = measure(&mut config, args, &queries, &kafka.name, work.path()).await;
    kafka.close(&config.kafka).await;
    result
}

async fn measure(
    config: &mut VitalflowConfig,
    args: &BenchLoadArgs,
    queries: &[(String, Query)],
    broker_name: &str,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    // No sign-in: per-user queueing sees one user for all the clients. Maintenance runs as in `up`.
    let BenchPipeline { pipeline, location, flight_sql, shutdown } = BenchPipeline::start(config, work).await?;
    println!(
        "vitalflow bench load: {} clients × {:.0} s, {} queries each in turn; ingest of {} patients at {:.0} readings/s; \
         {broker_name}; ETL on {:?}; {} build",
        args.clients,
        args.seconds,
        queries.len(),
        args.patients,
        args.rate,
        config.etl.run_on,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );

    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (kafka, patients, rate, producing) = (config.kafka.clone(), args.patients, args.rate, producing.clone());
        // Long enough for the wait and the run; stopped when the clients are done.
        let seconds = READY_TIMEOUT.as_secs_f64() + args.seconds + 60.0;
        std::thread::spawn(move || {
            produce_paced(&kafka, patients, rate, seconds, &Arc::new(SendTimes::default()), &producing)
        })
    };
    let outcome = async {
        let waited = wait_for_patients(flight_sql, args.patients).await?;
        println!("every patient in patient_latest after {:.1} s; clients start", waited.as_secs_f64());
        let clients_done = CancellationToken::new();
        let lag =
            tokio::spawn(sample_lag(location.clone(), pipeline.scheduler.etl_stats.clone(), clients_done.clone()));
        let tally = run_clients(flight_sql, args, queries).await;
        clients_done.cancel();
        let lag = lag.await.context("the lag sampler stopped")??;
        Ok::<_, anyhow::Error>((tally, lag))
    }
    .await;
    producing.store(false, Ordering::Relaxed);
    let sent = producer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
    shutdown.cancel();
    pipeline.stop().await;
    let (tally, lag) = outcome?;
    println!("sent {} readings", sent?);
    report(args, queries, &tally, &lag);
    Ok(())
}

async fn connect(flight_sql: std::net::SocketAddr) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{flight_sql}"))?
        .connect()
        .await
        .context("connecting to Flight SQL")?;
    Ok(FlightSqlServiceClient::new(channel))
}

/// Runs `sql` and reads every batch.
async fn run_query(client: &mut FlightSqlServiceClient<Channel>, sql: String) -> anyhow::Result<Vec<RecordBatch>> {
    let info = client.execute(sql, None).await?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else { continue };
        batches.extend(client.do_get(ticket).await?.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}

/// Waits until `patient_latest` holds every patient; returns how long that took.
async fn wait_for_patients(flight_sql: std::net::SocketAddr, patients: usize) -> anyhow::Result<Duration> {
    let mut client = connect(flight_sql).await?;
    let started = Instant::now();
    loop {
        let batches = run_query(&mut client, "SELECT count(*) FROM patient_latest".into()).await?;
        let count = batches.first().map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
        if count >= patients as i64 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "{count} of {patients} patients in patient_latest after {} s",
            READY_TIMEOUT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The clients, each on its own connection, each starting at a different query.
async fn run_clients(flight_sql: std::net::SocketAddr, args: &BenchLoadArgs, queries: &[(String, Query)]) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let sqls: Arc<Vec<Query>> = Arc::new(queries.iter().map(|(_, q)| q.clone()).collect());
    let names: Arc<Vec<String>> = Arc::new(queries.iter().map(|(n, _)| n.clone()).collect());
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let (tally, sqls, names) = (tally.clone(), sqls.clone(), names.clone());
        clients.push(tokio::spawn(async move {
            let note_error = |q: usize, e: &anyhow::Error| {
                if let Ok(mut t) = tally.lock() {
                    *t.errors.entry(q).or_default() += 1;
                    if t.messages.len() < ERRORS_KEPT {
                        t.messages.push(format!("client {i}, {}: {e:#}", names[q]));
                    }
                }
            };
            let mut client = match connect(flight_sql).await {
                Ok(c) => c,
                Err(e) => return note_error(0, &e),
            };
            let mut n = i;
            while Instant::now() < deadline {
                let q = n % sqls.len();
                n += 1;
                let started = Instant::now();
                let answer = match sqls[q].sql() {
                    Ok(sql) => run_query(&mut client, sql).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(_) => {
                        if let Ok(mut t) = tally.lock() {
                            t.times.entry(q).or_default().push(started.elapsed());
                        }
                    }
                    Err(e) => note_error(q, &e),
                }
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    Arc::try_unwrap(tally).ok().and_then(|m| m.into_inner().ok()).unwrap_or_default()
}

/// One sample of the ETL's lag.
struct LagSample {
    seconds: f64,
    records: u64,
}

/// Samples `etl_progress`'s lag every second until `stop` (the clients are done).
async fn sample_lag(
    location: DataLocation,
    stats: Arc<vitalflow_scheduler::etl::EtlStats>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<LagSample>> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(samples),
            _ = tick.tick() => {}
        }
        let progress = read_progress(&location, Some(stats.as_ref())).await.context("reading etl_progress")?;
        samples.push(LagSample { seconds: progress.lag_seconds.unwrap_or(0.0), records: progress.lag_records });
    }
}

/// `p` of sorted `v`, in ms.
fn percentile_ms(v: &[Duration], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

fn report(args: &BenchLoadArgs, queries: &[(String, Query)], tally: &Tally, lag: &[LagSample]) {
    let goal_ms = GOAL_QUERY_P99.as_secs_f64() * 1e3;
    println!(
        "{:<52} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}  goal p99 ≤ {goal_ms:.0} ms",
        "query", "runs", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let (mut runs, mut errors, mut missed) = (0usize, 0u64, 0usize);
    for (q, (name, _)) in queries.iter().enumerate() {
        let mut times = tally.times.get(&q).cloned().unwrap_or_default();
        times.sort();
        let errs = tally.errors.get(&q).copied().unwrap_or(0);
        runs += times.len();
        errors += errs;
        if times.is_empty() {
            missed += 1;
            println!("{name:<52} {:>6} {errs:>6}   no answer", 0);
            continue;
        }
        let p99 = percentile_ms(&times, 0.99);
        missed += usize::from(p99 > goal_ms);
        println!(
            "{name:<52} {:>6} {errs:>6} {:>8.0} {:>8.0} {p99:>8.0} {:>8.0}  {}",
            times.len(),
            percentile_ms(&times, 0.5),
            percentile_ms(&times, 0.9),
            percentile_ms(&times, 1.0),
            if p99 <= goal_ms { "met" } else { "MISSED" }
        );
    }
    println!(
        "all: {runs} queries ({:.1}/s), {errors} errors (goal 0: {}); {missed} of {} queries over the p99 goal",
        runs as f64 / args.seconds,
        if errors == 0 { "met" } else { "MISSED" },
        queries.len()
    );
    for m in &tally.messages {
        println!("  error: {m}");
    }
    let mut seconds: Vec<f64> = lag.iter().map(|s| s.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let max_records = lag.iter().map(|s| s.records).max().unwrap_or(0);
    if let (Some(median), Some(max)) = (seconds.get(seconds.len() / 2), seconds.last()) {
        println!(
            "ETL lag (etl_progress, {} samples, 1/s): median {median:.1} s, max {max:.1} s, max {max_records} readings waiting; goal ≤ {} s throughout: {}",
            seconds.len(),
            GOAL_LAG.as_secs(),
            if *max <= GOAL_LAG.as_secs_f64() { "met" } else { "MISSED" }
        );
    } else {
        println!("ETL lag: no sample");
    }
}
