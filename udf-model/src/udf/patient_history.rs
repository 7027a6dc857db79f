//! `patient_history(...) OVER (ORDER BY patient_id, event_time, ...)`: the ETL's one ordered pass
//! over every patient's readings (the state kept from earlier batches, then the batch's), returning a
//! struct per reading: why it is rejected as a re-sent copy, each parameter carried forward and when
//! it was measured, and the rolling mean and change of each vital. A rejected reading keeps its own
//! values, with no measured-at times or features, and takes no part in the pass.
//!
//! The features come from [`PatientTrend`], the code training and `vitalflow evaluate` use, so that
//! what the model learnt on and what the ETL scores with never differ. One pass over the whole batch
//! (no `PARTITION BY`: the function starts a new patient where `patient_id` changes) costs about as
//! much as reading the rows; a window per patient costs DataFusion's window operator per patient.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, StringBuilder, StructArray, UInt32Array, new_null_array,
};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, TimeUnit};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};

use super::trend_column;
use crate::schema::Vital;
use crate::trend::{CARRIED, Measurement, PatientTrend, TrendSettings};

/// The arguments before the parameter pairs: patient id, reading time, whether the row is kept
/// state, the reason a row-level rule rejects it (NULL: none).
const LEADING: usize = 4;
/// Every argument: the leading four, a (value, measured-at) pair per parameter, then
/// `carry_forward_seconds` and `window_readings`.
const ARGUMENTS: usize = LEADING + 2 * CARRIED + 2;

/// The carried parameters' column names, in [`PatientTrend`]'s order.
fn parameter_names() -> [&'static str; CARRIED] {
    let v = Vital::ALL.map(Vital::column);
    [v[0], v[1], v[2], v[3], v[4], v[5], v[6], "on_oxygen", "consciousness"]
}

/// The reject code of a reading that repeats an earlier one (same patient, time and values).
const DUPLICATE: &str = "duplicate";

/// The function: see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PatientHistory {
    signature: Signature,
}

impl PatientHistory {
    /// The function.
    pub fn new() -> PatientHistory {
        PatientHistory { signature: Signature::any(ARGUMENTS, Volatility::Immutable) }
    }
}

impl Default for PatientHistory {
    fn default() -> Self {
        PatientHistory::new()
    }
}

/// The struct's fields for arguments of `types` (already counted).
fn result_fields(types: &[DataType]) -> Fields {
    let mut fields = vec![Field::new("reject_code", DataType::Utf8, true)];
    for (p, name) in parameter_names().iter().enumerate() {
        fields.push(Field::new(*name, types[LEADING + 2 * p].clone(), true));
        fields.push(Field::new(format!("{name}_measured_at"), types[LEADING + 2 * p + 1].clone(), true));
    }
    for vital in Vital::ALL {
        fields.push(Field::new(format!("{}_rolling_mean", vital.column()), DataType::Float64, true));
        fields.push(Field::new(format!("{}_change", vital.column()), DataType::Float64, true));
    }
    Fields::from(fields)
}

impl WindowUDFImpl for PatientHistory {
    fn name(&self) -> &str {
        "patient_history"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(HistoryPass))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args.input_fields().iter().map(|f| f.data_type().clone()).collect();
        if types.len() != ARGUMENTS {
            return plan_err!(
                "patient_history takes {ARGUMENTS} arguments (patient_id, event_time, from_state, reject_code, a value \
                 and its measured-at time for each of {}, carry_forward_seconds, window_readings), got {}",
                parameter_names().join(", "),
                types.len()
            );
        }
        if !matches!(types[1], DataType::Timestamp(..)) {
            return plan_err!("patient_history: event_time must be a timestamp, got {}", types[1]);
        }
        Ok(Arc::new(Field::new(args.name(), DataType::Struct(result_fields(&types)), true)))
    }
}

/// The evaluator: one call per window partition (the whole batch when there is no `PARTITION BY`).
#[derive(Debug)]
struct HistoryPass;

impl PartitionEvaluator for HistoryPass {
    fn evaluate_all(&mut self, values: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let Some(values) = values.get(..ARGUMENTS) else {
            return exec_err!("patient_history got {} arguments, expected {ARGUMENTS}", values.len());
        };
        let types: Vec<DataType> = values.iter().map(|v| v.data_type().clone()).collect();
        let fields = result_fields(&types);
        if rows == 0 {
            return Ok(new_null_array(&DataType::Struct(fields), 0));
        }
        let batch = BatchColumns::new(values)?;
        let settings = batch.settings()?;
        let copies = batch.copies()?;

        let mut reject = StringBuilder::with_capacity(rows, rows * 4);
        // Where each parameter's value and measured-at time come from, by row.
        let mut values_from: Vec<Vec<Option<u32>>> = (0..CARRIED).map(|_| Vec::with_capacity(rows)).collect();
        let mut times_from: Vec<Vec<Option<u32>>> = (0..CARRIED).map(|_| Vec::with_capacity(rows)).collect();
        let mut features: Vec<Vec<Option<f64>>> = (0..14).map(|_| Vec::with_capacity(rows)).collect();
        let mut patient = PatientTrend::new(settings);
        for (row, copy) in copies.iter().enumerate() {
            if row > 0 && batch.patient.value(row) != batch.patient.value(row - 1) {
                patient = PatientTrend::new(settings);
            }
            let from_state = batch.from_state.is_valid(row) && batch.from_state.value(row);
            let code = if from_state {
                None
            } else if *copy {
                Some(DUPLICATE)
            } else {
                batch.row_reject.is_valid(row).then(|| batch.row_reject.value(row))
            };
            reject.append_option(code);
            if code.is_some() {
                // A rejected reading keeps its own values, with no times or features.
                values_from.iter_mut().for_each(|v| v.push(Some(row as u32)));
                times_from.iter_mut().for_each(|t| t.push(None));
                features.iter_mut().for_each(|f| f.push(None));
                continue;
            }
            let step = patient.take(batch.time[row], &batch.measured(row));
            for (p, from) in step.carried_from.iter().enumerate() {
                let from = from.map(|m| m.source as u32);
                values_from[p].push(from);
                times_from[p].push(from);
            }
            for v in 0..Vital::ALL.len() {
                features[2 * v].push(Some(step.row.mean(v)).filter(|x| x.is_finite()));
                features[2 * v + 1].push(Some(step.row.change(v)).filter(|x| x.is_finite()));
            }
        }

        let mut columns: Vec<ArrayRef> = vec![Arc::new(reject.finish())];
        for (p, (value_rows, time_rows)) in values_from.into_iter().zip(times_from).enumerate() {
            columns.push(take(&values[LEADING + 2 * p], &UInt32Array::from(value_rows), None)?);
            columns.push(take(&values[LEADING + 2 * p + 1], &UInt32Array::from(time_rows), None)?);
        }
        columns.extend(features.into_iter().map(|f| Arc::new(Float64Array::from(f)) as ArrayRef));
        Ok(Arc::new(StructArray::try_new(fields, columns, None)?))
    }
}

