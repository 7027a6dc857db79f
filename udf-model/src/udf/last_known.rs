//! `last_known(value) OVER (... ORDER BY ...)`: the last non-NULL `value` in the window's order, for
//! the ETL's carry-forward.
//!
//! The same as `last_value(value) IGNORE NULLS`, which a Ballista cluster cannot run: DataFusion
//! plans `last_value` as a built-in window function and its plan serialisation (datafusion-proto 55)
//! drops `IGNORE NULLS` for those, so the executors would carry NULLs forward. An aggregate
//! function keeps its meaning on every executor.

use std::mem::size_of_val;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// The last non-NULL value seen, in the order rows reach it (a window's ORDER BY). Outside a
/// window the order, and so the result, is unspecified.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LastKnown {
    signature: Signature,
}

impl LastKnown {
    /// The function.
    pub fn new() -> LastKnown {
        LastKnown { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl Default for LastKnown {
    fn default() -> Self {
        LastKnown::new()
    }
}

impl AggregateUDFImpl for LastKnown {
    fn name(&self) -> &str {
        "last_known"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [t] => Ok(t.clone()),
            _ => plan_err!("last_known takes 1 argument, got {}", arg_types.len()),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(LastKnownValue { last: ScalarValue::try_from(args.return_field.data_type())? }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![args.return_field.clone()])
    }
}

/// Accumulator of [`LastKnown`]: the last non-NULL value so far (NULL before any).
#[derive(Debug)]
struct LastKnownValue {
    last: ScalarValue,
}

impl Accumulator for LastKnownValue {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else { return Ok(()) };
        let nulls = values.logical_nulls();
        let last = (0..values.len()).rev().find(|&i| nulls.as_ref().is_none_or(|n| n.is_valid(i)));
        if let Some(i) = last {
            self.last = ScalarValue::try_from_array(values, i)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.last.clone())
    }

    fn size(&self) -> usize {
        size_of_val(self) - size_of_val(&self.last) + self.last.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.last.clone()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}
