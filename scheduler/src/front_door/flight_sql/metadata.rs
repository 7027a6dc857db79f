//! The catalog listings clients browse: catalogs, schemas, tables and table types. JDBC's
//! `DatabaseMetaData`, ADBC's `get_objects` and Grafana's table picker read these.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetTablesBuilder};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use datafusion::catalog::TableProvider;
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use tonic::Status;

use super::wire_types::WireTypes;

/// The table type vitalflow's tables report (SQL standard, as DataFusion's information_schema says).
pub(crate) const BASE_TABLE: &str = "BASE TABLE";
/// Table types GetTableTypes lists.
pub(crate) const TABLE_TYPES: [&str; 2] = [BASE_TABLE, "VIEW"];

/// Catalog names, sorted.
pub(crate) fn catalogs(ctx: &SessionContext) -> Result<RecordBatch, Status> {
    let mut builder = GetCatalogsBuilder::new();
    let mut names = ctx.catalog_names();
    names.sort();
    for name in names {
        builder.append(name);
    }
    builder.build().map_err(|e| Status::internal(format!("building catalogs: {e}")))
}

/// (catalog, schema) pairs, sorted; filters are applied by the builder.
pub(crate) fn db_schemas(ctx: &SessionContext, query: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for (catalog, schema) in schema_names(ctx) {
        builder.append(catalog, schema);
    }
    builder.build().map_err(|e| Status::internal(format!("building schemas: {e}")))
}

/// Every (catalog, schema) pair of the session, sorted.
pub(crate) fn schema_names(ctx: &SessionContext) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for catalog in ctx.catalog_names() {
        if let Some(c) = ctx.catalog(&catalog) {
            for schema in c.schema_names() {
                out.push((catalog.clone(), schema));
            }
        }
    }
    out.sort();
    out
}

fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base | TableType::Temporary => BASE_TABLE,
        TableType::View => "VIEW",
    }
}

/// Whether `table_type` is among the requested types. Clients spell them differently (Grafana sends
/// `["BASE TABLE", "table"]`, JDBC tools `TABLE`), so the match ignores case and `TABLE` means a base table.
fn type_requested(requested: &[String], table_type: &str) -> bool {
    requested.is_empty()
        || requested.iter().any(|r| {
            r.eq_ignore_ascii_case(table_type) || (table_type == BASE_TABLE && r.eq_ignore_ascii_case("table"))
        })
}

/// Tables matching the request, with their schemas (as clients will receive them) when asked.
pub(crate) async fn tables(
    ctx: &SessionContext,
    query: CommandGetTables,
    types: WireTypes,
) -> Result<RecordBatch, Status> {
    let requested = query.table_types.clone();
    // Table types are matched here (leniently); the builder filters catalog, schema and name patterns.
    let mut builder = GetTablesBuilder::new(
        query.catalog.as_deref(),
        query.db_schema_filter_pattern.as_deref(),
        query.table_name_filter_pattern.as_deref(),
        Vec::<String>::new(),
        query.include_schema,
    );
    for (catalog, schema_name) in schema_names(ctx) {
        let Some(schema) = ctx.catalog(&catalog).and_then(|c| c.schema(&schema_name)) else { continue };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let table: Arc<dyn TableProvider> = match schema.table(&name).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => return Err(Status::internal(format!("reading table {name}: {e}"))),
            };
            let table_type = table_type_name(table.table_type());
            if !type_requested(&requested, table_type) {
                continue;
            }
            let arrow_schema: Schema = types.client_schema(&table.schema()).as_ref().clone();
            builder
                .append(&catalog, &schema_name, &name, table_type, &arrow_schema)
                .map_err(|e| Status::internal(format!("listing table {name}: {e}")))?;
        }
    }
    builder.build().map_err(|e| Status::internal(format!("building tables: {e}")))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_and_jdbc_table_type_spellings_match_base_tables() {
        let grafana = vec!["BASE TABLE".to_string(), "table".to_string()];
        assert!(type_requested(&grafana, BASE_TABLE));
        assert!(!type_requested(&grafana, "VIEW"));
        assert!(type_requested(&["TABLE".to_string()], BASE_TABLE));
        assert!(type_requested(&[], "VIEW"));
    }
}
