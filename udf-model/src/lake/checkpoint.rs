//! Checkpoints: small JSON objects under `_checkpoints/` that record how far a component has come (the
//! ETL's committed batch and the `vitals_raw` version it has read up to, each alert sink's delivered
//! batch). A put is atomic on every store, so a reader sees the old checkpoint or the new one, never
//! half of one.

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;
use crate::lake::names::{ETL_CHECKPOINT, alert_sink_checkpoint};
use crate::lake::objects::read_if_exists;

/// The JSON object at `relative`; `None` when there is none.
pub async fn read_json<T: DeserializeOwned>(location: &DataLocation, relative: &str) -> Result<Option<T>> {
    let path = location.path(relative);
    let Some(bytes) = read_if_exists(location, &path).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| LakeError::Checkpoint { path: path.to_string(), reason: e.to_string() })
}

/// Writes `value` as the JSON object at `relative`, replacing what was there.
pub async fn write_json<T: Serialize>(location: &DataLocation, relative: &str, value: &T) -> Result<()> {
    let path = location.path(relative);
    let json = serde_json::to_vec(value)
        .map_err(|e| LakeError::Checkpoint { path: path.to_string(), reason: e.to_string() })?;
    location
        .store()
        .put(&path, PutPayload::from(json))
        .await
        .map_err(|source| LakeError::store("put", &path, source))?;
    Ok(())
}

/// What has been processed: the truth the driver resumes from. Its size is bounded by the number of
/// partition groups and partitions, not of files, so it stays small however long the pipeline runs.
///
/// The ETL runs a micro-batch per partition group at a time ([`GroupPosition`]); the fields at the top
/// summarise the groups for the readers that need no more (status, compaction, alert delivery).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlCheckpoint {
    /// Every micro-batch with an id up to this one is committed (0 before the first). Ids are given
    /// out in order across the groups, so a batch of one group may commit before a lower one of
    /// another: this is the highest id below which none is still running.
    pub last_batch_id: i64,
    /// The `vitals_raw` version whose data every group has processed, with every version before it.
    pub raw_version: i64,
    /// A batch started but not committed by a checkpoint of one group (written before partition
    /// groups; read to resume it, never written now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingBatch>,
    /// Rows written by every committed batch, for `vitalflow status` and `etl_progress` (checkpoints
    /// written before this field count from their first commit with it).
    #[serde(default)]
    pub totals: EtlTotals,
    /// When the last batch was committed, in milliseconds since the epoch (0: never).
    #[serde(default)]
    pub committed_at_ms: i64,
    /// Each partition group's position; the group count is their number (empty: a checkpoint written
    /// before partition groups, one group at the fields above).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupPosition>,
    /// Partitions whose data files up to a version are processed beyond their group's `raw_version`:
    /// left by a change of the group count (a new group starts at the slowest old group's version and
    /// skips what the faster ones did), dropped once the group has read past them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partitions_done_to: BTreeMap<i32, i64>,
}

/// Where one partition group of the ETL is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPosition {
    /// Its last committed batch (0: none).
    pub last_batch_id: i64,
    /// The `vitals_raw` version whose data of the group's partitions it has processed.
    pub raw_version: i64,
    /// Its batch started but not committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingBatch>,
}

impl EtlCheckpoint {
    /// The groups' positions: those recorded, or the one group of a checkpoint written before groups.
    pub fn group_positions(&self) -> Vec<GroupPosition> {
        if self.groups.is_empty() {
            vec![GroupPosition {
                last_batch_id: self.last_batch_id,
                raw_version: self.raw_version,
                pending: self.pending.clone(),
            }]
        } else {
            self.groups.clone()
        }
    }

    /// The batches started and not committed, of every group.
    pub fn pending_batches(&self) -> impl Iterator<Item = &PendingBatch> {
        self.pending.iter().chain(self.groups.iter().filter_map(|g| g.pending.as_ref()))
    }

    /// The id the next batch gets: above every id given out.
    pub fn next_batch_id(&self) -> i64 {
        let given = self.groups.iter().map(|g| g.last_batch_id).chain(self.pending_batches().map(|p| p.id));
        given.fold(self.last_batch_id, i64::max) + 1
    }

    /// Whether the data file of Kafka partition `partition` that `vitals_raw` version `version` added
    /// is processed: by the position of the partition's group (partition modulo the group count), or
    /// by an earlier grouping ([`EtlCheckpoint::partitions_done_to`]).
    pub fn has_processed(&self, version: i64, partition: i32) -> bool {
        // Asked for every landed file: read the positions in place (no `group_positions` copy).
        let group_read_to = if self.groups.is_empty() {
            Some(self.raw_version)
        } else {
            let group = partition.rem_euclid(self.groups.len() as i32) as usize;
            self.groups.get(group).map(|g| g.raw_version)
        };
        group_read_to.is_some_and(|read_to| version <= read_to)
            || self.partitions_done_to.get(&partition).is_some_and(|done| version <= *done)
    }

