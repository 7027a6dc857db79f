//! The ingest loop: one `select!` over Kafka records, a flush tick and the shutdown token.
//!
//! Records are buffered per owned partition ([`crate::assignment`]) and landed together in one Delta
//! commit per table ([`crate::landing`]). Kafka offsets are committed after the landing commits, but a
//! restart resumes from the Delta transactions in `vitals_raw`, not the Kafka commit, so a crash
//! anywhere loses and duplicates nothing: a range is either committed or read again from its first offset.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::runtime::RuntimeFlavor;
use tokio_util::sync::CancellationToken;

use crate::assignment::{Assignment, IngestContext, lock};
use crate::client::{client_config, kafka_err, kafka_source};
use crate::config::{IngestConfig, KafkaConfig};
use crate::dead_letter_topic::DeadLetterTopic;
use crate::decode::DecodeOptions;
use crate::error::{Error, Result};
use crate::events::{IngestStats, commit_failed, records_received};
use crate::landing::{Fault, Landing, LandingRange};
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::handoff::Handoff;

/// How long a shutdown waits for a failing store before leaving records uncommitted.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// How long a flush retries a failing store before ingest stops with the error. A flush does not poll
/// the consumer; past librdkafka's `max.poll.interval.ms` (5 min by default) the group would hand this
/// process's partitions on while it still holds them, and a late file could overlap the new owner's.
/// Stopping well before is safe: nothing of the flush is committed, and a restart resumes from the files.
const FLUSH_PATIENCE: Duration = Duration::from_secs(120);

/// The exactly-once tests' fault-injection hook (see [`crate::landing::FAULT_ENV`]).
pub use crate::landing::FAULT_ENV;

type IngestConsumer = StreamConsumer<IngestContext>;

/// Records taken from librdkafka's queue in one go after the loop wakes for one.
const DRAIN_RECORDS: usize = 4096;

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
    kafka.validate()?;
    let options = DecodeOptions::from_config(config)?;
    if config.dead_letter_topic == kafka.topic {
        return Err(Error::Config(format!(
            "ingest.dead_letter_topic must not be the vitals topic {:?}: dead letters would be read again",
            kafka.topic
        )));
    }
    let runtime = tokio::runtime::Handle::current();
    if runtime.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err(Error::Config("ingest needs a multi-threaded tokio runtime".into()));
    }
    // Positions are kept per Kafka cluster and topic id: a recreated topic's offsets start from 0 again.
    let (source, topic_id) = kafka_source(kafka).await?;
    tracing::info!(cluster_id = %source.cluster_id, topic = %source.topic, topic_id = ?topic_id, "Landing positions are those of this Kafka cluster and topic.");
    let landing = Arc::new(tokio::sync::Mutex::new(Landing::open(location, source, &topic_id, kafka).await?));
    let assignment = Arc::new(Mutex::new(Assignment::default()));
    let context = IngestContext {
        landing: landing.clone(),
        assignment: assignment.clone(),
        stats: stats.clone(),
        runtime,
        shutdown: shutdown.clone(),
        refusal: Mutex::new(None),
        refused: CancellationToken::new(),
    };
    let consumer: Arc<IngestConsumer> =
        Arc::new(consumer_config(kafka, config).create_with_context(context).map_err(kafka_err("create consumer"))?);
    consumer.subscribe(&[&kafka.topic]).map_err(kafka_err("subscribe"))?;
    let refused = consumer.context().refused.clone();
    tracing::info!(topic = %kafka.topic, group = %config.group_id, brokers = %kafka.brokers, "Ingest consuming.");

    let sinks = Sinks {
        landing,
        dead_letter_topic: DeadLetterTopic::new(kafka, config)?,
        fault: Fault::from_env(),
        handoff: Handoff::of(location),
    };
    let mut tick = tokio::time::interval(config.flush_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refused.cancelled() => {
                let reason = lock_refusal(&consumer);
                return Err(Error::Refused { brokers: kafka.brokers.clone(), reason });
            }
            _ = tick.tick() => {
                if lock(&assignment).buffered() > 0 {
                    flush(&consumer, &sinks, &stats, &assignment, &shutdown).await?;
                }
            }
            // An ETL in this process waits for rows: land what is held now rather than at the tick.
            _ = sinks.handoff.wait_etl_waiting(), if lock(&assignment).buffered() > 0 => {
                if sinks.handoff.take_etl_waiting() {
                    flush(&consumer, &sinks, &stats, &assignment, &shutdown).await?;
                }
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    let mut full = accept(&assignment, &stats, config, &options, &m);
                    drop(m);
                    // Take what librdkafka already holds without going round the select: its futures
                    // (timer, two tokens, the stream's waker) cost more than decoding a record.
                    for _ in 0..DRAIN_RECORDS {
                        if full {
                            break;
                        }
                        match consumer.recv().now_or_never() {
                            Some(Ok(m)) => full = accept(&assignment, &stats, config, &options, &m),
                            Some(Err(error)) => {
                                tracing::warn!(error = %error, "Kafka receive failed; retrying.");
                                break;
                            }
                            None => break,
                        }
                    }
                    if full || (lock(&assignment).buffered() > 0 && sinks.handoff.take_etl_waiting()) {
                        flush(&consumer, &sinks, &stats, &assignment, &shutdown).await?;
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
        flush(&consumer, &sinks, &stats, &assignment, &give_up).await?;
    }
    tracing::info!("Ingest stopped.");
    Ok(())
}

/// Buffers one received record; returns whether the buffers are full enough to flush.
fn accept(
    assignment: &Mutex<Assignment>,
    stats: &IngestStats,
    config: &IngestConfig,
    options: &DecodeOptions,
    m: &BorrowedMessage<'_>,
) -> bool {
    let mut a = lock(assignment);
    if a.push(m, options) {
        records_received(stats, 1);
    }
    a.buffered() >= config.flush_records
}

/// Why the brokers refused the consumer, as librdkafka said it.
fn lock_refusal(consumer: &IngestConsumer) -> String {
    let slot = consumer.context().refusal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    slot.clone().unwrap_or_default()
}

/// librdkafka consumer settings of ours that `[kafka.properties]` may override.
const CONSUMER_DEFAULTS: [(&str, &str); 2] = [
    // Statistics carry each partition's consumer lag (see IngestContext::stats).
    ("statistics.interval.ms", "1000"),
    // Once a partition's local queue holds `queued.min.messages`, librdkafka waits this long before it
    // fetches again (its default: 1 s). Working off a backlog, the loop emptied the queue well within that
    // and then sat idle ~60% of the time: `bench ingest` landed 117k records/s with 1 s, 235-280k with 10 ms.
    ("fetch.queue.backoff.ms", "10"),
];

/// The ingest consumer's librdkafka settings (`vitalflow bench ingest` reads its ceiling with them too).
pub fn consumer_config(kafka: &KafkaConfig, config: &IngestConfig) -> ClientConfig {
    let mut c = client_config(kafka);
    c.set("group.id", &config.group_id)
        // The tables' transactions say where to resume; our commit, after landing, is a courtesy.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in CONSUMER_DEFAULTS {
        if !kafka.properties.contains_key(key) {
            c.set(key, value);
        }
    }
    c
}

