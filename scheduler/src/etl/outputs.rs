//! What one micro-batch writes. The ETL SQL returns one row per input row, scored on the cluster;
//! here, in the driver, that small result is split into `vitals_clean`, `dead_letters` (stage 'etl')
//! and `risk_alerts`, and merged with the previous state into the next state and `patient_latest`.

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
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::write_parquet;
use vitalflow_udf_model::schema::{
    DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA,
    measured_time_fields, table,
};

use vitalflow_udf_model::lake::names::batch_file;

use super::{STAGE, STATE_DIR};
use crate::catalog::parquet_table::parquet_table;
use crate::catalog::session::session_config;
use crate::config::EtlConfig;
use crate::error::{Error, Result};
use vitalflow_udf_model::lake::names::version_file;

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
    /// it started from at `state_url` (none: no state yet).
    pub(super) async fn build(
        scored: Vec<RecordBatch>,
        rows_in: usize,
        batch_id: i64,
        state_url: Option<&str>,
        config: &EtlConfig,
    ) -> Result<Outputs> {
        let rows_out = rows(&scored);
        if rows_out != rows_in {
            return Err(Error::Config(format!(
                "micro-batch {batch_id}: the ETL SQL returned {rows_out} rows for {rows_in} input rows; it must return one row per new_vitals_raw row (clean or rejected)"
            )));
        }
        let Some(first) = scored.first() else {
            return Ok(Outputs { clean: vec![], dead_letters: vec![], alerts: vec![], state: vec![], latest: vec![] });
        };
        let ctx = SessionContext::new_with_config(session_config());
        let query_err = |step: &str| {
            let step = format!("micro-batch {batch_id}: {step}");
            move |source| Error::Query { step, source }
        };
        let memtable = MemTable::try_new(first.schema(), vec![scored]).map_err(query_err("collecting the result"))?;
        ctx.register_table("scored", Arc::new(memtable)).map_err(query_err("collecting the result"))?;
        let state_source = match state_url {
            Some(url) => url.to_string(),
            None => "file:///nonexistent-vitalflow-empty-state/".to_string(),
        };
        let state_table = parquet_table(&[state_source], PATIENT_LATEST_SCHEMA.clone())?;
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
        let alerts = alerts.iter().map(|b| conform(b, &RISK_ALERTS_SCHEMA, batch_id)).collect::<Result<Vec<_>>>()?;

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
        Ok(Outputs { clean, dead_letters, alerts, state, latest })
    }

    /// Writes every output under names derived from `batch_id`; an output without rows deletes the
    /// file an earlier attempt of the same batch may have left. The state and `patient_latest` get
    /// a new version only when the batch had clean rows.
    pub(super) async fn write(&self, location: &DataLocation, batch_id: i64) -> Result<Written> {
        write_or_delete(
            location,
            &format!("{}/{STAGE}-batch-{batch_id:012}.parquet", table::DEAD_LETTERS),
            &self.dead_letters,
        )
        .await?;
        write_or_delete(location, &batch_file(table::VITALS_CLEAN, batch_id), &self.clean).await?;
        write_or_delete(location, &batch_file(table::RISK_ALERTS, batch_id), &self.alerts).await?;
        write_or_delete(location, &format!("{STATE_DIR}/{}", version_file(batch_id)), &self.state).await?;
        write_or_delete(location, &format!("{}/{}", table::PATIENT_LATEST, version_file(batch_id)), &self.latest)
            .await?;
        Ok(Written { clean: rows(&self.clean), rejected: rows(&self.dead_letters), alerts: rows(&self.alerts) })
    }
}

async fn write_or_delete(location: &DataLocation, relative: &str, batches: &[RecordBatch]) -> Result<()> {
    let path = location.path(relative);
    if rows(batches) > 0 {
        write_parquet(location, &path, batches).await?;
        return Ok(());
    }
    match location.store().delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::Store { step: format!("deleting {path}"), source }),
    }
}

/// Casts a result to `schema` by column name; `etl_batch_id`, when the result lacks it, is `batch_id`.
/// A missing column, an impossible cast or a NULL in a required column is an error naming it.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef, batch_id: i64) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(column) => column,
            None if field.name() == "etl_batch_id" => {
                columns.push(Arc::new(Int64Array::from(vec![batch_id; batch.num_rows()])));
                continue;
            }
            None => return Err(Error::Config(format!("the ETL SQL has no column {}", field.name()))),
        };
        let cast_column = cast(column, field.data_type()).map_err(|e| {
            Error::Config(format!(
                "ETL column {} ({}) is not {}: {e}",
                field.name(),
                column.data_type(),
                field.data_type()
            ))
        })?;
        columns.push(cast_column);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Config(format!("ETL output does not fit its table: {e}")))
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
