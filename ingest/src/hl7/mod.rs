//! HL7 v2 ORU^R01 messages, as bedside monitor gateways send them (IHE PCD-01), → a [`crate::reading::Reading`],
//! and ADT A01/A02/A03/A08 (patient movements) → a [`crate::movement::Movement`]. A record
//! is HL7 v2 when it begins with `MSH` (after an MLLP start byte a gateway may have left in); sniffed by
//! [`crate::decode::decode_record`], no configuration.
//!
//! A small strict reader of its own: `message` (encoding rules), `structure` (segment grammar), `time`
//! (TS), `codes` (MDC/LOINC vitals and units), `oru` (the message → one reading), `adt` (→ one movement).

mod adt;
mod codes;
mod message;
mod oru;
mod structure;
mod time;

use chrono_tz::Tz;

pub(crate) use message::is_hl7;

use crate::config::Hl7Config;
use crate::error::Result;
use crate::movement::Decoded;
use crate::reading::Rejection;

/// `ingest.hl7` as decoding uses it, read once at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hl7Settings {
    /// PID-3 assigning authority of the patient id; empty: the first identifier.
    pub patient_id_authority: String,
    /// Zone of times without an offset; `None`: such times are refused.
    pub default_timezone: Option<Tz>,
}

impl Hl7Settings {
    /// Reads `ingest.hl7`; an unknown time zone is a configuration error.
    pub fn from_config(config: &Hl7Config) -> Result<Hl7Settings> {
        Ok(Hl7Settings {
            patient_id_authority: config.patient_id_authority.trim().to_string(),
            default_timezone: config.timezone()?,
        })
    }
}

/// Decodes one HL7 v2 payload (MLLP framing tolerated): an ADT message (MSH-9.1 `ADT`) to a movement,
/// anything else as ORU^R01 to a reading (which refuses other message types).
pub(crate) fn decode_message(payload: &[u8], settings: &Hl7Settings) -> std::result::Result<Decoded, Rejection> {
    let message = message::parse(payload)?;
    if adt::is_adt(&message) {
        return adt::decode(&message, settings).map(Decoded::Movement);
    }
    oru::decode(&message, settings).map(Decoded::Reading)
}
