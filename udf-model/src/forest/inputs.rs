//! What a forest's row slots hold, and how a row of its SQL function's arguments fills them.
//!
//! Two kinds of model read rows differently. The six-vital model (`predict_risk`, imported
//! scikit-learn forests) takes the six vitals in order, optionally followed by the derived
//! `rubric_points`, and cannot score a row with a missing vital. A trend model names its inputs in
//! its file ([`TrendInput`]: columns of the ETL's scoring step and inputs derived from them) and
//! scores every row: a missing input holds [`MISSING`], below every value a vital can take, so each
//! of its splits sends it left, and a split between it and the lowest real value routes missing
//! values on their own way (the trees learn where a missing vital belongs).

use arrow::datatypes::DataType;

use super::layout::ROW_SLOTS;
use super::{RUBRIC_FEATURE, rubric_points};
use crate::schema::MODEL_FEATURES;
use crate::trend::{DerivedInput, TrendColumn, TrendInput};

/// The value a missing input of a trend model holds.
pub const MISSING: f64 = -1.0e9;

/// Where one slot's value comes from, for a trend model.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// The argument at this position.
    Argument(usize),
    /// Derived from the arguments at these positions ([`DerivedInput::sources`] order).
    Derived(DerivedInput, [usize; 9]),
}

/// A forest's inputs (fixed by its file's feature list).
#[derive(Debug, Clone, PartialEq)]
pub enum ForestInputs {
    /// The six vitals in `MODEL_FEATURES` order, then `rubric_points`.
    SixVitals {
        /// The file lists `rubric_points` after the six vitals.
        rubric: bool,
    },
    /// Named inputs.
    Trend {
        /// The inputs' names, in file order.
        names: Vec<String>,
        /// The SQL function's arguments.
        arguments: Vec<TrendColumn>,
        /// Where each input's value comes from.
        slots: Vec<Slot>,
    },
}

impl ForestInputs {
    /// The inputs of a model file's feature list (`trend`: of a trend model, which routes missing
    /// inputs whatever they are); the error names what is wrong.
    pub fn from_features(features: &[String], trend: bool) -> Result<ForestInputs, String> {
        let six: Vec<&str> = MODEL_FEATURES.iter().map(|v| v.column()).collect();
        if trend {
            // Named inputs, parsed below.
        } else if features.iter().map(String::as_str).eq(six.iter().copied()) {
            return Ok(ForestInputs::SixVitals { rubric: false });
        }
        if !trend && features.iter().map(String::as_str).eq(six.iter().copied().chain([RUBRIC_FEATURE])) {
            return Ok(ForestInputs::SixVitals { rubric: true });
        }
        let unknown: Vec<&str> =
            features.iter().filter(|f| TrendInput::parse(f).is_none()).map(String::as_str).collect();
        if !unknown.is_empty() {
            let known: Vec<String> = TrendColumn::all()
                .into_iter()
                .map(TrendColumn::name)
                .chain(DerivedInput::ALL.map(|d| d.name().to_string()))
                .collect();
            return Err(format!(
                "features {unknown:?} are not inputs vitalflow can supply: a model takes the six vitals {six:?} \
                 in this order (optionally followed by {RUBRIC_FEATURE:?}), or, as a trend model, any of {known:?}"
            ));
        }
        if features.is_empty() || features.len() > ROW_SLOTS {
            return Err(format!("{} inputs: a model takes 1 to {ROW_SLOTS}", features.len()));
        }
        let inputs: Vec<TrendInput> = features.iter().filter_map(|f| TrendInput::parse(f)).collect();
        let mut arguments: Vec<TrendColumn> = Vec::new();
        let position = |c: TrendColumn, arguments: &mut Vec<TrendColumn>| match arguments.iter().position(|a| *a == c) {
            Some(p) => p,
            None => {
                arguments.push(c);
                arguments.len() - 1
            }
        };
        // The named columns first, in file order, then the sources of derived inputs not among them.
        for input in &inputs {
            if let TrendInput::Column(c) = input {
                position(*c, &mut arguments);
            }
        }
        let slots = inputs
            .iter()
            .map(|input| match input {
                TrendInput::Column(c) => Slot::Argument(position(*c, &mut arguments)),
                TrendInput::Derived(d) => Slot::Derived(*d, d.sources().map(|s| position(s, &mut arguments))),
            })
            .collect();
        Ok(ForestInputs::Trend { names: features.to_vec(), arguments, slots })
    }

