//! The lake's error type: every failure of reading or writing a table object or a checkpoint.

/// Failures of the data location and its objects.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The data URL could not be understood or its store opened.
    #[error("opening data location {url:?}: {reason}")]
    Location {
        /// The URL as configured.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An object-store operation failed (retryable).
    #[error("object store {op} {path}: {source}")]
    Store {
        /// The operation (put, list, get, delete).
        op: &'static str,
        /// Object path.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// Encoding a Parquet file failed (a bug: batches match their schema by construction).
    #[error("encoding parquet for {path}: {source}")]
    Parquet {
        /// Object path.
        path: String,
        /// The writer's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A file was asked to be written from no batches (a bug of the caller).
    #[error("no batches to write to {path}")]
    NoBatches {
        /// Object path.
        path: String,
    },
    /// A checkpoint exists but cannot be read or written as JSON: an operator must look.
    #[error("checkpoint {path} is unreadable: {reason}")]
    Checkpoint {
        /// Object path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl LakeError {
    /// Whether retrying the same step later can succeed (stores come back; bugs and bad files do not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LakeError::Store { .. })
    }

    /// A store error of `op` on `path`.
    pub fn store(op: &'static str, path: impl ToString, source: object_store::Error) -> LakeError {
        LakeError::Store { op, path: path.to_string(), source }
    }
}

/// Result with [`LakeError`].
pub type Result<T, E = LakeError> = std::result::Result<T, E>;
