//! Ingest's progress is in the tables themselves: every commit that lands a flush carries, per Kafka
//! partition, a Delta transaction whose version is the last offset it landed (its application id
//! names the cluster, the topic and the partition, [`KafkaSource::app_id`]). A partition resumes one
//! past that version; a replay of landed offsets after a crash is recognised and not committed twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::lake::error::Result;
use crate::lake::names::KafkaSource;
use crate::lake::table::LakeTable;

/// Where each of `partitions` of `source` resumes in `table`: one past the last offset landed, or
/// absent when nothing of it has landed.
pub async fn resume_positions(
    table: &LakeTable,
    source: &KafkaSource,
    partitions: &BTreeSet<i32>,
) -> Result<BTreeMap<i32, i64>> {
    let mut positions = BTreeMap::new();
    for &partition in partitions {
        if let Some(last) = table.txn_version(&source.app_id(partition)).await? {
            positions.insert(partition, last + 1);
        }
    }
    Ok(positions)
}
