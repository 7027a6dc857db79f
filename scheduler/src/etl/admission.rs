//! What patient movements change in a micro-batch's outputs ([`crate::stays`]):
//! - with `etl.require_admission`, a clean row of a patient not admitted at its time becomes a dead
//!   letter `not_admitted` (and raises no alert);
//! - a discharged patient's row leaves `patient_latest` (the ETL state keeps it: readmitted, the
//!   patient's window and carried values are still there).
//!
//! Admission is judged on the movements landed when the batch runs, at the reading's event time, after
//! the SQL: a row refused here still counted in its patient's carry-forward and rolling window of
//! that batch, as the ETL's own `duplicate` rows do not; readings before an admission rarely stand
//! within `etl.carry_forward_seconds` of the first admitted one.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, StringArray, StringBuilder, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::stays::Stays;

/// The reason code of a reading whose patient was not admitted (`etl.require_admission`).
pub(super) const NOT_ADMITTED: &str = "not_admitted";

/// Column `name` of `batch` cast to `data_type` (the SQL may give strings as views).
fn column_as(batch: &RecordBatch, name: &str, data_type: &DataType) -> Result<ArrayRef> {
    let found = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Config(format!("the ETL SQL's result has no column {name}")))?;
    arrow::compute::cast(found, data_type).map_err(|e| Error::Config(format!("the ETL SQL's column {name}: {e}")))
}

fn downcast<T: Clone + 'static>(array: &ArrayRef, name: &str) -> Result<T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| Error::Config(format!("the ETL SQL's column {name} is {}", array.data_type())))
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    downcast(&column_as(batch, name, &DataType::Utf8)?, name)
}

/// `scored` with each clean row of a patient not admitted at its time marked `not_admitted`.
pub(super) fn refuse_not_admitted(scored: Vec<RecordBatch>, stays: &Stays) -> Result<Vec<RecordBatch>> {
    scored.into_iter().map(|batch| refuse_in(&batch, stays)).collect()
}

fn refuse_in(batch: &RecordBatch, stays: &Stays) -> Result<RecordBatch> {
    let patient = strings(batch, "patient_id")?;
    let nanos = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let time: TimestampNanosecondArray = downcast(&column_as(batch, "event_time", &nanos)?, "event_time")?;
    let code = strings(batch, "reject_code")?;
    let reason = strings(batch, "reject_reason")?;
    let raises: BooleanArray = downcast(&column_as(batch, "raises_alert", &DataType::Boolean)?, "raises_alert")?;
    let n = batch.num_rows();
    let (mut codes, mut reasons, mut alerts) = (
        StringBuilder::with_capacity(n, n * 8),
        StringBuilder::with_capacity(n, n * 16),
        BooleanBuilder::with_capacity(n),
    );
    let mut changed = false;
    for i in 0..n {
        let refused = code.is_null(i) && !stays.admitted_at(patient.value(i), time.value(i));
        if refused {
            changed = true;
            codes.append_value(NOT_ADMITTED);
            reasons.append_value(format!(
                "patient {} was not admitted at {} (no admission or transfer in patient_movements by then, or \
                 discharged since; etl.require_admission)",
                patient.value(i),
                chrono::DateTime::from_timestamp_nanos(time.value(i)).to_rfc3339()
            ));
            alerts.append_value(false);
        } else {
            codes.append_option((!code.is_null(i)).then(|| code.value(i)));
            reasons.append_option((!reason.is_null(i)).then(|| reason.value(i)));
            alerts.append_option((!raises.is_null(i)).then(|| raises.value(i)));
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    let replaced: [(&str, ArrayRef); 3] = [
        ("reject_code", Arc::new(codes.finish())),
        ("reject_reason", Arc::new(reasons.finish())),
        ("raises_alert", Arc::new(alerts.finish())),
    ];
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, array) in replaced {
        let index = schema.index_of(name).map_err(|e| Error::Config(format!("the ETL SQL's result: {e}")))?;
        // The SQL may type them as views or large strings: cast back to what it returned.
        columns[index] = arrow::compute::cast(&array, schema.field(index).data_type())
            .map_err(|e| Error::Config(format!("marking not_admitted rows: {e}")))?;
    }
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Config(format!("marking not_admitted rows: {e}")))
}

/// `latest` (rows of `patient_latest`) without the patients discharged now.
pub(super) fn without_discharged(latest: Vec<RecordBatch>, stays: &Stays) -> Result<Vec<RecordBatch>> {
    let mut kept = Vec::with_capacity(latest.len());
    for batch in latest {
        let patient = strings(&batch, "patient_id")?;
        let keep: BooleanArray =
            (0..batch.num_rows()).map(|i| Some(!stays.current(patient.value(i)).is_discharged())).collect();
        let filtered = arrow::compute::filter_record_batch(&batch, &keep)
            .map_err(|e| Error::Config(format!("leaving discharged patients out of patient_latest: {e}")))?;
        if filtered.num_rows() > 0 {
            kept.push(filtered);
        }
    }
    Ok(kept)
}
