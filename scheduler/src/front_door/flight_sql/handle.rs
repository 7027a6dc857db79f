//! Statement and prepared-statement handles: `proto/flight_sql.proto`'s `StatementHandle`,
//! the SQL plus any bound parameters, so the server keeps no per-client state.

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use prost::Message;
use tonic::Status;

/// Mirrors `vitalflow.flight_sql.StatementHandle` (same tags; no protoc needed to build).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StatementHandle {
    /// The SQL text.
    #[prost(string, tag = "1")]
    pub(crate) sql: String,
    /// One-row Arrow IPC stream of bound parameters; empty when none are bound.
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) parameters: Bytes,
}

impl StatementHandle {
    /// A handle for `sql` with nothing bound.
    pub(crate) fn new(sql: impl Into<String>) -> StatementHandle {
        StatementHandle { sql: sql.into(), parameters: Bytes::new() }
    }

    /// Encodes for the wire.
    pub(crate) fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// Decodes a handle a client sent back.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<StatementHandle, Status> {
        StatementHandle::decode(bytes)
            .map_err(|e| Status::invalid_argument(format!("statement handle was not issued by this server: {e}")))
    }

    /// The same statement with `row` bound.
    pub(crate) fn with_parameters(&self, row: &RecordBatch) -> Result<StatementHandle, Status> {
        let encode = |e: arrow::error::ArrowError| Status::internal(format!("encoding parameters: {e}"));
        let mut writer = StreamWriter::try_new(Vec::new(), &row.schema()).map_err(encode)?;
        writer.write(row).map_err(encode)?;
        let parameters = Bytes::from(writer.into_inner().map_err(encode)?);
        Ok(StatementHandle { sql: self.sql.clone(), parameters })
    }

    /// The bound parameters, if any.
    pub(crate) fn parameters(&self) -> Result<Option<RecordBatch>, Status> {
        if self.parameters.is_empty() {
            return Ok(None);
        }
        let bad = |e: arrow::error::ArrowError| Status::invalid_argument(format!("statement handle parameters: {e}"));
        let reader = StreamReader::try_new(std::io::Cursor::new(self.parameters.clone()), None).map_err(bad)?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
        Ok(batches.into_iter().find(|b| b.num_rows() > 0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn handles_round_trip_with_and_without_parameters() {
        let plain = StatementHandle::new("SELECT 1");
        assert_eq!(StatementHandle::from_bytes(&plain.to_bytes()).unwrap(), plain);
        assert!(plain.parameters().unwrap().is_none());
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let row = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["P001"])), Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap();
        let bound = StatementHandle::from_bytes(&plain.with_parameters(&row).unwrap().to_bytes()).unwrap();
        assert_eq!(bound.sql, "SELECT 1");
        assert_eq!(bound.parameters().unwrap().unwrap(), row);
        assert!(StatementHandle::from_bytes(b"\xff\xff garbage").is_err());
    }
}
