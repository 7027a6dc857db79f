//! What one micro-batch writes. The ETL SQL returns one row per input row, scored on the cluster;
//! here, in the driver, that small result is split into `vitals_clean`, `dead_letters` (stage 'etl')
//! and `risk_alerts`, and merged with the previous state into the next state and `patient_latest`.
//! Each output is one data file and one commit to its Delta table, with the transaction
//! `(the partition group's application id, batch id)` that lets a re-run skip what its first attempt
//! committed. The state and `patient_latest` are replaced part by part: each group replaces its own
//! files, one group at a time in this process ([`ReplaceTurns`]), so that groups never undo each other.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::names::{ETL_STATE_TABLE, batch_prefix};
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{
    DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA,
    measured_time_fields, table,
};

use super::STAGE;
use super::admission::{refuse_not_admitted, without_discharged};
use super::alert_reasons::with_top_reasons;
use super::partition_group::PartitionGroup;
use crate::catalog::parquet_table::parquet_table;
use crate::catalog::session::{runtime_env, session_config};
use crate::config::EtlConfig;
use crate::error::{Error, Result};
use crate::stays::Stays;
use crate::table_rows::conform;

/// Columns the ETL SQL returns beside those of `vitals_clean`.
const CONTROL_COLUMNS: [&str; 4] = ["reject_code", "reject_reason", "raises_alert", "previous_risk"];

/// Checks that an ETL result has every column the outputs need.
pub(super) fn check_columns(schema: &SchemaRef) -> Result<()> {
    let measured = measured_time_fields();
    let needed = VITALS_CLEAN_SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "etl_batch_id")
        .chain(CONTROL_COLUMNS.iter().map(|c| c.to_string()))
        .chain(measured.iter().map(|f| f.name().clone()));
    let missing: Vec<String> = needed.filter(|n| schema.field_with_name(n).is_err()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(format!("the ETL SQL lacks the columns {}", missing.join(", "))))
    }
}

/// Rows in the landed `files`, from their Parquet footers (two small reads per file).
pub(crate) async fn count_rows(location: &DataLocation, files: &[Path]) -> Result<usize> {
    let store = location.store();
    let mut rows = 0;
    for path in files {
        let store_err = |source| Error::Store { step: format!("reading the footer of {path}"), source };
        let bad =
            |e: parquet::errors::ParquetError| Error::Config(format!("{path} is not a readable Parquet file: {e}"));
        let size = store.head(path).await.map_err(store_err)?.size;
        let tail = store.get_range(path, size.saturating_sub(8)..size).await.map_err(store_err)?;
        let footer = FooterTail::try_from(tail.as_ref()).map_err(bad)?;
        let start = size.saturating_sub(8 + footer.metadata_length() as u64);
        let metadata = store.get_range(path, start..size - 8).await.map_err(store_err)?;
        let metadata = ParquetMetaDataReader::decode_metadata(&metadata).map_err(bad)?;
        rows += usize::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
    }
    Ok(rows)
}

/// The tables the ETL reads and writes, each at the snapshot it last read or committed.
pub(super) struct OutputTables {
    pub(super) raw: LakeTable,
    pub(super) state: LakeTable,
    clean: LakeTable,
    dead_letters: LakeTable,
    alerts: LakeTable,
    latest: LakeTable,
}

impl std::fmt::Debug for OutputTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputTables").field("raw", &self.raw).field("state", &self.state).finish_non_exhaustive()
    }
}

/// Taken while a group replaces its part of the state or of `patient_latest`: the groups of one driver
/// take turns at each table, each on its latest snapshot (Delta refuses a commit made on a snapshot
/// whose files another commit has since removed, even files the commit leaves alone).
#[derive(Debug, Default)]
pub(super) struct ReplaceTurns {
    state: tokio::sync::Mutex<()>,
    latest: tokio::sync::Mutex<()>,
}

