//! The bounded functions refuse a call over the bound with an error naming the function, the size
//! and the setting, before allocating; calls under it answer as DataFusion's own functions do.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

use super::*;

const ONE_MIB: ValueLimit = ValueLimit { bytes: 1024 * 1024, setting: "test.max_value_mb" };

fn bounded_context() -> SessionContext {
    let mut ctx = SessionContext::new();
    register_bounded(&mut ctx, ONE_MIB).unwrap();
    ctx
}

async fn first_int(ctx: &SessionContext, sql: &str) -> Result<i64> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let column = batches[0].column(0);
    Ok(arrow::compute::cast(column, &DataType::Int64)?.as_primitive::<Int64Type>().value(0))
}

#[tokio::test]
async fn calls_over_the_bound_are_refused_naming_function_size_and_setting() {
    let ctx = bounded_context();
    for (sql, function) in [
        ("SELECT length(repeat('x', 1000000000))", "repeat"),
        ("SELECT length(lpad('x', 2000000))", "lpad"),
        ("SELECT length(rpad('x', 2000000, 'ab'))", "rpad"),
        ("SELECT length(replace('aaaa', '', repeat('b', 300000)))", "replace"),
        ("SELECT cardinality(array_repeat(1, 200000000))", "array_repeat"),
        ("SELECT cardinality(array_resize([1], 200000))", "array_resize"),
        ("SELECT count(*) FROM unnest(range(1, 100000000))", "range"),
        ("SELECT cardinality(generate_series(-100000000, 100000000, 3))", "generate_series"),
        ("SELECT cardinality(range(TIMESTAMP '2020-01-01', TIMESTAMP '2030-01-01', INTERVAL '1 second'))", "range"),
        ("SELECT cardinality(range(DATE '1000-01-01', DATE '9000-01-01', INTERVAL '1 day'))", "range"),
        // A column of modest values is one allocation too: 5000 rows of 600 bytes in one batch.
        ("SELECT max(length(repeat('x', 600 + value % 2))) FROM range(5000)", "repeat"),
    ] {
        let err = first_int(&ctx, sql).await.expect_err(sql);
        let message = err.to_string();
        assert!(matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)), "{sql}: {message}");
        for needle in [function, "test.max_value_mb", "MiB per value", "would build"] {
            assert!(message.contains(needle), "{sql}: {needle} missing in {message}");
        }
    }
}

#[tokio::test]
async fn calls_under_the_bound_answer_as_datafusions_own_functions_do() {
    let (ctx, plain) = (bounded_context(), SessionContext::new());
    for sql in [
        "SELECT length(repeat('ab', 1000))",
        "SELECT length(lpad('x', 1000, 'ab'))",
        "SELECT length(rpad('x', 1000))",
        "SELECT length(replace('abcabc', 'b', 'xyz'))",
        "SELECT cardinality(array_repeat(7, 1000))",
        "SELECT cardinality(array_resize([1, 2], 100, 0))",
        "SELECT count(*) FROM unnest(range(1, 1001))",
        "SELECT cardinality(generate_series(1, 1000))",
        "SELECT cardinality(range(DATE '2024-01-01', DATE '2024-12-31', INTERVAL '1 month'))",
        "SELECT cardinality(range(TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-02', INTERVAL '1 hour'))",
        "SELECT count(*) FROM range(5000) WHERE length(repeat('x', 100)) = 100",
        // NULLs build nothing.
        "SELECT count(repeat('x', CAST(NULL AS BIGINT)))",
    ] {
        let expected = first_int(&plain, sql).await.unwrap_or_else(|e| panic!("{sql} without the bound: {e}"));
        assert_eq!(first_int(&ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")), expected, "{sql}");
        assert!(expected > 0 || sql.contains("NULL"), "{sql} answers something to compare: {expected}");
    }
}

#[test]
fn registering_again_changes_the_bound_without_wrapping_twice() {
    let mut ctx = SessionContext::new();
    register_bounded(&mut ctx, ONE_MIB).unwrap();
    let larger = ValueLimit::from_mb(8, "other.max_value_mb");
    register_bounded(&mut ctx, larger).unwrap();
    let repeat = ctx.udf("repeat").unwrap();
    let bounded = repeat.inner().downcast_ref::<Bounded>().expect("repeat is bounded");
    assert_eq!(bounded.limit, larger);
    assert!(!bounded.inner.is::<Bounded>(), "the bound wraps DataFusion's function itself");
    assert!(ctx.udf("list_repeat").is_ok_and(|f| f.inner().is::<Bounded>()), "aliases are bounded too");
}
