//! How the front door turns client SQL into a result stream: the read-only policy (one query,
//! nothing that writes, sets or reads files), parameter binding, the types clients can read, and
//! the per-query limits.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use tonic::Status;

use crate::config::Role;
use crate::etl::progress::{PROGRESS_TABLE, read_progress};
use crate::front_door::audit::{AUDIT_TABLE, AuditLog};
use crate::front_door::auth::Principal;
use crate::front_door::flight_sql::ProgressSource;

/// SQL that only reads, checked again on the plan: no DDL, no DML (COPY included), no `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

const READ_ONLY: &str =
    "vitalflow's Flight SQL is read-only and accepts one query (SELECT, WITH or VALUES) per request";

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

/// Parses `sql` into exactly one query, refusing every other kind of statement with its name.
pub(crate) fn parse_query(sql: &str) -> Result<Statement, Status> {
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(query_status)?;
    if statements.is_empty() {
        return Err(Status::invalid_argument("empty SQL: send one query"));
    }
    if statements.len() != 1 {
        return Err(Status::invalid_argument(format!(
            "{READ_ONLY}; this request holds {} statements",
            statements.len()
        )));
    }
    let refused = |what: &str| Status::permission_denied(format!("{what} is refused: {READ_ONLY}"));
    match statements.pop_front() {
        Some(DFStatement::Statement(statement)) => match *statement {
            query @ Statement::Query(_) => Ok(query),
            other => {
                let text = other.to_string();
                let kind: Vec<&str> = text.split_whitespace().take(2).collect();
                Err(refused(&kind.join(" ")))
            }
        },
        Some(DFStatement::CreateExternalTable(_)) => Err(refused("CREATE EXTERNAL TABLE (reading files or URLs)")),
        Some(DFStatement::CopyTo(_)) => Err(refused("COPY (writing files)")),
        Some(DFStatement::Explain(_)) => Err(refused("EXPLAIN of a statement")),
        Some(DFStatement::Reset(_)) => Err(refused("RESET")),
        None => Err(Status::invalid_argument("empty SQL: send one query")),
    }
}

/// Numbers `?` placeholders `$1, $2, ...` in order (ADBC and JDBC users write `?`; DataFusion binds `$n`).
fn number_placeholders(statement: &mut Statement) {
    let mut next = 0;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Value(v) = expr
            && let Value::Placeholder(p) = &mut v.value
            && p == "?"
        {
            next += 1;
            *p = format!("${next}");
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether the query names the table `name`.
/// Tables small by design (one row per patient), read on the front door's in-process context: a
/// Ballista job's fixed cost (~100 ms of polling) would be most of such a query's time.
const IN_PROCESS_TABLES: &[&str] = &[vitalflow_udf_model::schema::table::PATIENT_LATEST];

/// Whether the query names tables, all of them among `names`.
fn names_only(ctx: &SessionContext, statement: &Statement, names: &[&str]) -> Result<bool, Status> {
    let refs = ctx
        .state()
        .resolve_table_references(&DFStatement::Statement(Box::new(statement.clone())))
        .map_err(query_status)?;
    Ok(!refs.is_empty() && refs.iter().all(|r| names.iter().any(|n| r.table().eq_ignore_ascii_case(n))))
}

fn names_table(ctx: &SessionContext, statement: &Statement, name: &str) -> Result<bool, Status> {
    let refs = ctx
        .state()
        .resolve_table_references(&DFStatement::Statement(Box::new(statement.clone())))
        .map_err(query_status)?;
    Ok(refs.iter().any(|r| r.table().eq_ignore_ascii_case(name)))
}

/// Plans `sql` read-only for `who`, binding `parameters` when given. Queries of `audit_log` are for
/// admins and run on a snapshot of the in-memory window; queries of `etl_progress` on a snapshot of
/// the figures read now.
pub(crate) async fn plan(
    ctx: &SessionContext,
    local: Option<&SessionContext>,
    audit: &AuditLog,
    progress: Option<&ProgressSource>,
    who: &Principal,
    sql: &str,
    parameters: Option<&RecordBatch>,
) -> Result<DataFrame, Status> {
    let mut statement = parse_query(sql)?;
    number_placeholders(&mut statement);
    let ctx = if names_table(ctx, &statement, AUDIT_TABLE)? {
        if who.role != Role::Admin {
            return Err(Status::permission_denied(format!("{AUDIT_TABLE} is readable by the admin role only")));
        }
        audit_context(audit)?
    } else if let Some(progress) = progress
        && names_table(ctx, &statement, PROGRESS_TABLE)?
    {
        progress_context(progress).await?
    } else if let Some(local) = local
        && names_only(ctx, &statement, IN_PROCESS_TABLES)?
    {
        local.clone()
    } else {
        ctx.clone()
    };
    let state = ctx.state();
    let plan = state.statement_to_plan(DFStatement::Statement(Box::new(statement))).await.map_err(query_status)?;
    read_only().verify_plan(&plan).map_err(|e| Status::permission_denied(format!("{e}: {READ_ONLY}")))?;
    only_registered_tables(&ctx, &plan)?;
    let plan = match parameters {
        Some(row) => bind(plan, row)?,
        None => plan,
    };
    ctx.execute_logical_plan(plan).await.map_err(query_status)
}

/// Refuses scans of anything but the session's registered tables (table functions such as
/// `generate_series`, which also cannot travel to Ballista's executors).
fn only_registered_tables(ctx: &SessionContext, plan: &LogicalPlan) -> Result<(), Status> {
    let mut foreign = None;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && !ctx.table_exist(scan.table_name.clone()).unwrap_or(false)
        {
            foreign = Some(scan.table_name.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(query_status)?;
    match foreign {
        Some(name) => Err(Status::permission_denied(format!(
            "{name} is refused: only vitalflow's tables can be queried (see GetTables)"
        ))),
        None => Ok(()),
    }
}

fn audit_context(audit: &AuditLog) -> Result<SessionContext, Status> {
    let snapshot = audit.snapshot().map_err(|e| Status::internal(format!("reading the audit log: {e}")))?;
    let table = MemTable::try_new(snapshot.schema(), vec![vec![snapshot]]).map_err(query_status)?;
    let ctx = SessionContext::new_with_config(crate::catalog::session::session_config());
    ctx.register_table(AUDIT_TABLE, Arc::new(table)).map_err(query_status)?;
    Ok(ctx)
}

/// A context holding only `etl_progress`, read now.
async fn progress_context(source: &ProgressSource) -> Result<SessionContext, Status> {
    let progress = read_progress(&source.location, source.stats.as_deref())
        .await
        .map_err(|e| Status::unavailable(format!("reading the ETL progress: {e}")))?;
    let batch = progress.to_record_batch().map_err(|e| Status::internal(e.to_string()))?;
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(query_status)?;
    let ctx = SessionContext::new_with_config(crate::catalog::session::session_config());
    ctx.register_table(PROGRESS_TABLE, Arc::new(table)).map_err(query_status)?;
    Ok(ctx)
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
    let mut values = Vec::with_capacity(row.num_columns());
    for (i, column) in row.columns().iter().enumerate() {
        let value = ScalarValue::try_from_array(column, 0).map_err(query_status)?;
        let value = match expected.get(&format!("${}", i + 1)) {
            Some(Some(t)) if value.data_type() != *t => value
                .cast_to(t)
                .map_err(|e| Status::invalid_argument(format!("parameter {} cannot be read as {t}: {e}", i + 1)))?,
            _ => value,
        };
        values.push(value);
    }
    if values.len() != expected.len() {
        return Err(Status::invalid_argument(format!(
            "the query has {} parameters, {} were bound",
            expected.len(),
            values.len()
        )));
    }
    plan.with_param_values(ParamValues::List(values.into_iter().map(Into::into).collect())).map_err(query_status)
}

/// The parameter schema of a prepared query: `$1..$n`, typed as the plan infers (Utf8 when it cannot).
pub(crate) fn parameter_schema(frame: &DataFrame) -> Result<Schema, Status> {
    let types = frame.logical_plan().get_parameter_types().map_err(query_status)?;
    let mut names: Vec<&String> = types.keys().collect();
    names.sort_by_key(|n| n.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX));
    Ok(Schema::new(
        names.into_iter().map(|n| Field::new(n, types[n].clone().unwrap_or(DataType::Utf8), true)).collect::<Vec<_>>(),
    ))
}

/// A type every client reads: Flight SQL clients differ on views, large and dictionary strings and
/// on timestamp units (Grafana reads every timestamp as nanoseconds).
fn client_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, value) => client_type(value),
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
        other => other.clone(),
    }
}

