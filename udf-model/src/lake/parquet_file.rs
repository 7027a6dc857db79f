//! Writing batches as Parquet objects. A file's name is decided by the caller from what it holds
//! (topic, partition, offset range; or an ETL batch id), so that writing it again after a crash
//! replaces it instead of adding a duplicate.

use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::lake::error::{LakeError, Result};
use crate::lake::location::DataLocation;

/// A Parquet object written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedFile {
    /// Object path.
    pub path: Path,
    /// Rows written.
    pub rows: usize,
    /// Encoded size in bytes.
    pub bytes: usize,
}

/// Encodes `batches` (one schema) as one Parquet file and puts it at `path`, replacing any object there.
/// The put is atomic on every store: readers see the old object or the whole new one.
pub async fn write_parquet(location: &DataLocation, path: &Path, batches: &[RecordBatch]) -> Result<LandedFile> {
    let Some(first) = batches.first() else {
        return Err(LakeError::NoBatches { path: path.to_string() });
    };
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let parquet_err = |source| LakeError::Parquet { path: path.to_string(), source };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buf, first.schema(), Some(props)).map_err(parquet_err)?;
    let mut rows = 0;
    for b in batches {
        writer.write(b).map_err(parquet_err)?;
        rows += b.num_rows();
    }
    writer.close().map_err(parquet_err)?;
    let bytes = buf.len();
    location.store().put(path, PutPayload::from(buf)).await.map_err(|source| LakeError::store("put", path, source))?;
    Ok(LandedFile { path: path.clone(), rows, bytes })
}
