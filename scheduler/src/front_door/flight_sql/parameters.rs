//! Parameters of prepared statements: their types, inferred from the query, the parameter schema
//! clients bind against, reading the one row a client binds (DoPut, bounded) and binding it.
//!
//! DataFusion types a placeholder compared with a column (`heart_rate > ?` is Float64) but not one
//! passed to a function (`predict_risk(?, ...)`); such a placeholder takes the type the function
//! coerces it to, so that a JDBC `setDouble` matches. A query executed with a parameter left
//! without a value is refused by name before it is planned onto the cluster.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::logical_expr::expr::{Placeholder, ScalarFunction};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::prelude::DataFrame;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use super::handle::MAX_PARAMETER_BYTES;
use super::status::query_status;

/// Reads the row of parameter values a client binds with DoPut: none, or exactly one. Refuses as soon
/// as a second row arrives or the messages (headers, bodies and metadata) pass [`MAX_PARAMETER_BYTES`],
/// the most a handle carries, and then reads no further: a client streaming a million rows or an
/// endless stream is stopped at the first batch over the limit, not buffered. (One message can be at
/// most the server's 4 MiB gRPC message limit before it is seen here.)
pub(crate) async fn read_parameter_row(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Option<RecordBatch>, Status> {
    let mut received = 0usize;
    let budgeted = messages.map(move |message| {
        let message = message?;
        received = received
            .saturating_add(message.data_header.len())
            .saturating_add(message.data_body.len())
            .saturating_add(message.app_metadata.len());
        if received > MAX_PARAMETER_BYTES {
            return Err(FlightError::Tonic(Box::new(Status::invalid_argument(format!(
                "bound parameters are over {MAX_PARAMETER_BYTES} bytes (the limit of one row of parameters); \
                 bind one row of values per execution"
            )))));
        }
        Ok(message)
    });
    let mut batches = std::pin::pin!(FlightRecordBatchStream::new_from_flight_data(budgeted));
    let mut row: Option<RecordBatch> = None;
    while let Some(batch) = batches.try_next().await.map_err(|e| match e {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("reading bound parameters: {other}")),
    })? {
        if batch.num_rows() == 0 {
            continue;
        }
        if row.is_some() || batch.num_rows() > 1 {
            return Err(Status::invalid_argument(
                "bind exactly one row of parameters per query execution: more than one row arrived",
            ));
        }
        row = Some(batch);
    }
    Ok(row)
}

/// What a plan's parameters get.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding<'a> {
    /// Nothing yet: the statement is being prepared (or its schema asked for).
    Prepare,
    /// The statement runs: every parameter needs a value, from this row.
    Execute(Option<&'a RecordBatch>),
}

/// `plan` with its parameters typed and, when executing, bound.
pub(crate) fn apply(plan: LogicalPlan, binding: Binding<'_>) -> Result<LogicalPlan, Status> {
    let plan = infer_types(plan)?;
    match binding {
        Binding::Prepare => Ok(plan),
        Binding::Execute(Some(row)) => bind(plan, row),
        Binding::Execute(None) => {
            let names = parameter_names(&plan)?;
            if names.is_empty() {
                return Ok(plan);
            }
            let (these, have) = if names.len() == 1 { ("parameter", "has") } else { ("parameters", "have") };
            Err(Status::invalid_argument(format!(
                "{these} {} {have} no value: prepare the query and bind one row of values (DoPut) before \
                 executing it",
                names.join(", ")
            )))
        }
    }
}

/// The parameter schema of a prepared query: `$1..$n`, typed as inferred (Utf8 when nothing says).
pub(crate) fn parameter_schema(frame: &DataFrame) -> Result<Schema, Status> {
    let types = frame.logical_plan().get_parameter_types().map_err(query_status)?;
    let fields = parameter_names(frame.logical_plan())?
        .into_iter()
        .map(|n| {
            let data_type = types.get(&n).cloned().flatten().unwrap_or(DataType::Utf8);
            Field::new(n, data_type, true)
        })
        .collect::<Vec<_>>();
    Ok(Schema::new(fields))
}

