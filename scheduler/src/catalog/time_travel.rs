//! Time travel: `table_at('<table>', <version>)` or `table_at('<table>', TIMESTAMP '…')` reads a lake
//! table as it was at that Delta version, or at the newest version committed by that time. It takes a
//! table's name, never a path, and refuses anything that is not one of the lake's tables.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use vitalflow_udf_model::lake::DataLocation;
use vitalflow_udf_model::schema::{
    ALERT_EVENTS_SCHEMA, ALERTS_SCHEMA, DEAD_LETTERS_SCHEMA, PATIENT_LATEST_SCHEMA, PATIENT_MOVEMENTS_SCHEMA,
    RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, VITALS_RAW_SCHEMA, table,
};

use crate::catalog::lake_table::{DeltaSnapshotTable, SnapshotAt};

/// Name the function is registered under.
pub const TABLE_AT: &str = "table_at";

/// The lake's tables SQL may read, with their schemas.
pub fn lake_tables() -> [(&'static str, arrow::datatypes::SchemaRef); 8] {
    [
        (table::VITALS_RAW, VITALS_RAW_SCHEMA.clone()),
        (table::VITALS_CLEAN, VITALS_CLEAN_SCHEMA.clone()),
        (table::DEAD_LETTERS, DEAD_LETTERS_SCHEMA.clone()),
        (table::RISK_ALERTS, RISK_ALERTS_SCHEMA.clone()),
        (table::PATIENT_LATEST, PATIENT_LATEST_SCHEMA.clone()),
        (table::ALERTS, ALERTS_SCHEMA.clone()),
        (table::ALERT_EVENTS, ALERT_EVENTS_SCHEMA.clone()),
        (table::PATIENT_MOVEMENTS, PATIENT_MOVEMENTS_SCHEMA.clone()),
    ]
}

/// The `table_at` table function over the tables of one location.
#[derive(Debug)]
pub struct TableAt {
    location: DataLocation,
}

impl TableAt {
    /// `table_at` for the tables under `location`.
    pub fn new(location: &DataLocation) -> TableAt {
        TableAt { location: location.clone() }
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        Expr::Cast(cast) => literal(&cast.expr),
        _ => None,
    }
}

impl TableFunctionImpl for TableAt {
    fn call_with_args(&self, args: TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let usage =
            "table_at takes a table name and a version number or a timestamp, e.g. table_at('vitals_clean', 42)";
        let [name, at] = args.exprs() else { return plan_err!("{usage}") };
        let name = match literal(name) {
            Some(ScalarValue::Utf8(Some(n)) | ScalarValue::LargeUtf8(Some(n)) | ScalarValue::Utf8View(Some(n))) => n,
            _ => return plan_err!("{usage}"),
        };
        let Some((name, schema)) = lake_tables().into_iter().find(|(t, _)| t == name) else {
            let known: Vec<&str> = lake_tables().iter().map(|(t, _)| *t).collect();
            return plan_err!(
                "table_at: {name:?} is not a lake table (Delta Lake); the lake tables are {}",
                known.join(", ")
            );
        };
        let at = match literal(at) {
            Some(ScalarValue::Int64(Some(v))) => SnapshotAt::Version(*v),
            Some(ScalarValue::Int32(Some(v))) => SnapshotAt::Version(i64::from(*v)),
            Some(ScalarValue::UInt64(Some(v))) => SnapshotAt::Version(i64::try_from(*v).unwrap_or(i64::MAX)),
            Some(ScalarValue::Utf8(Some(t))) => SnapshotAt::Time(parse_time(t)?),
            Some(value @ ScalarValue::TimestampNanosecond(..))
            | Some(value @ ScalarValue::TimestampMicrosecond(..))
            | Some(value @ ScalarValue::TimestampMillisecond(..))
            | Some(value @ ScalarValue::TimestampSecond(..)) => {
                let ms = value
                    .cast_to(&arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None))?;
                match ms {
                    ScalarValue::TimestampMillisecond(Some(ms), _) => SnapshotAt::Time(ms),
                    _ => return plan_err!("{usage}"),
                }
            }
            _ => return plan_err!("{usage}"),
        };
        if matches!(at, SnapshotAt::Version(v) if v < 0) {
            return plan_err!("table_at: versions start at 0");
        }
        Ok(Arc::new(DeltaSnapshotTable::new(&self.location, name, schema, at)))
    }
}

fn parse_time(text: &str) -> datafusion::error::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|e| {
        DataFusionError::Plan(format!("table_at: {text:?} is not a version number or an RFC 3339 timestamp: {e}"))
    })
}
