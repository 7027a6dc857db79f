//! A versioned table as SQL sees it (`patient_latest`): its content is the newest version whose batch
//! is committed (the rules are in [`vitalflow_udf_model::lake::versions`]). [`VersionedTable`] resolves the version when a query is planned. Ballista plans on the scheduler,
//! so the table travels there by [`VitalflowLogicalCodec`] (its directory and schema) and resolves
//! there; executors receive plain Parquet scans.

use std::sync::Arc;

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
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::names::ETL_CHECKPOINT;
use vitalflow_udf_model::lake::versions::{committed_batch, current, list_versions};

use crate::catalog::parquet_table::parquet_table;

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
            checkpoint_url: location.object_url(&location.path(ETL_CHECKPOINT)),
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
