//! The crate's error type. Bad records are not errors: they become dead letters (`decode::Rejection`).

/// Failures of the ingest service and its storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data URL could not be understood or its store opened.
    #[error("opening data location {url:?}: {reason}")]
    DataLocation {
        /// The URL as configured.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An object-store operation failed (retryable).
    #[error("object store {op} {path}: {source}")]
    Store {
        /// The operation (put, list, get).
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
    /// Building an Arrow batch failed (a bug: builders follow the schema).
    #[error("building arrow batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Kafka client operation failed.
    #[error("kafka {op}: {source}")]
    Kafka {
        /// The operation (create consumer, subscribe, commit, produce).
        op: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The brokers refused the client's credentials or TLS (wrong password, unknown CA, plaintext to a
    /// TLS port); retrying cannot help.
    #[error(
        "kafka at {brokers} refused the connection: {reason} (check kafka.security_protocol, kafka.sasl_* and kafka.ssl_*)"
    )]
    Refused {
        /// Bootstrap servers.
        brokers: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid ingest configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same step later can succeed (stores and brokers come back; bugs do not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Store { .. } | Error::Kafka { .. })
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
