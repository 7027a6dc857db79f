//! The crate's error type. Bad records are not errors: they become dead letters (`decode::Rejection`).

/// Failures of the ingest service and its storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the lake failed (a store error is retryable).
    #[error(transparent)]
    Lake(#[from] vitalflow_udf_model::lake::LakeError),
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
        match self {
            Error::Lake(e) => e.is_retryable(),
            Error::Kafka { .. } => true,
            _ => false,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
