//! An ORU^R01 message (IHE PCD-01) → one [`Reading`]: MSH-9/MSH-12 checked, the grammar checked
//! ([`super::structure`]), the patient from PID-3, each OBX of a known vital with its unit, status and time.
//!
//! One message is one row at one time: its vitals' OBX must share one observation time (OBX-14, or
//! OBR-7), or the message is a dead letter, as a FHIR Bundle of several times is. A Kafka record lands
//! as exactly one row, keyed by its topic, partition and offset, and stamping every value with the
//! latest time would misdate the earlier ones. A vital given twice at that time keeps its most specific
//! code's value. OBX with codes vitalflow does not know (device and channel rows, other metrics) are
//! skipped; a message with no known vital is a dead letter.

use super::Hl7Settings;
use super::codes::{VitalCode, ucum_of, vital_of};
use super::message::{Message, Segment, Separators};
use super::structure;
use super::time::parse_ts;
use crate::fhir::{to_table_unit, vital_index};
use crate::reading::{MAX_WARD, Reading, ReasonCode, Rejection};

/// HL7 versions read (MSH-12): ORU^R01 and its OBX-14 are the same in all of them.
const VERSIONS: [&str; 12] =
    ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9"];

/// Longest accepted patient id, in bytes (as the JSON decoders).
const MAX_PATIENT_ID: usize = 64;

/// One vital's best observation so far.
#[derive(Debug, Clone, Copy)]
struct Observed {
    time_ns: i64,
    rank: usize,
    value: f64,
}

