//! How a query's errors reach the client: a client's mistake (bad SQL, unknown table, wrong
//! parameter) is `INVALID_ARGUMENT`, exhausted memory `RESOURCE_EXHAUSTED`, anything else is ours.

use datafusion::error::DataFusionError;
use tonic::Status;

/// A client mistake (bad SQL, unknown table, wrong parameter) is `invalid_argument`; anything else is ours.
pub(crate) fn query_status(e: DataFusionError) -> Status {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(e.to_string()),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(e.to_string()),
        // An executor's memory limit arrives from Ballista as the text of a failed job.
        _ if ["Resources exhausted", "ResourcesExhausted"].iter().any(|m| e.to_string().contains(m)) => {
            Status::resource_exhausted(format!(
                "query needs more memory than an executor task may use (executor.memory_limit_mb); \
             aggregate, filter or narrow the time range: {e}"
            ))
        }
        _ => Status::internal(e.to_string()),
    }
}
