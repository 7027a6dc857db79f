//! The ingest loop: one `select!` over Kafka records, a flush tick and the shutdown token.
//!
//! Records are buffered per owned partition ([`crate::assignment`]) and landed together: bad ones as a
//! `dead_letters` file, then good ones as a `vitals_raw` file, both named after the partition's offset
//! range ([`crate::landed`]). Offsets are committed only after every file of the flush is written, but
//! a restart resumes from the landed files, not the commit, so a crash anywhere loses and duplicates
//! nothing: a range is either complete (its `vitals_raw` file exists) or read again from its first offset.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::RuntimeFlavor;
use tokio_util::sync::CancellationToken;

use crate::assignment::{Assignment, IngestContext, PartitionRange, lock};
use crate::batch::{DeadLetter, SourcePosition, dead_letter_batch, vitals_raw_batch};
use crate::client::{client_config, kafka_err};
use crate::config::{IngestConfig, KafkaConfig};
use crate::decode::decode_record;
use crate::error::{Error, Result};
use crate::events::{BatchLanded, IngestStats, commit_failed, records_received};
pub use crate::landed::{LandedRange, STAGE, range_file};
use crate::landed::{dead_letter_file, vitals_raw_file};
use crate::landing::write_parquet;
use crate::store::DataLocation;

/// How long a shutdown waits for a failing store before leaving records uncommitted.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// How long a flush retries a failing store before ingest stops with the error. A flush does not poll
/// the consumer; past librdkafka's `max.poll.interval.ms` (5 min by default) the group would hand this
/// process's partitions on while it still holds them, and a late file could overlap the new owner's.
/// Stopping well before is safe: nothing of the flush is committed, and a restart resumes from the files.
const FLUSH_PATIENCE: Duration = Duration::from_secs(120);

/// Fault-injection hook for the exactly-once tests. `after-landing`: abort after a flush's files are
/// written and before the commit. `between-files`: abort after a range's dead letters are written and
/// before its `vitals_raw` file. Both are windows a crash-safe ingest must survive without a duplicate.
pub const FAULT_ENV: &str = "VITALFLOW_FAULT_INGEST";

type IngestConsumer = StreamConsumer<IngestContext>;

/// Consumes `kafka.topic` and lands it under `location` until `shutdown` is cancelled; lands what is
/// buffered before it returns. Needs a multi-threaded tokio runtime: the rebalance callback lists the
/// landed files from inside the consumer's poll.
pub async fn run(
    kafka: &KafkaConfig,
    config: &IngestConfig,
    location: &DataLocation,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    let runtime = tokio::runtime::Handle::current();
    if runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err(Error::Config("ingest needs a multi-threaded tokio runtime".into()));
    }
    let assignment = Arc::new(Mutex::new(Assignment::default()));
    let context = IngestContext {
        location: location.clone(),
        assignment: assignment.clone(),
        stats: stats.clone(),
        runtime,
        shutdown: shutdown.clone(),
    };
    let consumer: Arc<IngestConsumer> = Arc::new(
        client_config(kafka)
            .set("group.id", &config.group_id)
            // Landed files say where to resume; our commit, after the files are written, is a courtesy.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Statistics carry each partition's consumer lag (see IngestContext::stats).
            .set("statistics.interval.ms", kafka.properties.get("statistics.interval.ms").map_or("1000", String::as_str))
            .create_with_context(context)
            .map_err(kafka_err("create consumer"))?,
    );
    consumer.subscribe(&[&kafka.topic]).map_err(kafka_err("subscribe"))?;
    tracing::info!(topic = %kafka.topic, group = %config.group_id, brokers = %kafka.brokers, "Ingest consuming.");

    let fault = Fault::from_env();
    let mut tick = tokio::time::interval(config.flush_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if lock(&assignment).buffered() > 0 {
                    flush(&consumer, config, location, &stats, &assignment, fault, &shutdown).await?;
                }
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    let full = {
                        let mut a = lock(&assignment);
                        if a.push(&m) {
                            records_received(&stats, 1);
                        }
                        a.buffered() >= config.flush_records
                    };
                    drop(m);
                    if full {
                        flush(&consumer, config, location, &stats, &assignment, fault, &shutdown).await?;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Kafka receive failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    if lock(&assignment).buffered() > 0 {
        // Keep retrying a failing store for a while, then give up without committing: the records
        // are read again on the next start.
        let give_up = CancellationToken::new();
        let timer = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FINAL_FLUSH_PATIENCE).await;
            timer.cancel();
        });
        flush(&consumer, config, location, &stats, &assignment, fault, &give_up).await?;
    }
    tracing::info!("Ingest stopped.");
    Ok(())
}

