//! Landing a flush: each buffered partition range becomes a data file of `dead_letters` (its bad
//! records), of `patient_movements` (its movements) and of `vitals_raw` (its readings), and each table
//! gets one commit per flush carrying, per partition, the Delta transaction that records the range's
//! last offset ([`vitalflow_udf_model::lake::landed`]).
//!
//! Before committing, the transactions in the table are read again: a range whose offsets another
//! writer already landed (this process was a zombie whose partition moved on, or a replay) is not
//! committed, and a commit racing such a writer is refused by Delta's conflict check, so nothing is
//! ever landed twice. `dead_letters` is committed first, then `patient_movements`, and `vitals_raw`
//! last: its transaction marks the range complete. A crash before it replays the range, and the dead
//! letters and movements already recorded are filtered out by their own tables' transactions.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use vitalflow_udf_model::lake::names::{INGEST_STAGE, KafkaSource, range_prefix};
use vitalflow_udf_model::lake::parquet_file::{DataFile, write_data_file};
use vitalflow_udf_model::lake::table::{LakeTable, Transaction};
use vitalflow_udf_model::lake::{DataLocation, LakeError};
use vitalflow_udf_model::schema::{DEAD_LETTERS_SCHEMA, PATIENT_MOVEMENTS_SCHEMA, VITALS_RAW_SCHEMA, table};

use crate::batch::{DeadLetter, PartitionRange, dead_letter_batch};
use crate::client::read_topic_id;
use crate::config::KafkaConfig;
use crate::dead_letter_topic::DeadLetterTopic;
use crate::decode::ReasonCode;
use crate::error::{Error, Result};
use crate::events::BatchLanded;
use crate::topic_id::TopicId;

/// Fault-injection hook for the exactly-once tests. `after-landing`: abort after a flush's commits and
/// before the Kafka offset commit. `between-files`: in a flush with dead letters, abort after their
/// commit (and the `patient_movements` one) and before the `vitals_raw` one. Both are windows a crash-safe ingest must survive without a duplicate.
pub const FAULT_ENV: &str = "VITALFLOW_FAULT_INGEST";

/// Where a flush aborts in the exactly-once tests (see [`FAULT_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// After both commits, before the Kafka offset commit.
    AfterLanding,
    /// After the `dead_letters` and `patient_movements` commits, before the `vitals_raw` one.
    BetweenFiles,
}

impl Fault {
    /// The fault `FAULT_ENV` asks for.
    pub(crate) fn from_env() -> Fault {
        match std::env::var(FAULT_ENV).as_deref() {
            Ok("after-landing") => Fault::AfterLanding,
            Ok("between-files") => Fault::BetweenFiles,
            _ => Fault::None,
        }
    }

    pub(crate) fn trigger(self, at: Fault) {
        if self == at {
            tracing::warn!(fault = ?at, "{}: aborting.", FAULT_ENV);
            std::process::abort();
        }
    }
}

/// The three tables ingest lands in, and the Kafka source they record positions of.
pub struct Landing {
    location: DataLocation,
    source: KafkaSource,
    /// Set while the topic's id is still to be read (the topic did not exist at start): it is read
    /// when partitions are first assigned, before any position is looked up or landed.
    topic_id_pending: Option<KafkaConfig>,
    vitals_raw: LakeTable,
    dead_letters: LakeTable,
    patient_movements: LakeTable,
    /// Each partition's last landed offset per table, as last read or committed by this process; valid
    /// while the table's version is the one it was read at (no other writer since).
    known: Known,
}

/// Positions read from a table's transactions, and the table version they are true at.
#[derive(Debug, Default)]
struct Known {
    raw: (i64, std::collections::HashMap<i32, Option<i64>>),
    dead: (i64, std::collections::HashMap<i32, Option<i64>>),
    movements: (i64, std::collections::HashMap<i32, Option<i64>>),
}

/// The last offset of `partition` landed in `table`: from `cache` while the table has not moved since,
/// else read from its transactions (reading them replays part of the log: avoided on every flush).
async fn landed_in(
    table: &LakeTable,
    cache: &mut (i64, std::collections::HashMap<i32, Option<i64>>),
    source: &KafkaSource,
    partition: i32,
) -> Result<Option<i64>> {
    if cache.0 != table.version() {
        *cache = (table.version(), Default::default());
    }
    if let Some(known) = cache.1.get(&partition) {
        return Ok(*known);
    }
    let last = table.txn_version(&source.app_id(partition)).await?;
    cache.1.insert(partition, last);
    Ok(last)
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landing").field("source", &self.source).finish_non_exhaustive()
    }
}

/// A partition's range ready to write: its batches are built once, so a retried flush writes the same.
pub(crate) struct LandingRange {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) first: i64,
    pub(crate) last: i64,
    rows: RecordBatch,
    /// The patient movements.
    movements: RecordBatch,
    /// The bad records, for the `dead_letters` table and the dead-letter topic.
    dead: Vec<DeadLetter>,
    by_reason: [usize; ReasonCode::ALL.len()],
}

