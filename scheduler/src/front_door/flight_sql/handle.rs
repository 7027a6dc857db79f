//! Statement and prepared-statement handles: `proto/flight_sql.proto`'s `StatementHandle`,
//! the SQL plus any bound parameters, so the server keeps no per-client state.
//!
//! A handle goes to the client sealed ([`HandleKey`]): a version byte, an HMAC-SHA256 tag under the
//! server's handle key, then the encoded handle. A handle that comes back is checked (size first, then
//! the tag, in constant time) before a byte of it is decoded, so a forged or corrupted ticket is refused
//! with `INVALID_ARGUMENT` and never reaches the protobuf or Arrow IPC decoders.

use std::sync::Arc;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use prost::Message;
use rand::RngCore;
use sha2::Sha256;
use tonic::Status;

/// First byte of a sealed handle: the format's version.
const SEALED_V1: u8 = 1;
/// Length of the HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;
/// Largest bound-parameter row a handle carries (Arrow IPC bytes).
pub(crate) const MAX_PARAMETER_BYTES: usize = 1024 * 1024;
/// What the handle key is derived for, from `flight_sql.auth.token_secret`.
const KEY_CONTEXT: &[u8] = b"vitalflow statement handles v1";

/// Seals handles for clients and opens the ones they send back. Schedulers sharing
/// `flight_sql.auth.token_secret` accept each other's handles; without it, the key is random per process.
#[derive(Clone)]
pub(crate) struct HandleKey {
    key: Arc<[u8; 32]>,
    /// Largest sealed handle accepted, in bytes.
    max_bytes: usize,
}

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandleKey").field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl HandleKey {
    /// The key for `token_secret` (empty: a random one), accepting handles of SQL up to `max_sql_bytes`.
    pub(crate) fn new(token_secret: &str, max_sql_bytes: usize) -> HandleKey {
        let mut key = [0u8; 32];
        if token_secret.is_empty() {
            rand::rngs::OsRng.fill_bytes(&mut key);
        } else {
            key = mac_of(token_secret.as_bytes(), KEY_CONTEXT);
        }
        // The SQL and the parameters, plus the protobuf framing and the seal.
        let max_bytes = max_sql_bytes.saturating_add(MAX_PARAMETER_BYTES).saturating_add(1024);
        HandleKey { key: Arc::new(key), max_bytes }
    }

    /// `handle` as a client gets it.
    pub(crate) fn seal(&self, handle: &StatementHandle) -> Bytes {
        let body = handle.encode_to_vec();
        let mut sealed = BytesMut::with_capacity(1 + TAG_BYTES + body.len());
        sealed.put_u8(SEALED_V1);
        sealed.put_slice(&mac_of(self.key.as_slice(), &body));
        sealed.put_slice(&body);
        sealed.freeze()
    }

    /// The handle in `sealed`, when this server (or one sharing its key) issued it unaltered.
    pub(crate) fn open(&self, sealed: &[u8]) -> Result<StatementHandle, Status> {
        let forged = || Status::invalid_argument("statement handle was not issued by this server, or was altered");
        if sealed.len() < 1 + TAG_BYTES || sealed.len() > self.max_bytes || sealed[0] != SEALED_V1 {
            return Err(forged());
        }
        let (tag, body) = sealed[1..].split_at(TAG_BYTES);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_slice()).map_err(|_| forged())?;
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| forged())?;
        StatementHandle::decode(body).map_err(|_| forged())
    }
}

/// HMAC-SHA256 of `message` under `key`.
fn mac_of(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

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

    /// The same statement with `row` bound.
    pub(crate) fn with_parameters(&self, row: &RecordBatch) -> Result<StatementHandle, Status> {
        let encode = |e: arrow::error::ArrowError| Status::internal(format!("encoding parameters: {e}"));
        let mut writer = StreamWriter::try_new(Vec::new(), &row.schema()).map_err(encode)?;
        writer.write(row).map_err(encode)?;
        let parameters = Bytes::from(writer.into_inner().map_err(encode)?);
        if parameters.len() > MAX_PARAMETER_BYTES {
            return Err(Status::invalid_argument(format!(
                "bound parameters take {} bytes; at most {MAX_PARAMETER_BYTES} are accepted",
                parameters.len()
            )));
        }
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

    fn key() -> HandleKey {
        HandleKey::new("", 1 << 20)
    }

    #[test]
    fn handles_round_trip_with_and_without_parameters() {
        let key = key();
        let plain = StatementHandle::new("SELECT 1");
        assert_eq!(key.open(&key.seal(&plain)).unwrap(), plain);
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
        let bound = key.open(&key.seal(&plain.with_parameters(&row).unwrap())).unwrap();
        assert_eq!(bound.sql, "SELECT 1");
        assert_eq!(bound.parameters().unwrap().unwrap(), row);
    }

    #[test]
    fn forged_corrupted_foreign_or_oversized_handles_are_refused_before_decoding() {
        let key = key();
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)]));
        let row = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["P001"]))]).unwrap();
        let sealed = key.seal(
            &StatementHandle::new("SELECT * FROM vitals_clean WHERE patient_id = $1").with_parameters(&row).unwrap(),
        );
        // 300 random corruptions: a byte flipped anywhere, the tail cut, or bytes appended.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300 {
            let mut bytes = sealed.to_vec();
            let at = (next() as usize) % bytes.len();
            match i % 3 {
                0 => bytes[at] ^= (next() % 255 + 1) as u8,
                1 => bytes.truncate(at),
                _ => bytes.extend_from_slice(&next().to_le_bytes()),
            }
            let refused = key.open(&bytes).expect_err("a corrupted handle is refused");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        }
        // A handle signed by another server, an unsigned one, and one too large to read.
        let other = HandleKey::new("", 1 << 20);
        assert!(key.open(&other.seal(&StatementHandle::new("SELECT 1"))).is_err());
        assert!(key.open(&StatementHandle::new("SELECT 1").encode_to_vec()).is_err());
        assert!(key.open(&vec![SEALED_V1; (1 << 20) + MAX_PARAMETER_BYTES + 2048]).is_err());
        // Schedulers sharing a token secret share the key.
        let (a, b) = (HandleKey::new("shared", 1 << 20), HandleKey::new("shared", 1 << 20));
        assert!(b.open(&a.seal(&StatementHandle::new("SELECT 1"))).is_ok());
    }
}