/// Decodes a parsed message.
pub(crate) fn decode(message: &Message<'_>, settings: &Hl7Settings) -> Result<Reading, Rejection> {
    let separators = &message.separators;
    let segments = &message.segments;
    if let Some(msh) = segments.first() {
        header(separators, msh)?;
    }
    structure::check(segments)?;
    let pid = segments.iter().find(|s| s.id == "PID");
    let patient_id = patient_id(separators, pid, &settings.patient_id_authority)?;
    let ward = ward(separators, segments.iter().find(|s| s.id == "PV1"))?;
    // Validated when every vital's OBX is (its status F or C): one device value makes the row a device's.
    let mut validated = true;
    // In `Vital::ALL` order, as `Reading::vitals`.
    let mut observed: [Option<Observed>; 7] = [None; 7];
    let mut order_time = "";
    // The first kept observation's time (nanoseconds, as written) and segment: every other must match.
    let mut row_time: Option<(i64, String, usize)> = None;
    for (n, segment) in segments.iter().enumerate() {
        match segment.id {
            "OBR" => order_time = segment.field(7),
            "OBX" => {
                let in_segment = |e: Rejection| Rejection::new(e.code, format!("segment {} OBX: {}", n + 1, e.reason));
                let kept = observation(separators, segment, order_time, settings, &mut observed).map_err(in_segment)?;
                if let Some((_, _, confirmed)) = &kept {
                    validated &= *confirmed;
                }
                match (&row_time, kept) {
                    (None, Some((time_ns, text, _))) => row_time = Some((time_ns, text, n + 1)),
                    (Some((first_ns, first, first_segment)), Some((time_ns, text, _))) if *first_ns != time_ns => {
                        return Err(Rejection::new(
                            ReasonCode::InvalidValue,
                            format!(
                                "segment {} OBX: observation time {text} differs from {first} of segment \
                                 {first_segment}: a message lands as one row at one time",
                                n + 1
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let event_time_ns = observed.iter().flatten().map(|o| o.time_ns).max().ok_or_else(|| {
        Rejection::new(
            ReasonCode::NoVitals,
            "no OBX with a vital's value (MDC or LOINC code not one vitalflow stores?)",
        )
    })?;
    Ok(Reading {
        patient_id,
        event_time_ns,
        vitals: observed.map(|o| o.map(|o| o.value)),
        ward,
        validated,
        // No SpO2 scale: no ORU^R01 field or code says a patient is prescribed scale 2.
        ..Reading::default()
    })
}

/// PV1-3 (assigned patient location)'s point of care, PV1-3.1, as the ward; `None` without PV1 or a point
/// of care. Room and bed (PV1-3.2, .3) are not stored.
fn ward(separators: &Separators, pv1: Option<&Segment<'_>>) -> Result<Option<String>, Rejection> {
    let Some(pv1) = pv1 else { return Ok(None) };
    let point_of_care = separators.decode(separators.component(pv1.field(3), 1))?;
    if point_of_care.len() > MAX_WARD {
        return Err(Rejection::new(
            ReasonCode::InvalidValue,
            format!("PV1-3.1 {point_of_care:?} is {} bytes, the limit for a ward is {MAX_WARD}", point_of_care.len()),
        ));
    }
    Ok((!point_of_care.trim().is_empty()).then_some(point_of_care))
}

/// MSH-9 must be ORU^R01 and MSH-12 a version in [`VERSIONS`].
fn header(separators: &Separators, msh: &Segment<'_>) -> Result<(), Rejection> {
    let kind = msh.field(9);
    let [code, event, message_structure] = [1, 2, 3].map(|n| separators.component(kind, n));
    if code != "ORU" || event != "R01" || !(message_structure.is_empty() || message_structure == "ORU_R01") {
        return Err(Rejection::new(
            ReasonCode::Hl7MessageType,
            format!(
                "MSH-9 is {kind:?}: only ORU^R01 (unsolicited observation results) and ADT A01, A02, A03, A08 are read"
            ),
        ));
    }
    check_version(separators, msh)
}

/// MSH-12 must be a version in [`VERSIONS`] (ORU^R01 and ADT alike).
pub(super) fn check_version(separators: &Separators, msh: &Segment<'_>) -> Result<(), Rejection> {
    let version = separators.component(msh.field(12), 1);
    if !VERSIONS.contains(&version) {
        return Err(Rejection::new(
            ReasonCode::Hl7Version,
            format!("MSH-12 is {version:?}: HL7 v2.3 to v2.9 are read"),
        ));
    }
    Ok(())
}

/// PID-3's identifier of `authority` (PID-3.4's namespace id or universal id), or its first one when
/// `authority` is empty.
pub(super) fn patient_id(
    separators: &Separators,
    pid: Option<&Segment<'_>>,
    authority: &str,
) -> Result<String, Rejection> {
    let mut others = Vec::new();
    for identifier in separators.repetitions(pid.map(|p| p.field(3)).unwrap_or_default()) {
        let id = separators.decode(separators.component(identifier, 1))?;
        let assigner = separators.component(identifier, 4);
        let [namespace, universal] = [1, 2].map(|n| separators.decode(separators.subcomponent(assigner, n)));
        let (namespace, universal) = (namespace?, universal?);
        if id.trim().is_empty() {
            continue;
        }
        if !authority.is_empty() && namespace != authority && universal != authority {
            others.push(if namespace.is_empty() { universal } else { namespace });
            continue;
        }
        if id.len() > MAX_PATIENT_ID {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("PID-3 {id:?} is {} bytes, the limit is {MAX_PATIENT_ID}", id.len()),
            ));
        }
        return Ok(id);
    }
    Err(Rejection::new(
        ReasonCode::MissingField,
        if authority.is_empty() {
            "PID-3 has no patient identifier".to_string()
        } else {
            format!(
                "PID-3 has no identifier of assigning authority {authority:?} (ingest.hl7.patient_id_authority); it has {others:?}"
            )
        },
    ))
}

/// Adds one OBX to `observed` if it carries a vital's value, and returns its time (nanoseconds, and as
/// written) and whether it was validated (OBX-11 `F` or `C`: a person charted or corrected it) when it does.
fn observation(
    separators: &Separators,
    obx: &Segment<'_>,
    order_time: &str,
    settings: &Hl7Settings,
    observed: &mut [Option<Observed>; 7],
) -> Result<Option<(i64, String, bool)>, Rejection> {
    let Some(VitalCode { vital, rank }) = vital_of(separators, obx.field(3))? else { return Ok(None) };
    let name = vital.column();
    let validated = match obx.field(11) {
        // Validated by a person (final, corrected): the value counts.
        "F" | "C" => true,
        // A device's (R, P) or unsaid; U changes a result to final without saying who confirmed it.
        "" | "R" | "P" | "U" => false,
        // No result in this OBX: not done, pending, an order detail, cancelled, partial.
        "X" | "I" | "N" | "O" | "S" => return Ok(None),
        status @ ("D" | "W") => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("{name}: OBX-11 {status}: deleted or withdrawn results must not be scored"),
            ));
        }
        other => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("{name}: OBX-11 {other:?} is not an HL7 result status"),
            ));
        }
    };
    let raw = obx.field(5);
    if raw.is_empty() || raw == "\"\"" {
        return Ok(None);
    }
    let value = obx_value(separators, obx.field(2), raw).map_err(|why| {
        Rejection::new(ReasonCode::WrongType, format!("{name}: OBX-2 {:?}, OBX-5 {raw:?}: {why}", obx.field(2)))
    })?;
    let value = to_table_unit(vital, value, ucum_of(separators, obx.field(6))?.as_deref())?;
    let (lo, hi) = vital.possible_range();
    if !(lo..=hi).contains(&value) {
        return Err(Rejection::new(
            ReasonCode::ImpossibleValue,
            format!("{name}: {value} is outside the possible range {lo}..={hi}"),
        ));
    }
    let (time_ns, written) = time(separators, obx, order_time, settings)?;
    let slot = &mut observed[vital_index(vital)];
    // Several times are refused by the caller; at one time the most specific code wins.
    if slot.is_none_or(|o| time_ns > o.time_ns || (time_ns == o.time_ns && rank < o.rank)) {
        *slot = Some(Observed { time_ns, rank, value });
    }
    Ok(Some((time_ns, written, validated)))
}

