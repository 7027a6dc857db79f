//! `vitalflow bench ingest`: records/s landed in the Delta Lake tables by the real ingest path against the raw
//! consume rate of the same topic (the ceiling), in one run.
//!
//! One run: produce N simulated records (the seed's flat JSON, keyed by patient) to a fresh topic of a
//! configured Kafka, or of the embedded tansu broker of `up` when none is configured; then, each in a
//! child process of its own so that its CPU time is its own (the embedded broker stays in this one):
//! (a) a consumer with ingest's settings that reads every record and does nothing with it, and (b)
//! `source::run`, the ingest loop itself, landing into a temporary directory with a fresh group until
//! every record is in a file. Both are timed from their first record to their last, wall clock and
//! CPU seconds of the whole process (every librdkafka and runtime thread, from getrusage).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::KafkaConfig;
use vitalflow_ingest::client::{client_config, ensure_topic};
use vitalflow_ingest::events::IngestStats;
use vitalflow_ingest::source::consumer_config;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::simulate::VitalsSimulator;

use super::cli::{BenchIngestArgs, BenchIngestWorker};
use super::{BenchKafka, rows_per_sec};
use crate::config::VitalflowConfig;

/// Records/s per core landed by (b) in the previous table format (Parquet folders kept by vitalflow's own
/// conventions, before Delta Lake): the range of three runs measured 2026-11-24 with the same command,
/// 2,000,000 records, default flush, on the 2-core machine (docs/benchmarks.md).
const PREVIOUS_FORMAT_PER_CORE: (f64, f64) = (259_632.0, 304_077.0);

/// What a worker child prints as its one line on stdout.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerReport {
    records: u64,
    dead_lettered: u64,
    /// First record to last, wall clock.
    seconds: f64,
    /// CPU seconds of the whole worker process over the same span.
    cpu_seconds: f64,
}

