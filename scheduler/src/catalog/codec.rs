//! The logical codec of every vitalflow context: Ballista's, plus the lake's tables, which travel to
//! the scheduler as their location, name and version and resolve their snapshot there.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::catalog::lake_table::DeltaSnapshotTable;

/// Prefix marking a [`DeltaSnapshotTable`] in an encoded plan.
const SNAPSHOT_TAG: &[u8] = b"vitalflow.delta:";

/// Ballista's logical codec, plus [`DeltaSnapshotTable`]. The client, the scheduler and every context
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
        match buf.strip_prefix(SNAPSHOT_TAG) {
            Some(json) => {
                let table: DeltaSnapshotTable = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::Internal(format!("decoding {table_ref}: {e}")))?;
                Ok(Arc::new(table.with_schema(schema)))
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
        match node.downcast_ref::<DeltaSnapshotTable>() {
            Some(table) => {
                buf.extend_from_slice(SNAPSHOT_TAG);
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
