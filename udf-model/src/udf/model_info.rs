//! What the loaded model is, as SQL: `model_version() → Utf8`, the version of the risk model this
//! process scores with, and `trend_model_arguments() → Utf8`, the columns the ETL's scoring model
//! takes, comma-separated (what a client passes to `explain_trend_risk(...)`, as the dashboard does).

use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// A fact of the loaded model, answered by a function without arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ModelInfo {
    name: &'static str,
    value: String,
    signature: Signature,
}

impl ModelInfo {
    /// `model_version()`, stamped on every scored row.
    pub fn version(version: &str) -> ModelInfo {
        ModelInfo::new("model_version", version.to_string())
    }

    /// `trend_model_arguments()`.
    pub fn trend_arguments(arguments: &[String]) -> ModelInfo {
        ModelInfo::new("trend_model_arguments", arguments.join(", "))
    }

    fn new(name: &'static str, value: String) -> ModelInfo {
        // Volatile, so it is not folded into a constant at planning time with the planner's model:
        // it runs beside predict_risk on the executor and names the model that scored the row.
        ModelInfo { name, value, signature: Signature::nullary(Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for ModelInfo {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(self.value.clone()))))
    }
}
