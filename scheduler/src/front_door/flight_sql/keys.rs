//! Keys, as GetPrimaryKeys, GetImportedKeys, GetExportedKeys and GetCrossReference report them.
//!
//! vitalflow's tables are append-only logs with no enforced constraints, but each has a column set
//! that names one row (documented in docs/tables.md): a reading is identified by its Kafka source
//! position, a patient's latest row by the patient, an alert by its id. Tools (DBeaver) show these
//! as the primary key. There are no foreign keys: the key listings answer empty, with the schema
//! the specification gives.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::CommandGetPrimaryKeys;
use datafusion::prelude::SessionContext;
use tonic::Status;
use vitalflow_udf_model::schema::table;

use super::metadata::schema_names;

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

/// The result schema of GetImportedKeys, GetExportedKeys and GetCrossReference.
pub(crate) static FOREIGN_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});

/// The Kafka position a reading came from: unique in every table written once per record.
const SOURCE_POSITION: &[&str] = &["source_topic", "source_partition", "source_offset"];

/// Each table's key columns, in key order.
const PRIMARY_KEYS: &[(&str, &[&str])] = &[
    (table::VITALS_RAW, SOURCE_POSITION),
    (table::VITALS_CLEAN, SOURCE_POSITION),
    // A record is dead-lettered once, by ingest or by the ETL.
    (table::DEAD_LETTERS, &["stage", "source_topic", "source_partition", "source_offset"]),
    (table::PATIENT_LATEST, &["patient_id"]),
    (table::RISK_ALERTS, &["alert_id"]),
    (table::ALERTS, &["alert_id"]),
    (table::ALERT_EVENTS, &["event_id"]),
    // A record is a reading, a movement or a dead letter, once.
    (table::PATIENT_MOVEMENTS, SOURCE_POSITION),
];

/// The key columns of `table_name`, when it has a documented key.
pub(crate) fn primary_key(table_name: &str) -> Option<&'static [&'static str]> {
    PRIMARY_KEYS.iter().find(|(name, _)| *name == table_name).map(|(_, columns)| *columns)
}

/// The key of the requested table in every catalog and schema that has it (the filters are exact
/// names, not patterns, in this call), for the columns the table really has.
pub(crate) async fn primary_keys(ctx: &SessionContext, query: &CommandGetPrimaryKeys) -> Result<RecordBatch, Status> {
    let (mut catalogs, mut schemas, mut tables) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut columns, mut key_names, mut sequence) = (StringBuilder::new(), StringBuilder::new(), Int32Builder::new());
    let Some(key) = primary_key(&query.table) else { return Ok(RecordBatch::new_empty(PRIMARY_KEYS_SCHEMA.clone())) };
    for (catalog, schema_name) in schema_names(ctx) {
        let wanted = |filter: &Option<String>, name: &str| filter.as_deref().is_none_or(|f| f == name);
        if !wanted(&query.catalog, &catalog) || !wanted(&query.db_schema, &schema_name) {
            continue;
        }
        let Some(schema) = ctx.catalog(&catalog).and_then(|c| c.schema(&schema_name)) else { continue };
        let table = match schema.table(&query.table).await {
            Ok(Some(table)) => table,
            Ok(None) => continue,
            Err(e) => return Err(Status::internal(format!("reading table {}: {e}", query.table))),
        };
        if key.iter().any(|column| table.schema().field_with_name(column).is_err()) {
            continue;
        }
        for (position, column) in key.iter().enumerate() {
            catalogs.append_value(&catalog);
            schemas.append_value(&schema_name);
            tables.append_value(&query.table);
            columns.append_value(column);
            key_names.append_value(format!("{}_pkey", query.table));
            sequence.append_value(i32::try_from(position + 1).unwrap_or(i32::MAX));
        }
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(catalogs.finish()),
        Arc::new(schemas.finish()),
        Arc::new(tables.finish()),
        Arc::new(columns.finish()),
        Arc::new(key_names.finish()),
        Arc::new(sequence.finish()),
    ];
    RecordBatch::try_new(PRIMARY_KEYS_SCHEMA.clone(), arrays)
        .map_err(|e| Status::internal(format!("building primary keys: {e}")))
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use datafusion::datasource::MemTable;

    use super::*;

    #[tokio::test]
    async fn a_tables_key_is_listed_in_order_and_unknown_tables_have_none() {
        let ctx = SessionContext::new();
        let latest =
            MemTable::try_new(vitalflow_udf_model::schema::PATIENT_LATEST_SCHEMA.clone(), vec![vec![]]).unwrap();
        ctx.register_table(table::PATIENT_LATEST, Arc::new(latest)).unwrap();
        let clean = MemTable::try_new(vitalflow_udf_model::schema::VITALS_CLEAN_SCHEMA.clone(), vec![vec![]]).unwrap();
        ctx.register_table(table::VITALS_CLEAN, Arc::new(clean)).unwrap();
        let ask = |table: &str| CommandGetPrimaryKeys { catalog: None, db_schema: None, table: table.into() };

        let keys = primary_keys(&ctx, &ask(table::VITALS_CLEAN)).await.unwrap();
        let columns: Vec<&str> = keys.column(3).as_string::<i32>().iter().flatten().collect();
        assert_eq!(columns, SOURCE_POSITION);
        let sequence: Vec<i32> = keys.column(5).as_primitive::<arrow::datatypes::Int32Type>().values().to_vec();
        assert_eq!(sequence, [1, 2, 3]);
        assert_eq!(primary_keys(&ctx, &ask(table::PATIENT_LATEST)).await.unwrap().num_rows(), 1);
        // Registered without a key, not registered, or in another schema: no rows, same schema.
        for (table, schema) in [("audit_log", None), (table::RISK_ALERTS, None), (table::VITALS_CLEAN, Some("other"))] {
            let query = CommandGetPrimaryKeys { db_schema: schema.map(String::from), ..ask(table) };
            let none = primary_keys(&ctx, &query).await.unwrap();
            assert_eq!((none.num_rows(), none.schema()), (0, PRIMARY_KEYS_SCHEMA.clone()), "{table}");
        }
    }
}
