//! The seed's flat JSON record (or a FHIR resource, see [`crate::fhir`], or an HL7 v2 message, see
//! [`crate::hl7`]) → a [`Reading`], a movement record (JSON or HL7 v2 ADT) → a [`Movement`], or either
//! → a [`Rejection`] with a reason for the dead letters.
//!
//! A record needs a patient id, a time and at least one vital; any single vital may be missing.
//! Values of the wrong type, or outside what a living patient can show, reject the whole record:
//! half a record scored as if complete would be a wrong risk label.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use vitalflow_udf_model::rubric::{Consciousness, Spo2Scale};
use vitalflow_udf_model::schema::Vital;

use crate::config::IngestConfig;
use crate::hl7::{Hl7Settings, decode_message, is_hl7};
pub use crate::movement::{Decoded, Movement};
use crate::reading::{EARLIEST, MAX_WARD, parse_time};
pub use crate::reading::{Reading, ReadingRow, ReasonCode, Rejection};

/// Longest accepted patient id, in bytes.
const MAX_PATIENT_ID: usize = 64;

/// What decoding needs of the configuration, read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// `ingest.max_message_bytes`.
    pub max_bytes: usize,
    /// `ingest.hl7`.
    pub hl7: Hl7Settings,
}

impl DecodeOptions {
    /// Reads `config`; an unknown `hl7.default_timezone` is a configuration error.
    pub fn from_config(config: &IngestConfig) -> crate::error::Result<DecodeOptions> {
        Ok(DecodeOptions { max_bytes: config.max_message_bytes, hl7: Hl7Settings::from_config(&config.hl7)? })
    }
}

impl Default for DecodeOptions {
    /// As for the default [`IngestConfig`].
    fn default() -> Self {
        DecodeOptions { max_bytes: IngestConfig::default().max_message_bytes, hl7: Hl7Settings::default() }
    }
}

/// Decodes one Kafka payload that must be a reading (a movement is refused as `invalid_value`).
pub fn decode_record(payload: Option<&[u8]>, options: &DecodeOptions) -> Result<Reading, Rejection> {
    match decode_any(payload, options)? {
        Decoded::Reading(reading) => Ok(reading),
        Decoded::Movement(_) => Err(Rejection::new(ReasonCode::InvalidValue, "a patient movement, not a reading")),
    }
}

/// Decodes one Kafka payload: a reading, a movement, or why it is neither.
pub fn decode_any(payload: Option<&[u8]>, options: &DecodeOptions) -> Result<Decoded, Rejection> {
    let max_bytes = options.max_bytes;
    let payload = payload
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Rejection::new(ReasonCode::EmptyPayload, "message has no payload"))?;
    if payload.len() > max_bytes {
        return Err(Rejection::new(
            ReasonCode::Oversized,
            format!("message is {} bytes, the limit is {max_bytes}", payload.len()),
        ));
    }
    // Sniffed: JSON never begins with MSH.
    if is_hl7(payload) {
        return decode_message(payload, &options.hl7);
    }
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| Rejection::new(ReasonCode::InvalidJson, format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::new(ReasonCode::NotAnObject, format!("expected a JSON object, got {}", kind(&value))));
    };
    // Sniffed: only FHIR resources carry a resourceType, only movements `"type": "movement"`.
    if obj.contains_key("resourceType") {
        return crate::fhir::decode_resource(&obj).map(Decoded::Reading);
    }
    if crate::movement::is_movement(&obj) {
        return crate::movement::decode_json(&obj).map(Decoded::Movement);
    }
    flat_reading(&obj).map(Decoded::Reading)
}

