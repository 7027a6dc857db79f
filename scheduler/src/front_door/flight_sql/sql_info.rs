//! What the endpoint tells clients about itself: every SqlInfo the Flight SQL specification defines
//! that a client reads (the JDBC driver's `DatabaseMetaData` reads nearly all of them and fails on a
//! missing one), with the spec's value types, and the XDBC type info of the types results use.

use std::collections::BTreeMap;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedResultSetConcurrency,
    SqlSupportedResultSetType, SqlSupportsConvert, SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};

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
pub(crate) fn sql_info() -> Result<SqlInfoData, arrow_flight::error::FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "vitalflow");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    // CancelFlightInfo and the older CancelQuery action stop a running query.
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    // Milliseconds a prepared statement handle lives: 0, handles carry the statement and never expire.
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
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
    info.append(SqlInfo::SqlSupportsConvert, supported_conversions());
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
    // Limits are int64, 0 meaning none (JDBC's convention); the statement's size limits are
    // checked on its text instead (flight_sql.max_sql_bytes and friends).
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        info.append(limit, 0i64);
    }
    info.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    info.append(SqlInfo::SqlMaxStatements, 1i64); // one statement per query
    info.append(SqlInfo::SqlDefaultTransactionIsolation, 0i32);
    info.append(SqlInfo::SqlTransactionsSupported, false);
    info.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    info.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    // Bitmasks of enum values: results stream forward only, read-only.
    let forward_only = 1i32 << SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32;
    let read_only = 1i32 << SqlSupportedResultSetConcurrency::SqlResultSetConcurrencyReadOnly as i32;
    info.append(SqlInfo::SqlSupportedResultSetTypes, forward_only);
    info.append(SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified, 0i32);
    info.append(SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly, read_only);
    info.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive, 0i32);
    info.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive, 0i32);
    info.append(SqlInfo::SqlBatchUpdatesSupported, false);
    info.append(SqlInfo::SqlSavepointsSupported, false);
    info.append(SqlInfo::SqlNamedParametersSupported, false);
    info.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    info.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    info.build()
}

/// Which `CAST`s work between the SQL types results use (SqlSupportsConvert codes): numbers and
/// strings into one another, strings into dates and timestamps, dates and timestamps into each other
/// and into strings.
fn supported_conversions() -> BTreeMap<i32, Vec<i32>> {
    use SqlSupportsConvert as C;
    let numbers = [
        C::SqlConvertBit,
        C::SqlConvertTinyint,
        C::SqlConvertSmallint,
        C::SqlConvertInteger,
        C::SqlConvertBigint,
        C::SqlConvertReal,
        C::SqlConvertFloat,
        C::SqlConvertDecimal,
        C::SqlConvertNumeric,
    ];
    let times = [C::SqlConvertDate, C::SqlConvertTimestamp];
    let codes = |types: &[C]| types.iter().map(|t| *t as i32).collect::<Vec<_>>();
    let mut to_numbers = codes(&numbers);
    to_numbers.push(C::SqlConvertVarchar as i32);
    let mut to_times = codes(&times);
    to_times.push(C::SqlConvertVarchar as i32);
    let mut from_strings = to_numbers.clone();
    from_strings.extend(codes(&times));
    let mut map = BTreeMap::new();
    for n in numbers {
        map.insert(n as i32, to_numbers.clone());
    }
    for t in times {
        map.insert(t as i32, to_times.clone());
    }
    map.insert(C::SqlConvertVarchar as i32, from_strings);
    map.insert(C::SqlConvertVarbinary as i32, vec![C::SqlConvertVarbinary as i32, C::SqlConvertVarchar as i32]);
    map
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

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, UnionArray};
    use arrow::datatypes::{Int32Type, Int64Type};

    use super::*;

    /// The value of one info, as the union's type id and the row of the child it points at.
    fn value(info: &SqlInfoData, id: SqlInfo) -> (i8, arrow::array::ArrayRef) {
        let batch = info.record_batch([id as u32]).unwrap();
        assert_eq!(batch.num_rows(), 1, "{id:?} is missing");
        let union = batch.column(1).as_any().downcast_ref::<UnionArray>().unwrap();
        let type_id = union.type_id(0);
        (type_id, union.value(0))
    }

    #[test]
    fn sql_info_holds_string_lists_and_type_info_builds() {
        let info = sql_info().unwrap();
        let all = info.record_batch(Vec::<u32>::new()).unwrap();
        let keywords = info.record_batch([SqlInfo::SqlKeywords as u32]).unwrap();
        assert!(all.num_rows() > 80, "{} infos", all.num_rows());
        assert_eq!(keywords.num_rows(), 1);
        assert!(xdbc_type_info().unwrap().record_batch(None).unwrap().num_rows() >= 10);
    }

    #[test]
    fn what_the_jdbc_driver_reads_is_there_with_the_specs_types() {
        let info = sql_info().unwrap();
        // Every SqlInfo id of the SQL range (500..=576) is answered: the JDBC driver unboxes each.
        let all = info.record_batch(Vec::<u32>::new()).unwrap();
        let ids: Vec<u32> = all.column(0).as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec();
        for id in 500..=576u32 {
            assert!(ids.contains(&id), "SqlInfo {id} is missing");
        }
        // Forward-only result sets (bit 1), read-only for them (bit 1): int32 bitmasks (union type 3).
        let (kind, v) = value(&info, SqlInfo::SqlSupportedResultSetTypes);
        assert_eq!((kind, v.as_primitive::<Int32Type>().value(0)), (3, 2));
        let (kind, v) = value(&info, SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly);
        assert_eq!((kind, v.as_primitive::<Int32Type>().value(0)), (3, 2));
        // Lengths are int64 (union type 2).
        for id in [SqlInfo::SqlMaxColumnsInSelect, SqlInfo::SqlMaxTableNameLength, SqlInfo::SqlMaxColumnNameLength] {
            let (kind, v) = value(&info, id);
            assert_eq!((kind, v.as_primitive::<Int64Type>().value(0)), (2, 0), "{id:?}");
        }
        assert!(!value(&info, SqlInfo::SqlSupportsConvert).1.is_empty());
    }
}
