//! The ORU^R01 segment grammar, as far as vitalflow relies on it: MSH, then one patient (PID with its
//! optional PD1, NK1, PV1, PV2), then orders (optional ORC, OBR, their OBX and trailing segments). NTE and
//! site-defined Z segments may stand anywhere after MSH. One patient per message: the reading has one.

use super::message::Segment;
use crate::reading::{ReasonCode, Rejection};

/// Where the segments read so far have left the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// After MSH (and SFT).
    Header,
    /// After PID, PD1 or NK1.
    Patient,
    /// After PV1 or PV2.
    Visit,
    /// After ORC: an OBR must follow.
    OrderControl,
    /// After OBR, its OBX or the segments that close an order.
    Order,
}

/// Checks that `segments` (MSH first) follow ORU^R01, naming the first that does not.
pub(crate) fn check(segments: &[Segment<'_>]) -> Result<(), Rejection> {
    for required in ["PID", "OBR"] {
        if !segments.iter().any(|s| s.id == required) {
            return Err(Rejection::new(
                ReasonCode::Hl7MissingSegment,
                format!("no {required} segment: ORU^R01 needs MSH, PID, [PV1], then OBR with its OBX"),
            ));
        }
    }
    let mut place = Place::Header;
    for (i, (segment, previous)) in segments.iter().skip(1).zip(segments).enumerate() {
        let next = match (segment.id, place) {
            ("NTE", _) => Some(place),
            (id, _) if id.starts_with('Z') => Some(place),
            ("SFT", Place::Header) => Some(Place::Header),
            ("PID", Place::Header) => Some(Place::Patient),
            ("PD1" | "NK1", Place::Patient) => Some(Place::Patient),
            ("PV1", Place::Patient) => Some(Place::Visit),
            ("PV2", Place::Visit) => Some(Place::Visit),
            ("ORC", Place::Patient | Place::Visit | Place::Order) => Some(Place::OrderControl),
            ("OBR", Place::Patient | Place::Visit | Place::OrderControl | Place::Order) => Some(Place::Order),
            ("OBX" | "TQ1" | "TQ2" | "CTD" | "FT1" | "CTI" | "SPM" | "DSC", Place::Order) => Some(Place::Order),
            _ => None,
        };
        place = next.ok_or_else(|| {
            let why = match segment.id {
                "MSH" => "one message per record (batches are not read)",
                "PID" => "one patient per message, before the orders",
                "OBX" => "an OBX belongs to the OBR before it",
                id if !is_oru_segment(id) => "it is not a segment of ORU^R01",
                _ => "ORU^R01 wants MSH, PID, [PV1], then OBR with its OBX",
            };
            Rejection::new(
                ReasonCode::Hl7SegmentOrder,
                format!("segment {} {} after {}: {why}", i + 2, segment.id, previous.id),
            )
        })?;
    }
    if place == Place::OrderControl {
        return Err(Rejection::new(ReasonCode::Hl7SegmentOrder, "the message ends with an ORC without its OBR"));
    }
    Ok(())
}

/// Segments ORU^R01 has (v2.5 to v2.9), whatever their place.
fn is_oru_segment(id: &str) -> bool {
    matches!(
        id,
        "MSH"
            | "SFT"
            | "UAC"
            | "PID"
            | "PD1"
            | "NK1"
            | "NTE"
            | "PV1"
            | "PV2"
            | "ORC"
            | "OBR"
            | "TQ1"
            | "TQ2"
            | "CTD"
            | "OBX"
            | "FT1"
            | "CTI"
            | "SPM"
            | "DSC"
            | "PRT"
            | "ARV"
            | "OH1"
            | "OH2"
            | "OH3"
            | "OH4"
            | "DEV"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::message::parse;

    fn check_ids(ids: &str) -> Result<(), Rejection> {
        let text: String = ids
            .split(' ')
            .map(|id| if id == "MSH" { "MSH|^~\\&|x\r".to_string() } else { format!("{id}|1\r") })
            .collect();
        check(&parse(text.as_bytes()).unwrap().segments)
    }

    #[test]
    fn the_oru_r01_order_is_kept() {
        for good in [
            "MSH PID OBR OBX",
            "MSH SFT PID PD1 NTE NK1 PV1 PV2 ORC OBR NTE OBX NTE OBX ZXT OBR OBX SPM",
            "MSH PID PV1 OBR OBR OBX DSC",
        ] {
            check_ids(good).unwrap_or_else(|e| panic!("{good}: {}", e.reason));
        }
        for (bad, code, needle) in [
            ("MSH OBR OBX", ReasonCode::Hl7MissingSegment, "no PID"),
            ("MSH PID OBX", ReasonCode::Hl7MissingSegment, "no OBR"),
            ("MSH PID OBX OBR", ReasonCode::Hl7SegmentOrder, "segment 3 OBX after PID: an OBX belongs"),
            ("MSH PID OBR OBX PID OBR OBX", ReasonCode::Hl7SegmentOrder, "one patient per message"),
            ("MSH PV1 PID OBR", ReasonCode::Hl7SegmentOrder, "segment 2 PV1 after MSH"),
            ("MSH PID OBR OBX MSH", ReasonCode::Hl7SegmentOrder, "batches"),
            ("MSH PID EVN OBR", ReasonCode::Hl7SegmentOrder, "not a segment of ORU^R01"),
            ("MSH PID OBR OBX ORC", ReasonCode::Hl7SegmentOrder, "ORC without its OBR"),
        ] {
            let e = check_ids(bad).unwrap_err();
            assert_eq!(e.code, code, "{bad}: {}", e.reason);
            assert!(e.reason.contains(needle), "{bad}: {:?} lacks {needle:?}", e.reason);
        }
    }
}
