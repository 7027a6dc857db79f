//! `explain_risk(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose)
//! → Struct<base: Float64, heart_rate: Float64, …, rubric_points: Float64>`: why the forest gives a
//! reading its P(High). Each input's exact Shapley value (TreeSHAP), so that `base` plus the fields
//! equals `risk_probability(...)['High']`. `explain_trend_risk(...)` explains the trend model the same
//! way, over its inputs (beside `trend_risk_probability(...)`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::Float64Type;
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{ForestRole, argument_row};
use crate::forest::RiskForest;

/// The struct field holding the expected P(High) with no input known.
const BASE_FIELD: &str = "base";

/// Explains the risk forest's P(High); NULL when any input is NULL or not finite.
#[derive(Debug)]
pub struct ExplainRisk {
    forest: Arc<RiskForest>,
    role: ForestRole,
    signature: Signature,
}

impl ExplainRisk {
    /// The function explaining `forest` in `role`.
    pub fn new(forest: Arc<RiskForest>, role: ForestRole) -> ExplainRisk {
        ExplainRisk { forest, role, signature: Signature::user_defined(Volatility::Immutable) }
    }

    /// The forest it explains.
    pub fn forest(&self) -> &Arc<RiskForest> {
        &self.forest
    }

    /// The struct's fields: `base`, then one per model input in the model file's order.
    pub fn fields(forest: &RiskForest) -> Fields {
        std::iter::once(BASE_FIELD.to_string())
            .chain(forest.inputs())
            .map(|name| Field::new(name, DataType::Float64, true))
            .collect()
    }
}

same_function_by_model_version!(ExplainRisk);

impl ScalarUDFImpl for ExplainRisk {
    fn name(&self) -> &str {
        self.role.name("explain_risk", "explain_trend_risk")
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.role.coerce(self.name(), &self.forest, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        // Refused when planned, not per row: a model without covers cannot explain any reading.
        if self.forest.explainer().is_none() {
            return plan_err!(
                "{}: model {} records no node covers, which explanations need (train it again, or \
                 export it again with this version's vitalflow_export)",
                self.name(),
                self.forest.version()
            );
        }
        Ok(DataType::Struct(ExplainRisk::fields(&self.forest)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let cols = self.role.columns(&args.args, rows)?;
        Ok(ColumnarValue::Array(Arc::new(explain_risk_array(&self.forest, &cols)?)))
    }
}

/// The explanations of Float64 columns of the forest's arguments: `explain_risk` without the SQL.
pub fn explain_risk_array(forest: &RiskForest, cols: &[Float64Array]) -> Result<StructArray> {
    let rows = cols.first().map_or(0, |c| c.len());
    let fields = ExplainRisk::fields(forest);
    let mut columns: Vec<Vec<f64>> = (0..fields.len()).map(|_| Vec::with_capacity(rows)).collect();
    let mut valid = Vec::with_capacity(rows);
    for i in 0..rows {
        let explained = match argument_row(cols, i) {
            Some(row) => {
                forest.explain_arguments(&row).map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?
            }
            None => None,
        };
        valid.push(explained.is_some());
        match explained {
            Some(e) => {
                columns[0].push(e.base);
                for (column, c) in columns[1..].iter_mut().zip(e.contributions) {
                    column.push(c);
                }
            }
            None => columns.iter_mut().for_each(|c| c.push(0.0)),
        }
    }
    // The fields are NULL where the struct is, so `explain_risk(...)['spo2']` of such a row is NULL.
    let nulls = NullBuffer::from(valid);
    let arrays: Vec<ArrayRef> =
        columns.into_iter().map(|c| Arc::new(Float64Array::new(c.into(), Some(nulls.clone()))) as ArrayRef).collect();
    Ok(StructArray::try_new(fields, arrays, Some(nulls))?)
}

/// The smallest push shown by [`top_reasons`]: what rounds to +0.001.
const SHOWN: f64 = 0.0005;

/// The `n` inputs of each explanation in `why` (an `explain_risk` struct) that pushed P(High) up most,
/// largest first, as `name +0.123, ...`; NULL where `why` is NULL or nothing pushed it up visibly.
pub fn top_reasons(why: &StructArray, n: usize) -> StringArray {
    let inputs: Vec<(&str, &Float64Array)> = why
        .fields()
        .iter()
        .zip(why.columns())
        .filter(|(f, _)| f.name() != BASE_FIELD)
        .filter_map(|(f, c)| c.as_primitive_opt::<Float64Type>().map(|c| (f.name().as_str(), c)))
        .collect();
    (0..why.len())
        .map(|row| {
            if why.is_null(row) {
                return None;
            }
            let mut pushes: Vec<(&str, f64)> =
                inputs.iter().map(|(name, c)| (*name, c.value(row))).filter(|(_, v)| *v >= SHOWN).collect();
            pushes.sort_by(|a, b| b.1.total_cmp(&a.1));
            let text: Vec<String> = pushes.iter().take(n).map(|(name, v)| format!("{name} {v:+.3}")).collect();
            (!text.is_empty()).then(|| text.join(", "))
        })
        .collect()
}
