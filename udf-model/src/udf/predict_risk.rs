//! `predict_risk(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) → 'High' | 'Medium' | 'Low'`,
//! and `predict_trend_risk(...)` on the inputs the trend model's file names.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{ForestRole, label_arrays};
use crate::forest::RiskForest;

/// Scores a reading with the risk forest: the six-vital model (NULL when any input is NULL or not
/// finite) or the trend model (a missing input routed by its trees).
#[derive(Debug)]
pub struct PredictRisk {
    forest: Arc<RiskForest>,
    role: ForestRole,
    signature: Signature,
}

impl PredictRisk {
    /// The function scoring with `forest` in `role`.
    pub fn new(forest: Arc<RiskForest>, role: ForestRole) -> PredictRisk {
        PredictRisk { forest, role, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

same_function_by_model_version!(PredictRisk);

impl ScalarUDFImpl for PredictRisk {
    fn name(&self) -> &str {
        self.role.name("predict_risk", "predict_trend_risk")
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.role.coerce(self.name(), &self.forest, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let cols = self.role.columns(&args.args, rows)?;
        Ok(ColumnarValue::Array(Arc::new(predict_risk_array(&self.forest, &cols))))
    }
}

/// The labels of Float64 columns of the forest's arguments (the six model vitals in feature order for
/// the six-vital model): `predict_risk` without the SQL.
/// Builds the string buffers directly (three fixed labels), not through a per-value builder.
pub fn predict_risk_array(forest: &RiskForest, cols: &[Float64Array]) -> StringArray {
    let rows = cols.first().map_or(0, |c| c.len());
    let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    let mut bytes: Vec<u8> = Vec::with_capacity(rows * 6);
    let mut valid: Vec<bool> = Vec::with_capacity(rows);
    offsets.push(0);
    label_arrays(forest, cols, |_, risk| {
        if let Some(risk) = risk {
            bytes.extend_from_slice(risk.as_str().as_bytes());
        }
        valid.push(risk.is_some());
        offsets.push(bytes.len() as i32);
    });
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    // Cannot fail: offsets rise from 0 to the end of `bytes`, which holds whole ASCII labels.
    StringArray::try_new(offsets, Buffer::from_vec(bytes), nulls).unwrap_or_else(|_| StringArray::new_null(rows))
}
