//! What a plan may hold to run on the Ballista cluster as it would in one process.
//!
//! The plan reaches the executors through datafusion-proto, which (55) drops `IGNORE NULLS` from
//! window functions that are window functions proper (`first_value`, `last_value`, `nth_value`, `lag`,
//! `lead`: "WindowUDFExpr doesn't have ignore_nulls"). The executors would then return the values
//! with NULLs respected: wrong answers, silently. Such a query is refused before it runs, naming the
//! function and what to write instead. Aggregates used as window functions keep the flag and pass.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFunctionDefinition};

/// Why `plan` cannot run on the cluster as written, if it cannot.
pub fn cluster_refusal(plan: &LogicalPlan) -> Option<String> {
    let mut refusal = None;
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Some(name) = window_ignoring_nulls(e) {
                    refusal = Some(format!(
                        "{name}(...) IGNORE NULLS cannot run on the cluster: the plan the executors receive \
                         (datafusion-proto 55) loses IGNORE NULLS for window functions, so NULLs would be \
                         returned; write last_known(v) OVER (...) for the last non-NULL value, or \
                         {name}(...) RESPECT NULLS over a filtered input"
                    ));
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(if refusal.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    refusal
}

/// The name of a window function proper that is asked to ignore NULLs.
fn window_ignoring_nulls(expr: &Expr) -> Option<String> {
    let Expr::WindowFunction(window) = expr else { return None };
    let WindowFunction { fun, params } = window.as_ref();
    let ignores = matches!(params.null_treatment, Some(NullTreatment::IgnoreNulls));
    match fun {
        WindowFunctionDefinition::WindowUDF(udwf) if ignores => Some(udwf.name().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn refusal_of(sql: &str) -> Option<String> {
        let ctx = SessionContext::new();
        let plan = ctx.state().create_logical_plan(sql).await.expect("plans");
        cluster_refusal(&plan)
    }

    const ROWS: &str = "(VALUES (1, 10), (2, NULL), (3, 30)) AS t(ts, v)";

    #[tokio::test]
    async fn window_functions_ignoring_nulls_are_refused_by_name() {
        for (function, call) in [
            ("last_value", "last_value(v) IGNORE NULLS OVER (ORDER BY ts)"),
            ("first_value", "first_value(v) IGNORE NULLS OVER (ORDER BY ts)"),
            ("lag", "lag(v) IGNORE NULLS OVER (ORDER BY ts)"),
        ] {
            let why = refusal_of(&format!("SELECT ts, {call} FROM {ROWS}")).await;
            let why = why.unwrap_or_else(|| panic!("{call} passed"));
            assert!(why.starts_with(&format!("{function}(...) IGNORE NULLS")) && why.contains("last_known"), "{why}");
        }
        // In a subquery too.
        let nested = format!(
            "SELECT * FROM (SELECT 1 AS ts) AS t0 \
             WHERE ts IN (SELECT last_value(v) IGNORE NULLS OVER (ORDER BY ts) FROM {ROWS})"
        );
        assert!(refusal_of(&nested).await.is_some());
    }

    #[tokio::test]
    async fn what_travels_intact_passes() {
        for call in [
            "last_value(v) OVER (ORDER BY ts)",
            "last_value(v) RESPECT NULLS OVER (ORDER BY ts)",
            "sum(v) OVER (ORDER BY ts)",
            "lag(v) OVER (ORDER BY ts)",
        ] {
            assert_eq!(refusal_of(&format!("SELECT ts, {call} FROM {ROWS}")).await, None, "{call}");
        }
    }
}
