//! Why each alert was raised: the `top_reasons` column of `risk_alerts`, the three inputs that pushed
//! the reading's P(High) up most (`explain_trend_risk`: exact TreeSHAP of the model the ETL scores
//! with), computed by the driver for the batch's alert rows only (a few per batch), so the ETL SQL
//! stays as it is.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::ColumnarValue;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::schema::TOP_REASONS;
use vitalflow_udf_model::udf::{ForestRole, explain_risk_array, top_reasons};

use crate::error::{Error, Result};

/// Inputs named in an alert's reasons.
const REASONS: usize = 3;

/// `alerts` with a `top_reasons` column, explaining `forest` (the scoring model) on the alert rows'
/// columns of its arguments: NULL for every row when it cannot explain (a model file without node
/// covers), and where the model cannot score the row.
pub(super) fn with_top_reasons(alerts: &RecordBatch, forest: Option<&RiskForest>) -> Result<RecordBatch> {
    let reasons: ArrayRef = match forest.filter(|f| f.explainer().is_some()) {
        Some(forest) => {
            let arguments = forest
                .arguments()
                .iter()
                .map(|(name, _)| {
                    let column = alerts
                        .column_by_name(name)
                        .ok_or_else(|| Error::Config(format!("the ETL SQL has no column {name}")))?;
                    Ok(ColumnarValue::Array(column.clone()))
                })
                .collect::<Result<Vec<_>>>()?;
            let explain =
                |e: datafusion::error::DataFusionError| Error::Config(format!("explaining the batch's alerts: {e}"));
            let cols = ForestRole::Trend.columns(&arguments, alerts.num_rows()).map_err(explain)?;
            Arc::new(top_reasons(&explain_risk_array(forest, &cols).map_err(explain)?, REASONS))
        }
        None => Arc::new(StringArray::new_null(alerts.num_rows())),
    };
    let mut fields: Vec<Field> = alerts.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = alerts.columns().to_vec();
    match fields.iter().position(|f| f.name() == TOP_REASONS) {
        Some(i) => columns[i] = reasons,
        None => {
            fields.push(Field::new(TOP_REASONS, DataType::Utf8, true));
            columns.push(reasons);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Config(format!("adding {TOP_REASONS} to the batch's alerts: {e}")))
}
