//! Patient movements (admit, transfer, discharge, update): what a movement record decodes to, the
//! small JSON contract (`{"type": "movement", ...}`), and the `patient_movements` rows of one partition's
//! range. HL7 v2 ADT messages decode to the same [`Movement`] ([`crate::hl7`]).
//!
//! Movements share the vitals topic: a record becomes a reading, a movement or one dead letter, landed
//! in the same flush under the same per-partition positions ([`crate::landing`]). One topic keeps a
//! patient's admission before their readings when both are keyed by patient, and needs no second
//! consumer or second set of positions.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Builder, StringBuilder, TimestampNanosecondArray};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use vitalflow_udf_model::schema::PATIENT_MOVEMENTS_SCHEMA;

use crate::error::Result;
use crate::reading::{EARLIEST, Reading, ReasonCode, Rejection, parse_time};

/// Longest accepted patient id, ward, room or bed, in bytes.
const MAX_TEXT: usize = 64;

/// What happened to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementKind {
    /// Admitted (HL7 A01).
    Admit,
    /// Moved to another ward or bed (A02).
    Transfer,
    /// Discharged (A03): leaves `patient_latest`, the ward views and the stale-feed rule until admitted again.
    Discharge,
    /// Patient or visit details changed (A08); a location given there is where the patient is now.
    Update,
}

impl MovementKind {
    /// The value stored in `patient_movements.movement`.
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Admit => "admit",
            MovementKind::Transfer => "transfer",
            MovementKind::Discharge => "discharge",
            MovementKind::Update => "update",
        }
    }

    /// The kind named `text` (as stored).
    pub fn parse(text: &str) -> Option<MovementKind> {
        [MovementKind::Admit, MovementKind::Transfer, MovementKind::Discharge, MovementKind::Update]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A decoded movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// Patient identifier (as readings carry it).
    pub patient_id: String,
    /// What happened.
    pub kind: MovementKind,
    /// Ward (HL7 PV1-3.1, point of care) the patient is in afterwards; `None`: not said.
    pub ward: Option<String>,
    /// Room (PV1-3.2).
    pub room: Option<String>,
    /// Bed (PV1-3.3).
    pub bed: Option<String>,
    /// When it happened, nanoseconds since the epoch, UTC.
    pub event_time_ns: i64,
    /// `ADT^A01` etc. for HL7 v2; `None` for the JSON record.
    pub message_type: Option<String>,
}

/// What one Kafka record is: a reading or a patient movement.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Vitals, for `vitals_raw`.
    Reading(Reading),
    /// An admission, transfer, discharge or update, for `patient_movements`.
    Movement(Movement),
}

/// Whether a JSON object is a movement record (`"type": "movement"`).
pub(crate) fn is_movement(obj: &Map<String, Value>) -> bool {
    obj.get("type").and_then(Value::as_str) == Some("movement")
}

/// The JSON contract: `{"type": "movement", "patient_id", "movement", "ward", "bed", "event_time"}`;
/// `ward`, `room` and `bed` optional, `event_time` RFC 3339 or epoch milliseconds.
pub(crate) fn decode_json(obj: &Map<String, Value>) -> std::result::Result<Movement, Rejection> {
    let patient_id = text(obj, "patient_id")?
        .ok_or_else(|| Rejection::new(ReasonCode::MissingField, "patient_id is missing from the movement"))?;
    let movement = text(obj, "movement")?.ok_or_else(|| {
        Rejection::new(ReasonCode::MissingField, "movement is missing (admit, transfer, discharge or update)")
    })?;
    let kind = MovementKind::parse(&movement).ok_or_else(|| {
        Rejection::new(
            ReasonCode::InvalidValue,
            format!("movement: {movement:?} is not one of admit, transfer, discharge, update"),
        )
    })?;
    let (ward, room, bed) = (text(obj, "ward")?, text(obj, "room")?, text(obj, "bed")?);
    if kind == MovementKind::Transfer && ward.is_none() {
        return Err(Rejection::new(ReasonCode::MissingField, "ward is missing: a transfer says where to"));
    }
    let event_time_ns = json_time(obj)?;
    Ok(Movement { patient_id, kind, ward, room, bed, event_time_ns, message_type: None })
}

/// A string field, trimmed; `None` when absent, null or empty.
fn text(obj: &Map<String, Value>, name: &str) -> std::result::Result<Option<String>, Rejection> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_TEXT => Err(Rejection::new(
            ReasonCode::InvalidValue,
            format!("{name} is {} bytes, the limit is {MAX_TEXT}", s.len()),
        )),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected a string"))),
    }
}

fn json_time(obj: &Map<String, Value>) -> std::result::Result<i64, Rejection> {
    let value = obj
        .get("event_time")
        .filter(|v| !v.is_null())
        .ok_or_else(|| Rejection::new(ReasonCode::MissingField, "event_time is missing from the movement"))?;
    let ms_or_ns = match value {
        Value::String(s) => parse_time(s).and_then(|t| t.timestamp_nanos_opt()).ok_or_else(|| {
            Rejection::new(ReasonCode::InvalidTime, format!("event_time: {s:?} is not an RFC 3339 time"))
        })?,
        Value::Number(n) => n.as_i64().and_then(|ms| ms.checked_mul(1_000_000)).ok_or_else(|| {
            Rejection::new(ReasonCode::InvalidTime, format!("event_time: {n} is not epoch milliseconds"))
        })?,
        _ => {
            return Err(Rejection::new(
                ReasonCode::WrongType,
                "event_time: expected a time string or epoch milliseconds",
            ));
        }
    };
    if ms_or_ns < EARLIEST * 1_000_000 {
        return Err(Rejection::new(ReasonCode::ImpossibleValue, "event_time is before 2000-01-01"));
    }
    Ok(ms_or_ns)
}

