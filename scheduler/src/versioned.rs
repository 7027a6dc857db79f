//! Tables kept as a series of complete versions, one file per ETL micro-batch: `patient_latest` and
//! the ETL's own state. A version is written whole under a new name (`<dir>/v-<batch id>.parquet`)
//! before its batch is committed, and never rewritten once committed, so a running query never sees a
//! half-written or changed file. Readers take the newest version whose batch is committed (the ETL
//! checkpoint says which); superseded versions are deleted after a grace period, longer than queries
//! take, so a query that resolved an older version can still finish reading it.
//!
//! [`VersionedTable`] resolves the version when a query is planned. Ballista plans on the scheduler,
//! so the table travels there by [`VitalflowLogicalCodec`] (its directory and schema) and resolves
//! there; executors receive plain Parquet scans.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, TableReference};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use vitalflow_ingest::DataLocation;

use crate::error::{Error, Result};
use crate::session::parquet_table;

/// Object path of the ETL checkpoint, relative to the data location.
pub const CHECKPOINT: &str = "_checkpoints/etl.json";

/// File name of version `id` of a versioned table.
pub fn version_file(id: i64) -> String {
    format!("v-{id:012}.parquet")
}

/// The version id a file name holds.
fn parse_version(name: &str) -> Option<i64> {
    name.strip_prefix("v-")?.strip_suffix(".parquet")?.parse().ok()
}

/// The committed batch id in a checkpoint's JSON (0 when absent).
fn committed_batch(bytes: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Committed {
        last_batch_id: i64,
    }
    serde_json::from_slice::<Committed>(bytes).ok().map(|c| c.last_batch_id)
}

/// A version present in a table's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The micro-batch that wrote it.
    pub id: i64,
    /// Object path.
    pub path: Path,
    /// When it was written.
    pub written: chrono::DateTime<chrono::Utc>,
}

/// Every version in `dir`, oldest first.
pub async fn list_versions(store: &dyn ObjectStore, dir: &Path) -> object_store::Result<Vec<Version>> {
    let mut versions: Vec<Version> = store
        .list(Some(dir))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(parse_version).map(|id| Version {
                id,
                path: meta.location.clone(),
                written: meta.last_modified,
            }))
        })
        .try_collect()
        .await?;
    versions.sort_by_key(|v| v.id);
    Ok(versions)
}

/// The newest version of `versions` written by a batch at or before `committed`.
pub fn current(versions: &[Version], committed: i64) -> Option<&Version> {
    versions.iter().rev().find(|v| v.id <= committed)
}

/// Deletes versions superseded by a committed one more than `grace` ago, and versions of batches
/// beyond `committed` that a crash left behind are kept (the re-run overwrites them).
pub async fn retire_versions(location: &DataLocation, dir: &str, committed: i64, grace: Duration) -> Result<usize> {
    let prefix = location.path(dir);
    let store = location.store();
    let versions = list_versions(store.as_ref(), &prefix)
        .await
        .map_err(|source| Error::Store { step: format!("listing {prefix}"), source })?;
    let now = chrono::Utc::now();
    let mut deleted = 0;
    // A version may go once the version after it has been current for longer than `grace`.
    for pair in versions.windows(2) {
        let (old, newer) = (&pair[0], &pair[1]);
        let superseded_for = now.signed_duration_since(newer.written).to_std().unwrap_or_default();
        if newer.id <= committed && superseded_for > grace {
            match store.delete(&old.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(source) => return Err(Error::Store { step: format!("deleting {}", old.path), source }),
            }
        }
    }
    Ok(deleted)
}

/// A table whose content is its newest committed version (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionedTable {
    /// URL of the table's directory, ending in `/`.
    dir_url: String,
    /// URL of the ETL checkpoint deciding which versions are committed.
    checkpoint_url: String,
    #[serde(skip, default = "empty_schema")]
    schema: SchemaRef,
}

fn empty_schema() -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::empty())
}

