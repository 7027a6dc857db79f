//! The crate's error type.

use datafusion::error::DataFusionError;

/// Failures of the scheduler process: its Ballista scheduler, the ETL driver and Flight SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding a listener failed.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// Address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Starting or talking to Ballista failed.
    #[error("ballista {step}: {source}")]
    Ballista {
        /// What we were doing.
        step: &'static str,
        /// Ballista's error.
        #[source]
        source: ballista_core::error::BallistaError,
    },
    /// Planning or running SQL failed.
    #[error("{step}: {source}")]
    Query {
        /// What we were doing.
        step: String,
        /// DataFusion's error.
        #[source]
        source: DataFusionError,
    },
    /// This process's hold on the ETL of the data location ran out before a batch committed: the batch
    /// waits until the lease is renewed (or another driver, which took over, runs it).
    #[error("micro-batch {batch}: the ETL lease of this data location ran out before its commit")]
    LeaseExpired {
        /// The batch id.
        batch: i64,
    },
    /// A micro-batch's cluster job ran past `etl.batch_timeout_seconds` and was cancelled (retryable).
    #[error(
        "micro-batch {batch} did not finish within etl.batch_timeout_seconds ({seconds} s); its job is cancelled and the batch re-runs"
    )]
    BatchTimeout {
        /// The batch id.
        batch: i64,
        /// The limit.
        seconds: u64,
    },
    /// Reading or writing the checkpoint or a table object failed (retryable).
    #[error("object store {step}: {source}")]
    Store {
        /// What we were doing.
        step: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// Landing output failed.
    #[error(transparent)]
    Landing(#[from] vitalflow_ingest::Error),
    /// The cluster's settings (its key, its TLS files) are unusable: the executor crate's error, which
    /// names the setting already.
    #[error(transparent)]
    Cluster(#[from] vitalflow_executor::Error),
    /// Reading or writing the lake failed (a store error is retryable).
    #[error(transparent)]
    Lake(#[from] vitalflow_udf_model::lake::LakeError),
    /// The checkpoint exists but cannot be read: an operator must look.
    #[error("checkpoint {path} is unreadable: {reason}")]
    Checkpoint {
        /// Object path.
        path: String,
        /// Parse error.
        reason: String,
    },
    /// Sending alerts to a sink failed (retried with backoff).
    #[error("alert delivery to {sink}: {reason}")]
    Delivery {
        /// `kafka` or `webhook`.
        sink: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The caller's credentials are missing or wrong.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The configuration is inconsistent or a file it names is unreadable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the same step can succeed later (stores and clusters come back; bad config does not).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store { .. }
            | Error::Ballista { .. }
            | Error::Query { .. }
            | Error::BatchTimeout { .. }
            | Error::LeaseExpired { .. }
            | Error::Delivery { .. } => true,
            Error::Landing(e) => e.is_retryable(),
            Error::Lake(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
