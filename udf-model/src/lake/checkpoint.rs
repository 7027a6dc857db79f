//! Checkpoints: small JSON objects under `_checkpoints/` that record how far a component has come (the
//! ETL's committed batch and the `vitals_raw` version it has read up to, each alert sink's delivered
//! batch). A put is atomic on every store, so a reader sees the old checkpoint or the new one, never
//! half of one.

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
/// partitions, not of files, so it stays small however long the pipeline runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtlCheckpoint {
    /// Id of the last committed micro-batch (0 before the first).
    pub last_batch_id: i64,
    /// The `vitals_raw` version whose data has been processed, with every version before it.
    pub raw_version: i64,
    /// The batch started but not committed: its id and input objects, so a re-run takes the same rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingBatch>,
    /// Rows written by every committed batch, for `vitalflow status` and `etl_progress` (checkpoints
    /// written before this field count from their first commit with it).
    #[serde(default)]
    pub totals: EtlTotals,
    /// When the last batch was committed, in milliseconds since the epoch (0: never).
    #[serde(default)]
    pub committed_at_ms: i64,
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
