//! How the front door turns client SQL into a result stream: the read-only policy (the statement's in
//! [`super::statement_policy`], checked again on the plan; no table but vitalflow's), parameter
//! binding and the per-query limits.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::prelude::{DataFrame, SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Statement, Value, visit_expressions_mut};
use tonic::Status;

use crate::catalog::cluster_plan::cluster_refusal;
use crate::etl::progress::{PROGRESS_TABLE, read_progress};
use crate::front_door::audit::AUDIT_TABLE;
use crate::front_door::audit_lake::AuditLake;
use crate::front_door::auth::Principal;
use crate::front_door::flight_sql::ProgressSource;
use crate::front_door::sql_limits::SqlLimits;
use crate::front_door::table_access::{may_read, read_refused, role_view};

use super::parameters::{self, Binding};
use super::statement_policy::{READ_ONLY, parse_query};
use super::status::query_status;

/// SQL that only reads, checked again on the plan: no DDL, no DML (COPY included), no `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
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

/// Tables small by design (one row per patient), read on the front door's in-process context: a
/// Ballista job's fixed cost (~100 ms of polling) would be most of such a query's time.
const IN_PROCESS_TABLES: &[&str] = &[vitalflow_udf_model::schema::table::PATIENT_LATEST];

/// The schema of the catalog's own views (tables, columns, views), which describe this process's
/// catalog: executors have none, so queries of it run in process too.
const INFORMATION_SCHEMA: &str = "information_schema";

/// The tables `statement` names.
fn table_references(ctx: &SessionContext, statement: &Statement) -> Result<Vec<TableReference>, Status> {
    ctx.state().resolve_table_references(&DFStatement::Statement(Box::new(statement.clone()))).map_err(query_status)
}

fn is_information_schema(r: &TableReference) -> bool {
    r.schema().is_some_and(|s| s.eq_ignore_ascii_case(INFORMATION_SCHEMA))
}

/// Whether the query names tables, all of them read in process (small tables, `information_schema`).
fn runs_in_process(refs: &[TableReference]) -> bool {
    let in_process = |r: &TableReference| {
        is_information_schema(r) || IN_PROCESS_TABLES.iter().any(|n| r.table().eq_ignore_ascii_case(n))
    };
    !refs.is_empty() && refs.iter().all(in_process)
}

/// Whether the query names the table `name`.
fn names_table(refs: &[TableReference], name: &str) -> bool {
    refs.iter().any(|r| r.table().eq_ignore_ascii_case(name))
}

/// Plans `sql` read-only for `who`, its parameters typed and bound as `binding` says. A table the
/// caller's role may not read is refused by name, and `information_schema` lists only the tables it
/// may read ([`table_access`]). Queries of `audit_log` run in this process on its Delta table and the
/// entries not yet written to it; queries of `etl_progress` on a snapshot of the figures read now.
pub(crate) async fn plan(
    ctx: &SessionContext,
    local: Option<(&SessionContext, u64)>,
    audit: &AuditLake,
    progress: Option<&ProgressSource>,
    who: &Principal,
    sql: &str,
    binding: Binding<'_>,
) -> Result<DataFrame, Status> {
    let mut statement = parse_query(sql)?;
    number_placeholders(&mut statement);
    let refs = table_references(ctx, &statement)?;
    if let Some(refused) = refs.iter().find(|r| !is_information_schema(r) && !may_read(who.role, r.table())) {
        return Err(read_refused(refused.table()));
    }
    let mut on_cluster = false;
    let ctx = if names_table(&refs, AUDIT_TABLE) {
        audit_context(audit).await?
    } else if let Some(progress) = progress
        && names_table(&refs, PROGRESS_TABLE)
    {
        progress_context(progress).await?
    } else {
        let planner = match local {
            Some((local, _)) if runs_in_process(&refs) => local,
            // A query of tables about to run, over few enough bytes, runs here (its schema was announced
            // by the cluster's plan: both contexts hold the same tables and functions).
            Some((local, max_scan_bytes))
                if max_scan_bytes > 0
                    && matches!(binding, Binding::Execute(_))
                    && !refs.is_empty()
                    && !refs.iter().any(is_information_schema) =>
            {
                if let Some(small) = small_in_process(local, &statement, binding, max_scan_bytes).await? {
                    return Ok(small);
                }
                on_cluster = true;
                ctx
            }
            _ => {
                on_cluster = true;
                ctx
            }
        };
        // information_schema lists the catalog of `ctx` (every table GetTables lists), as the role sees it.
        if refs.iter().any(is_information_schema) { role_view(planner, ctx, who.role) } else { planner.clone() }
    };
    let plan = checked_plan(&ctx, statement).await?;
    if on_cluster && let Some(why) = cluster_refusal(&plan) {
        return Err(Status::invalid_argument(why));
    }
    let plan = parameters::apply(plan, binding)?;
    ctx.execute_logical_plan(plan).await.map_err(query_status)
}

