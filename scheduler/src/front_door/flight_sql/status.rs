//! How a query's errors reach the client: a client's mistake is `INVALID_ARGUMENT`, exhausted memory
//! `RESOURCE_EXHAUSTED`, anything else is ours (`INTERNAL`). A mistake is bad SQL, an unknown table or
//! a wrong parameter (DataFusion's SQL, plan and schema errors), or a value the query's own expression
//! cannot compute: division by zero, a string that is no number or time, an overflow Arrow checks
//! (Arrow's [`VALUE_ERRORS`]). Messages never carry a backtrace.

use std::mem::discriminant;

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use tonic::Status;

/// Arrow's errors that only the values a query computes can cause, so the client must act: integer
/// division by zero, a failed cast (`CAST('abc' AS INT)`), a string that does not parse
/// (`CAST('x' AS TIMESTAMP)`), and an overflow of Arrow's checked kernels. Compared by variant.
const VALUE_ERRORS: [ArrowError; 4] = [
    ArrowError::DivideByZero,
    ArrowError::CastError(String::new()),
    ArrowError::ParseError(String::new()),
    ArrowError::ArithmeticOverflow(String::new()),
];

/// The answer to a query that failed with `e`.
pub(crate) fn query_status(e: DataFusionError) -> Status {
    let message = e.strip_backtrace();
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Status::invalid_argument(message),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        _ if value_error_in(&e) => Status::invalid_argument(message),
        DataFusionError::Execution(text) if names_value_error(text) => Status::invalid_argument(message),
        // A bounded function's refusal names its own setting (`…max_value_mb`), also as a job's text.
        _ if exhausted(&message) && message.contains(VALUE_LIMIT_SETTING) => Status::resource_exhausted(message),
        // An executor's memory limit arrives from Ballista as the text of a failed job.
        _ if exhausted(&message) => Status::resource_exhausted(format!(
            "query needs more memory than an executor task may use (executor.memory_limit_mb); \
             aggregate, filter or narrow the time range: {message}"
        )),
        _ => Status::internal(message),
    }
}

/// What every bound on a function's value is called (`flight_sql.max_value_mb`, `executor.max_value_mb`).
const VALUE_LIMIT_SETTING: &str = ".max_value_mb";

/// Whether `message` is DataFusion's resources-exhausted error, in Display or Debug form.
fn exhausted(message: &str) -> bool {
    ["Resources exhausted", "ResourcesExhausted"].iter().any(|m| message.contains(m))
}

/// Whether one of [`VALUE_ERRORS`] is in `e`'s chain of sources (a DataFusion error wrapping an Arrow
/// error, possibly inside context or an external error).
fn value_error_in(e: &DataFusionError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = next {
        if let Some(arrow) = error.downcast_ref::<ArrowError>()
            && VALUE_ERRORS.iter().any(|kind| discriminant(kind) == discriminant(arrow))
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether the text of a failed Ballista job names one of [`VALUE_ERRORS`].
///
/// A query on the cluster fails on an executor, and Ballista sends the scheduler only text: the
/// executor writes the task's error with `{:?}` (`FailedTask::from` in ballista-core), and the client
/// gets `DataFusionError::Execution("Job … failed: …")`, so the error's type is lost on the way. The
/// text is matched against the Debug (`ArrowError(DivideByZero`) and Display (`Arrow error: Divide by
/// zero error`) forms of the variants themselves, not against words written here, so that a new arrow
/// release that rewords a message still matches, and a message that merely mentions a cast does not.
fn names_value_error(text: &str) -> bool {
    VALUE_ERRORS.into_iter().any(|kind| {
        let debug = format!("{kind:?}");
        // `CastError("")` → `CastError(`; `DivideByZero` stays whole.
        let variant = debug.split_inclusive('(').next().unwrap_or(&debug);
        let display = DataFusionError::ArrowError(Box::new(kind), None).strip_backtrace();
        text.contains(&format!("ArrowError({variant}")) || text.contains(&display)
    })
}

#[cfg(test)]
mod tests;
