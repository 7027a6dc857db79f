//! The rule, and `information_schema` through a role's view of the catalog.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;

use super::*;
use crate::front_door::audit::AUDIT_SCHEMA;

/// A catalog with the audit log's placeholder (as the front door registers it) and one vitals table.
fn catalog() -> SessionContext {
    let ctx = SessionContext::new_with_config(crate::catalog::session::session_config());
    let audit = MemTable::try_new(AUDIT_SCHEMA.clone(), vec![vec![]]).unwrap();
    ctx.register_table(AUDIT_TABLE, Arc::new(audit)).unwrap();
    let vitals = Arc::new(Schema::new(vec![Field::new("patient_id", DataType::Utf8, true)]));
    ctx.register_table("vitals_raw", Arc::new(MemTable::try_new(vitals, vec![vec![]]).unwrap())).unwrap();
    ctx
}

/// The first column of `sql`'s answer, as text.
pub(crate) async fn first_column(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        let column = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
        out.extend(column.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    out
}

#[test]
fn only_admins_read_the_audit_log() {
    assert!(!may_read(Role::Reader, AUDIT_TABLE));
    assert!(!may_read(Role::Clinician, "Audit_Log"));
    assert!(may_read(Role::Admin, AUDIT_TABLE));
    assert!(may_read(Role::Reader, "vitals_raw"));
    assert_eq!(read_refused(AUDIT_TABLE).code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn information_schema_lists_only_the_tables_a_role_reads() {
    let catalog = catalog();
    for (role, sees_audit) in [(Role::Reader, false), (Role::Clinician, false), (Role::Admin, true)] {
        let view = role_view(&catalog, &catalog, role);
        let tables = first_column(&view, "SELECT table_name FROM information_schema.tables").await;
        assert!(tables.iter().any(|t| t == "vitals_raw"), "{role:?}: {tables:?}");
        assert_eq!(tables.iter().any(|t| t == AUDIT_TABLE), sees_audit, "{role:?}: {tables:?}");
        let columns = first_column(&view, "SELECT DISTINCT table_name FROM information_schema.columns").await;
        assert_eq!(columns.iter().any(|t| t == AUDIT_TABLE), sees_audit, "{role:?}: {columns:?}");
    }
}