/// The plan's parameter names in order (`$1, $2, ...`).
fn parameter_names(plan: &LogicalPlan) -> Result<Vec<String>, Status> {
    let mut names: Vec<String> = plan.get_parameter_types().map_err(query_status)?.into_keys().collect();
    names.sort_by_key(|n| (n.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX), n.clone()));
    Ok(names)
}

/// Types every untyped placeholder that is a function's argument as the function coerces it.
fn infer_types(plan: LogicalPlan) -> Result<LogicalPlan, Status> {
    plan.transform_up_with_subqueries(|node| {
        // Arguments are typed against the node's input (one input covers projections, filters,
        // aggregates and sorts; elsewhere only placeholders and literals are typed).
        let schema = match node.inputs().as_slice() {
            [input] => Arc::clone(input.schema()),
            _ => Arc::new(DFSchema::empty()),
        };
        let typed = node.map_expressions(|expr| expr.transform_up(|e| type_function_arguments(e, &schema)))?;
        if typed.transformed { typed.map_data(|node| node.recompute_schema()) } else { Ok(typed) }
    })
    .map(|typed| typed.data)
    .map_err(query_status)
}

fn is_untyped_placeholder(expr: &Expr) -> bool {
    matches!(expr, Expr::Placeholder(Placeholder { field: None, .. }))
}

fn type_function_arguments(expr: Expr, schema: &DFSchema) -> datafusion::common::Result<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, mut args }) = expr else { return Ok(Transformed::no(expr)) };
    let unchanged = |func, args| Ok(Transformed::no(Expr::ScalarFunction(ScalarFunction { func, args })));
    if !args.iter().any(is_untyped_placeholder) {
        return unchanged(func, args);
    }
    // An untyped placeholder counts as a NULL: every signature accepts one where it takes a value.
    let given: Option<Vec<FieldRef>> = args
        .iter()
        .map(|arg| {
            if is_untyped_placeholder(arg) {
                Some(Arc::new(Field::new("parameter", DataType::Null, true)))
            } else {
                arg.to_field(schema).ok().map(|(_, field)| field)
            }
        })
        .collect();
    let Some(wanted) = given.and_then(|given| fields_with_udf(&given, func.as_ref()).ok()) else {
        return unchanged(func, args);
    };
    let mut changed = false;
    for (arg, field) in args.iter_mut().zip(wanted) {
        if let Expr::Placeholder(placeholder) = arg
            && placeholder.field.is_none()
            && !field.data_type().is_null()
        {
            placeholder.field = Some(Arc::new(Field::new(&placeholder.id, field.data_type().clone(), true)));
            changed = true;
        }
    }
    let expr = Expr::ScalarFunction(ScalarFunction { func, args });
    Ok(if changed { Transformed::yes(expr) } else { Transformed::no(expr) })
}