    /// Makes `groups` the positions and derives the summary fields from them.
    pub fn set_groups(&mut self, groups: Vec<GroupPosition>) {
        self.pending = None;
        self.raw_version = groups.iter().map(|g| g.raw_version).min().unwrap_or(self.raw_version);
        let highest = groups.iter().map(|g| g.last_batch_id).fold(self.last_batch_id, i64::max);
        self.last_batch_id = match groups.iter().filter_map(|g| g.pending.as_ref()).map(|p| p.id).min() {
            Some(lowest_running) => (lowest_running - 1).min(highest),
            None => highest,
        };
        let slowest = self.raw_version;
        self.partitions_done_to.retain(|_, done_to| *done_to > slowest);
        self.groups = groups;
    }
}

/// Rows written by the committed batches, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlTotals {
    /// Rows written to `vitals_clean`.
    pub rows_out: u64,
    /// Rows written to `dead_letters` (stage 'etl').
    pub rejected: u64,
    /// Rows written to `risk_alerts`.
    pub alerts: u64,
}

/// A micro-batch recorded before it runs, so that a re-run after a crash reads exactly the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingBatch {
    /// Its id.
    pub id: i64,
    /// Its input: `vitals_raw` data files (paths relative to the table) ...
    pub files: Vec<String>,
    /// ... added by the versions up to this one.
    pub raw_version: i64,
    /// The version of the ETL state table it starts from (its snapshot before this batch's commit).
    pub state_version: i64,
}

/// The ETL's committed checkpoint; a fresh start when there is none.
pub async fn load_etl_checkpoint(location: &DataLocation) -> Result<EtlCheckpoint> {
    Ok(read_json(location, ETL_CHECKPOINT).await?.unwrap_or_default())
}

/// Writes the ETL checkpoint: a micro-batch's commit point (and a pending batch's intent).
pub async fn save_etl_checkpoint(location: &DataLocation, checkpoint: &EtlCheckpoint) -> Result<()> {
    write_json(location, ETL_CHECKPOINT, checkpoint).await
}

/// Where a sink has got to: the last micro-batch whose alerts it has acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryCheckpoint {
    /// Id of that batch.
    pub last_batch_id: i64,
    /// The `risk_alerts` version read up to: the next delivery reads the commits after it.
    #[serde(default)]
    pub alerts_version: i64,
}

/// A sink's checkpoint; `None` when it has never run.
pub async fn load_delivery_checkpoint(location: &DataLocation, sink: &str) -> Result<Option<DeliveryCheckpoint>> {
    read_json(location, &alert_sink_checkpoint(sink)).await
}

/// Records where a sink has got to.
pub async fn save_delivery_checkpoint(
    location: &DataLocation,
    sink: &str,
    checkpoint: DeliveryCheckpoint,
) -> Result<()> {
    write_json(location, &alert_sink_checkpoint(sink), &checkpoint).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: i64) -> Option<PendingBatch> {
        Some(PendingBatch { id, files: vec![], raw_version: 9, state_version: 3 })
    }

    #[test]
    fn a_checkpoint_of_one_group_reads_as_one_group_position() {
        let old: EtlCheckpoint = serde_json::from_str(
            r#"{"last_batch_id":4,"raw_version":7,"pending":{"id":5,"files":[],"raw_version":9,"state_version":3}}"#,
        )
        .unwrap();
        assert_eq!(
            old.group_positions(),
            vec![GroupPosition { last_batch_id: 4, raw_version: 7, pending: pending(5) }]
        );
        assert_eq!(old.next_batch_id(), 6);
    }

    #[test]
    fn the_summary_counts_a_batch_committed_only_when_no_lower_one_still_runs() {
        let mut checkpoint = EtlCheckpoint::default();
        // Group 1's batch 6 committed while group 0's batch 5 runs.
        checkpoint.set_groups(vec![
            GroupPosition { last_batch_id: 3, raw_version: 10, pending: pending(5) },
            GroupPosition { last_batch_id: 6, raw_version: 12, pending: None },
        ]);
        assert_eq!((checkpoint.last_batch_id, checkpoint.raw_version), (4, 10));
        assert_eq!(checkpoint.next_batch_id(), 7);
        checkpoint.set_groups(vec![
            GroupPosition { last_batch_id: 5, raw_version: 12, pending: None },
            GroupPosition { last_batch_id: 6, raw_version: 12, pending: None },
        ]);
        assert_eq!((checkpoint.last_batch_id, checkpoint.raw_version), (6, 12));
        checkpoint.partitions_done_to.insert(3, 14);
        assert!(checkpoint.has_processed(12, 0) && !checkpoint.has_processed(13, 2));
        assert!(
            checkpoint.has_processed(14, 3) && !checkpoint.has_processed(15, 3) && !checkpoint.has_processed(13, 1)
        );
        let json = serde_json::to_string(&checkpoint).unwrap();
        assert_eq!(serde_json::from_str::<EtlCheckpoint>(&json).unwrap(), checkpoint);
    }
}