/// The seed's flat JSON record (with its aliases) → a reading.
fn flat_reading(obj: &Map<String, Value>) -> Result<Reading, Rejection> {
    let patient_id = patient_id(obj)?;
    let event_time_ns = event_time(obj)?;
    let mut vitals = [None; 7];
    for (slot, vital) in vitals.iter_mut().zip(Vital::ALL) {
        *slot = vital_value(obj, vital)?;
    }
    let on_oxygen = match field(obj, "on_oxygen", &["supplemental_oxygen", "oxygen"]) {
        None => None,
        Some((_, Value::Bool(b))) => Some(*b),
        Some((name, other)) => {
            return Err(Rejection::new(
                ReasonCode::WrongType,
                format!("{name}: expected true or false, got {}", kind(other)),
            ));
        }
    };
    let consciousness = match field(obj, "consciousness", &["acvpu", "avpu"]) {
        None => None,
        Some((name, Value::String(s))) => Some(Consciousness::parse(s).ok_or_else(|| {
            Rejection::new(ReasonCode::InvalidValue, format!("{name}: {s:?} is not one of A, C, V, P, U"))
        })?),
        Some((name, other)) => {
            return Err(Rejection::new(
                ReasonCode::WrongType,
                format!("{name}: expected a string, got {}", kind(other)),
            ));
        }
    };
    if vitals.iter().all(Option::is_none) {
        return Err(Rejection::new(ReasonCode::NoVitals, "record has no vital sign"));
    }
    let (ward, validated, spo2_scale) = (ward(obj)?, validated(obj)?, spo2_scale(obj)?);
    Ok(Reading { patient_id, event_time_ns, vitals, on_oxygen, consciousness, ward, validated, spo2_scale })
}

/// `ward`: a string naming the patient's ward; absent, null or blank names none.
fn ward(obj: &Map<String, Value>) -> Result<Option<String>, Rejection> {
    match field(obj, "ward", &[]) {
        None => Ok(None),
        Some((_, Value::String(s))) if s.trim().is_empty() => Ok(None),
        Some((_, Value::String(s))) if s.len() > MAX_WARD => {
            Err(Rejection::new(ReasonCode::InvalidValue, format!("ward is {} bytes, the limit is {MAX_WARD}", s.len())))
        }
        Some((_, Value::String(s))) => Ok(Some(s.clone())),
        Some((name, other)) => {
            Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected a string, got {}", kind(other))))
        }
    }
}

/// `validated`: whether a person confirmed the values; absent or null is false (a device's stream).
fn validated(obj: &Map<String, Value>) -> Result<bool, Rejection> {
    match field(obj, "validated", &[]) {
        None => Ok(false),
        Some((_, Value::Bool(b))) => Ok(*b),
        Some((name, other)) => {
            Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected true or false, got {}", kind(other))))
        }
    }
}

/// `spo2_scale`: the NEWS2 SpO2 scale prescribed, 1 or 2; absent or null says none (scale 1).
fn spo2_scale(obj: &Map<String, Value>) -> Result<Option<Spo2Scale>, Rejection> {
    match field(obj, "spo2_scale", &[]) {
        None => Ok(None),
        Some((name, Value::Number(n))) => n.as_i64().and_then(Spo2Scale::of_number).map(Some).ok_or_else(|| {
            Rejection::new(ReasonCode::InvalidValue, format!("{name}: {n} is not a NEWS2 SpO2 scale (1 or 2)"))
        }),
        Some((name, other)) => {
            Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected 1 or 2, got {}", kind(other))))
        }
    }
}

/// The first present, non-null field among `name` and its aliases.
fn field<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
    aliases: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    std::iter::once(name)
        .chain(aliases.iter().copied())
        .find_map(|n| obj.get(n).filter(|v| !v.is_null()).map(|v| (n, v)))
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() <= 40 => format!("string {s:?}"),
        Value::String(_) => "a long string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn patient_id(obj: &Map<String, Value>) -> Result<String, Rejection> {
    match field(obj, "patient_id", &["patientId", "patient"]) {
        None => Err(Rejection::new(ReasonCode::MissingField, "patient_id is missing")),
        Some((_, Value::String(s))) if s.trim().is_empty() => {
            Err(Rejection::new(ReasonCode::MissingField, "patient_id is empty"))
        }
        Some((_, Value::String(s))) if s.len() > MAX_PATIENT_ID => Err(Rejection::new(
            ReasonCode::InvalidValue,
            format!("patient_id is {} bytes, the limit is {MAX_PATIENT_ID}", s.len()),
        )),
        Some((_, Value::String(s))) => Ok(s.clone()),
        Some((name, other)) => {
            Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected a string, got {}", kind(other))))
        }
    }
}

