//! Kafka records → Arrow batches of `vitals_raw`, `patient_movements` and `dead_letters`, decoded as they arrive: the flat
//! JSON fast path ([`crate::flat`]) appends straight to the builders, everything else goes through
//! [`decode_any`].

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Array, Int32Builder, Int64Builder,
    StringBuilder, TimestampNanosecondArray, TimestampNanosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use vitalflow_udf_model::rubric::{Consciousness, Spo2Scale};
use vitalflow_udf_model::schema::{DEAD_LETTERS_SCHEMA, VITALS_RAW_SCHEMA};

use crate::decode::{DecodeOptions, Decoded, Reading, ReasonCode, Rejection, decode_any};
use crate::error::Result;
use crate::flat::decode_flat;
use crate::movement::MovementsBuilder;
use crate::reading::ReadingRow;

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

/// `vitals_raw` rows of one partition's offset range, appended as records are decoded; topic,
/// partition and ingest time are the same for every row and filled in by [`VitalsRawBuilder::finish`].
#[derive(Debug)]
pub struct VitalsRawBuilder {
    patient: StringBuilder,
    time: TimestampNanosecondBuilder,
    vitals: [Float64Builder; 7],
    oxygen: BooleanBuilder,
    consciousness: StringBuilder,
    offset: Int64Builder,
    ward: StringBuilder,
    validated: BooleanBuilder,
    spo2_scale: Int32Builder,
}

impl Default for VitalsRawBuilder {
    fn default() -> Self {
        VitalsRawBuilder {
            patient: StringBuilder::new(),
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            vitals: std::array::from_fn(|_| Float64Builder::new()),
            oxygen: BooleanBuilder::new(),
            consciousness: StringBuilder::new(),
            offset: Int64Builder::new(),
            ward: StringBuilder::new(),
            validated: BooleanBuilder::new(),
            spo2_scale: Int32Builder::new(),
        }
    }
}

impl VitalsRawBuilder {
    /// Appends one reading found at `offset`.
    pub fn append(&mut self, offset: i64, row: ReadingRow<'_>) {
        self.patient.append_value(row.patient_id);
        self.time.append_value(row.event_time_ns);
        for (b, v) in self.vitals.iter_mut().zip(row.vitals) {
            b.append_option(v);
        }
        self.oxygen.append_option(row.on_oxygen);
        self.consciousness.append_option(row.consciousness.map(Consciousness::letter));
        self.offset.append_value(offset);
        self.ward.append_option(row.ward);
        self.validated.append_value(row.validated);
        self.spo2_scale.append_option(row.spo2_scale.map(Spo2Scale::number));
    }

    /// Appends a reading of the general decoder.
    pub fn append_reading(&mut self, offset: i64, r: &Reading) {
        self.append(offset, r.as_row());
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    /// Whether no row was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as a `vitals_raw` batch of `topic`/`partition`, landed at `ingest_time_ns`.
    pub fn finish(&mut self, topic: &str, partition: i32, ingest_time_ns: i64) -> Result<RecordBatch> {
        let n = self.len();
        let mut topics = StringBuilder::with_capacity(n, n * topic.len());
        for _ in 0..n {
            topics.append_value(topic);
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.patient.finish()), Arc::new(self.time.finish())];
        columns.extend(self.vitals.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend([
            Arc::new(self.oxygen.finish()) as ArrayRef,
            Arc::new(self.consciousness.finish()),
            Arc::new(topics.finish()),
            Arc::new(Int32Array::from(vec![partition; n])),
            Arc::new(self.offset.finish()),
            Arc::new(constant_time(ingest_time_ns, n)),
            Arc::new(self.ward.finish()),
            Arc::new(self.validated.finish()),
            Arc::new(self.spo2_scale.finish()),
        ]);
        Ok(RecordBatch::try_new(VITALS_RAW_SCHEMA.clone(), columns)?)
    }
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

/// One partition's records since its last flush, decoded: the offset range they span, the good rows
/// in Arrow builders and the bad ones as dead letters.
#[derive(Debug)]
pub struct RangeBatch {
    /// First offset of the range.
    pub first: i64,
    /// Kafka timestamp (ms) of the first record; it picks the range's hour folder.
    pub first_timestamp_ms: i64,
    /// Last offset of the range.
    pub last: i64,
    /// Records in the range, good and bad.
    pub records: usize,
    /// The good rows.
    pub rows: VitalsRawBuilder,
    /// The patient movements.
    pub movements: MovementsBuilder,
    /// The bad records.
    pub dead: Vec<DeadLetter>,
    /// Dead letters per reason code, in [`ReasonCode::ALL`] order.
    pub by_reason: [usize; ReasonCode::ALL.len()],
}

impl RangeBatch {
    /// An empty range starting at `first`.
    pub fn new(first: i64, first_timestamp_ms: i64) -> RangeBatch {
        RangeBatch {
            first,
            first_timestamp_ms,
            last: first,
            records: 0,
            rows: VitalsRawBuilder::default(),
            movements: MovementsBuilder::default(),
            dead: Vec::new(),
            by_reason: [0; ReasonCode::ALL.len()],
        }
    }

    /// Decodes the record at `offset` (after every offset pushed so far) into a reading, a movement or a
    /// dead letter.
    pub fn push(&mut self, topic: &str, partition: i32, offset: i64, payload: Option<&[u8]>, options: &DecodeOptions) {
        self.last = offset;
        self.records += 1;
        let fast = payload.filter(|p| !p.is_empty() && p.len() <= options.max_bytes).and_then(decode_flat);
        if let Some(r) = fast {
            self.rows.append(offset, r);
            return;
        }
        match decode_any(payload, options) {
            Ok(Decoded::Reading(reading)) => self.rows.append_reading(offset, &reading),
            Ok(Decoded::Movement(movement)) => self.movements.append(offset, movement),
            Err(rejection) => {
                self.by_reason[rejection.code.index()] += 1;
                self.dead.push(DeadLetter {
                    position: SourcePosition { topic: topic.to_string(), partition, offset },
                    payload: payload.map(<[u8]>::to_vec).unwrap_or_default(),
                    rejection,
                });
            }
        }
    }
}

/// The decoded records of one partition taken for a flush.
#[derive(Debug)]
pub(crate) struct PartitionRange {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) range: RangeBatch,
}