    /// Number of row slots the trees read.
    pub fn slot_count(&self) -> usize {
        match self {
            ForestInputs::SixVitals { rubric } => 6 + usize::from(*rubric),
            ForestInputs::Trend { slots, .. } => slots.len(),
        }
    }

    /// The slots' names, in file order (the fields of an explanation).
    pub fn names(&self) -> Vec<String> {
        match self {
            ForestInputs::SixVitals { rubric } => MODEL_FEATURES
                .iter()
                .map(|v| v.column().to_string())
                .chain(rubric.then(|| RUBRIC_FEATURE.to_string()))
                .collect(),
            ForestInputs::Trend { names, .. } => names.clone(),
        }
    }

    /// The SQL function's arguments: name and type.
    pub fn arguments(&self) -> Vec<(String, DataType)> {
        match self {
            ForestInputs::SixVitals { .. } => {
                MODEL_FEATURES.iter().map(|v| (v.column().to_string(), DataType::Float64)).collect()
            }
            ForestInputs::Trend { arguments, .. } => arguments.iter().map(|c| (c.name(), c.data_type())).collect(),
        }
    }

    /// Whether a missing input is routed by the trees (a trend model) rather than leaving the row unscored.
    pub fn routes_missing(&self) -> bool {
        matches!(self, ForestInputs::Trend { .. })
    }

    /// The slot values of one row of arguments (NaN or infinite: missing), in f64, as training and
    /// explanations see them; `None` when the model cannot score the row.
    pub fn values(&self, args: &[f64]) -> Option<Vec<f64>> {
        match self {
            ForestInputs::SixVitals { rubric } => {
                let six: [f64; 6] = std::array::from_fn(|f| args.get(f).copied().unwrap_or(f64::NAN));
                if six.iter().any(|v| !v.is_finite()) {
                    return None;
                }
                let mut values = six.to_vec();
                if *rubric {
                    values.push(rubric_points(&six));
                }
                Some(values)
            }
            ForestInputs::Trend { slots, .. } => {
                let mut values = vec![0.0; slots.len()];
                trend_values(slots, |p| args.get(p).copied(), |s, v| values[s] = v);
                Some(values)
            }
        }
    }

    /// Fills `row` with row `i` of the argument columns, as `f32`; false when the model cannot score it.
    #[inline]
    pub fn gather(&self, cols: &[&[f64]], i: usize, row: &mut [f32; ROW_SLOTS]) -> bool {
        match self {
            ForestInputs::SixVitals { rubric } => {
                if cols.len() < 6 || !cols[..6].iter().all(|c| c[i].is_finite()) {
                    return false;
                }
                for (f, col) in cols[..6].iter().enumerate() {
                    row[f] = col[i] as f32;
                }
                if *rubric {
                    // Computed from the f64 inputs, as training computed it.
                    row[6] = rubric_points(&std::array::from_fn(|f| cols[f][i])) as f32;
                }
                true
            }
            ForestInputs::Trend { slots, .. } => {
                trend_values(slots, |p| cols.get(p).map(|c| c[i]), |s, v| row[s] = v as f32);
                true
            }
        }
    }
}

/// Each slot's value of a trend model's row, given each argument's (`None`, NaN or infinite: missing).
#[inline]
fn trend_values(slots: &[Slot], arg: impl Fn(usize) -> Option<f64>, mut out: impl FnMut(usize, f64)) {
    let present = |p: usize| arg(p).filter(|v| v.is_finite());
    for (s, slot) in slots.iter().enumerate() {
        let value = match slot {
            Slot::Argument(p) => present(*p).unwrap_or(MISSING),
            Slot::Derived(_, sources) => DerivedInput::value(&sources.map(|p| present(p).unwrap_or(f64::NAN))),
        };
        out(s, value);
    }
}