/// `statement` planned on `ctx` and checked: read-only, and only `ctx`'s registered tables.
async fn checked_plan(ctx: &SessionContext, statement: Statement) -> Result<LogicalPlan, Status> {
    let plan =
        ctx.state().statement_to_plan(DFStatement::Statement(Box::new(statement))).await.map_err(query_status)?;
    read_only().verify_plan(&plan).map_err(|e| Status::permission_denied(format!("{e}: {READ_ONLY}")))?;
    only_registered_tables(ctx, &plan)?;
    Ok(plan)
}

/// `statement` as a frame of the in-process context `local` when its scans read at most
/// `max_scan_bytes` of files (`flight_sql.in_process_max_scan_mb`); `None` when they read more or a
/// size is unknown.
async fn small_in_process(
    local: &SessionContext,
    statement: &Statement,
    binding: Binding<'_>,
    max_scan_bytes: u64,
) -> Result<Option<DataFrame>, Status> {
    let plan = parameters::apply(checked_plan(local, statement.clone()).await?, binding)?;
    let state = local.state();
    let physical = state.create_physical_plan(&plan).await.map_err(query_status)?;
    Ok(match scanned_bytes(&physical) {
        Some(bytes) if bytes <= max_scan_bytes => Some(DataFrame::new(state, plan)),
        _ => None,
    })
}

/// Bytes of the files `plan`'s scans read (a file split into byte ranges counted once); `None` when a
/// leaf is neither a file scan nor known to read nothing.
fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let children = plan.children();
    if !children.is_empty() {
        return children.into_iter().map(scanned_bytes).sum();
    }
    if plan.is::<EmptyExec>() || plan.is::<PlaceholderRowExec>() {
        return Some(0);
    }
    let files = plan.downcast_ref::<DataSourceExec>()?.data_source().downcast_ref::<FileScanConfig>()?;
    let bytes = |f: &PartitionedFile| f.range.as_ref().map_or(f.object_meta.size, |r| (r.end - r.start).max(0) as u64);
    Some(files.file_groups.iter().flat_map(|g| g.files()).map(bytes).sum())
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