/// Runs the benchmark, or one of its workers when `args.worker` is set.
pub async fn run(config: VitalflowConfig, args: &BenchIngestArgs, external_kafka: bool) -> anyhow::Result<()> {
    if let Some(worker) = args.worker {
        let report = match worker {
            BenchIngestWorker::Raw => raw_consume(&config, args).await?,
            BenchIngestWorker::Land => land(&config, args).await?,
        };
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    anyhow::ensure!(args.records > 0, "--records must be above 0");
    let mut config = config;
    let kafka = BenchKafka::open(&mut config, external_kafka, args.embedded, "vitalflow-bench").await?;
    let result = measure(&config, args, &kafka.name).await;
    kafka.close(&config.kafka).await;
    result
}

async fn measure(config: &VitalflowConfig, args: &BenchIngestArgs, broker_name: &str) -> anyhow::Result<()> {
    println!(
        "vitalflow bench ingest: {} records of the seed's flat JSON, {} partitions, {broker_name}",
        args.records, args.partitions
    );
    ensure_topic(&config.kafka, args.partitions).await.context("creating the benchmark topic")?;
    let started = Instant::now();
    let bytes = produce(&config.kafka, args.records).await?;
    let produce_s = started.elapsed().as_secs_f64();
    println!(
        "produced: {} records, {:.1} MB, in {produce_s:.1} s ({:.0} records/s)",
        args.records,
        bytes as f64 / 1e6,
        rows_per_sec(args.records, produce_s)
    );
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let config_file = work.path().join("vitalflow.toml");
    std::fs::write(&config_file, toml::to_string(config).context("writing the workers' configuration")?)?;
    let raw = run_worker(&config_file, args, BenchIngestWorker::Raw, &work.path().join("unused"))?;
    let landed = run_worker(&config_file, args, BenchIngestWorker::Land, &work.path().join("data"))?;
    if landed.records + landed.dead_lettered != args.records || raw.records != args.records {
        bail!(
            "expected {} records, the raw reader saw {} and ingest landed {} (+{} dead letters)",
            args.records,
            raw.records,
            landed.records,
            landed.dead_lettered
        );
    }
    let raw_rate = rows_per_sec(raw.records, raw.seconds);
    let land_rate = rows_per_sec(landed.records + landed.dead_lettered, landed.seconds);
    let raw_core = rows_per_sec(raw.records, raw.cpu_seconds);
    let land_core = rows_per_sec(landed.records + landed.dead_lettered, landed.cpu_seconds);
    println!(
        "(a) raw consume (rdkafka, ingest's settings, payload untouched): {:>10.0} records/s, {:>10.0} records/s per core ({:.2} s wall, {:.2} s CPU)",
        raw_rate, raw_core, raw.seconds, raw.cpu_seconds
    );
    println!(
        "(b) landed in Delta tables by `vitalflow ingest`'s loop:        {:>10.0} records/s, {:>10.0} records/s per core ({:.2} s wall, {:.2} s CPU; {} dead letters; flush {} records / {} ms)",
        land_rate,
        land_core,
        landed.seconds,
        landed.cpu_seconds,
        landed.dead_lettered,
        config.ingest.flush_records,
        config.ingest.flush_interval_ms
    );
    println!(
        "ratio (b)/(a): {:.2} of the raw consume rate, {:.2} of its per-core rate",
        land_rate / raw_rate,
        land_core / raw_core
    );
    let (low, high) = PREVIOUS_FORMAT_PER_CORE;
    println!(
        "previous table format (Parquet folders, 2026-11-24): (b) {low:.0}-{high:.0} records/s per core; this run's (b) is {:.2}-{:.2}× it",
        land_core / high,
        land_core / low
    );
    Ok(())
}

/// Starts this binary as a worker and reads its report.
fn run_worker(
    config_file: &Path,
    args: &BenchIngestArgs,
    worker: BenchIngestWorker,
    data: &Path,
) -> anyhow::Result<WorkerReport> {
    let exe = std::env::current_exe().context("finding the vitalflow-bench binary")?;
    let name = match worker {
        BenchIngestWorker::Raw => "raw",
        BenchIngestWorker::Land => "land",
    };
    let output = Command::new(exe)
        .arg("--config")
        .arg(config_file)
        .arg("--data")
        .arg(data)
        .args(["ingest", "--worker", name, "--records", &args.records.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting the {name} worker"))?;
    if !output.status.success() {
        bail!("the {name} worker failed ({})", output.status);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("reading the {name} worker's report {line:?}"))
}

/// CPU seconds (user + system) of this process so far, every thread included.
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A fresh group per worker, so that each reads the topic from its beginning.
fn fresh_group() -> String {
    format!("vitalflow-bench-{}", uuid::Uuid::new_v4().simple())
}

/// Worker (a): reads every record with ingest's consumer settings and does nothing with it.
async fn raw_consume(config: &VitalflowConfig, args: &BenchIngestArgs) -> anyhow::Result<WorkerReport> {
    let mut ingest = config.ingest.clone();
    ingest.group_id = fresh_group();
    let consumer: StreamConsumer = consumer_config(&config.kafka, &ingest).create().context("creating the consumer")?;
    consumer.subscribe(&[&config.kafka.topic])?;
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let mut start = None;
    while seen < args.records {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("no record for 60 s")?
            .context("receiving")?;
        if start.is_none() {
            start = Some((Instant::now(), process_cpu_seconds()));
        }
        bytes += m.payload().map_or(0, <[u8]>::len);
        seen += 1;
    }
    let (t0, cpu0) = start.unwrap_or((Instant::now(), process_cpu_seconds()));
    let report = WorkerReport {
        records: seen,
        dead_lettered: 0,
        seconds: t0.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds() - cpu0,
    };
    tracing::debug!(bytes, "Raw consume done.");
    Ok(report)
}

/// Worker (b): the ingest loop, landing until every record is in a file.
async fn land(config: &VitalflowConfig, args: &BenchIngestArgs) -> anyhow::Result<WorkerReport> {
    let mut ingest = config.ingest.clone();
    ingest.group_id = fresh_group();
    let location = DataLocation::open(&config.storage.data_url)?;
    let stats = Arc::new(IngestStats::default());
    let shutdown = CancellationToken::new();
    let task = {
        let (kafka, stats, shutdown) = (config.kafka.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move { vitalflow_ingest::source::run(&kafka, &ingest, &location, stats, shutdown).await })
    };
    let done =
        |s: &IngestStats| s.records_landed.load(Ordering::Relaxed) + s.records_dead_lettered.load(Ordering::Relaxed);
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while done(&stats) < args.records {
        if task.is_finished() || Instant::now() > deadline {
            shutdown.cancel();
            task.await??;
            bail!("ingest stopped after landing {} of {} records", done(&stats), args.records);
        }
        if start.is_none() && stats.records_in.load(Ordering::Relaxed) > 0 {
            start = Some((Instant::now(), process_cpu_seconds()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (t0, cpu0) = start.unwrap_or((Instant::now(), process_cpu_seconds()));
    let report = WorkerReport {
        records: stats.records_landed.load(Ordering::Relaxed),
        dead_lettered: stats.records_dead_lettered.load(Ordering::Relaxed),
        seconds: t0.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds() - cpu0,
    };
    shutdown.cancel();
    task.await??;
    Ok(report)
}

/// Counts failed deliveries (the producer retries transient ones itself).
#[derive(Default)]
struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result
            && self.failed.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::error!(error = %error, "Delivery failed.");
        }
    }
}

/// Produces `records` simulated readings as fast as the broker takes them; returns the payload bytes.
async fn produce(kafka: &KafkaConfig, records: u64) -> anyhow::Result<u64> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let producer: ThreadedProducer<DeliveryCounter> = client_config(&kafka)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(DeliveryCounter::default())
            .context("creating the producer")?;
        let mut simulator = VitalsSimulator::new(500, 42);
        let start = chrono::Utc::now();
        let mut bytes = 0u64;
        for i in 0..records {
            let reading = simulator.next_reading(start + chrono::Duration::milliseconds(i as i64));
            let payload = serde_json::to_vec(&reading)?;
            bytes += payload.len() as u64;
            let mut record = BaseRecord::to(&kafka.topic).key(&reading.patient_id).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((error, _)) => return Err(error).context("producing"),
                }
            }
        }
        producer.flush(Duration::from_secs(120)).context("waiting for deliveries")?;
        let failed = producer.context().failed.load(Ordering::Relaxed);
        anyhow::ensure!(failed == 0, "{failed} of {records} records were not delivered");
        Ok(bytes)
    })
    .await?
}
