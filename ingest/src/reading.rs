//! What decoding yields, whatever the format (flat JSON, FHIR, HL7 v2): a [`Reading`], or a [`Rejection`] with a
//! bounded [`ReasonCode`] for the dead letters; and the time rules every format shares.

use chrono::{DateTime, NaiveDateTime, Utc};
use vitalflow_udf_model::rubric::{Consciousness, Spo2Scale};

/// Why a record was rejected; bounded, so it can label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// Larger than `ingest.max_message_bytes`.
    Oversized,
    /// No payload at all (a tombstone).
    EmptyPayload,
    /// Not UTF-8 or not JSON.
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A value no living patient can show, or a time that cannot be right.
    ImpossibleValue,
    /// A value outside its vocabulary (consciousness not ACVPU).
    InvalidValue,
    /// Patient and time but not a single vital.
    NoVitals,
    /// Not a well-formed HL7 v2 message: its MSH separators, a segment name, an escape sequence, UTF-8.
    Hl7Syntax,
    /// An HL7 v2 message other than ORU^R01 (MSH-9).
    Hl7MessageType,
    /// An HL7 v2 version (MSH-12) outside 2.3 to 2.9.
    Hl7Version,
    /// Segments out of the ORU^R01 order (an OBX before its OBR, a second PID, a segment ORU^R01 has not).
    Hl7SegmentOrder,
    /// A segment ORU^R01 needs is absent (PID, OBR).
    Hl7MissingSegment,
    /// A time that cannot be read, or a local time a daylight-saving change repeats or skips.
    InvalidTime,
    /// A local time without a UTC offset and no zone configured to read it in.
    TimeWithoutZone,
}

impl ReasonCode {
    /// Every code, in declaration order (the order of [`ReasonCode::index`]).
    pub const ALL: [ReasonCode; 16] = [
        ReasonCode::Oversized,
        ReasonCode::EmptyPayload,
        ReasonCode::InvalidJson,
        ReasonCode::NotAnObject,
        ReasonCode::MissingField,
        ReasonCode::WrongType,
        ReasonCode::ImpossibleValue,
        ReasonCode::InvalidValue,
        ReasonCode::NoVitals,
        ReasonCode::Hl7Syntax,
        ReasonCode::Hl7MessageType,
        ReasonCode::Hl7Version,
        ReasonCode::Hl7SegmentOrder,
        ReasonCode::Hl7MissingSegment,
        ReasonCode::InvalidTime,
        ReasonCode::TimeWithoutZone,
    ];

    /// Position in [`ReasonCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The code stored in `dead_letters.reason_code` and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Oversized => "oversized",
            ReasonCode::EmptyPayload => "empty_payload",
            ReasonCode::InvalidJson => "invalid_json",
            ReasonCode::NotAnObject => "not_an_object",
            ReasonCode::MissingField => "missing_field",
            ReasonCode::WrongType => "wrong_type",
            ReasonCode::ImpossibleValue => "impossible_value",
            ReasonCode::InvalidValue => "invalid_value",
            ReasonCode::NoVitals => "no_vitals",
            ReasonCode::Hl7Syntax => "hl7_syntax",
            ReasonCode::Hl7MessageType => "hl7_message_type",
            ReasonCode::Hl7Version => "hl7_version",
            ReasonCode::Hl7SegmentOrder => "hl7_segment_order",
            ReasonCode::Hl7MissingSegment => "hl7_missing_segment",
            ReasonCode::InvalidTime => "invalid_time",
            ReasonCode::TimeWithoutZone => "time_without_zone",
        }
    }
}

/// A record that cannot be used, and why, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Bounded reason.
    pub code: ReasonCode,
    /// The field and value at fault.
    pub reason: String,
}

impl Rejection {
    pub(crate) fn new(code: ReasonCode, reason: impl Into<String>) -> Rejection {
        Rejection { code, reason: reason.into() }
    }
}

/// A decoded vitals reading.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// Patient identifier.
    pub patient_id: String,
    /// Measurement time, nanoseconds since the epoch, UTC.
    pub event_time_ns: i64,
    /// Numeric vitals in [`vitalflow_udf_model::schema::Vital::ALL`] order.
    pub vitals: [Option<f64>; 7],
    /// Supplemental oxygen.
    pub on_oxygen: Option<bool>,
    /// ACVPU level.
    pub consciousness: Option<Consciousness>,
    /// The patient's ward, when the record names one.
    pub ward: Option<String>,
    /// Whether a person confirmed the values (charted by a nurse), not a device's stream.
    pub validated: bool,
    /// The NEWS2 SpO2 scale the record prescribes; `None`: not said (scale 1).
    pub spo2_scale: Option<Spo2Scale>,
}

impl Reading {
    /// The reading as the Arrow builders take it.
    pub fn as_row(&self) -> ReadingRow<'_> {
        ReadingRow {
            patient_id: &self.patient_id,
            event_time_ns: self.event_time_ns,
            vitals: self.vitals,
            on_oxygen: self.on_oxygen,
            consciousness: self.consciousness,
            ward: self.ward.as_deref(),
            validated: self.validated,
            spo2_scale: self.spo2_scale,
        }
    }
}

/// A reading whose strings are borrowed (from the payload on the flat JSON fast path, or from a
/// [`Reading`]): what a `vitals_raw` row is made of.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReadingRow<'a> {
    /// Patient identifier.
    pub patient_id: &'a str,
    /// Measurement time, nanoseconds since the epoch, UTC.
    pub event_time_ns: i64,
    /// Numeric vitals in [`vitalflow_udf_model::schema::Vital::ALL`] order.
    pub vitals: [Option<f64>; 7],
    /// Supplemental oxygen.
    pub on_oxygen: Option<bool>,
    /// ACVPU level.
    pub consciousness: Option<Consciousness>,
    /// The patient's ward.
    pub ward: Option<&'a str>,
    /// Confirmed by a person.
    pub validated: bool,
    /// The NEWS2 SpO2 scale prescribed.
    pub spo2_scale: Option<Spo2Scale>,
}

/// Longest accepted ward name, in bytes: it labels metrics and names configuration entries.
pub(crate) const MAX_WARD: usize = 64;

/// Earliest plausible measurement time; an epoch-seconds value read as milliseconds lands before it.
pub(crate) const EARLIEST: i64 = 946_684_800_000; // 2000-01-01T00:00:00Z in ms

/// RFC 3339 with an offset, or a naive ISO time taken as UTC (Python's `isoformat()` without a zone).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}