/// The schema announced and streamed: client types, every field nullable, no metadata. Nullable
/// because DataFusion's plan and Ballista's stages disagree on it (aggregates), and clients (ADBC)
/// refuse a stream whose schema differs from the announced one.
pub(crate) fn client_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| Field::new(f.name(), client_type(f.data_type()), true)).collect::<Vec<_>>(),
    ))
}

/// `batch` under `schema` (from `client_schema` of its plan), casting columns where types differ.
pub(crate) fn to_client_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Per-query limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryLimits {
    /// Longest a query may run, planning to last row.
    pub(crate) timeout: Duration,
    /// Most result bytes (Arrow memory) one query may return.
    pub(crate) max_result_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_queries_pass() {
        assert!(parse_query("SELECT 1").is_ok());
        assert!(parse_query("WITH a AS (SELECT 1 AS x) SELECT x FROM a").is_ok());
        for (sql, needle) in [
            ("SELECT 1; SELECT 2", "2 statements"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("INSERT INTO vitals_raw VALUES (1)", "INSERT INTO"),
            ("DELETE FROM vitals_raw", "DELETE"),
            ("DROP TABLE vitals_raw", "DROP TABLE"),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", "COPY"),
            ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("", "empty"),
        ] {
            let err = parse_query(sql).expect_err(sql);
            assert!(err.message().contains(needle), "{sql}: {}", err.message());
        }
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let mut q = parse_query("SELECT * FROM t WHERE a = ? AND b > ?").unwrap();
        number_placeholders(&mut q);
        assert!(q.to_string().ends_with("a = $1 AND b > $2"), "{q}");
    }

    #[test]
    fn client_types_are_plain_strings_and_nanosecond_timestamps() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("d", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::LargeUtf8)), false),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        ]));
        let client = client_schema(&schema);
        let types: Vec<_> = client.fields().iter().map(|f| (f.data_type().clone(), f.is_nullable())).collect();
        assert_eq!(
            types,
            vec![
                (DataType::Utf8, true),
                (DataType::Utf8, true),
                (DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true)
            ]
        );
    }
}
