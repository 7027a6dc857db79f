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
use datafusion::logical_expr::{AggregateUDF, ColumnarValue, ScalarUDF, WindowUDF};

use crate::forest::{Prediction, RiskForest};
use crate::rubric::{Consciousness, RiskLevel};
use crate::schema::MODEL_FEATURES;
use crate::trend::consciousness_code;

/// Two instances of a function scoring with a forest are the same function when they carry the same
/// model version and role (DataFusion compares functions when it plans).
macro_rules! same_function_by_model_version {
    ($function:ty) => {
        impl PartialEq for $function {
            fn eq(&self, other: &Self) -> bool {
                self.forest.version() == other.forest.version() && self.role == other.role
            }
        }
        impl Eq for $function {}
        impl std::hash::Hash for $function {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(self.forest.version(), state);
                std::hash::Hash::hash(&self.role, state);
            }
        }
    };
}

mod calibrated_probability;
mod explain_risk;
mod last_known;
mod model_info;
mod news2_score;
mod patient_history;
mod patient_previous;
mod predict_risk;
mod risk_probability;
mod rubric_score;

pub use calibrated_probability::CalibratedProbability;
pub use explain_risk::{ExplainRisk, explain_risk_array, top_reasons};
pub use last_known::LastKnown;
pub use model_info::ModelInfo;
pub use news2_score::News2Score;
pub use patient_history::PatientHistory;
pub use patient_previous::PatientPrevious;
pub use predict_risk::{PredictRisk, predict_risk_array};
pub use risk_probability::{RiskProbability, risk_probability_array};
pub use rubric_score::RubricScore;

/// Which forest of a model file a function scores with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForestRole {
    /// The six-vital model: `predict_risk(six vitals)`, what-if queries, imported scikit-learn models.
    SixVitals,
    /// The model the ETL scores with, on the inputs its file names: the trend model, or the six-vital
    /// model when the file has none (`predict_trend_risk(...)`).
    Trend,
}

impl ForestRole {
    /// The forest of this role in `forest`'s model file.
    pub fn of(self, forest: &Arc<RiskForest>) -> Arc<RiskForest> {
        match self {
            ForestRole::SixVitals => forest.clone(),
            ForestRole::Trend => forest.trend().cloned().unwrap_or_else(|| forest.clone()),
        }
    }

    /// A function's name in this role.
    fn name(self, six_vitals: &'static str, trend: &'static str) -> &'static str {
        match self {
            ForestRole::SixVitals => six_vitals,
            ForestRole::Trend => trend,
        }
    }

    /// Coerces a function's arguments to the forest's.
    fn coerce(self, name: &str, forest: &RiskForest, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match self {
            ForestRole::SixVitals => coerce_six_vitals(name, arg_types),
            ForestRole::Trend => {
                let targets = forest.arguments();
                let targets: Vec<(&str, DataType)> = targets.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
                coerce_to(name, arg_types, &targets)
            }
        }
    }

    /// The arguments as Float64 columns: NULL for the six-vital model; for the trend model NaN (a
    /// missing input its trees route), oxygen as 1/0 and consciousness as its ACVPU rank.
    pub fn columns(self, args: &[ColumnarValue], rows: usize) -> Result<Vec<Float64Array>> {
        match self {
            ForestRole::SixVitals => float_args(args, rows),
            ForestRole::Trend => args.iter().map(|a| trend_column(&a.to_array(rows)?)).collect(),
        }
    }
}

/// One argument of a trend function as Float64 values, NaN where NULL.
fn trend_column(array: &arrow::array::ArrayRef) -> Result<Float64Array> {
    use arrow::array::AsArray;
    let n = array.len();
    let values: Vec<f64> = match array.data_type() {
        DataType::Boolean => {
            let b = array.as_boolean();
            (0..n).map(|i| if b.is_valid(i) { f64::from(u8::from(b.value(i))) } else { f64::NAN }).collect()
        }
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            (0..n)
                .map(|i| {
                    let level = text.is_valid(i).then(|| Consciousness::parse(text.value(i))).flatten();
                    level.map_or(f64::NAN, consciousness_code)
                })
                .collect()
        }
        _ => {
            let f = cast(array, &DataType::Float64)?;
            let f = f.as_primitive::<arrow::datatypes::Float64Type>();
            (0..n).map(|i| if f.is_valid(i) { f.value(i) } else { f64::NAN }).collect()
        }
    };
    Ok(Float64Array::from(values))
}

