//! The Kafka source: one loop over incoming records, a flush tick and the shutdown token.
//!
//! Records are buffered per partition and landed together: good ones as a `vitals_raw` file,
//! bad ones as a `dead_letters` file, both named after the partition's offset range. Offsets are
//! committed only after every file of the flush is written, so a crash before the commit re-reads
//! the records instead of losing them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::schema::table;

use crate::batch::{DeadLetter, SourcePosition, dead_letter_batch, vitals_raw_batch};
use crate::client::{client_config, kafka_err};
use crate::config::{IngestConfig, KafkaConfig};
use crate::decode::decode_record;
use crate::error::Result;
use crate::events::{BatchLanded, IngestStats, commit_failed, records_received};
use crate::landing::write_parquet;
use crate::store::DataLocation;

/// The stage name ingest writes into `dead_letters.stage`.
pub const STAGE: &str = "ingest";

/// How long a shutdown waits for a failing store before leaving records uncommitted.
const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(30);

/// One record as received, kept until it is landed.
#[derive(Debug, Clone)]
struct Received {
    offset: i64,
    payload: Option<Vec<u8>>,
}

/// Records buffered since the last flush, per (topic, partition), in offset order.
#[derive(Debug, Default)]
struct Pending {
    partitions: BTreeMap<(String, i32), Vec<Received>>,
    count: usize,
}

impl Pending {
    /// Buffers `m`; a record at or below the last buffered offset of its partition (a re-fetch
    /// after a rebalance) is already here and is not buffered twice.
    fn push(&mut self, m: &BorrowedMessage<'_>) -> bool {
        let records = self.partitions.entry((m.topic().to_string(), m.partition())).or_default();
        if records.last().is_some_and(|last| m.offset() <= last.offset) {
            return false;
        }
        records.push(Received { offset: m.offset(), payload: m.payload().map(<[u8]>::to_vec) });
        self.count += 1;
        true
    }
}

/// Object path (relative to the data location) of a partition's offset range in `table`. Files sit
/// flat in the table's folder: DataFusion lists a table without partition columns one level deep.
pub fn range_file(table: &str, prefix: &str, topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{table}/{prefix}{topic}-p{partition}-{first:020}-{last:020}.parquet")
}

/// The source range a landed file holds, read back from its name (see [`range_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedRange {
    /// Topic (with any prefix the file name had).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset in the file.
    pub first: i64,
    /// Last offset in the file.
    pub last: i64,
}

impl LandedRange {
    /// Parses a file name (the last path segment); `None` for files ingest did not write.
    pub fn parse(file_name: &str) -> Option<LandedRange> {
        let stem = file_name.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(4, '-');
        let last = parts.next()?.parse().ok()?;
        let first = parts.next()?.parse().ok()?;
        let partition = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let topic = parts.next()?.to_string();
        Some(LandedRange { topic, partition, first, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landed_file_names_round_trip() {
        let path = range_file("vitals_raw", "", "raw-patient", 2, 100, 199);
        assert_eq!(path, "vitals_raw/raw-patient-p2-00000000000000000100-00000000000000000199.parquet");
        let name = path.rsplit('/').next().unwrap();
        let range = LandedRange::parse(name).unwrap();
        assert_eq!(range, LandedRange { topic: "raw-patient".into(), partition: 2, first: 100, last: 199 });
        assert_eq!(LandedRange::parse("notes.parquet"), None);
        assert_eq!(LandedRange::parse("raw-patient-p2-1-2.csv"), None);
    }
}

/// Consumes `kafka.topic` and lands it under `location` until `shutdown` is cancelled; lands what is
/// buffered before it returns.
pub async fn run(
    kafka: &KafkaConfig,
    config: &IngestConfig,
    location: &DataLocation,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    let consumer: Arc<StreamConsumer> = Arc::new(
        client_config(kafka)
            .set("group.id", &config.group_id)
            // Our commit, after the files are written, is the only one.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(kafka_err("create consumer"))?,
    );
    consumer.subscribe(&[&kafka.topic]).map_err(kafka_err("subscribe"))?;
    tracing::info!(topic = %kafka.topic, group = %config.group_id, brokers = %kafka.brokers, "Ingest consuming.");

    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(config.flush_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if pending.count > 0 {
                    flush(&consumer, config, location, &stats, &mut pending, &shutdown).await?;
                }
            }
            received = consumer.recv() => match received {
                Ok(m) => {
                    if pending.push(&m) {
                        records_received(&stats, 1);
                    }
                    if pending.count >= config.flush_records {
                        flush(&consumer, config, location, &stats, &mut pending, &shutdown).await?;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Kafka receive failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    if pending.count > 0 {
        // Keep retrying a failing store for a while, then give up without committing: the records
        // are read again on the next start.
        let give_up = CancellationToken::new();
        let timer = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FINAL_FLUSH_PATIENCE).await;
            timer.cancel();
        });
        flush(&consumer, config, location, &stats, &mut pending, &give_up).await?;
    }
    tracing::info!("Ingest stopped.");
    Ok(())
}

/// Lands every buffered partition, then commits. Store failures retry with backoff until they pass
/// or shutdown; nothing is committed for records not landed.
async fn flush(
    consumer: &Arc<StreamConsumer>,
    config: &IngestConfig,
    location: &DataLocation,
    stats: &IngestStats,
    pending: &mut Pending,
    shutdown: &CancellationToken,
) -> Result<()> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let event = loop {
        match land(config, location, pending).await {
            Ok(mut event) => {
                event.latency = started.elapsed();
                break event;
            }
            Err(error) if error.is_retryable() && !shutdown.is_cancelled() => {
                tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "Landing failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    };
    event.emit(stats);

    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), records) in &pending.partitions {
        if let Some(last) = records.last() {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(last.offset + 1))
                .map_err(kafka_err("build commit"))?;
        }
    }
    pending.partitions.clear();
    pending.count = 0;
    let committer = consumer.clone();
    match tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => commit_failed(stats, &error),
        Err(join) => commit_failed(stats, &join),
    }
    Ok(())
}

/// Decodes and writes every buffered partition; the buffer stays intact until the commit.
async fn land(config: &IngestConfig, location: &DataLocation, pending: &Pending) -> Result<BatchLanded> {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let mut event = BatchLanded { landed: 0, dead_lettered: 0, files: 0, latency: Duration::ZERO };
    for ((topic, partition), records) in &pending.partitions {
        let (Some(first), Some(last)) = (records.first(), records.last()) else { continue };
        let mut good = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        for r in records {
            let position = SourcePosition { topic: topic.clone(), partition: *partition, offset: r.offset };
            match decode_record(r.payload.as_deref(), config.max_message_bytes) {
                Ok(reading) => good.push((position, reading)),
                Err(rejection) => bad.push(DeadLetter { position, payload: r.payload.clone().unwrap_or_default(), rejection }),
            }
        }
        if !good.is_empty() {
            let path = location.path(&range_file(table::VITALS_RAW, "", topic, *partition, first.offset, last.offset));
            write_parquet(location, &path, &[vitals_raw_batch(&good, now_ns)?]).await?;
            event.landed += good.len();
            event.files += 1;
        }
        if !bad.is_empty() {
            let prefix = format!("{STAGE}-");
            let path = location.path(&range_file(table::DEAD_LETTERS, &prefix, topic, *partition, first.offset, last.offset));
            write_parquet(location, &path, &[dead_letter_batch(&bad, STAGE, now_ns)?]).await?;
            event.dead_lettered += bad.len();
            event.files += 1;
        }
    }
    Ok(event)
}
