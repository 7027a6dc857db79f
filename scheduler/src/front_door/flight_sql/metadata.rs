//! What the endpoint tells clients about itself and its tables: SqlInfo, XDBC type info, and the
//! catalog listings (catalogs, schemas, tables, table types). JDBC's `DatabaseMetaData`, ADBC's
//! `get_objects` and Grafana's table picker read these.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::catalog::TableProvider;
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use tonic::Status;

use super::query::client_schema;

/// The result schema of GetPrimaryKeys (Flight SQL's `CommandGetPrimaryKeys`).
pub(crate) static PRIMARY_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// The table type vitalflow's tables report (SQL standard, as DataFusion's information_schema says).
pub(crate) const BASE_TABLE: &str = "BASE TABLE";
/// Table types GetTableTypes lists.
pub(crate) const TABLE_TYPES: [&str; 2] = [BASE_TABLE, "VIEW"];

const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CROSS",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FILTER",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "ILIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "RIGHT",
    "SELECT",
    "THEN",
    "TRUE",
    "UNION",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln", "log", "log10",
    "log2", "pi", "power", "radians", "random", "round", "signum", "sin", "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "regexp_like",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "to_hex",
    "translate",
    "trim",
    "upper",
];
const SYSTEM_FUNCTIONS: &[&str] = &["arrow_typeof", "coalesce", "nullif", "nvl", "model_version"];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "datepart",
    "date_trunc",
    "datetrunc",
    "extract",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_millis",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
];

/// Every SqlInfo the endpoint answers; an empty GetSqlInfo request returns all of them.
pub(crate) fn sql_info(statement_timeout_seconds: i32) -> Result<SqlInfoData, arrow_flight::error::FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "vitalflow");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, statement_timeout_seconds);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    info.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    info.append(SqlInfo::SqlKeywords, KEYWORDS);
    info.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    info.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    info.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    info.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.append(SqlInfo::SqlNullPlusNullIsNull, true);
    info.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    info.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    info.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    info.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    info.append(SqlInfo::SqlSupportedGroupBy, 3i32); // unrelated | beyond select
    info.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    info.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    info.append(SqlInfo::SqlSupportedGrammar, SupportedSqlGrammar::SqlCoreGrammar as i32);
    info.append(SqlInfo::SqlAnsi92SupportedLevel, 1i32); // entry SQL
    info.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    info.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32); // full outer joins
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlCatalogTerm, "catalog");
    info.append(SqlInfo::SqlCatalogAtStart, true);
    info.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    info.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    info.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    info.append(SqlInfo::SqlSelectForUpdateSupported, false);
    info.append(SqlInfo::SqlStoredProceduresSupported, false);
    info.append(SqlInfo::SqlSupportedSubqueries, 15i32); // comparisons, EXISTS, IN, quantified
    info.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    info.append(SqlInfo::SqlSupportedUnions, 3i32); // UNION and UNION ALL
    info.append(SqlInfo::SqlMaxColumnsInTable, 0i64); // 0: no limit
    info.append(SqlInfo::SqlMaxStatementLength, 0i64);
    info.append(SqlInfo::SqlMaxStatements, 1i64); // one statement per query
    info.append(SqlInfo::SqlDefaultTransactionIsolation, 0i32);
    info.append(SqlInfo::SqlTransactionsSupported, false);
    info.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    info.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    info.append(SqlInfo::SqlSupportedResultSetTypes, 1i32); // forward only
    info.append(SqlInfo::SqlBatchUpdatesSupported, false);
    info.append(SqlInfo::SqlSavepointsSupported, false);
    info.append(SqlInfo::SqlNamedParametersSupported, false);
    info.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    info.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    info.build()
}

fn xdbc(name: &str, data_type: XdbcDataType, column_size: i32, quoted: bool) -> XdbcTypeInfo {
    let quote = quoted.then(|| "'".to_string());
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: Some(column_size),
        literal_prefix: quote.clone(),
        literal_suffix: quote,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: quoted,
        searchable: Searchable::Full,
        unsigned_attribute: (!quoted).then_some(false),
        fixed_prec_scale: false,
        auto_increment: (!quoted).then_some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: (!quoted).then_some(10),
        interval_precision: None,
    }
}

/// The SQL types results use (see `client_schema`), for GetXdbcTypeInfo.
pub(crate) fn xdbc_type_info() -> Result<XdbcTypeInfoData, arrow_flight::error::FlightError> {
    let mut types = XdbcTypeInfoDataBuilder::new();
    types.append(xdbc("BOOLEAN", XdbcDataType::XdbcBit, 1, false));
    types.append(xdbc("TINYINT", XdbcDataType::XdbcTinyint, 3, false));
    types.append(xdbc("SMALLINT", XdbcDataType::XdbcSmallint, 5, false));
    types.append(xdbc("INTEGER", XdbcDataType::XdbcInteger, 10, false));
    types.append(xdbc("BIGINT", XdbcDataType::XdbcBigint, 19, false));
    types.append(xdbc("REAL", XdbcDataType::XdbcFloat, 24, false));
    types.append(xdbc("DOUBLE", XdbcDataType::XdbcDouble, 53, false));
    types.append(xdbc("VARCHAR", XdbcDataType::XdbcVarchar, i32::MAX, true));
    types.append(xdbc("VARBINARY", XdbcDataType::XdbcVarbinary, i32::MAX, true));
    types.append(XdbcTypeInfo {
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear), // DATE shares the code of YEAR in the spec,
        ..xdbc("DATE", XdbcDataType::XdbcDate, 10, true)
    });
    types.append(XdbcTypeInfo {
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ..xdbc("TIMESTAMP", XdbcDataType::XdbcTimestamp, 35, true)
    });
    types.build()
}

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

fn schema_names(ctx: &SessionContext) -> Vec<(String, String)> {
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
pub(crate) async fn tables(ctx: &SessionContext, query: CommandGetTables) -> Result<RecordBatch, Status> {
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
            let arrow_schema: Schema = client_schema(&table.schema()).as_ref().clone();
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

    #[test]
    fn sql_info_holds_string_lists_and_type_info_builds() {
        let info = sql_info(60).unwrap();
        let all = info.record_batch(Vec::<u32>::new()).unwrap();
        let keywords = info.record_batch([SqlInfo::SqlKeywords as u32]).unwrap();
        assert!(all.num_rows() > 50, "{} infos", all.num_rows());
        assert_eq!(keywords.num_rows(), 1);
        assert!(xdbc_type_info().unwrap().record_batch(None).unwrap().num_rows() >= 10);
    }
}