impl LandingRange {
    pub(crate) fn build(p: PartitionRange, now_ns: i64) -> Result<LandingRange> {
        let PartitionRange { topic, partition, mut range } = p;
        Ok(LandingRange {
            rows: range.rows.finish(&topic, partition, now_ns)?,
            movements: range.movements.finish(&topic, partition, now_ns)?,
            topic,
            partition,
            first: range.first,
            last: range.last,
            dead: range.dead,
            by_reason: range.by_reason,
        })
    }
}

impl Landing {
    /// Opens (or creates) `vitals_raw`, `patient_movements` and `dead_letters` under `location` for `source`; `topic_id` is
    /// what the brokers said of the topic's id when `source` was read (`Absent`: read it from `kafka` later).
    pub async fn open(
        location: &DataLocation,
        source: KafkaSource,
        topic_id: &TopicId,
        kafka: &KafkaConfig,
    ) -> Result<Landing> {
        let vitals_raw = LakeTable::open_or_create(location, table::VITALS_RAW, &VITALS_RAW_SCHEMA).await?;
        let dead_letters = LakeTable::open_or_create(location, table::DEAD_LETTERS, &DEAD_LETTERS_SCHEMA).await?;
        let patient_movements =
            LakeTable::open_or_create(location, table::PATIENT_MOVEMENTS, &PATIENT_MOVEMENTS_SCHEMA).await?;
        let topic_id_pending = (*topic_id == TopicId::Absent).then(|| kafka.clone());
        Ok(Landing {
            location: location.clone(),
            source,
            topic_id_pending,
            vitals_raw,
            dead_letters,
            patient_movements,
            known: Known::default(),
        })
    }

    /// Reads the topic's id if it was still to be read. An assigned topic the brokers cannot describe
    /// yet is an error the caller retries: landing under no id would mix this topic's positions with
    /// those of a topic recreated under its name.
    async fn settle_topic_id(&mut self) -> Result<()> {
        let Some(kafka) = &self.topic_id_pending else { return Ok(()) };
        match read_topic_id(kafka).await? {
            TopicId::Known(id) => self.source.topic_id = id,
            TopicId::Unsupported => {}
            TopicId::Absent => {
                return Err(Error::Config(format!(
                    "topic {:?} has assigned partitions but the brokers do not describe it yet",
                    self.source.topic
                )));
            }
        }
        tracing::info!(topic = %self.source.topic, topic_id = %self.source.topic_id, "Landing positions are those of this topic.");
        self.topic_id_pending = None;
        Ok(())
    }

    /// The Kafka source positions are recorded for.
    pub fn source(&self) -> &KafkaSource {
        &self.source
    }

    /// Where each of `partitions` of the source topic resumes (absent: nothing landed yet).
    pub async fn resume_positions(
        &mut self,
        partitions: &BTreeSet<i32>,
    ) -> Result<std::collections::BTreeMap<i32, i64>> {
        self.settle_topic_id().await?;
        self.vitals_raw.refresh().await?;
        let mut positions = std::collections::BTreeMap::new();
        for &partition in partitions {
            if let Some(last) = landed_in(&self.vitals_raw, &mut self.known.raw, &self.source, partition).await? {
                positions.insert(partition, last + 1);
            }
        }
        Ok(positions)
    }