/// OBX-14, or its order's OBR-7 when the OBX has none: nanoseconds, and the timestamp as written.
fn time(
    separators: &Separators,
    obx: &Segment<'_>,
    order_time: &str,
    settings: &Hl7Settings,
) -> Result<(i64, String), Rejection> {
    let (field, raw) = match obx.field(14) {
        "" => ("OBR-7", order_time),
        own => ("OBX-14", own),
    };
    let ts = separators.decode(separators.component(raw, 1))?;
    if ts.is_empty() {
        return Err(Rejection::new(ReasonCode::MissingField, "OBX-14 and its OBR-7 are empty: no observation time"));
    }
    Ok((parse_ts(&ts, field, settings.default_timezone)?, ts))
}

/// OBX-5's one number: an NM, or an SN that is an exact value (`^182`, `=^182`; not `>^180` or a range).
fn obx_value(separators: &Separators, value_type: &str, raw: &str) -> Result<f64, &'static str> {
    if raw.contains(separators.repetition) {
        return Err("one value is needed, not repetitions");
    }
    let text = match value_type {
        "NM" => raw,
        "SN" => match [1, 2, 3, 4].map(|n| separators.component(raw, n)) {
            ["" | "=", number, "", ""] => number,
            _ => return Err("a structured numeric that is not one exact value"),
        },
        _ => return Err("a vital's value must be NM or SN"),
    };
    let text = separators.decode(text).map_err(|_| "an escape sequence vitalflow does not read")?;
    numeric(&text).ok_or("not a number")
}

/// HL7's NM: an optional sign, digits and at most one decimal point (no exponent).
fn numeric(text: &str) -> Option<f64> {
    let text = text.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let well_formed = digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1;
    well_formed.then(|| text.parse::<f64>().ok()).flatten().filter(|v| v.is_finite())
}