fn event_time(obj: &Map<String, Value>) -> Result<i64, Rejection> {
    let (name, value) = field(obj, "timestamp", &["event_time", "time", "ts"])
        .ok_or_else(|| Rejection::new(ReasonCode::MissingField, "timestamp is missing"))?;
    let millis_or_time: DateTime<Utc> = match value {
        Value::String(s) => parse_time(s)
            .ok_or_else(|| Rejection::new(ReasonCode::WrongType, format!("{name}: {s:?} is not an RFC 3339 time")))?,
        Value::Number(n) => {
            let ms = n.as_i64().ok_or_else(|| {
                Rejection::new(ReasonCode::WrongType, format!("{name}: {n} is not whole epoch milliseconds"))
            })?;
            if ms < EARLIEST {
                return Err(Rejection::new(
                    ReasonCode::ImpossibleValue,
                    format!("{name}: {ms} is before 2000-01-01 as epoch milliseconds (epoch seconds?)"),
                ));
            }
            Utc.timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {ms} is out of range")))?
        }
        other => {
            return Err(Rejection::new(
                ReasonCode::WrongType,
                format!("{name}: expected a time string or epoch milliseconds, got {}", kind(other)),
            ));
        }
    };
    if millis_or_time.timestamp_millis() < EARLIEST {
        return Err(Rejection::new(
            ReasonCode::ImpossibleValue,
            format!("{name}: {millis_or_time} is before 2000-01-01"),
        ));
    }
    millis_or_time
        .timestamp_nanos_opt()
        .ok_or_else(|| Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {millis_or_time} is out of range")))
}

fn vital_value(obj: &Map<String, Value>, vital: Vital) -> Result<Option<f64>, Rejection> {
    let Some((name, value)) = field(obj, vital.column(), vital.aliases()) else {
        return Ok(None);
    };
    let Some(v) = value.as_f64().filter(|v| v.is_finite()) else {
        return Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected a number, got {}", kind(value))));
    };
    let (lo, hi) = vital.possible_range();
    if !(lo..=hi).contains(&v) {
        return Err(Rejection::new(
            ReasonCode::ImpossibleValue,
            format!("{name}: {v} is outside the possible range {lo}..={hi}"),
        ));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn options(max_bytes: usize) -> DecodeOptions {
        DecodeOptions { max_bytes, ..DecodeOptions::default() }
    }

    fn decode(json: &str) -> Result<Reading, Rejection> {
        decode_record(Some(json.as_bytes()), &options(MAX))
    }

    #[test]
    fn decodes_the_seed_record() {
        let r = decode(
            r#"{"patient_id": "P017", "timestamp": "2026-11-23T10:15:02.123Z", "heart_rate": 88,
                "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104}"#,
        )
        .unwrap();
        assert_eq!(r.patient_id, "P017");
        assert_eq!(r.event_time_ns, 1_795_428_902_123_000_000);
        assert_eq!(r.vitals, [Some(88.0), Some(121.0), Some(79.0), Some(97.0), Some(36.9), Some(104.0), None]);
        assert_eq!((r.on_oxygen, r.consciousness), (None, None));
        assert_eq!((r.ward, r.validated, r.spo2_scale), (None, false, None));
    }

    #[test]
    fn reads_the_ward_validation_and_spo2_scale() {
        let r = decode(
            r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "ward": "4 North",
                "validated": true, "spo2_scale": 2}"#,
        )
        .unwrap();
        assert_eq!((r.ward.as_deref(), r.validated, r.spo2_scale), (Some("4 North"), true, Some(Spo2Scale::Two)));
        let blank = decode(r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "ward": " "}"#);
        assert_eq!(blank.unwrap().ward, None);
        let long = format!(
            r#"{{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "ward": "{}"}}"#,
            "W".repeat(65)
        );
        let cases = [
            (long.as_str(), ReasonCode::InvalidValue, "ward is 65 bytes"),
            (
                r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "ward": 4}"#,
                ReasonCode::WrongType,
                "ward",
            ),
            (
                r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "validated": "F"}"#,
                ReasonCode::WrongType,
                "validated",
            ),
            (
                r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "spo2_scale": 3}"#,
                ReasonCode::InvalidValue,
                "spo2_scale: 3 is not a NEWS2 SpO2 scale",
            ),
            (
                r#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 70, "spo2_scale": "2"}"#,
                ReasonCode::WrongType,
                "spo2_scale",
            ),
        ];
        for (json, code, needle) in cases {
            let err = decode(json).unwrap_err();
            assert_eq!(err.code, code, "{json}");
            assert!(err.reason.contains(needle), "{:?} lacks {needle:?}", err.reason);
        }
    }

    #[test]
    fn accepts_aliases_epoch_millis_offsets_and_missing_vitals() {
        let r = decode(
            r#"{"patient_id": "P1", "timestamp": 1795428902123, "hr": 70, "oxygen_saturation": 95,
                "body_temperature": 37.1, "glucose_level": null, "rr": 18, "on_oxygen": true, "consciousness": "v"}"#,
        )
        .unwrap();
        assert_eq!(r.event_time_ns, 1_795_428_902_123_000_000);
        assert_eq!(r.vitals, [Some(70.0), None, None, Some(95.0), Some(37.1), None, Some(18.0)]);
        assert_eq!(r.on_oxygen, Some(true));
        assert_eq!(r.consciousness, Some(Consciousness::Voice));
        let offset = decode(r#"{"patient_id": "P1", "timestamp": "2026-11-23T11:15:02.123+01:00", "hr": 70}"#).unwrap();
        assert_eq!(offset.event_time_ns, 1_795_428_902_123_000_000);
    }

    #[test]
    fn every_bad_kind_has_its_reason() {
        let cases: &[(&[u8], ReasonCode, &str)] = &[
            (b"", ReasonCode::EmptyPayload, "no payload"),
            (b"{not json", ReasonCode::InvalidJson, "not valid JSON"),
            (b"\xff\xfe\x00", ReasonCode::InvalidJson, "not valid JSON"),
            (b"[1,2]", ReasonCode::NotAnObject, "an array"),
            (br#"{"timestamp": "2026-11-23T10:15:02Z", "hr": 80}"#, ReasonCode::MissingField, "patient_id"),
            (br#"{"patient_id": "P1", "hr": 80}"#, ReasonCode::MissingField, "timestamp"),
            (
                br#"{"patient_id": 17, "timestamp": "2026-11-23T10:15:02Z", "hr": 80}"#,
                ReasonCode::WrongType,
                "patient_id",
            ),
            (br#"{"patient_id": "P1", "timestamp": "yesterday", "hr": 80}"#, ReasonCode::WrongType, "timestamp"),
            (
                br#"{"patient_id": "P1", "timestamp": 1795428902, "hr": 80}"#,
                ReasonCode::ImpossibleValue,
                "epoch seconds",
            ),
            (
                br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "heart_rate": "88"}"#,
                ReasonCode::WrongType,
                "heart_rate",
            ),
            (
                br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "heart_rate": 900}"#,
                ReasonCode::ImpossibleValue,
                "heart_rate: 900",
            ),
            (
                br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "temperature": 3.7}"#,
                ReasonCode::ImpossibleValue,
                "temperature",
            ),
            (
                br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 80, "consciousness": "Z"}"#,
                ReasonCode::InvalidValue,
                "consciousness",
            ),
            (
                br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z", "hr": 80, "on_oxygen": "yes"}"#,
                ReasonCode::WrongType,
                "on_oxygen",
            ),
            (br#"{"patient_id": "P1", "timestamp": "2026-11-23T10:15:02Z"}"#, ReasonCode::NoVitals, "no vital"),
        ];
        for (payload, code, needle) in cases {
            let err = decode_record(Some(payload), &options(MAX)).unwrap_err();
            assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(payload));
            assert!(err.reason.contains(needle), "{:?} lacks {needle:?}", err.reason);
        }
        let movement = br#"{"type": "movement", "patient_id": "P1", "movement": "admit", "event_time": 1795428902000}"#;
        let e = decode_record(Some(movement), &options(MAX)).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (ReasonCode::InvalidValue, "a patient movement, not a reading"));
        assert!(matches!(decode_any(Some(movement), &options(MAX)), Ok(Decoded::Movement(_))));
        let big = vec![b' '; 100];
        assert_eq!(decode_record(Some(&big), &options(10)).unwrap_err().code, ReasonCode::Oversized);
        assert_eq!(decode_record(None, &options(MAX)).unwrap_err().code, ReasonCode::EmptyPayload);
    }
}
