//! `rubric_score(heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose) → Int32`:
//! the labelling rubric's aggregate over the six model vitals (docs/clinical-rubric.md).

use std::sync::Arc;

use arrow::array::Int32Builder;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{argument_row, coerce_six_vitals, float_args};
use crate::rubric::SixVitals;

/// The rubric aggregate; NULL when any input is NULL or not finite.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RubricScore {
    signature: Signature,
}

impl RubricScore {
    /// The function.
    pub fn new() -> RubricScore {
        RubricScore { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl Default for RubricScore {
    fn default() -> Self {
        RubricScore::new()
    }
}

impl ScalarUDFImpl for RubricScore {
    fn name(&self) -> &str {
        "rubric_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_six_vitals(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let cols = float_args(&args.args, rows)?;
        let mut out = Int32Builder::with_capacity(rows);
        for i in 0..rows {
            let score = argument_row(&cols, i)
                .and_then(|row| <[f64; 6]>::try_from(row).ok())
                .and_then(|row| SixVitals::from_array(row).rubric_score());
            out.append_option(score.map(i32::from));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
