//! vitalflow's SQL functions, one file each.
//!
//! Ballista sends functions by name, so the same set must be registered on the client context, in
//! the scheduler's session builder and in every executor's registry: [`functions`] is that set and
//! [`register_all`] the single call each of them makes. A row a function cannot score yields NULL,
//! never an error: an error would fail the whole distributed job.

use std::sync::Arc;

use arrow::array::{Array, Float64Array};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ColumnarValue, ScalarUDF};

use crate::forest::{Prediction, RiskForest};
use crate::rubric::RiskLevel;
use crate::schema::MODEL_FEATURES;

/// Two instances of a function scoring with a forest are the same function when they carry the same
/// model version (DataFusion compares functions when it plans).
macro_rules! same_function_by_model_version {
    ($function:ty) => {
        impl PartialEq for $function {
            fn eq(&self, other: &Self) -> bool {
                self.forest.version() == other.forest.version()
            }
        }
        impl Eq for $function {}
        impl std::hash::Hash for $function {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(self.forest.version(), state);
            }
        }
    };
}

mod explain_risk;
mod last_known;
mod model_version;
mod news2_score;
mod predict_risk;
mod risk_probability;
mod rubric_score;

pub use explain_risk::{ExplainRisk, explain_risk_array, top_reasons};
pub use last_known::LastKnown;
pub use model_version::ModelVersion;
pub use news2_score::News2Score;
pub use predict_risk::{PredictRisk, predict_risk_array};
pub use risk_probability::{RiskProbability, risk_probability_array};
pub use rubric_score::RubricScore;

/// Every vitalflow SQL function, scoring with `forest`.
pub fn functions(forest: &Arc<RiskForest>) -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(PredictRisk::new(forest.clone()))),
        Arc::new(ScalarUDF::new_from_impl(RiskProbability::new(forest.clone()))),
        Arc::new(ScalarUDF::new_from_impl(ExplainRisk::new(forest.clone()))),
        Arc::new(ScalarUDF::new_from_impl(ModelVersion::new(forest.version()))),
        Arc::new(ScalarUDF::new_from_impl(RubricScore::new())),
        Arc::new(ScalarUDF::new_from_impl(News2Score::new())),
    ]
}

/// vitalflow's aggregate functions (used as window functions by the ETL).
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(AggregateUDF::new_from_impl(LastKnown::new()))]
}

/// Registers every vitalflow SQL function in `registry`.
pub fn register_all(registry: &mut dyn FunctionRegistry, forest: &Arc<RiskForest>) -> Result<()> {
    for udf in functions(forest) {
        registry.register_udf(udf)?;
    }
    for udaf in aggregate_functions() {
        registry.register_udaf(udaf)?;
    }
    Ok(())
}

/// Coerces `arg_types` to `targets`, naming the function and argument on a mismatch.
fn coerce_to(name: &str, arg_types: &[DataType], targets: &[(&str, DataType)]) -> Result<Vec<DataType>> {
    if arg_types.len() != targets.len() {
        let names: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
        return plan_err!("{name} takes {} arguments ({}), got {}", targets.len(), names.join(", "), arg_types.len());
    }
    arg_types
        .iter()
        .zip(targets)
        .map(|(given, (arg, target))| {
            let ok = given == target
                || given.is_null()
                || (target.is_numeric() && given.is_numeric())
                || (*target == DataType::Utf8 && matches!(given, DataType::Utf8View | DataType::LargeUtf8));
            if ok { Ok(target.clone()) } else { plan_err!("{name}: argument {arg} must be {target}, got {given}") }
        })
        .collect()
}

/// The arguments as `Float64` arrays of `rows` rows (scalars repeated).
pub fn float_args(args: &[ColumnarValue], rows: usize) -> Result<Vec<Float64Array>> {
    args.iter()
        .map(|a| {
            let a = cast(&a.to_array(rows)?, &DataType::Float64)?;
            match a.as_any().downcast_ref::<Float64Array>() {
                Some(f) => Ok(f.clone()),
                None => exec_err!("argument is {} after coercion to Float64", a.data_type()),
            }
        })
        .collect()
}

/// Coerces the six model vitals (`predict_risk`, `rubric_score`) to Float64.
fn coerce_six_vitals(name: &str, arg_types: &[DataType]) -> Result<Vec<DataType>> {
    coerce_to(name, arg_types, &MODEL_FEATURES.map(|v| (v.column(), DataType::Float64)))
}

/// Scores six Float64 columns (the model vitals in feature order) with `forest`, column-wise over the
/// Arrow buffers; `emit(i, prediction)` is called for every row in order, `None` where an input is
/// NULL, NaN or infinite.
pub fn score_arrays(forest: &RiskForest, cols: &[Float64Array], emit: impl FnMut(usize, Option<Prediction>)) {
    let (values, nulls) = model_inputs(cols);
    forest.score_columns(values, |i| nulls.as_ref().is_none_or(|n| n.is_valid(i)), emit);
}

/// As [`score_arrays`], the label alone (rows stop at the tree that settles their label).
pub fn label_arrays(forest: &RiskForest, cols: &[Float64Array], emit: impl FnMut(usize, Option<RiskLevel>)) {
    let (values, nulls) = model_inputs(cols);
    forest.label_columns(values, |i| nulls.as_ref().is_none_or(|n| n.is_valid(i)), emit);
}

/// The value buffers of the six model-vital columns and the union of their NULLs.
fn model_inputs(cols: &[Float64Array]) -> ([&[f64]; 6], Option<NullBuffer>) {
    let nulls = cols.iter().fold(None, |acc: Option<NullBuffer>, c| NullBuffer::union(acc.as_ref(), c.nulls()));
    (std::array::from_fn(|f| cols.get(f).map_or(&[][..], |c| c.values().as_ref())), nulls)
}

/// Row `i` of the six model-vital columns; `None` when any of them is NULL.
fn six_vitals(cols: &[Float64Array], i: usize) -> Option<[f64; 6]> {
    let mut row = [0.0; 6];
    for (slot, col) in row.iter_mut().zip(cols) {
        *slot = value(col, i)?;
    }
    Some(row)
}

/// Value `i` of a float column, `None` when NULL.
fn value(col: &Float64Array, i: usize) -> Option<f64> {
    col.is_valid(i).then(|| col.value(i))
}