impl VersionedTable {
    /// The versioned table `dir` under `location`.
    pub fn new(location: &DataLocation, dir: &str, schema: SchemaRef) -> VersionedTable {
        VersionedTable {
            dir_url: location.table_url(dir),
            checkpoint_url: location.object_url(&location.path(CHECKPOINT)),
            schema,
        }
    }

    /// The object store, directory and checkpoint path, as the session resolves them.
    fn resolve(&self, session: &dyn Session) -> datafusion::error::Result<(Arc<dyn ObjectStore>, Path, Path)> {
        let dir = ListingTableUrl::parse(&self.dir_url)?;
        let checkpoint = ListingTableUrl::parse(&self.checkpoint_url)?;
        let store_url: ObjectStoreUrl = dir.object_store();
        let store = session.runtime_env().object_store(&store_url)?;
        Ok((store, Path::from(dir.prefix().as_ref()), Path::from(checkpoint.prefix().as_ref())))
    }

    /// URL of the current version's file, or `None` when there is none yet.
    async fn current_url(&self, session: &dyn Session) -> datafusion::error::Result<Option<String>> {
        let (store, dir, checkpoint) = self.resolve(session)?;
        let committed = match store.get(&checkpoint).await {
            Ok(found) => {
                let bytes: bytes::Bytes = found.bytes().await?;
                committed_batch(&bytes).unwrap_or(0)
            }
            Err(object_store::Error::NotFound { .. }) => 0,
            Err(e) => return Err(e.into()),
        };
        let versions = list_versions(store.as_ref(), &dir).await?;
        let base = self.dir_url.trim_end_matches('/');
        Ok(current(&versions, committed).and_then(|v| v.path.filename().map(|f| format!("{base}/{f}"))))
    }
}

#[async_trait]
impl TableProvider for VersionedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // No version yet: the empty directory reads as an empty table.
        let url = self.current_url(session).await?.unwrap_or_else(|| self.dir_url.clone());
        let table = parquet_table(&[url], self.schema.clone()).map_err(|e| DataFusionError::External(Box::new(e)))?;
        table.scan(session, projection, filters, limit).await
    }
}

/// Prefix marking a [`VersionedTable`] in an encoded plan.
const VERSIONED_TAG: &[u8] = b"vitalflow.versioned:";

/// Ballista's logical codec, plus [`VersionedTable`]. The client, the scheduler and every context
/// that sends plans to Ballista must use it.
#[derive(Debug, Default)]
pub struct VitalflowLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for VitalflowLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> datafusion::error::Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> datafusion::error::Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(VERSIONED_TAG) {
            Some(json) => {
                let mut table: VersionedTable = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::Internal(format!("decoding {table_ref}: {e}")))?;
                table.schema = schema;
                Ok(Arc::new(table))
            }
            None => self.inner.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> datafusion::error::Result<()> {
        match node.downcast_ref::<VersionedTable>() {
            Some(table) => {
                buf.extend_from_slice(VERSIONED_TAG);
                serde_json::to_writer(&mut *buf, table)
                    .map_err(|e| DataFusionError::Internal(format!("encoding {table_ref}: {e}")))
            }
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> datafusion::error::Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> datafusion::error::Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_round_trip_and_order() {
        assert_eq!(parse_version(&version_file(42)), Some(42));
        assert_eq!(parse_version("v-000000000042.parquet#1"), None);
        assert!(version_file(9) < version_file(10));
        assert_eq!(committed_batch(br#"{"last_batch_id":7,"processed_offsets":{}}"#), Some(7));
    }

    #[test]
    fn the_current_version_is_the_newest_committed() {
        let v = |id| Version { id, path: Path::from(version_file(id)), written: chrono::Utc::now() };
        let versions = vec![v(1), v(3), v(5)];
        assert_eq!(current(&versions, 4).map(|v| v.id), Some(3));
        assert_eq!(current(&versions, 5).map(|v| v.id), Some(5));
        assert_eq!(current(&versions, 0), None);
    }
}