impl OutputTables {
    /// Opens (or creates) every table for `group`. A group without a state file gets an empty one:
    /// Ballista 55 fails stages that union a scan with a table of no file (its task metrics do not
    /// match the stage's).
    pub(super) async fn open(location: &DataLocation, group: PartitionGroup) -> Result<OutputTables> {
        let open = |name, schema| LakeTable::open_or_create(location, name, schema);
        let mut state = open(ETL_STATE_TABLE, &PATIENT_LATEST_SCHEMA).await?;
        let part = group.file_part();
        if !state.files().iter().any(|f| f.path.starts_with(&part)) {
            let empty = RecordBatch::new_empty(PATIENT_LATEST_SCHEMA.clone());
            state.replace_part_batches(&part, &batch_prefix(0), &[empty], vec![]).await?;
        }
        Ok(OutputTables {
            raw: open(table::VITALS_RAW, &VITALS_RAW_SCHEMA).await?,
            state,
            clean: open(table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA).await?,
            dead_letters: open(table::DEAD_LETTERS, &DEAD_LETTERS_SCHEMA).await?,
            alerts: open(table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await?,
            latest: open(table::PATIENT_LATEST, &PATIENT_LATEST_SCHEMA).await?,
        })
    }
}

/// How a batch's output goes into its table.
#[derive(Debug, Clone, Copy)]
enum Commit<'a> {
    Append,
    /// Replaces the group's part, in turn with the other groups.
    ReplacePart(&'a tokio::sync::Mutex<()>),
}

/// Commits `batches` to `table` as batch `batch_id`'s of `group`, unless that batch's commit is there
/// already (a re-run after a crash) or there is nothing to write.
async fn commit_output(
    table: &mut LakeTable,
    prefix: &str,
    group: PartitionGroup,
    batch_id: i64,
    batches: &[RecordBatch],
    how: Commit<'_>,
) -> Result<()> {
    if rows(batches) == 0 {
        return Ok(());
    }
    let _turn = match how {
        Commit::Append => None,
        Commit::ReplacePart(lock) => {
            let turn = lock.lock().await;
            // One group is the table's only writer here: its own snapshot is the newest.
            if group.count > 1 {
                table.refresh().await?;
            }
            Some(turn)
        }
    };
    let app_id = group.app_id();
    if table.txn_version(&app_id).await?.is_some_and(|done| done >= batch_id) {
        return Ok(());
    }
    let prefix = format!("{prefix}{}", batch_prefix(batch_id));
    let txn = vec![Transaction::new(app_id, batch_id)];
    match how {
        Commit::Append => table.append_batches(&prefix, batches, txn).await?,
        Commit::ReplacePart(_) => table.replace_part_batches(&group.file_part(), &prefix, batches, txn).await?,
    };
    Ok(())
}

/// A micro-batch's outputs, ready to write.
#[derive(Debug)]
pub(super) struct Outputs {
    clean: Vec<RecordBatch>,
    dead_letters: Vec<RecordBatch>,
    alerts: Vec<RecordBatch>,
    state: Vec<RecordBatch>,
    latest: Vec<RecordBatch>,
}

/// Rows written per table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub(super) clean: usize,
    pub(super) rejected: usize,
    pub(super) alerts: usize,
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

impl Outputs {
    /// Splits the ETL result `scored` of batch `batch_id` (which read `rows_in` rows), with the state
    /// it started from at `state_url` (none: no state yet); alerts are explained with `forest`.
    pub(super) async fn build(
        scored: Vec<RecordBatch>,
        rows_in: usize,
        batch_id: i64,
        state_urls: &[String],
        config: &EtlConfig,
        forest: Option<&RiskForest>,
        stays: &Stays,
    ) -> Result<Outputs> {
        let scored = if config.require_admission { refuse_not_admitted(scored, stays)? } else { scored };
        let rows_out = rows(&scored);
        if rows_out != rows_in {
            return Err(Error::Config(format!(
                "micro-batch {batch_id}: the ETL SQL returned {rows_out} rows for {rows_in} input rows; it must return one row per new_vitals_raw row (clean or rejected)"
            )));
        }
        let Some(first) = scored.first() else {
            return Ok(Outputs { clean: vec![], dead_letters: vec![], alerts: vec![], state: vec![], latest: vec![] });
        };
        let query_err = |step: &str| {
            let step = format!("micro-batch {batch_id}: {step}");
            move |source| Error::Query { step, source }
        };
        // The lake's object stores (S3 included): the state may live wherever the tables do.
        let runtime = runtime_env().map_err(query_err("creating the runtime"))?;
        let ctx = SessionContext::new_with_config_rt(session_config(), runtime);
        let memtable = MemTable::try_new(first.schema(), vec![scored]).map_err(query_err("collecting the result"))?;
        ctx.register_table("scored", Arc::new(memtable)).map_err(query_err("collecting the result"))?;
        let state_sources = if state_urls.is_empty() {
            vec!["file:///nonexistent-vitalflow-empty-state/".to_string()]
        } else {
            state_urls.to_vec()
        };
        let state_table = parquet_table(&state_sources, PATIENT_LATEST_SCHEMA.clone())?;
        ctx.register_table("etl_state", Arc::new(state_table)).map_err(query_err("reading the state"))?;

        let run = async |what: &str, sql: String| -> Result<Vec<RecordBatch>> {
            let frame = ctx.sql(&sql).await.map_err(query_err(what))?;
            let batches = frame.collect().await.map_err(query_err(what))?;
            Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
        };
        let positions = run(
            "checking positions",
            "SELECT count(DISTINCT (source_topic, source_partition, source_offset)) FROM scored".into(),
        )
        .await?;
        let distinct = positions
            .first()
            .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
            .unwrap_or(0);
        if distinct as usize != rows_out {
            return Err(Error::Config(format!(
                "micro-batch {batch_id}: the ETL SQL returned {rows_out} rows but {distinct} source positions; it must return each input row once"
            )));
        }

        let clean = run("selecting clean rows", "SELECT * FROM scored WHERE reject_code IS NULL".into()).await?;
        let clean = clean.iter().map(|b| conform(b, &VITALS_CLEAN_SCHEMA, batch_id)).collect::<Result<Vec<_>>>()?;
        let rejected =
            run("selecting rejected rows", "SELECT * FROM scored WHERE reject_code IS NOT NULL".into()).await?;
        let dead_letters = rejected.iter().map(dead_letter_batch).collect::<Result<Vec<_>>>()?;
        let alerts = run(
            "selecting alerts",
            "SELECT concat(source_topic, '/', CAST(source_partition AS VARCHAR), '/', CAST(source_offset AS VARCHAR)) AS alert_id, * \
             FROM scored WHERE reject_code IS NULL AND raises_alert ORDER BY event_time"
                .into(),
        )
        .await?;
        let alerts = alerts
            .iter()
            .map(|b| conform(&with_top_reasons(b, forest)?, &RISK_ALERTS_SCHEMA, batch_id))
            .collect::<Result<Vec<_>>>()?;

        // The next state: each patient's newest window_readings clean rows, earlier batches' included.
        let columns: Vec<String> =
            PATIENT_LATEST_SCHEMA.fields().iter().map(|f| f.name().clone()).filter(|n| n != "etl_batch_id").collect();
        let list = columns.join(", ");
        let state_sql = format!(
            "SELECT {list}, etl_batch_id, recency FROM (
               SELECT *, CAST(row_number() OVER (PARTITION BY patient_id
                 ORDER BY event_time DESC, etl_batch_id DESC, source_topic DESC, source_partition DESC, source_offset DESC) AS BIGINT) AS recency
               FROM (SELECT {list}, etl_batch_id FROM etl_state
                     UNION ALL SELECT {list}, CAST({batch_id} AS BIGINT) AS etl_batch_id FROM scored WHERE reject_code IS NULL)
             ) WHERE recency <= {window} ORDER BY patient_id, recency",
            window = config.window_readings.max(1)
        );
        let state_rows = run("building the next state", state_sql).await?;
        let mut state = Vec::with_capacity(state_rows.len());
        let mut latest = Vec::with_capacity(state_rows.len());
        for b in &state_rows {
            state.push(conform(b, &PATIENT_LATEST_SCHEMA, batch_id)?);
            let recency = b
                .column_by_name("recency")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                .ok_or_else(|| Error::Config("the state query lost its recency column".into()))?;
            let newest = arrow::compute::kernels::cmp::eq(&recency, &Int64Array::new_scalar(1))
                .map_err(|e| Error::Config(format!("selecting each patient's newest row: {e}")))?;
            let filtered = arrow::compute::filter_record_batch(b, &newest)
                .map_err(|e| Error::Config(format!("selecting each patient's newest row: {e}")))?;
            if filtered.num_rows() > 0 {
                latest.push(conform(&filtered, &PATIENT_LATEST_SCHEMA, batch_id)?);
            }
        }
        let latest = without_discharged(latest, stays)?;
        Ok(Outputs { clean, dead_letters, alerts, state, latest })
    }