/// Every vitalflow SQL function, scoring with `forest` (and its file's trend model).
pub fn functions(forest: &Arc<RiskForest>) -> Vec<Arc<ScalarUDF>> {
    let mut all = Vec::new();
    for role in [ForestRole::SixVitals, ForestRole::Trend] {
        let scoring = role.of(forest);
        all.push(Arc::new(ScalarUDF::new_from_impl(PredictRisk::new(scoring.clone(), role))));
        all.push(Arc::new(ScalarUDF::new_from_impl(RiskProbability::new(scoring.clone(), role))));
        all.push(Arc::new(ScalarUDF::new_from_impl(ExplainRisk::new(scoring, role))));
    }
    all.extend([
        Arc::new(ScalarUDF::new_from_impl(CalibratedProbability::new(ForestRole::Trend.of(forest)))),
        Arc::new(ScalarUDF::new_from_impl(ModelInfo::version(forest.version()))),
        Arc::new(ScalarUDF::new_from_impl(ModelInfo::trend_arguments(
            &ForestRole::Trend.of(forest).arguments().into_iter().map(|(name, _)| name).collect::<Vec<_>>(),
        ))),
        Arc::new(ScalarUDF::new_from_impl(RubricScore::new())),
        Arc::new(ScalarUDF::new_from_impl(News2Score::new())),
    ]);
    all
}

/// vitalflow's aggregate functions (used as window functions by the ETL).
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(AggregateUDF::new_from_impl(LastKnown::new()))]
}

/// vitalflow's window functions: the ETL's per-patient passes.
pub fn window_functions() -> Vec<Arc<WindowUDF>> {
    vec![
        Arc::new(WindowUDF::new_from_impl(PatientHistory::new())),
        Arc::new(WindowUDF::new_from_impl(PatientPrevious::new())),
    ]
}

/// Registers every vitalflow SQL function in `registry`.
pub fn register_all(registry: &mut dyn FunctionRegistry, forest: &Arc<RiskForest>) -> Result<()> {
    for udf in functions(forest) {
        registry.register_udf(udf)?;
    }
    for udaf in aggregate_functions() {
        registry.register_udaf(udaf)?;
    }
    for udwf in window_functions() {
        registry.register_udwf(udwf)?;
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

/// Scores Float64 columns of the forest's arguments (the six model vitals in feature order for the
/// six-vital model) with `forest`, column-wise over the Arrow buffers; `emit(i, prediction)` is called
/// for every row in order, `None` where a row has a NULL argument or the model cannot score it.
pub fn score_arrays(forest: &RiskForest, cols: &[Float64Array], emit: impl FnMut(usize, Option<Prediction>)) {
    let (values, nulls) = model_inputs(cols);
    forest.score_slices(&values, |i| nulls.as_ref().is_none_or(|n| n.is_valid(i)), emit);
}

/// As [`score_arrays`], the label alone (rows stop at the tree that settles their label).
pub fn label_arrays(forest: &RiskForest, cols: &[Float64Array], emit: impl FnMut(usize, Option<RiskLevel>)) {
    let (values, nulls) = model_inputs(cols);
    forest.label_slices(&values, |i| nulls.as_ref().is_none_or(|n| n.is_valid(i)), emit);
}

/// The value buffers of the argument columns and the union of their NULLs.
fn model_inputs(cols: &[Float64Array]) -> (Vec<&[f64]>, Option<NullBuffer>) {
    let nulls = cols.iter().fold(None, |acc: Option<NullBuffer>, c| NullBuffer::union(acc.as_ref(), c.nulls()));
    (cols.iter().map(|c| c.values().as_ref()).collect(), nulls)
}

/// Row `i` of the argument columns; `None` when any of them is NULL.
fn argument_row(cols: &[Float64Array], i: usize) -> Option<Vec<f64>> {
    cols.iter().map(|col| value(col, i)).collect()
}

/// Value `i` of a float column, `None` when NULL.
fn value(col: &Float64Array, i: usize) -> Option<f64> {
    col.is_valid(i).then(|| col.value(i))
}
