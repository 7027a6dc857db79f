//! One data file of a lake table read whole, in the table's schema (files store timestamps in
//! microseconds; the tables' schemas say nanoseconds): for the small files the driver reads itself
//! (alert delivery, the alert keeper) rather than through a query.

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
        batches.push(crate::etl::conform(&batch, schema, 0).map_err(|e| Error::Config(format!("{path}: {e}")))?);
    }
    Ok(batches)
}
