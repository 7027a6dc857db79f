//! `risk_probability(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose)
//! → Struct<High: Float64, Medium: Float64, Low: Float64>`: the forest's averaged class probabilities;
//! `trend_risk_probability(...)` the trend model's.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{ForestRole, score_arrays};
use crate::forest::RiskForest;
use crate::rubric::RiskLevel;

/// The class probabilities of the risk forest; NULL when the model cannot score the row.
#[derive(Debug)]
pub struct RiskProbability {
    forest: Arc<RiskForest>,
    role: ForestRole,
    signature: Signature,
}

impl RiskProbability {
    /// The function scoring with `forest` in `role`.
    pub fn new(forest: Arc<RiskForest>, role: ForestRole) -> RiskProbability {
        RiskProbability { forest, role, signature: Signature::user_defined(Volatility::Immutable) }
    }

    /// The struct's fields: one Float64 per class, named as the labels `predict_risk` returns.
    pub fn fields() -> Fields {
        RiskLevel::ALL.iter().map(|l| Field::new(l.as_str(), DataType::Float64, true)).collect()
    }
}

same_function_by_model_version!(RiskProbability);

impl ScalarUDFImpl for RiskProbability {
    fn name(&self) -> &str {
        self.role.name("risk_probability", "trend_risk_probability")
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.role.coerce(self.name(), &self.forest, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(RiskProbability::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let cols = self.role.columns(&args.args, rows)?;
        Ok(ColumnarValue::Array(Arc::new(risk_probability_array(&self.forest, &cols)?)))
    }
}

/// The class probabilities of Float64 columns of the forest's arguments: `risk_probability` without the SQL.
pub fn risk_probability_array(forest: &RiskForest, cols: &[Float64Array]) -> Result<StructArray> {
    let rows = cols.first().map_or(0, |c| c.len());
    let mut columns: [Vec<f64>; 3] = std::array::from_fn(|_| Vec::with_capacity(rows));
    let mut valid = Vec::with_capacity(rows);
    score_arrays(forest, cols, |_, p| {
        valid.push(p.is_some());
        let probs = p.map_or([0.0; 3], |p| p.probabilities);
        for (column, v) in columns.iter_mut().zip(probs) {
            column.push(v);
        }
    });
    // The fields are NULL where the struct is: `risk_probability(...)['High']` of a row that cannot be
    // scored is NULL, not 0.
    let nulls = NullBuffer::from(valid);
    let arrays: Vec<ArrayRef> =
        columns.into_iter().map(|c| Arc::new(Float64Array::new(c.into(), Some(nulls.clone()))) as ArrayRef).collect();
    Ok(StructArray::try_new(RiskProbability::fields(), arrays, Some(nulls))?)
}
