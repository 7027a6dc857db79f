//! A lake table as SQL sees it: the snapshot of its Delta table, resolved when a query is planned
//! (the latest version, or a pinned one for time travel), scanned as the plain Parquet files that
//! snapshot lists. A query never sees a row twice or half a commit, however compaction and ingest
//! commit meanwhile. Ballista plans on the scheduler, so the table travels there by
//! [`crate::catalog::codec::VitalflowLogicalCodec`] (its location, name and version) and resolves
//! there; executors receive plain Parquet scans.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use vitalflow_udf_model::lake::{DataLocation, LakeTable, TableFile};

/// The latest snapshot of each table read by this process, brought up to date incrementally (only
/// the commits since) when a query plans: a full log replay per query would cost far more.
static LATEST: LazyLock<Mutex<HashMap<String, LakeTable>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Which snapshot a table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotAt {
    /// The latest version when the query is planned.
    Latest,
    /// A version (time travel).
    Version(i64),
    /// The newest version committed at or before this time, in ms since the epoch (time travel).
    Time(i64),
}

/// A Delta table of the lake at a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaSnapshotTable {
    /// URL of the data location.
    data_url: String,
    /// The table's name (its directory under the location).
    name: String,
    /// Which snapshot.
    at: SnapshotAt,
    #[serde(skip, default = "empty_schema")]
    schema: SchemaRef,
}

fn empty_schema() -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::empty())
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl DeltaSnapshotTable {
    /// Table `name` under `location`, read with `schema` (vitalflow's; files store timestamps in
    /// microseconds and are cast), at snapshot `at`.
    pub fn new(location: &DataLocation, name: &str, schema: SchemaRef, at: SnapshotAt) -> DeltaSnapshotTable {
        DeltaSnapshotTable { data_url: location.url().to_string(), name: name.to_string(), at, schema }
    }

    /// The table's schema, set after decoding (the codec carries it beside the table).
    pub(crate) fn with_schema(mut self, schema: SchemaRef) -> DeltaSnapshotTable {
        self.schema = schema;
        self
    }

    /// The data files of the snapshot, and the location they are under.
    async fn snapshot_files(&self) -> datafusion::error::Result<(DataLocation, Vec<TableFile>)> {
        let location = DataLocation::open(&self.data_url).map_err(external)?;
        let pinned = match self.at {
            SnapshotAt::Latest => None,
            SnapshotAt::Version(v) => Some(v),
            SnapshotAt::Time(ms) => {
                Some(LakeTable::version_at(&location, &self.name, ms).await.map_err(external)?.ok_or_else(|| {
                    DataFusionError::Plan(format!("table {} has no version committed by that time", self.name))
                })?)
            }
        };
        if let Some(version) = pinned {
            let table =
                LakeTable::open(&location, &self.name, Some(version)).await.map_err(external)?.ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "table {} has no version {version} (or it is past log retention)",
                        self.name
                    ))
                })?;
            return Ok((location, table.files()));
        }
        let key = format!("{}{}", self.data_url, self.name);
        let mut latest = LATEST.lock().await;
        match latest.get_mut(&key) {
            Some(table) => table.refresh().await.map_err(external)?,
            None => match LakeTable::open(&location, &self.name, None).await.map_err(external)? {
                Some(table) => {
                    latest.insert(key.clone(), table);
                }
                // Not created yet (nothing written): an empty table.
                None => return Ok((location, Vec::new())),
            },
        }
        let files = latest.get(&key).map(LakeTable::files).unwrap_or_default();
        Ok((location, files))
    }
}

#[async_trait]
impl TableProvider for DeltaSnapshotTable {
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
        // Used to skip row groups; the filter is still applied above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (location, files) = self.snapshot_files().await?;
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let mut source =
            ParquetSource::new(self.schema.clone()).with_table_parquet_options(session.table_options().parquet.clone());
        if let Some(filter) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(session.create_physical_expr(filter, &df_schema)?);
        }
        let base = location.path(&self.name);
        let partitioned: Vec<PartitionedFile> =
            files.iter().map(|f| PartitionedFile::new(format!("{base}/{}", f.path), f.size)).collect();
        // Spread the files over the session's partitions, largest first.
        let groups = session.config().target_partitions().max(1).min(partitioned.len());
        let mut file_groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        let mut sizes = vec![0u64; groups];
        let mut by_size = partitioned;
        by_size.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        for file in by_size {
            let smallest = (0..groups).min_by_key(|&i| sizes[i]).unwrap_or(0);
            sizes[smallest] += file.object_meta.size;
            file_groups[smallest].push(file);
        }
        let store_url = ObjectStoreUrl::parse(location.store_url())?;
        let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(file_groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