/// The arguments of one evaluation, in the forms the pass reads.
struct BatchColumns<'a> {
    values: &'a [ArrayRef],
    patient: arrow::array::StringArray,
    from_state: BooleanArray,
    row_reject: arrow::array::StringArray,
    /// Reading times, in microseconds.
    time: Vec<i64>,
    /// Each parameter's value (NaN: missing) and measured-at time (microseconds; NULL: none).
    parameters: Vec<(Float64Array, arrow::array::Int64Array)>,
}

impl<'a> BatchColumns<'a> {
    fn new(values: &'a [ArrayRef]) -> Result<BatchColumns<'a>> {
        let text = |a: &ArrayRef| -> Result<arrow::array::StringArray> {
            Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
        };
        // The pass counts in microseconds (Delta Lake's timestamp precision).
        let time_type = match values[1].data_type() {
            DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            other => return exec_err!("patient_history: event_time must be a timestamp, got {other}"),
        };
        // Times in microseconds, as integers.
        let ticks = |a: &ArrayRef| -> Result<arrow::array::Int64Array> {
            let same_unit = cast(a, &time_type)?;
            Ok(cast(&same_unit, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
        };
        let times = ticks(&values[1])?;
        if times.null_count() > 0 {
            return exec_err!("patient_history: event_time is NULL in a reading");
        }
        let parameters = (0..CARRIED)
            .map(|p| Ok((trend_column(&values[LEADING + 2 * p])?, ticks(&values[LEADING + 2 * p + 1])?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchColumns {
            values,
            patient: text(&values[0])?,
            from_state: cast(&values[2], &DataType::Boolean)?.as_boolean().clone(),
            row_reject: text(&values[3])?,
            time: times.values().to_vec(),
            parameters,
        })
    }

    /// The settings, from the last two arguments (constants of the SQL text).
    fn settings(&self) -> Result<TrendSettings> {
        let number = |i: usize, name: &str| -> Result<f64> {
            let v = cast(&self.values[i], &DataType::Float64)?;
            let v = v.as_primitive::<arrow::datatypes::Float64Type>();
            match (v.is_valid(0)).then(|| v.value(0)) {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => exec_err!("patient_history: {name} must be a number of at least 0"),
            }
        };
        let window = number(ARGUMENTS - 1, "window_readings")?;
        Ok(TrendSettings {
            carry_forward_seconds: number(ARGUMENTS - 2, "carry_forward_seconds")?,
            window_readings: window as usize,
        })
    }

    /// What reading `row` brings of each parameter (see [`PatientTrend::take`]).
    fn measured(&self, row: usize) -> [Option<Measurement>; CARRIED] {
        std::array::from_fn(|p| {
            let (value, at) = &self.parameters[p];
            // `value` is NaN where missing, never NULL: presence is the argument's own.
            (at.is_valid(row) && self.values[LEADING + 2 * p].is_valid(row)).then(|| Measurement {
                value: value.value(row),
                at: at.value(row),
                source: row,
            })
        })
    }

    /// Which rows repeat an earlier row of the same patient and time with the same values as
    /// measured at that time (NULLs equal): the first copy in the window's order is kept.
    fn copies(&self) -> Result<Vec<bool>> {
        let rows = self.time.len();
        let time = arrow::array::Int64Array::from(self.time.clone());
        let mut own: Vec<ArrayRef> = Vec::with_capacity(CARRIED);
        for (p, (_, at)) in self.parameters.iter().enumerate() {
            let value = &self.values[LEADING + 2 * p];
            // A kept state row's carried values were measured earlier: they are not its own.
            let measured_then = eq(at, &time)?;
            own.push(zip(&measured_then, value, &new_null_array(value.data_type(), rows))?);
        }
        let converter = RowConverter::new(own.iter().map(|a| SortField::new(a.data_type().clone())).collect())?;
        let keys = converter.convert_columns(&own)?;
        let mut copies = Vec::with_capacity(rows);
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for row in 0..rows {
            let same_moment = row > 0
                && self.time[row] == self.time[row - 1]
                && self.patient.value(row) == self.patient.value(row - 1);
            if !same_moment {
                seen.clear();
            }
            copies.push(!seen.insert(keys.row(row).data()));
        }
        Ok(copies)
    }
}
