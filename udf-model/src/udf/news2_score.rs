//! `news2_score(respiratory_rate, spo2, on_oxygen, systolic_bp, heart_rate, consciousness, temperature
//! [, spo2_scale]) → Int32`: the NEWS2 aggregate (Royal College of Physicians, 2017), NULL when any input is
//! missing. SpO2 is scored on scale 2 when `spo2_scale` is 2, on scale 1 when it is 1, NULL or not given.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int32Builder, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{coerce_to, float_args, value};
use crate::rubric::{Consciousness, News2Inputs, Spo2Scale};

/// The NEWS2 aggregate; NULL when an input is NULL, not finite, or not an ACVPU level, or the scale is
/// neither 1 nor 2.
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

/// The optional eighth argument: the SpO2 scale (1 or 2; NULL is 1).
const SCALE_ARG: (&str, DataType) = ("spo2_scale", DataType::Int64);

impl ScalarUDFImpl for News2Score {
    fn name(&self) -> &str {
        "news2_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() == ARGS.len() + 1 {
            let with_scale: Vec<(&str, DataType)> = ARGS.iter().cloned().chain([SCALE_ARG]).collect();
            return coerce_to(self.name(), arg_types, &with_scale);
        }
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
        let scale = match args.args.get(ARGS.len()) {
            Some(scale) => Some(cast(&scale.to_array(rows)?, &DataType::Int64)?),
            None => None,
        };
        let scale = scale.as_ref().map(|s| s.as_any().downcast_ref::<Int64Array>());
        if scale.is_some_and(|s| s.is_none()) {
            return exec_err!("news2_score: spo2_scale did not coerce");
        }
        let scale = scale.flatten();
        // NULL (or no argument) is scale 1; a number other than 1 or 2 scores nothing.
        let scale_of = |i: usize| match scale {
            Some(s) if s.is_valid(i) => Spo2Scale::of_number(s.value(i)),
            _ => Some(Spo2Scale::One),
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
                    spo2_scale: scale_of(i)?,
                })
            })();
            out.append_option(inputs.and_then(News2Inputs::score).map(i32::from));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