/// Binds the first row of `row` to `$1..$n`, cast to the types the plan expects.
fn bind(plan: LogicalPlan, row: &RecordBatch) -> Result<LogicalPlan, Status> {
    if row.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters per query, got {}",
            row.num_rows()
        )));
    }
    let expected = plan.get_parameter_types().map_err(query_status)?;
    let names = parameter_names(&plan)?;
    if row.num_columns() < names.len() {
        return Err(Status::invalid_argument(format!(
            "parameters {} have no value ({} of {} bound)",
            names[row.num_columns()..].join(", "),
            row.num_columns(),
            names.len()
        )));
    }
    if row.num_columns() > names.len() {
        return Err(Status::invalid_argument(format!(
            "the query has {} parameters, {} were bound",
            names.len(),
            row.num_columns()
        )));
    }
    let mut values = Vec::with_capacity(row.num_columns());
    for (i, column) in row.columns().iter().enumerate() {
        let value = ScalarValue::try_from_array(column, 0).map_err(query_status)?;
        let value = match expected.get(&format!("${}", i + 1)) {
            Some(Some(t)) if value.data_type() != *t => value
                .cast_to(t)
                .map_err(|e| Status::invalid_argument(format!("parameter ${} cannot be read as {t}: {e}", i + 1)))?,
            _ => value,
        };
        values.push(value);
    }
    plan.with_param_values(ParamValues::List(values.into_iter().map(Into::into).collect())).map_err(query_status)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Float64Array, StringArray};
    use arrow::datatypes::Int32Type;
    use datafusion::logical_expr::ScalarUDF;
    use datafusion::prelude::SessionContext;
    use vitalflow_udf_model::udf::RubricScore;

    use super::*;

    /// `rubric_score` takes six vitals, coerced to Float64 by its own rule (as `predict_risk`).
    const SQL: &str = "SELECT rubric_score($1, 120, 80, 97, 37, 100) AS score, $2 = 'x' AS s";

    async fn planned(sql: &str) -> DataFrame {
        let ctx = SessionContext::new();
        ctx.register_udf(ScalarUDF::from(RubricScore::new()));
        let (state, plan) = ctx.sql(sql).await.unwrap().into_parts();
        DataFrame::new(state, apply(plan, Binding::Prepare).unwrap())
    }

    #[tokio::test]
    async fn a_functions_argument_takes_the_type_the_function_wants() {
        let frame = planned(SQL).await;
        let schema = parameter_schema(&frame).unwrap();
        let types: Vec<_> = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        assert_eq!(types, [("$1".to_string(), DataType::Float64), ("$2".to_string(), DataType::Utf8)]);

        let row = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Float64Array::from(vec![72.0])), Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let (state, plan) = frame.into_parts();
        let bound = DataFrame::new(state, apply(plan, Binding::Execute(Some(&row))).unwrap());
        let out = bound.collect().await.unwrap();
        assert!(out[0].column(0).as_primitive::<Int32Type>().is_valid(0));
        assert!(out[0].column(1).as_boolean().value(0));
    }

    /// The Flight messages of `batches` (schema first), as a DoPut stream.
    fn messages(batches: Vec<RecordBatch>) -> Vec<Result<FlightData, Status>> {
        let schema = batches[0].schema();
        arrow_flight::utils::batches_to_flight_data(&schema, batches).unwrap().into_iter().map(Ok).collect()
    }

    fn numbers(values: Vec<f64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Float64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values))]).unwrap()
    }

    #[tokio::test]
    async fn one_bound_row_is_read_and_none_is_none() {
        let row = read_parameter_row(futures::stream::iter(messages(vec![numbers(vec![72.0])]))).await.unwrap();
        assert_eq!(row, Some(numbers(vec![72.0])));
        let none = read_parameter_row(futures::stream::iter(messages(vec![numbers(vec![])]))).await.unwrap();
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn a_second_row_is_refused_without_reading_the_rest_of_the_stream() {
        // Rows without end: reading them all first (as binding once did) would never answer.
        let first = messages(vec![numbers(vec![1.0])]);
        let endless =
            futures::stream::iter(first.clone()).chain(futures::stream::repeat_with(move || first[1].clone()));
        let refused = read_parameter_row(endless).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("more than one row"), "{refused}");
        let two = read_parameter_row(futures::stream::iter(messages(vec![numbers(vec![1.0, 2.0])]))).await;
        assert!(two.unwrap_err().message().contains("exactly one row"));
    }

    #[tokio::test]
    async fn parameters_over_the_byte_budget_are_refused_naming_it() {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)]));
        let huge = "x".repeat(MAX_PARAMETER_BYTES + 1);
        let row = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![huge]))]).unwrap();
        let refused = read_parameter_row(futures::stream::iter(messages(vec![row]))).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(&format!("over {MAX_PARAMETER_BYTES} bytes")), "{refused}");
        // Empty batches without end count too.
        let empty = messages(vec![numbers(vec![])]);
        let endless =
            futures::stream::iter(empty.clone()).chain(futures::stream::repeat_with(move || empty[1].clone()));
        let refused = read_parameter_row(endless).await.unwrap_err();
        assert!(refused.message().contains("bytes"), "{refused}");
    }

    #[tokio::test]
    async fn executing_without_values_names_the_missing_parameters() {
        let (_, plan) = planned(SQL).await.into_parts();
        let refused = apply(plan, Binding::Execute(None)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("parameters $1, $2 have no value"), "{refused}");
        let (_, plain) = planned("SELECT 1").await.into_parts();
        assert!(apply(plain, Binding::Execute(None)).is_ok());
    }
}
