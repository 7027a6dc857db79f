//! `patient_previous(patient_id, value) OVER (ORDER BY patient_id, ...)`: the last non-NULL `value`
//! of the same patient before the row, in the window's order (the ETL's previous risk).
//!
//! Like [`super::PatientHistory`], one pass over the whole window partition that starts a new
//! patient where `patient_id` changes, instead of a window per patient.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, new_null_array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{PartitionEvaluator, Signature, Volatility, WindowUDFImpl};

/// The function: see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PatientPrevious {
    signature: Signature,
}

impl PatientPrevious {
    /// The function.
    pub fn new() -> PatientPrevious {
        PatientPrevious { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl Default for PatientPrevious {
    fn default() -> Self {
        PatientPrevious::new()
    }
}

impl WindowUDFImpl for PatientPrevious {
    fn name(&self) -> &str {
        "patient_previous"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(&self, _args: PartitionEvaluatorArgs) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(PreviousPass))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        match args.input_fields() {
            [_, value] => Ok(Arc::new(Field::new(args.name(), value.data_type().clone(), true))),
            other => plan_err!("patient_previous takes 2 arguments (patient_id, value), got {}", other.len()),
        }
    }
}

/// The evaluator: one call per window partition.
#[derive(Debug)]
struct PreviousPass;

impl PartitionEvaluator for PreviousPass {
    fn evaluate_all(&mut self, values: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        let [patient, value, ..] = values else {
            return exec_err!("patient_previous got {} arguments, expected 2", values.len());
        };
        if rows == 0 {
            return Ok(new_null_array(value.data_type(), 0));
        }
        let patient = cast(patient, &DataType::Utf8)?;
        let patient = patient.as_string::<i32>();
        let mut last: Option<u32> = None;
        let mut previous = Vec::with_capacity(rows);
        for row in 0..rows {
            if row > 0 && patient.value(row) != patient.value(row - 1) {
                last = None;
            }
            previous.push(last);
            if value.is_valid(row) {
                last = Some(row as u32);
            }
        }
        Ok(take(value, &UInt32Array::from(previous), None)?)
    }
}
