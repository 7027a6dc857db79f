//! `news2_score(respiratory_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature) → Int32`:
//! the NEWS2 aggregate (Royal College of Physicians, 2017), NULL when any input is missing.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int32Builder, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{coerce_to, float_args, value};
use crate::rubric::{Consciousness, News2Inputs};

/// The NEWS2 aggregate; NULL when an input is NULL, not finite, or not an ACVPU level.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct News2Score {
    signature: Signature,
}

impl News2Score {
    /// The function.
    pub fn new() -> News2Score {
        News2Score { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl Default for News2Score {
    fn default() -> Self {
        News2Score::new()
    }
}

const ARGS: [(&str, DataType); 7] = [
    ("respiratory_rate", DataType::Float64),
    ("spo2", DataType::Float64),
    ("on_oxygen", DataType::Boolean),
    ("systolic_bp", DataType::Float64),
    ("heart_rate", DataType::Float64),
    ("consciousness", DataType::Utf8),
    ("temperature", DataType::Float64),
];

impl ScalarUDFImpl for News2Score {
    fn name(&self) -> &str {
        "news2_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_to(self.name(), arg_types, &ARGS)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let numeric = [0, 1, 3, 4, 6].map(|i| args.args[i].clone());
        let nums = float_args(&numeric, rows)?;
        let oxygen = cast(&args.args[2].to_array(rows)?, &DataType::Boolean)?;
        let level = cast(&args.args[5].to_array(rows)?, &DataType::Utf8)?;
        let (Some(oxygen), Some(level)) =
            (oxygen.as_any().downcast_ref::<BooleanArray>(), level.as_any().downcast_ref::<StringArray>())
        else {
            return exec_err!("news2_score: on_oxygen or consciousness did not coerce");
        };
        let mut out = Int32Builder::with_capacity(rows);
        for i in 0..rows {
            let inputs = (|| {
                Some(News2Inputs {
                    respiratory_rate: value(&nums[0], i)?,
                    spo2: value(&nums[1], i)?,
                    on_oxygen: oxygen.is_valid(i).then(|| oxygen.value(i))?,
                    systolic_bp: value(&nums[2], i)?,
                    heart_rate: value(&nums[3], i)?,
                    consciousness: level.is_valid(i).then(|| Consciousness::parse(level.value(i))).flatten()?,
                    temperature: value(&nums[4], i)?,
                })
            })();
            out.append_option(inputs.and_then(News2Inputs::score).map(i32::from));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