    /// Commits every output of batch `batch_id`. The state and `patient_latest` are replaced only when
    /// the batch had clean rows.
    pub(super) async fn write(
        &self,
        tables: &mut OutputTables,
        group: PartitionGroup,
        batch_id: i64,
        turns: &ReplaceTurns,
    ) -> Result<Written> {
        let etl_prefix = format!("{STAGE}-");
        // Five tables, five independent commits, each carrying the batch's transaction (a re-run skips
        // the ones already made, in any order): made at once, a batch waits for the slowest, not the sum.
        let OutputTables { dead_letters, clean, alerts, state, latest, .. } = tables;
        let append = Commit::Append;
        tokio::try_join!(
            commit_output(dead_letters, &etl_prefix, group, batch_id, &self.dead_letters, append),
            commit_output(clean, "", group, batch_id, &self.clean, append),
            commit_output(alerts, "", group, batch_id, &self.alerts, append),
            commit_output(state, "", group, batch_id, &self.state, Commit::ReplacePart(&turns.state)),
            commit_output(latest, "", group, batch_id, &self.latest, Commit::ReplacePart(&turns.latest)),
        )?;
        Ok(Written { clean: rows(&self.clean), rejected: rows(&self.dead_letters), alerts: rows(&self.alerts) })
    }
}

