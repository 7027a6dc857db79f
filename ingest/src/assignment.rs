//! The partitions this process owns, the records buffered for each, and the rebalance callbacks that
//! keep both right when the group moves partitions between processes.
//!
//! - **Assigned**: before librdkafka starts fetching, each new partition's position is set to one past
//!   the last offset landed in `vitals_raw` ([`vitalflow_udf_model::lake::landed`]), not to the
//!   committed offset: the table is the truth, the commit a courtesy that may lag it after a crash.
//! - **Revoked**: records buffered for the partition are dropped, unlanded and uncommitted; the next
//!   owner reads them again from the landed position. Callbacks run inside the consumer's poll, which
//!   the ingest loop never runs during a flush, so a revocation never meets a half-landed range, and the
//!   group does not hand the partition on before this process has rejoined, i.e. after the callback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use tokio_util::sync::CancellationToken;

use crate::batch::{PartitionRange, RangeBatch};
use crate::decode::DecodeOptions;
use crate::events::IngestStats;
use crate::landing::Landing;

/// An owned partition: the next offset it accepts and what is decoded since the last flush.
#[derive(Debug, Default)]
struct Owned {
    /// Offsets below this have landed (in files) and are never buffered again.
    next: i64,
    pending: Option<RangeBatch>,
}

/// Owned partitions (by topic, then partition) and their buffers, shared by the ingest loop and the
/// rebalance callbacks.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    owned: BTreeMap<String, BTreeMap<i32, Owned>>,
    buffered: usize,
}

impl Assignment {
    /// Decodes and buffers `m` if its partition is owned and the offset is new; a re-delivery of a
    /// landed or buffered offset is not buffered twice.
    pub(crate) fn push(&mut self, m: &BorrowedMessage<'_>, options: &DecodeOptions) -> bool {
        let Some(owned) = self.owned.get_mut(m.topic()).and_then(|t| t.get_mut(&m.partition())) else { return false };
        let offset = m.offset();
        if offset < owned.next || owned.pending.as_ref().is_some_and(|p| offset <= p.last) {
            return false;
        }
        let range =
            owned.pending.get_or_insert_with(|| RangeBatch::new(offset, m.timestamp().to_millis().unwrap_or(0)));
        range.push(m.topic(), m.partition(), offset, m.payload(), options);
        self.buffered += 1;
        true
    }

    /// Records buffered across partitions.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes every partition's buffer for a flush.
    pub(crate) fn take(&mut self) -> Vec<PartitionRange> {
        self.buffered = 0;
        self.owned
            .iter_mut()
            .flat_map(|(topic, partitions)| partitions.iter_mut().map(move |(p, o)| (topic, *p, o)))
            .filter_map(|(topic, partition, o)| {
                o.pending.take().map(|range| PartitionRange { topic: topic.clone(), partition, range })
            })
            .collect()
    }

    /// Marks `[.., last]` of a partition as landed.
    pub(crate) fn landed(&mut self, topic: &str, partition: i32, last: i64) {
        if let Some(owned) = self.owned.get_mut(topic).and_then(|t| t.get_mut(&partition)) {
            owned.next = owned.next.max(last + 1);
        }
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned.get(topic).is_some_and(|t| t.contains_key(&partition))
    }

    fn assign(&mut self, topic: &str, partition: i32, next: i64) {
        self.owned.entry(topic.to_string()).or_default().insert(partition, Owned { next, pending: None });
    }

    /// Forgets a partition; returns how many buffered records were dropped.
    fn revoke(&mut self, topic: &str, partition: i32) -> usize {
        let removed = self.owned.get_mut(topic).and_then(|t| t.remove(&partition));
        let dropped = removed.and_then(|o| o.pending).map_or(0, |r| r.records);
        self.buffered -= dropped;
        dropped
    }
}

/// Locks the shared assignment; a panic elsewhere cannot leave it half-updated (every update is one
/// map operation), so a poisoned lock is still usable.
pub(crate) fn lock(assignment: &Mutex<Assignment>) -> MutexGuard<'_, Assignment> {
    assignment.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The consumer's context: positions new partitions from what has landed, drops revoked buffers.
pub struct IngestContext {
    pub(crate) landing: Arc<tokio::sync::Mutex<Landing>>,
    pub(crate) assignment: Arc<Mutex<Assignment>>,
    pub(crate) stats: Arc<IngestStats>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) shutdown: CancellationToken,
    /// Set, and `refused` cancelled, when the brokers refuse this client's credentials or TLS.
    pub(crate) refusal: Mutex<Option<String>>,
    pub(crate) refused: CancellationToken,
}