/// A context holding only `audit_log`: its committed table and this process's waiting entries.
async fn audit_context(audit: &AuditLake) -> Result<SessionContext, Status> {
    let unavailable = |e: crate::error::Error| Status::unavailable(format!("reading the audit log: {e}"));
    let table = audit.query_table().await.map_err(unavailable)?;
    // The scan reads the lake's files: the runtime knows its object stores.
    let runtime = crate::catalog::session::runtime_env().map_err(query_status)?;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(crate::catalog::session::session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    let ctx = SessionContext::new_with_state(state);
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

/// Per-query limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryLimits {
    /// Longest a query may run, planning to last row.
    pub(crate) timeout: Duration,
    /// Most result bytes (Arrow memory) one query may return.
    pub(crate) max_result_bytes: u64,
    /// Size and shape of the SQL text, checked before it is parsed.
    pub(crate) sql: SqlLimits,
}

impl QueryLimits {
    /// The answer to a query that ran out of time.
    pub(crate) fn timeout_status(&self) -> Status {
        Status::deadline_exceeded(format!(
            "query exceeded the time limit of {} s (flight_sql.query_timeout_seconds)",
            self.timeout.as_secs()
        ))
    }
}

/// Everything [`plan`] needs, owned: planning runs on a thread of its own.
pub(crate) struct PlanInputs {
    pub(crate) ctx: SessionContext,
    pub(crate) local: Option<SessionContext>,
    /// Most bytes of files a query may scan to run on `local` (0: only the small tables run there).
    pub(crate) in_process_max_scan_bytes: u64,
    pub(crate) audit: Arc<AuditLake>,
    pub(crate) progress: Option<Arc<ProgressSource>>,
    pub(crate) who: Principal,
    pub(crate) sql: String,
    /// The bound parameter row, if any.
    pub(crate) parameters: Option<RecordBatch>,
    /// Whether the statement is to run (every parameter then needs a value) or is only prepared.
    pub(crate) executing: bool,
}

/// Stack of a planning thread. Parsing, the visitors and the planner recurse once per level of the
/// expression tree; the size limits keep trees shallow, and this leaves a wide margin (address space
/// only: pages are used as the recursion reaches them).
const PLANNING_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Plans a query within the limits: the SQL's size and shape are checked on its tokens first, then it
/// is parsed and planned on a thread of its own with a large stack (a deep tree cannot overflow a
/// shared worker's stack, and CPU-bound planning never holds a worker), and the answer is
/// `DEADLINE_EXCEEDED` once the query's `deadline` passes (its time limit, counted from when it came
/// in, a wait for a slot included), even while planning still runs.
pub(crate) async fn plan_bounded(
    inputs: PlanInputs,
    limits: &QueryLimits,
    deadline: tokio::time::Instant,
) -> Result<DataFrame, Status> {
    limits.sql.check(&inputs.sql)?;
    let runtime = tokio::runtime::Handle::current();
    let (sender, planned) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("vitalflow-plan".into())
        .stack_size(PLANNING_STACK_BYTES)
        .spawn(move || {
            let PlanInputs { ctx, local, in_process_max_scan_bytes, audit, progress, who, sql, parameters, executing } =
                inputs;
            let binding = if executing { Binding::Execute(parameters.as_ref()) } else { Binding::Prepare };
            let local = local.as_ref().map(|l| (l, in_process_max_scan_bytes));
            let planning = plan(&ctx, local, &audit, progress.as_deref(), &who, &sql, binding);
            // The caller may have given up (time limit, client gone): nobody to tell.
            let _ = sender.send(runtime.block_on(planning));
        })
        .map_err(|e| Status::unavailable(format!("starting a planning thread: {e}")))?;
    match tokio::time::timeout_at(deadline, planned).await {
        Err(_) => Err(limits.timeout_status()),
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Status::internal("planning the query failed unexpectedly")),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::config::Role;

    /// A catalog as the front door holds it: a table and the audit log's placeholder.
    async fn front_door_catalog() -> SessionContext {
        let ctx = SessionContext::new_with_config(crate::catalog::session::session_config());
        let vitals = Arc::new(Schema::new(vec![Field::new("patient_id", DataType::Utf8, true)]));
        ctx.register_table("vitals_raw", Arc::new(MemTable::try_new(vitals, vec![vec![]]).unwrap())).unwrap();
        let audit = MemTable::try_new(crate::front_door::audit::AUDIT_SCHEMA.clone(), vec![vec![]]).unwrap();
        ctx.register_table(AUDIT_TABLE, Arc::new(audit)).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, role: Role, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        let who = Principal { name: "ana".into(), role };
        let location = vitalflow_udf_model::lake::DataLocation::open("memory://").unwrap();
        let audit = AuditLake::new(Arc::new(crate::front_door::audit::AuditLog::new(10)), location);
        let frame = plan(ctx, Some((ctx, 0)), &audit, None, &who, sql, Binding::Execute(None)).await?;
        Ok(frame.collect().await.unwrap())
    }

    fn names(batches: &[RecordBatch]) -> Vec<String> {
        batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().map(str::to_string)).collect()
    }

    #[tokio::test]
    async fn a_reader_neither_reads_nor_finds_the_audit_log_and_an_admin_does_both() {
        let ctx = front_door_catalog().await;
        let listing = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'";
        let columns = "SELECT DISTINCT table_name FROM information_schema.columns";
        for (role, admin) in [(Role::Reader, false), (Role::Admin, true)] {
            let tables = names(&run(&ctx, role, listing).await.unwrap());
            assert!(tables.contains(&"vitals_raw".to_string()), "{role:?}: {tables:?}");
            assert_eq!(tables.contains(&AUDIT_TABLE.to_string()), admin, "{role:?}: {tables:?}");
            let with_columns = names(&run(&ctx, role, columns).await.unwrap());
            assert_eq!(with_columns.contains(&AUDIT_TABLE.to_string()), admin, "{role:?}: {with_columns:?}");
            let get_tables =
                super::super::metadata::tables(&role_view(&ctx, &ctx, role), Default::default(), Default::default())
                    .await;
            let listed = names(&[get_tables.unwrap()].map(|b| b.project(&[2]).unwrap()));
            assert_eq!(listed.contains(&AUDIT_TABLE.to_string()), admin, "GetTables for {role:?}: {listed:?}");
        }
        let refused = run(&ctx, Role::Reader, "SELECT count(*) FROM audit_log").await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        assert!(run(&ctx, Role::Admin, "SELECT count(*) FROM audit_log").await.is_ok());
    }

    #[tokio::test]
    async fn file_scans_count_their_bytes_and_other_leaves_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_from_iter([(
            "x",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])) as arrow::array::ArrayRef,
        )])
        .unwrap();
        let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let ctx = SessionContext::new();
        ctx.register_parquet("t", path.to_str().unwrap(), Default::default()).await.unwrap();
        ctx.register_table("m", Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap())).unwrap();
        let bytes = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { scanned_bytes(&ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap()) }
        };
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(bytes("SELECT x FROM t WHERE x > 1").await, Some(size));
        assert_eq!(bytes("SELECT a.x FROM t a JOIN t b ON a.x = b.x").await, Some(2 * size));
        assert_eq!(bytes("SELECT 1").await, Some(0));
        assert_eq!(bytes("SELECT x FROM m").await, None, "a table of unknown size goes to the cluster");
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let mut q = parse_query("SELECT * FROM t WHERE a = ? AND b > ?").unwrap();
        number_placeholders(&mut q);
        assert!(q.to_string().ends_with("a = $1 AND b > $2"), "{q}");
    }
}
