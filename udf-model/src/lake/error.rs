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
    /// A Delta Lake operation on a table failed.
    #[error("table {table}: {step}: {source}")]
    Delta {
        /// The table.
        table: String,
        /// What was being done.
        step: String,
        /// delta-rs's error (boxed: it is large, and every lake call returns this type).
        #[source]
        source: Box<deltalake_core::DeltaTableError>,
    },
    /// A commit lost to another writer that moved the same application on: this writer no longer owns
    /// what it was writing (a partition taken over after a rebalance, a second ETL driver).
    #[error("table {table}: commit refused, another writer moved the same application on: {reason}")]
    Conflict {
        /// The table.
        table: String,
        /// delta-rs's reason.
        reason: String,
    },
    /// The location was written by an earlier vitalflow whose tables were plain Parquet files.
    #[error(
        "data location {url} was written by an earlier vitalflow ({found}); convert it once with `vitalflow migrate` (see docs/operations.md), then start again"
    )]
    EarlierFormat {
        /// The location.
        url: String,
        /// What gave it away.
        found: String,
    },
    /// Converting an earlier data location failed (nothing was moved unless every file was read).
    #[error("migrating to Delta Lake tables: {reason}")]
    Migration {
        /// What went wrong.
        reason: String,
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
        use deltalake_core::DeltaTableError as D;
        match self {
            LakeError::Store { .. } => true,
            LakeError::Delta { source, .. } => {
                matches!(
                    source.as_ref(),
                    D::ObjectStore { .. } | D::Io { .. } | D::VersionAlreadyExists(_) | D::Transaction { .. }
                )
            }
            _ => false,
        }
    }

    /// A Delta error of `step` on `table`, as a closure for `map_err`.
    pub fn delta(table: &str, step: &str) -> impl Fn(deltalake_core::DeltaTableError) -> LakeError {
        let (table, step) = (table.to_string(), step.to_string());
        move |source| LakeError::Delta { table: table.clone(), step: step.clone(), source: Box::new(source) }
    }

    /// A store error of `op` on `path`.
    pub fn store(op: &'static str, path: impl ToString, source: object_store::Error) -> LakeError {
        LakeError::Store { op, path: path.to_string(), source }
    }
}

/// Result with [`LakeError`].
pub type Result<T, E = LakeError> = std::result::Result<T, E>;
