//! `calibrated_probability_high(p) → Float64`: the ETL's scoring model's P(High) `p` (from
//! `trend_risk_probability(...)['High']`) through its model file's calibration, so that it is the
//! share of readings truly High among those given `p` (`crate::calibration`). Without a calibration
//! in the file (an imported model) it returns `p`; NULL stays NULL.

use std::sync::Arc;

use arrow::array::Float64Array;
use arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use super::{ForestRole, float_args};
use crate::forest::RiskForest;

/// The scoring model's calibration of P(High).
#[derive(Debug)]
pub struct CalibratedProbability {
    forest: Arc<RiskForest>,
    role: ForestRole,
    signature: Signature,
}

impl CalibratedProbability {
    /// The function calibrating with the file's scoring model ([`ForestRole::Trend`]).
    pub fn new(forest: Arc<RiskForest>) -> CalibratedProbability {
        CalibratedProbability {
            forest,
            role: ForestRole::Trend,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

same_function_by_model_version!(CalibratedProbability);

impl ScalarUDFImpl for CalibratedProbability {
    fn name(&self) -> &str {
        "calibrated_probability_high"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if t.is_numeric() || t.is_null() => Ok(vec![DataType::Float64]),
            _ => plan_err!("calibrated_probability_high takes one number, a P(High); got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [p] = &float_args(&args.args, args.number_rows)?[..] else {
            return plan_err!("calibrated_probability_high takes one argument");
        };
        let calibrated: Float64Array = p.unary(|v| self.forest.calibrated_high(v));
        Ok(ColumnarValue::Array(Arc::new(calibrated)))
    }
}
