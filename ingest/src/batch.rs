//! Decoded readings and rejected records → Arrow batches of `vitals_raw` and `dead_letters`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondArray, TimestampNanosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use vitalflow_udf_model::schema::{DEAD_LETTERS_SCHEMA, VITALS_RAW_SCHEMA};

use crate::decode::{Reading, Rejection};
use crate::error::Result;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourcePosition {
    /// Kafka topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// `vitals_raw` rows of one flush.
pub fn vitals_raw_batch(rows: &[(SourcePosition, Reading)], ingest_time_ns: i64) -> Result<RecordBatch> {
    let n = rows.len();
    let mut patient = StringBuilder::with_capacity(n, n * 8);
    let mut time = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut vitals: Vec<Float64Builder> = (0..7).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut oxygen = BooleanBuilder::with_capacity(n);
    let mut consciousness = StringBuilder::with_capacity(n, n);
    let mut topic = StringBuilder::with_capacity(n, n * 12);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    for (pos, r) in rows {
        patient.append_value(&r.patient_id);
        time.append_value(r.event_time_ns);
        for (b, v) in vitals.iter_mut().zip(r.vitals) {
            b.append_option(v);
        }
        oxygen.append_option(r.on_oxygen);
        consciousness.append_option(r.consciousness.map(|c| c.letter()));
        topic.append_value(&pos.topic);
        partition.append_value(pos.partition);
        offset.append_value(pos.offset);
    }
    let ingest = constant_time(ingest_time_ns, n);
    let mut columns: Vec<ArrayRef> = vec![Arc::new(patient.finish()), Arc::new(time.finish())];
    columns.extend(vitals.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend([
        Arc::new(oxygen.finish()) as ArrayRef,
        Arc::new(consciousness.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(ingest),
    ]);
    Ok(RecordBatch::try_new(VITALS_RAW_SCHEMA.clone(), columns)?)
}

/// A UTC time column holding `ns` in each of `n` rows.
fn constant_time(ns: i64, n: usize) -> TimestampNanosecondArray {
    TimestampNanosecondArray::from(vec![ns; n]).with_timezone("UTC")
}

/// A record that could not be used, with its raw payload.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where it came from.
    pub position: SourcePosition,
    /// The payload exactly as received (empty for a tombstone).
    pub payload: Vec<u8>,
    /// Why.
    pub rejection: Rejection,
}

/// `dead_letters` rows of one flush, stage `stage`.
pub fn dead_letter_batch(letters: &[DeadLetter], stage: &str, time_ns: i64) -> Result<RecordBatch> {
    let n = letters.len();
    let mut payload = BinaryBuilder::with_capacity(n, letters.iter().map(|l| l.payload.len()).sum());
    let mut topic = StringBuilder::with_capacity(n, n * 12);
    let mut partition = Int32Builder::with_capacity(n);
    let mut offset = Int64Builder::with_capacity(n);
    let mut stages = StringBuilder::with_capacity(n, n * stage.len());
    let mut code = StringBuilder::with_capacity(n, n * 16);
    let mut reason = StringBuilder::with_capacity(n, n * 48);
    for l in letters {
        payload.append_value(&l.payload);
        topic.append_value(&l.position.topic);
        partition.append_value(l.position.partition);
        offset.append_value(l.position.offset);
        stages.append_value(stage);
        code.append_value(l.rejection.code.as_str());
        reason.append_value(&l.rejection.reason);
    }
    let time = constant_time(time_ns, n);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(payload.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(stages.finish()),
        Arc::new(code.finish()),
        Arc::new(reason.finish()),
        Arc::new(time),
    ];
    Ok(RecordBatch::try_new(DEAD_LETTERS_SCHEMA.clone(), columns)?)
}
