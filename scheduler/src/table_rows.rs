//! Rows of the lake's tables as the driver handles them itself, not through a query: a result cast to a
//! table's schema ([`conform`]), and one data file read whole in its table's schema ([`read_table_file`];
//! files store timestamps in microseconds, the tables' schemas say nanoseconds), for the small files of
//! alert delivery and the alert keeper.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::lake::objects::read;

use crate::error::{Error, Result};

/// The rows of the data file at `path`, cast to `schema`; an unreadable file is an error naming it.
pub async fn read_table_file(location: &DataLocation, path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let bytes = read(location, path).await?;
    let unreadable =
        |e: parquet::errors::ParquetError| Error::Config(format!("{path} is not a readable data file: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(unreadable)?.build().map_err(unreadable)?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::Config(format!("{path} is not a readable data file: {e}")))?;
        let batch = with_added_columns(&batch, schema).map_err(|e| Error::Config(format!("{path}: {e}")))?;
        batches.push(conform(&batch, schema, 0).map_err(|e| Error::Config(format!("{path}: {e}")))?);
    }
    Ok(batches)
}

/// `batch` with the nullable columns of `schema` it lacks added as NULL: a file written before a column
/// was added to its table.
pub(crate) fn with_added_columns(batch: &RecordBatch, schema: &SchemaRef) -> arrow::error::Result<RecordBatch> {
    let missing: Vec<&arrow::datatypes::FieldRef> =
        schema.fields().iter().filter(|f| f.is_nullable() && batch.column_by_name(f.name()).is_none()).collect();
    if missing.is_empty() {
        return Ok(batch.clone());
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for field in missing {
        fields.push(field.clone());
        columns.push(arrow::array::new_null_array(field.data_type(), batch.num_rows()));
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(arrow::datatypes::Schema::new(fields)), columns, &options)
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