/// Where a flush writes, and where it may be made to abort.
struct Sinks {
    landing: Arc<tokio::sync::Mutex<Landing>>,
    dead_letter_topic: Option<DeadLetterTopic>,
    fault: Fault,
    /// Tells an ETL in this process that rows landed, and hears when it waits for them.
    handoff: Arc<Handoff>,
}

/// Lands every buffered partition, then commits. Store failures retry with backoff until they pass
/// or shutdown; nothing is committed for records not landed.
async fn flush(
    consumer: &Arc<IngestConsumer>,
    sinks: &Sinks,
    stats: &IngestStats,
    assignment: &Mutex<Assignment>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let started = Instant::now();
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let ranges =
        lock(assignment).take().into_iter().map(|p| LandingRange::build(p, now_ns)).collect::<Result<Vec<_>>>()?;
    let mut backoff = Duration::from_millis(100);
    let mut landing = sinks.landing.lock().await;
    let (event, taken) = loop {
        match landing.land(&ranges, sinks.dead_letter_topic.as_ref(), sinks.fault).await {
            Ok((mut event, taken)) => {
                event.latency = started.elapsed();
                break (event, taken);
            }
            Err(error) if error.is_retryable() && !shutdown.is_cancelled() && started.elapsed() < FLUSH_PATIENCE => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "Landing failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    };
    drop(landing);
    sinks.handoff.landed();
    event.emit(stats);
    sinks.fault.trigger(Fault::AfterLanding);

    let mut offsets = TopicPartitionList::new();
    {
        let mut a = lock(assignment);
        for (topic, partition, last) in &taken {
            a.landed(topic, *partition, *last);
        }
        for range in ranges.iter().filter(|r| !taken.iter().any(|(t, p, _)| *t == r.topic && *p == r.partition)) {
            let last = range.last;
            a.landed(&range.topic, range.partition, last);
            offsets
                .add_partition_offset(&range.topic, range.partition, Offset::Offset(last + 1))
                .map_err(kafka_err("build commit"))?;
        }
    }
    let committer = consumer.clone();
    let commit_started = Instant::now();
    match tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync)).await {
        Ok(Ok(())) => tracing::debug!(commit_ms = commit_started.elapsed().as_millis() as u64, "Offsets committed."),
        Ok(Err(error)) => commit_failed(stats, &error),
        Err(join) => commit_failed(stats, &join),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(properties: &[(&str, &str)]) -> ClientConfig {
        let kafka = KafkaConfig {
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..KafkaConfig::default()
        };
        consumer_config(&kafka, &IngestConfig::default())
    }

    #[test]
    fn consumer_defaults_apply_unless_the_user_sets_them() {
        let ours = settings(&[]);
        assert_eq!(ours.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(ours.get("statistics.interval.ms"), Some("1000"));
        assert_eq!(ours.get("enable.auto.commit"), Some("false"));

        let theirs = settings(&[("fetch.queue.backoff.ms", "250"), ("statistics.interval.ms", "5000")]);
        assert_eq!(theirs.get("fetch.queue.backoff.ms"), Some("250"));
        assert_eq!(theirs.get("statistics.interval.ms"), Some("5000"));
    }
}
