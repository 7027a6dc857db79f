//! DataFusion's functions that build a value from a count (`repeat('x', 1e9)`, `lpad`, `rpad`,
//! `array_repeat`, `array_resize`, `range` and `generate_series` as arrays, `replace`), wrapped under
//! their own names so that a call is refused before it allocates more than a bound.
//!
//! Such a function allocates its whole result in one go, outside DataFusion's memory accounting, so
//! neither a task's memory limit nor the result-size limit sees it: one `SELECT array_repeat(1, 2e8)`
//! took an executor past its heartbeat. [`register_bounded`] replaces each of them in a registry by a
//! [`Bounded`] copy that first works out, from its arguments alone, how many bytes the call would
//! build (summed over the batch of rows it is given: a column of values is one allocation too), and
//! fails with `ResourcesExhausted` naming the function, the size and the setting when that is over
//! the bound. Everything else (signature, types, simplification) is the wrapped function's.
//!
//! Plans carry functions by name, so every registry that plans or runs a query registers them: the
//! front door's sessions, the scheduler's session builder and each executor's function registry.

mod sizes;

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use self::sizes::OutputSize;

/// The largest value one call may build, and the setting that says so (named in the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueLimit {
    /// Bytes one call may build, summed over the rows of its batch.
    pub bytes: u64,
    /// The configuration key the bound comes from, e.g. `flight_sql.max_value_mb`.
    pub setting: &'static str,
}

impl ValueLimit {
    /// A bound of `mb` MiB set by `setting`.
    pub fn from_mb(mb: u64, setting: &'static str) -> ValueLimit {
        ValueLimit { bytes: mb.saturating_mul(1024 * 1024), setting }
    }
}

/// The functions wrapped, and how each one's output is sized from its arguments.
const BOUNDED: [(&str, OutputSize); 8] = [
    ("repeat", OutputSize::Repeat),
    ("lpad", OutputSize::Pad),
    ("rpad", OutputSize::Pad),
    ("replace", OutputSize::Replace),
    ("array_repeat", OutputSize::ArrayRepeat),
    ("array_resize", OutputSize::ArrayResize),
    ("range", OutputSize::Range),
    ("generate_series", OutputSize::Range),
];

/// Replaces each of DataFusion's value-building functions in `registry` (which must hold the
/// defaults) by a copy bound by `limit`. Registering again changes the bound.
pub fn register_bounded(registry: &mut dyn FunctionRegistry, limit: ValueLimit) -> Result<()> {
    for (name, size) in BOUNDED {
        let registered = registry.udf(name)?;
        let inner = match registered.inner().downcast_ref::<Bounded>() {
            Some(bounded) => Arc::clone(&bounded.inner),
            None => registered.inner().clone(),
        };
        registry.register_udf(Arc::new(ScalarUDF::new_from_impl(Bounded { inner: inner.into(), size, limit })))?;
    }
    Ok(())
}

/// A function refusing a call whose output would exceed `limit`; otherwise the function it wraps.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    size: OutputSize,
    limit: ValueLimit,
}

impl Bounded {
    /// Fails when the call on `args` (over `rows` rows) would build more than the bound.
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let arrays: Vec<ArrayRef> = args
            .iter()
            .map(|arg| match arg {
                // A scalar stands for every row: size it once, as a one-row array.
                ColumnarValue::Scalar(s) => s.to_array_of_size(1),
                ColumnarValue::Array(a) => Ok(a.clone()),
            })
            .collect::<Result<_>>()?;
        let bytes = self.size.bytes(&arrays, rows, u128::from(self.limit.bytes))?;
        if bytes > u128::from(self.limit.bytes) {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} would build {} in one call ({rows} row(s)); at most {} MiB per value ({}): \
                 ask for a smaller value",
                self.inner.name(),
                human(bytes),
                self.limit.bytes / (1024 * 1024),
                self.limit.setting
            )));
        }
        Ok(())
    }
}

/// `bytes` in MiB, or in GiB past one.
fn human(bytes: u128) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 { format!("{:.1} GiB", mib / 1024.0) } else { format!("{mib:.1} MiB") }
}

#[warn(clippy::missing_trait_methods)]
impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[expect(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, _config: &datafusion::common::config::ConfigOptions) -> Option<ScalarUDF> {
        // A new copy of the inner function would drop the bound: keep this one.
        None
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match self.inner.simplify(args, info)? {
            // A rewrite into the inner function itself would lose the bound: keep the call.
            ExprSimplifyResult::Simplified(Expr::ScalarFunction(ScalarFunction { func, args }))
                if func.name() == self.inner.name() =>
            {
                Ok(ExprSimplifyResult::Original(args))
            }
            other => Ok(other),
        }
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<datafusion::logical_expr::preimage::PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(&self, interval: &Interval, inputs: &[&Interval]) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(
        &self,
        args: &[datafusion::logical_expr::ExpressionPlacement],
    ) -> datafusion::logical_expr::ExpressionPlacement {
        self.inner.placement(args)
    }
}

#[cfg(test)]
mod tests;
