//! A change of `etl.partition_groups`, made at the driver's start. The old groups' pending batches
//! run to their end first (their input and state were recorded for that grouping). Then every new
//! group starts at the slowest old group's `vitals_raw` version, and the checkpoint lists, per
//! partition, up to which version a faster old group already processed it (so nothing runs twice).
//! Last, the state and `patient_latest` are split into the new groups' parts by each row's partition.
//! A crash in between repeats the change at the next start: each step gives the same result again.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int32Array};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use vitalflow_udf_model::lake::checkpoint::{GroupPosition, save_etl_checkpoint};
use vitalflow_udf_model::lake::names::{ETL_STATE_TABLE, batch_prefix};
use vitalflow_udf_model::lake::parquet_file::write_data_file;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, table};

use super::group_driver::Shared;
use super::group_drivers;
use super::partition_group::PartitionGroup;
use crate::error::{Error, Result};
use crate::table_rows::read_table_file;

/// Moves the checkpoint, the state and `patient_latest` from `from` partition groups to `to`.
pub(super) async fn regroup(ctx: &SessionContext, shared: &Arc<Shared>, from: usize, to: usize) -> Result<()> {
    let pending = shared.checkpoint.lock().await.group_positions();
    if pending.iter().any(|p| p.pending.is_some()) {
        let mut old = group_drivers(ctx, shared, from).await?;
        for (group, position) in old.iter_mut().zip(&pending) {
            if position.pending.is_some() {
                group.run_once().await?;
            }
        }
    }
    let location = &shared.location;
    let mut checkpoint = shared.checkpoint.lock().await;
    let old = checkpoint.group_positions();
    let slowest = old.iter().map(|p| p.raw_version).min().unwrap_or(0);
    let fastest = old.iter().map(|p| p.raw_version).max().unwrap_or(0);
    let mut done_to = checkpoint.partitions_done_to.clone();
    if fastest > slowest
        && let Some(raw) = LakeTable::open(location, table::VITALS_RAW, None).await?
    {
        for (version, file) in raw.added_since(slowest, (fastest - slowest) as usize).await? {
            let partition = PartitionGroup::partition_of(&file.path);
            let old_group = partition.rem_euclid(from as i32) as usize;
            let processed_to = old.get(old_group).map_or(slowest, |p| p.raw_version);
            if version <= processed_to {
                let entry = done_to.entry(partition).or_insert(processed_to);
                *entry = (*entry).max(processed_to);
            }
        }
    }
    split_into_parts(location, ETL_STATE_TABLE, to).await?;
    split_into_parts(location, table::PATIENT_LATEST, to).await?;
    let last = checkpoint.next_batch_id() - 1;
    let mut next = checkpoint.clone();
    next.partitions_done_to = done_to;
    next.set_groups(vec![GroupPosition { last_batch_id: last, raw_version: slowest, pending: None }; to]);
    save_etl_checkpoint(location, &next).await?;
    tracing::info!(from, to, from_version = slowest, "The ETL's partition groups changed.");
    *checkpoint = next;
    Ok(())
}

/// Rewrites table `name` (rows of the `patient_latest` shape) as one file per group of `count`, each
/// holding the rows of the group's partitions, in one commit.
async fn split_into_parts(location: &DataLocation, name: &str, count: usize) -> Result<()> {
    let Some(mut lake_table) = LakeTable::open(location, name, None).await? else { return Ok(()) };
    let mut rows = Vec::new();
    for file in lake_table.files() {
        let path = location.path(&format!("{name}/{}", file.path));
        rows.extend(read_table_file(location, &path, &PATIENT_LATEST_SCHEMA).await?);
    }
    let mut files = Vec::with_capacity(count);
    for group in PartitionGroup::all(count) {
        let mut part = Vec::with_capacity(rows.len());
        for batch in &rows {
            part.push(rows_of(batch, group)?);
        }
        if part.is_empty() {
            part.push(RecordBatch::new_empty(PATIENT_LATEST_SCHEMA.clone()));
        }
        let prefix = format!("{}{}", group.file_part(), batch_prefix(0));
        files.push(write_data_file(location, name, &prefix, &part).await?);
    }
    lake_table.replace(&files, vec![]).await?;
    Ok(())
}

/// The rows of `batch` whose partition belongs to `group`.
fn rows_of(batch: &RecordBatch, group: PartitionGroup) -> Result<RecordBatch> {
    let partitions = batch
        .column_by_name("source_partition")
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>())
        .ok_or_else(|| Error::Config("the ETL state has no Int32 column source_partition".into()))?;
    let mask: BooleanArray = (0..partitions.len()).map(|i| Some(group.holds(partitions.value(i)))).collect();
    arrow::compute::filter_record_batch(batch, &mask)
        .map_err(|e| Error::Config(format!("splitting the ETL state by partition group: {e}")))
}
