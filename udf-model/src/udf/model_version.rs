//! `model_version() → Utf8`: the version of the risk model this process scores with.

use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// The loaded model's version, stamped on every scored row.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ModelVersion {
    version: String,
    signature: Signature,
}

impl ModelVersion {
    /// The function answering `version`.
    pub fn new(version: &str) -> ModelVersion {
        // Volatile, so it is not folded into a constant at planning time with the planner's model:
        // it runs beside predict_risk on the executor and names the model that scored the row.
        ModelVersion { version: version.to_string(), signature: Signature::nullary(Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for ModelVersion {
    fn name(&self) -> &str {
        "model_version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(self.version.clone()))))
    }
}
