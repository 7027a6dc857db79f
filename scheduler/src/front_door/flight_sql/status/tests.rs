//! Which failures are the client's: checked on DataFusion's own errors, on the text Ballista carries
//! from an executor, and on the integer overflow DataFusion lets wrap (docs/security.md says so).

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use ballista_core::error::BallistaError;
use ballista_core::serde::protobuf::FailedTask;
use datafusion::prelude::SessionContext;
use tonic::Code;

use super::*;

/// The status of `sql` run in process, whichever step (planning, constant folding, execution) fails.
async fn failure(sql: &str) -> Status {
    let ctx = SessionContext::new();
    let result = match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await.map(|_| ()),
        Err(e) => Err(e),
    };
    query_status(result.expect_err(sql))
}

#[tokio::test]
async fn values_a_query_cannot_compute_are_the_clients_mistake() {
    for sql in [
        "SELECT x / 0 FROM (VALUES (CAST(1 AS BIGINT))) AS t(x)",
        "SELECT 1 / 0",
        "SELECT CAST('x' AS TIMESTAMP)",
        "SELECT CAST(s AS TIMESTAMP) FROM (VALUES ('2026-13-45 99:00')) AS t(s)",
        "SELECT CAST('abc' AS INT)",
        "SELECT CAST(s AS BIGINT) FROM (VALUES ('12x')) AS t(s)",
        "SELECT * FROM no_such_table",
    ] {
        let status = failure(sql).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{sql}: {status}");
        assert!(!status.message().contains("backtrace"), "{sql}: {status}");
    }
}

#[test]
fn our_own_failures_stay_internal() {
    for e in [
        DataFusionError::Internal("a broken invariant".into()),
        DataFusionError::Execution("failed to cast the plan to a ballista plan".into()),
        DataFusionError::ArrowError(Box::new(ArrowError::IpcError("truncated".into())), None),
    ] {
        assert_eq!(query_status(e).code(), Code::Internal);
    }
    let wrapped = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None).context("running stage 2");
    assert_eq!(query_status(wrapped).code(), Code::InvalidArgument);
}

/// The error a client gets when a cluster job failed on an executor with `error`, built the way
/// Ballista builds it (the executor's `FailedTask`, then the job's failure text).
fn failed_job(error: DataFusionError) -> DataFusionError {
    let task = FailedTask::from(BallistaError::DataFusionError(Box::new(error)));
    DataFusionError::Execution(format!("Job aBcD123 failed: {}", task.error))
}

#[test]
fn a_failed_cluster_jobs_text_is_classified_by_the_arrow_error_it_names() {
    for kind in VALUE_ERRORS {
        let status = query_status(failed_job(DataFusionError::ArrowError(Box::new(kind), None)));
        assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    }
    let cast = ArrowError::CastError("Cannot cast string 'abc' to value of Int32 type".into());
    let status = query_status(failed_job(DataFusionError::ArrowError(Box::new(cast), None)));
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(status.message().contains("Cannot cast string 'abc'"), "{status}");
    // The Display form, as an error wrapped in text elsewhere carries it.
    let text = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None).to_string();
    assert_eq!(query_status(DataFusionError::Execution(format!("Job x failed: {text}"))).code(), Code::InvalidArgument);

    let ours = query_status(failed_job(DataFusionError::Internal("lost a shuffle file".into())));
    assert_eq!(ours.code(), Code::Internal, "{ours}");
}

/// DataFusion 55 has no checked arithmetic for SQL operators (`BinaryExpr::fail_on_overflow` is set by
/// no planner or option), so 64-bit integer overflow wraps; docs/security.md says so. This pins the
/// behaviour the page describes: if a release makes it an error, the page (and this test) change.
#[tokio::test]
async fn integer_overflow_wraps_as_the_security_page_says() {
    let ctx = SessionContext::new();
    for sql in ["SELECT 9223372036854775807 + 1", "SELECT x + 1 FROM (VALUES (9223372036854775807)) AS t(x)"] {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        assert!(column.is_valid(0), "{sql}");
        assert_eq!(column.as_primitive::<Int64Type>().value(0), i64::MIN, "{sql}");
    }
}

#[test]
fn a_bounded_functions_refusal_is_resource_exhausted_in_process_and_from_an_executor() {
    let refusal = || {
        DataFusionError::ResourcesExhausted(
            "repeat would build 953.7 MiB in one call (1 row(s)); at most 256 MiB per value (executor.max_value_mb)"
                .into(),
        )
    };
    for status in [query_status(refusal()), query_status(failed_job(refusal()))] {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
        assert!(status.message().contains("repeat would build 953.7 MiB"), "{status}");
        assert!(status.message().contains("executor.max_value_mb"), "{status}");
        assert!(!status.message().contains("executor.memory_limit_mb"), "not the memory limit's hint: {status}");
    }
    let memory = query_status(failed_job(DataFusionError::ResourcesExhausted("Failed to allocate".into())));
    assert_eq!(memory.code(), Code::ResourceExhausted);
    assert!(memory.message().contains("executor.memory_limit_mb"), "{memory}");
}