impl ClientContext for IngestContext {
    /// librdkafka's global errors. It retries authentication and TLS failures forever; a consumer
    /// that can never read must stop with the reason instead of waiting silently.
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(refusal) = crate::client::refusal_reason(&error, reason) {
            let mut slot = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(refusal);
            self.refused.cancel();
        } else {
            tracing::error!(error = %error, reason, "Kafka client error.");
        }
    }

    /// librdkafka's periodic statistics: keeps the lag of owned partitions for `/metrics`.
    fn stats(&self, statistics: Statistics) {
        let assignment = lock(&self.assignment);
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if p.consumer_lag >= 0 && assignment.owns(topic, *partition) {
                    self.stats.set_lag(topic, *partition, Some(p.consumer_lag));
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
                for e in tpl.elements() {
                    by_topic.entry(e.topic().to_string()).or_default().insert(e.partition());
                }
                // Only the configured topic is subscribed: its positions are the landing's.
                let mut positions = BTreeMap::new();
                let mut unknown = BTreeSet::new();
                for (topic, partitions) in &by_topic {
                    match self.landed_positions(topic, partitions) {
                        Some(landed) => {
                            positions.extend(landed.into_iter().map(|(p, next)| ((topic.clone(), p), next)))
                        }
                        None => unknown.extend(partitions.iter().map(|p| (topic.clone(), *p))),
                    }
                }
                let mut assignment = lock(&self.assignment);
                for mut e in tpl.elements() {
                    let key = (e.topic().to_string(), e.partition());
                    if unknown.contains(&key) {
                        // Position unknown (shutting down): not owned, so nothing of it is buffered.
                        continue;
                    }
                    let next = positions.get(&key).copied();
                    // Nothing landed yet: the partition's beginning, whatever was committed.
                    let offset = next.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(error) = e.set_offset(offset) {
                        tracing::error!(error = %error, topic = %key.0, partition = key.1, "Cannot position partition.");
                    }
                    assignment.assign(&key.0, key.1, next.unwrap_or(0));
                }
                self.stats.rebalanced(tpl.count(), 0);
                self.stats.joined();
                tracing::info!(partitions = ?positions_for_log(&by_topic, &positions), "Partitions assigned; resuming after what has landed.");
            }
            Rebalance::Revoke(tpl) => {
                let mut assignment = lock(&self.assignment);
                let mut dropped = 0;
                for e in tpl.elements() {
                    dropped += assignment.revoke(e.topic(), e.partition());
                    self.stats.set_lag(e.topic(), e.partition(), None);
                }
                self.stats.rebalanced(0, dropped);
                tracing::info!(
                    partitions = tpl.count(),
                    dropped_unlanded = dropped,
                    "Partitions revoked; their next owner reads unlanded records again."
                );
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "Rebalance failed."),
        }
    }
}

impl IngestContext {
    /// Reads the landed positions, retrying a failing store: consuming a partition from a guessed
    /// position would read records again for nothing. Called on the consumer's polling thread (a
    /// runtime worker), never during a flush (the loop does not poll then).
    fn landed_positions(&self, topic: &str, partitions: &BTreeSet<i32>) -> Option<BTreeMap<i32, i64>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let listed = tokio::task::block_in_place(|| {
                self.runtime.block_on(async {
                    let mut landing = self.landing.lock().await;
                    if landing.source().topic != topic {
                        return Ok(BTreeMap::new());
                    }
                    landing.resume_positions(partitions).await
                })
            });
            match listed {
                Ok(positions) => return Some(positions),
                Err(error) if !self.shutdown.is_cancelled() => {
                    tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64, "Reading landed positions failed; retrying before consuming.");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(error) => {
                    tracing::warn!(error = %error, "Reading landed positions failed during shutdown.");
                    return None;
                }
            }
        }
    }
}

fn positions_for_log(
    by_topic: &BTreeMap<String, BTreeSet<i32>>,
    positions: &BTreeMap<(String, i32), i64>,
) -> Vec<String> {
    by_topic
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t, *p)))
        .map(|(t, p)| match positions.get(&(t.clone(), p)) {
            Some(next) => format!("{t}/{p}@{next}"),
            None => format!("{t}/{p}@beginning"),
        })
        .collect()
}
