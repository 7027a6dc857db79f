//! Writing a table's data files as Parquet. A data file is written under a fresh, unique name and only
//! becomes part of its table when a commit adds it ([`crate::lake::table`]): a crash between the two
//! leaves an unreferenced file that readers never see and VACUUM removes, and a writer that lost its
//! partition (a zombie) can never overwrite a file another writer committed.
//!
//! Timestamps are stored in microseconds, the precision of Delta Lake's `timestamp` type that every
//! engine reads (Spark refuses nanosecond Parquet timestamps). vitalflow's Arrow schemas keep
//! nanoseconds; DataFusion casts when it reads the files against them.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;

/// A Parquet data file written under a table's directory, not yet committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Path relative to the table's directory.
    pub path: String,
    /// Rows written.
    pub rows: usize,
    /// Encoded size in bytes.
    pub bytes: usize,
}

/// The schema a table is stored with: `schema` with nanosecond timestamps as microseconds.
pub fn lake_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(stored_type(f.data_type()))).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn stored_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        other => other.clone(),
    }
}

/// `batch` in the stored schema (see [`lake_schema`]).
fn to_stored(batch: &RecordBatch, stored: &SchemaRef) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let columns =
        batch
            .columns()
            .iter()
            .zip(stored.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(stored.clone(), columns)
}

/// Encodes `batches` (one schema) as one Parquet file named `<prefix>-<unique id>.parquet` under
/// table `table`'s directory.
pub async fn write_data_file(
    location: &DataLocation,
    table: &str,
    prefix: &str,
    batches: &[RecordBatch],
) -> Result<DataFile> {
    let name = format!("{prefix}-{}.parquet", uuid::Uuid::new_v4().simple());
    let path = location.path(&format!("{table}/{name}"));
    let Some(first) = batches.first() else {
        return Err(LakeError::NoBatches { path: path.to_string() });
    };
    let stored = lake_schema(&first.schema());
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let parquet_err = |source| LakeError::Parquet { path: path.to_string(), source };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buf, stored.clone(), Some(props)).map_err(parquet_err)?;
    let mut rows = 0;
    for b in batches {
        let b = to_stored(b, &stored).map_err(|e| parquet_err(e.into()))?;
        writer.write(&b).map_err(parquet_err)?;
        rows += b.num_rows();
    }
    writer.close().map_err(parquet_err)?;
    let bytes = buf.len();
    location
        .store()
        .put(&path, PutPayload::from(buf))
        .await
        .map_err(|source| LakeError::store("put", &path, source))?;
    Ok(DataFile { path: name, rows, bytes })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampNanosecondArray};

    use super::*;

    #[tokio::test]
    async fn files_get_unique_names_and_microsecond_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(TimestampNanosecondArray::from(vec![1_500_000_001, 2_000_000_000]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let a = write_data_file(&location, "t", "p0", std::slice::from_ref(&batch)).await.unwrap();
        let b = write_data_file(&location, "t", "p0", std::slice::from_ref(&batch)).await.unwrap();
        assert_ne!(a.path, b.path);
        assert!(a.path.starts_with("p0-") && a.path.ends_with(".parquet"));
        assert_eq!(a.rows, 2);
        let bytes = std::fs::read(dir.path().join("t").join(&a.path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let read: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(
            read[0].schema().field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let times = read[0].column(1).as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().unwrap();
        assert_eq!(times.values(), &[1_500_000, 2_000_000]);
    }
}
