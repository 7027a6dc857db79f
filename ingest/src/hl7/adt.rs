//! An ADT message (A01 admit, A02 transfer, A03 discharge, A08 update) → one [`Movement`]: MSH-9 and
//! MSH-12 checked, then MSH, EVN, PID and PV1 in that order (one each; other segments of the ADT
//! structures, such as NK1, PV2, OBX, AL1, DG1 or Z segments, may follow PID and are not read).
//!
//! The patient is PID-3 under `ingest.hl7.patient_id_authority`, as for ORU^R01; the time EVN-6 (when
//! the event occurred), else EVN-2 (when it was recorded), zone-less times read in
//! `ingest.hl7.default_timezone`; the place PV1-3 (assigned location: point of care, room, bed).

use super::Hl7Settings;
use super::message::{Message, Segment, Separators};
use super::oru::{check_version, patient_id};
use super::time::parse_ts;
use crate::movement::{Movement, MovementKind};
use crate::reading::{ReasonCode, Rejection};

/// Whether the message's MSH-9 names an ADT message (of any event: unknown ones are refused by [`decode`]).
pub(crate) fn is_adt(message: &Message<'_>) -> bool {
    message.segments.first().is_some_and(|msh| message.separators.component(msh.field(9), 1) == "ADT")
}

/// Decodes a parsed ADT message.
pub(crate) fn decode(message: &Message<'_>, settings: &Hl7Settings) -> Result<Movement, Rejection> {
    let separators = &message.separators;
    let segments = &message.segments;
    let msh = segments.first().ok_or_else(|| Rejection::new(ReasonCode::Hl7Syntax, "no MSH segment"))?;
    let (kind, message_type) = header(separators, msh)?;
    let [evn, pid, pv1] = check_order(segments)?;
    let patient_id = patient_id(separators, Some(pid), &settings.patient_id_authority)?;
    let event_time_ns = event_time(separators, evn, settings)?;
    let location = pv1.field(3);
    let part = |n: usize| -> Result<Option<String>, Rejection> {
        let text = separators.decode(separators.component(location, n))?;
        let text = text.trim();
        if text.len() > 64 {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("PV1-3.{n} {text:?} is longer than 64 bytes"),
            ));
        }
        Ok((!text.is_empty()).then(|| text.to_string()))
    };
    let (ward, room, bed) = (part(1)?, part(2)?, part(3)?);
    if kind == MovementKind::Transfer && ward.is_none() {
        return Err(Rejection::new(
            ReasonCode::MissingField,
            "PV1-3.1 (point of care) is empty: a transfer (A02) says which ward the patient moved to",
        ));
    }
    Ok(Movement { patient_id, kind, ward, room, bed, event_time_ns, message_type: Some(message_type) })
}

/// MSH-9 `ADT^A01|A02|A03|A08` and MSH-12 a version vitalflow reads.
fn header(separators: &Separators, msh: &Segment<'_>) -> Result<(MovementKind, String), Rejection> {
    let kind_field = msh.field(9);
    let event = separators.component(kind_field, 2);
    let kind = match event {
        "A01" => MovementKind::Admit,
        "A02" => MovementKind::Transfer,
        "A03" => MovementKind::Discharge,
        "A08" => MovementKind::Update,
        _ => {
            return Err(Rejection::new(
                ReasonCode::Hl7MessageType,
                format!(
                    "MSH-9 is {kind_field:?}: of ADT, only A01 (admit), A02 (transfer), A03 (discharge) and A08 (update) are read"
                ),
            ));
        }
    };
    check_version(separators, msh)?;
    Ok((kind, format!("ADT^{event}")))
}

/// The EVN, PID and PV1 segments, checked to come once each in that order after MSH (and SFT).
fn check_order<'m, 'a>(segments: &'m [Segment<'a>]) -> Result<[&'m Segment<'a>; 3], Rejection> {
    let mut found: [Option<(usize, &Segment<'a>)>; 3] = [None; 3];
    for (i, segment) in segments.iter().enumerate().skip(1) {
        let Some(slot) = ["EVN", "PID", "PV1"].iter().position(|id| *id == segment.id) else {
            if segment.id == "MSH" {
                return Err(Rejection::new(
                    ReasonCode::Hl7SegmentOrder,
                    format!("segment {} MSH: one message per record (batches are not read)", i + 1),
                ));
            }
            continue;
        };
        if found[slot].is_some() {
            return Err(Rejection::new(
                ReasonCode::Hl7SegmentOrder,
                format!("segment {} {}: a second {}; one patient per message", i + 1, segment.id, segment.id),
            ));
        }
        if let Some(later) = found[slot + 1..].iter().flatten().next() {
            return Err(Rejection::new(
                ReasonCode::Hl7SegmentOrder,
                format!("segment {} {} after {}: ADT wants MSH, EVN, PID, then PV1", i + 1, segment.id, later.1.id),
            ));
        }
        found[slot] = Some((i, segment));
    }
    let [evn, pid, pv1] = found;
    let missing = |id: &str| {
        Rejection::new(ReasonCode::Hl7MissingSegment, format!("no {id} segment: ADT needs MSH, EVN, PID and PV1"))
    };
    Ok([
        evn.ok_or_else(|| missing("EVN"))?.1,
        pid.ok_or_else(|| missing("PID"))?.1,
        pv1.ok_or_else(|| missing("PV1"))?.1,
    ])
}

/// EVN-6 (event occurred), else EVN-2 (recorded).
fn event_time(separators: &Separators, evn: &Segment<'_>, settings: &Hl7Settings) -> Result<i64, Rejection> {
    for (n, name) in [(6, "EVN-6"), (2, "EVN-2")] {
        let text = separators.decode(separators.component(evn.field(n), 1))?;
        if !text.is_empty() {
            return parse_ts(&text, name, settings.default_timezone);
        }
    }
    Err(Rejection::new(ReasonCode::MissingField, "EVN-6 and EVN-2 are empty: no time for the movement"))
}