/// `dead_letters` rows (stage 'etl') for rejected rows: the payload is the row as landed, in JSON.
fn dead_letter_batch(rejected: &RecordBatch) -> Result<RecordBatch> {
    let n = rejected.num_rows();
    let raw_fields: Vec<_> = VITALS_RAW_SCHEMA
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with("source_") && f.name() != "ingest_time")
        .map(|f| f.as_ref().clone())
        .collect();
    let raw = conform(rejected, &Arc::new(Schema::new(raw_fields)), 0)?;
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&raw).map_err(|e| Error::Config(format!("encoding rejected rows as JSON: {e}")))?;
    writer.finish().map_err(|e| Error::Config(format!("encoding rejected rows as JSON: {e}")))?;
    let json = writer.into_inner();
    let payloads: Vec<&[u8]> = json.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if payloads.len() != n {
        return Err(Error::Config(format!("encoding {n} rejected rows gave {} JSON lines", payloads.len())));
    }
    let column = |name: &str, data_type: &DataType| -> Result<ArrayRef> {
        let c =
            rejected.column_by_name(name).ok_or_else(|| Error::Config(format!("the ETL SQL has no column {name}")))?;
        cast(c, data_type).map_err(|e| Error::Config(format!("ETL column {name} is not {data_type}: {e}")))
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let code = column("reject_code", &DataType::Utf8)?;
    let reason = column("reject_reason", &DataType::Utf8)?;
    // A rejected row without words gets its code as the reason: dead_letters.reason is never empty.
    let reason: StringArray = {
        let (code, reason) = (
            code.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::from(vec![""; n])),
            reason.as_any().downcast_ref::<StringArray>().cloned().unwrap_or_else(|| StringArray::from(vec![""; n])),
        );
        (0..n).map(|i| Some(if reason.is_null(i) { code.value(i) } else { reason.value(i) })).collect()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values(payloads)),
        column("source_topic", &DataType::Utf8)?,
        column("source_partition", &DataType::Int32)?,
        column("source_offset", &DataType::Int64)?,
        Arc::new(StringArray::from(vec![STAGE; n])),
        code,
        Arc::new(reason),
        Arc::new(TimestampNanosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(DEAD_LETTERS_SCHEMA.clone(), columns)
        .map_err(|e| Error::Config(format!("ETL dead letters: {e}")))
}