/// Where [`FAULT_ENV`] makes the process abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    AfterLanding,
    BetweenFiles,
}

impl Fault {
    fn from_env() -> Fault {
        match std::env::var(FAULT_ENV).as_deref() {
            Ok("after-landing") => Fault::AfterLanding,
            Ok("between-files") => Fault::BetweenFiles,
            _ => Fault::None,
        }
    }

    fn trigger(self, at: Fault) {
        if self == at {
            tracing::warn!(fault = ?at, "{FAULT_ENV}: aborting.");
            std::process::abort();
        }
    }
}

/// Lands every buffered partition, then commits. Store failures retry with backoff until they pass
/// or shutdown; nothing is committed for records not landed.
async fn flush(
    consumer: &Arc<IngestConsumer>,
    config: &IngestConfig,
    location: &DataLocation,
    stats: &IngestStats,
    assignment: &Mutex<Assignment>,
    fault: Fault,
    shutdown: &CancellationToken,
) -> Result<()> {
    let started = Instant::now();
    let ranges = lock(assignment).take();
    let mut backoff = Duration::from_millis(100);
    let event = loop {
        match land(config, location, &ranges, fault).await {
            Ok(mut event) => {
                event.latency = started.elapsed();
                break event;
            }
            Err(error) if error.is_retryable() && !shutdown.is_cancelled() && started.elapsed() < FLUSH_PATIENCE => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "Landing failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    };
    event.emit(stats);
    fault.trigger(Fault::AfterLanding);

    let mut offsets = TopicPartitionList::new();
    {
        let mut a = lock(assignment);
        for range in &ranges {
            if let Some(last) = range.records.last() {
                a.landed(&range.topic, range.partition, last.offset);
                offsets
                    .add_partition_offset(&range.topic, range.partition, Offset::Offset(last.offset + 1))
                    .map_err(kafka_err("build commit"))?;
            }
        }
    }
    let committer = consumer.clone();
    match tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => commit_failed(stats, &error),
        Err(join) => commit_failed(stats, &join),
    }
    Ok(())
}

/// Decodes and writes every range: dead letters first, then the `vitals_raw` file (even when empty:
/// its presence marks the range complete).
async fn land(config: &IngestConfig, location: &DataLocation, ranges: &[PartitionRange], fault: Fault) -> Result<BatchLanded> {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let mut event = BatchLanded { landed: 0, dead_lettered: 0, files: 0, by_reason: Default::default(), latency: Duration::ZERO };
    for PartitionRange { topic, partition, records } in ranges {
        let (Some(first), Some(last)) = (records.first(), records.last()) else { continue };
        let mut good = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        for r in records {
            let position = SourcePosition { topic: topic.clone(), partition: *partition, offset: r.offset };
            match decode_record(r.payload.as_deref(), config.max_message_bytes) {
                Ok(reading) => good.push((position, reading)),
                Err(rejection) => {
                    event.by_reason[rejection.code.index()] += 1;
                    bad.push(DeadLetter { position, payload: r.payload.clone().unwrap_or_default(), rejection });
                }
            }
        }
        if !bad.is_empty() {
            let path = location.path(&dead_letter_file(topic, *partition, first.offset, last.offset));
            write_parquet(location, &path, &[dead_letter_batch(&bad, STAGE, now_ns)?]).await?;
            event.dead_lettered += bad.len();
            event.files += 1;
            fault.trigger(Fault::BetweenFiles);
        }
        let path = location.path(&vitals_raw_file(topic, *partition, first.offset, last.offset, first.timestamp_ms));
        write_parquet(location, &path, &[vitals_raw_batch(&good, now_ns)?]).await?;
        event.landed += good.len();
        event.files += 1;
    }
    Ok(event)
}