    /// Lands `ranges` and returns what was landed, and the ranges another writer had landed already
    /// (by partition, the last offset landed there). Retries a commit that lost a race.
    pub(crate) async fn land(
        &mut self,
        ranges: &[LandingRange],
        dead_letter_topic: Option<&DeadLetterTopic>,
        fault: Fault,
    ) -> Result<(BatchLanded, Vec<(String, i32, i64)>)> {
        loop {
            match self.try_land(ranges, dead_letter_topic, fault).await {
                Err(crate::Error::Lake(LakeError::Conflict { table, reason })) => {
                    tracing::warn!(table, reason, "A landing commit lost to another writer; checking what it landed.");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_land(
        &mut self,
        ranges: &[LandingRange],
        dead_letter_topic: Option<&DeadLetterTopic>,
        fault: Fault,
    ) -> Result<(BatchLanded, Vec<(String, i32, i64)>)> {
        let mut event = BatchLanded {
            landed: 0,
            moved: 0,
            dead_lettered: 0,
            files: 0,
            by_reason: Default::default(),
            latency: Duration::ZERO,
        };
        self.settle_topic_id().await?;
        self.vitals_raw.refresh().await?;
        self.dead_letters.refresh().await?;
        self.patient_movements.refresh().await?;
        // Ranges whose offsets are this process's to land: nothing of them is in the table yet.
        let mut mine = Vec::new();
        let mut taken = Vec::new();
        for r in ranges {
            let landed = landed_in(&self.vitals_raw, &mut self.known.raw, &self.source, r.partition).await?;
            match landed {
                Some(last) if last >= r.first => {
                    tracing::warn!(
                        topic = %r.topic,
                        partition = r.partition,
                        first = r.first,
                        landed_up_to = last,
                        "Offsets already landed by another writer (partition taken over); not landing them again."
                    );
                    taken.push((r.topic.clone(), r.partition, last));
                }
                _ => mine.push(r),
            }
        }
        // Dead letters, minus any a crashed earlier attempt already committed.
        let mut dead_files: Vec<DataFile> = Vec::new();
        let mut dead_txns = Vec::new();
        let mut dead_committed = Vec::new();
        for r in mine.iter().filter(|r| !r.dead.is_empty()) {
            let app = self.source.app_id(r.partition);
            let done =
                landed_in(&self.dead_letters, &mut self.known.dead, &self.source, r.partition).await?.unwrap_or(-1);
            let letters: Vec<DeadLetter> = r.dead.iter().filter(|l| l.position.offset > done).cloned().collect();
            if letters.is_empty() {
                continue;
            }
            let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            let batch = dead_letter_batch(&letters, INGEST_STAGE, now_ns)?;
            let prefix = format!("{INGEST_STAGE}-{}", range_prefix(&r.topic, r.partition, r.first, r.last));
            dead_files.push(write_data_file(&self.location, table::DEAD_LETTERS, &prefix, &[batch]).await?);
            dead_txns.push(Transaction::new(app, r.last));
            dead_committed.push((r.partition, r.last));
            if let Some(topic) = dead_letter_topic {
                topic.send(&letters).await?;
            }
            event.dead_lettered += letters.len();
        }
        if !dead_files.is_empty() {
            event.files += dead_files.len();
            let before = self.dead_letters.version();
            let version = self.dead_letters.append(&dead_files, dead_txns).await?;
            remember(&mut self.known.dead, before, version, &dead_committed);
        }
        self.land_movements(&mine, &mut event).await?;
        if !dead_files.is_empty() {
            fault.trigger(Fault::BetweenFiles);
        }
        let mut raw_files = Vec::new();
        let mut raw_txns = Vec::new();
        for r in &mine {
            if r.rows.num_rows() > 0 {
                let prefix = range_prefix(&r.topic, r.partition, r.first, r.last);
                raw_files.push(
                    write_data_file(&self.location, table::VITALS_RAW, &prefix, std::slice::from_ref(&r.rows)).await?,
                );
            }
            // Even a range of bad records only moves the partition on.
            raw_txns.push(Transaction::new(self.source.app_id(r.partition), r.last));
            event.landed += r.rows.num_rows();
            for (total, n) in event.by_reason.iter_mut().zip(r.by_reason) {
                *total += n;
            }
        }
        if !raw_txns.is_empty() {
            event.files += raw_files.len();
            let before = self.vitals_raw.version();
            let committed: Vec<(i32, i64)> = mine.iter().map(|r| (r.partition, r.last)).collect();
            let version = self.vitals_raw.append(&raw_files, raw_txns).await?;
            remember(&mut self.known.raw, before, version, &committed);
        }
        Ok((event, taken))
    }
}

impl Landing {
    /// Commits the movements of `ranges` to `patient_movements`, but for ranges a crashed earlier
    /// attempt already committed there (its own transactions say which).
    async fn land_movements(&mut self, ranges: &[&LandingRange], event: &mut BatchLanded) -> Result<()> {
        let mut files = Vec::new();
        let mut txns = Vec::new();
        let mut committed = Vec::new();
        for r in ranges.iter().filter(|r| r.movements.num_rows() > 0) {
            let done = landed_in(&self.patient_movements, &mut self.known.movements, &self.source, r.partition)
                .await?
                .unwrap_or(-1);
            if done >= r.first {
                continue;
            }
            let prefix = range_prefix(&r.topic, r.partition, r.first, r.last);
            files.push(
                write_data_file(&self.location, table::PATIENT_MOVEMENTS, &prefix, std::slice::from_ref(&r.movements))
                    .await?,
            );
            txns.push(Transaction::new(self.source.app_id(r.partition), r.last));
            committed.push((r.partition, r.last));
            event.moved += r.movements.num_rows();
        }
        if !files.is_empty() {
            event.files += files.len();
            let before = self.patient_movements.version();
            let version = self.patient_movements.append(&files, txns).await?;
            remember(&mut self.known.movements, before, version, &committed);
        }
        Ok(())
    }
}

/// After this process's commit at `version` of what it had read at `before`: the committed positions
/// are known at `version`, the rest too when no other writer committed in between.
fn remember(
    cache: &mut (i64, std::collections::HashMap<i32, Option<i64>>),
    before: i64,
    version: i64,
    committed: &[(i32, i64)],
) {
    if cache.0 != before || version != before + 1 {
        cache.1.clear();
    }
    cache.0 = version;
    for (partition, last) in committed {
        cache.1.insert(*partition, Some(*last));
    }
}