/// `patient_movements` rows of one partition's range, in offset order.
#[derive(Debug, Default)]
pub struct MovementsBuilder {
    rows: Vec<(i64, Movement)>,
}

impl MovementsBuilder {
    /// Appends the movement found at `offset`.
    pub fn append(&mut self, offset: i64, movement: Movement) {
        self.rows.push((offset, movement));
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as a `patient_movements` batch of `topic`/`partition`, landed at `ingest_time_ns`.
    pub fn finish(&self, topic: &str, partition: i32, ingest_time_ns: i64) -> Result<RecordBatch> {
        let n = self.rows.len();
        let mut strings: [StringBuilder; 7] = std::array::from_fn(|_| StringBuilder::new());
        let mut offsets = Int64Builder::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        for (offset, m) in &self.rows {
            let [patient, kind, ward, room, bed, message_type, topics] = &mut strings;
            patient.append_value(&m.patient_id);
            kind.append_value(m.kind.as_str());
            ward.append_option(m.ward.as_deref());
            room.append_option(m.room.as_deref());
            bed.append_option(m.bed.as_deref());
            message_type.append_option(m.message_type.as_deref());
            topics.append_value(topic);
            offsets.append_value(*offset);
            times.push(m.event_time_ns);
        }
        let [patient, kind, ward, room, bed, message_type, topics] =
            strings.map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let columns: Vec<ArrayRef> = vec![
            patient,
            kind,
            ward,
            room,
            bed,
            Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
            message_type,
            topics,
            Arc::new(Int32Array::from(vec![partition; n])),
            Arc::new(offsets.finish()),
            Arc::new(TimestampNanosecondArray::from(vec![ingest_time_ns; n]).with_timezone("UTC")),
        ];
        Ok(RecordBatch::try_new(PATIENT_MOVEMENTS_SCHEMA.clone(), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> std::result::Result<Decoded, Rejection> {
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(json) else { panic!("not a JSON object: {json}") };
        assert!(is_movement(&obj), "{json}");
        decode_json(&obj).map(Decoded::Movement)
    }

    #[test]
    fn the_json_contract_decodes_to_a_movement() {
        let Decoded::Movement(m) = decode(
            r#"{"type": "movement", "patient_id": "P017", "movement": "transfer", "ward": "ICU",
                "bed": "3", "event_time": "2026-11-23T10:15:02Z"}"#,
        )
        .unwrap() else {
            panic!("not a movement")
        };
        assert_eq!(
            m,
            Movement {
                patient_id: "P017".into(),
                kind: MovementKind::Transfer,
                ward: Some("ICU".into()),
                room: None,
                bed: Some("3".into()),
                event_time_ns: 1_795_428_902_000_000_000,
                message_type: None,
            }
        );
        let Decoded::Movement(d) = decode(
            r#"{"type": "movement", "patient_id": "P017", "movement": "discharge", "event_time": 1795428902000}"#,
        )
        .unwrap() else {
            panic!("not a movement")
        };
        assert_eq!((d.kind, d.ward, d.event_time_ns), (MovementKind::Discharge, None, 1_795_428_902_000_000_000));
    }

    #[test]
    fn bad_movements_are_refused_with_their_reason() {
        for (json, code, needle) in [
            (
                r#"{"type": "movement", "movement": "admit", "event_time": "2026-11-23T10:15:02Z"}"#,
                ReasonCode::MissingField,
                "patient_id",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "event_time": "2026-11-23T10:15:02Z"}"#,
                ReasonCode::MissingField,
                "movement",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "movement": "teleport", "event_time": "2026-11-23T10:15:02Z"}"#,
                ReasonCode::InvalidValue,
                "teleport",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "movement": "transfer", "event_time": "2026-11-23T10:15:02Z"}"#,
                ReasonCode::MissingField,
                "ward",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "movement": "admit"}"#,
                ReasonCode::MissingField,
                "event_time",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "movement": "admit", "event_time": "soon"}"#,
                ReasonCode::InvalidTime,
                "soon",
            ),
            (
                r#"{"type": "movement", "patient_id": "P1", "movement": "admit", "event_time": 1795428902}"#,
                ReasonCode::ImpossibleValue,
                "2000",
            ),
            (
                r#"{"type": "movement", "patient_id": 7, "movement": "admit", "event_time": 1795428902000}"#,
                ReasonCode::WrongType,
                "patient_id",
            ),
        ] {
            let e = decode(json).unwrap_err();
            assert_eq!(e.code, code, "{json}: {}", e.reason);
            assert!(e.reason.contains(needle), "{json}: {:?} lacks {needle:?}", e.reason);
        }
    }
}
