//! The fast path for the seed's flat JSON record: one pass over the bytes, no allocation, values
//! borrowed from the payload and appended straight to the Arrow builders ([`crate::batch`]).
//!
//! It accepts only records it can decode exactly as [`crate::decode::decode_record`] would: the
//! canonical field names once each, plain strings (no escapes), numbers, booleans and nulls, values
//! in range, an RFC 3339 (or zone-less, read as UTC) time of this or the next century. Anything else
//! (an alias, an unknown field, a FHIR resource, any error) returns `None` and the caller takes the
//! general path, so every dead letter keeps its reason and message. Floats are parsed correctly rounded
//! (`str::parse`); serde_json's default parser may differ from that in the last bit on rare inputs.

use vitalflow_udf_model::rubric::{Consciousness, Spo2Scale};
use vitalflow_udf_model::schema::Vital;

use crate::reading::{EARLIEST, MAX_WARD, ReadingRow};

/// Longest accepted patient id, in bytes (as the general path).
const MAX_PATIENT_ID: usize = 64;

/// The fields of the flat record; bit positions in the "seen" mask.
#[derive(Clone, Copy)]
enum Field {
    PatientId,
    Timestamp,
    Vital(usize),
    OnOxygen,
    Consciousness,
    Ward,
    Validated,
    Spo2Scale,
}

impl Field {
    fn of(key: &[u8]) -> Option<Field> {
        match key {
            b"patient_id" => Some(Field::PatientId),
            b"timestamp" => Some(Field::Timestamp),
            b"on_oxygen" => Some(Field::OnOxygen),
            b"consciousness" => Some(Field::Consciousness),
            b"ward" => Some(Field::Ward),
            b"validated" => Some(Field::Validated),
            b"spo2_scale" => Some(Field::Spo2Scale),
            _ => Vital::ALL.iter().position(|v| v.column().as_bytes() == key).map(Field::Vital),
        }
    }

    fn bit(self) -> u32 {
        match self {
            Field::PatientId => 1,
            Field::Timestamp => 1 << 1,
            Field::OnOxygen => 1 << 2,
            Field::Consciousness => 1 << 3,
            Field::Ward => 1 << 4,
            Field::Validated => 1 << 5,
            Field::Spo2Scale => 1 << 6,
            Field::Vital(i) => 1 << (7 + i),
        }
    }
}

/// A JSON scalar as it appears in the payload.
enum Scalar<'a> {
    Str(&'a [u8]),
    /// The number's text and whether it is a plain integer (no fraction or exponent).
    Num(&'a [u8], bool),
    Bool(bool),
    Null,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes or control characters, after its opening quote.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let len = self.b[start..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + len;
        self.eat(b'"')?;
        Some(&self.b[start..start + len])
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// A number in JSON's grammar.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.i;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut integer = true;
        if self.eat(b'.').is_some() {
            integer = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(Scalar::Num(&self.b[start..self.i], integer))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(Scalar::Str)
            }
            b't' => self.literal(b"true").map(|()| Scalar::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Scalar::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Scalar::Null),
            _ => self.number(),
        }
    }
}

/// Decodes `payload` if it is a valid flat record this path can vouch for; `None` sends it to the
/// general path.
pub(crate) fn decode_flat(payload: &[u8]) -> Option<ReadingRow<'_>> {
    let mut c = Cursor { b: payload, i: 0 };
    c.skip_ws();
    c.eat(b'{')?;
    let mut seen = 0u32;
    let mut patient_id = None;
    let mut event_time_ns = None;
    let mut record = ReadingRow::default();
    loop {
        c.skip_ws();
        c.eat(b'"')?;
        let field = Field::of(c.string()?)?;
        if seen & field.bit() != 0 {
            return None;
        }
        seen |= field.bit();
        c.skip_ws();
        c.eat(b':')?;
        c.skip_ws();
        let value = c.scalar()?;
        match (field, value) {
            (Field::PatientId, Scalar::Str(s)) => {
                let s = std::str::from_utf8(s).ok()?;
                if s.len() > MAX_PATIENT_ID || s.trim().is_empty() {
                    return None;
                }
                patient_id = Some(s);
            }
            (Field::Timestamp, Scalar::Str(s)) => event_time_ns = Some(rfc3339_ns(s)?),
            (Field::Timestamp, Scalar::Num(n, true)) => {
                let ms: i64 = std::str::from_utf8(n).ok()?.parse().ok()?;
                if ms < EARLIEST {
                    return None;
                }
                event_time_ns = Some(ms.checked_mul(1_000_000)?);
            }
            (Field::Vital(i), Scalar::Num(n, _)) => {
                let v: f64 = std::str::from_utf8(n).ok()?.parse().ok()?;
                let (lo, hi) = Vital::ALL[i].possible_range();
                if !(v.is_finite() && (lo..=hi).contains(&v)) {
                    return None;
                }
                record.vitals[i] = Some(v);
            }
            (Field::OnOxygen, Scalar::Bool(b)) => record.on_oxygen = Some(b),
            (Field::Consciousness, Scalar::Str(s)) => {
                record.consciousness = Some(match s {
                    b"A" => Consciousness::Alert,
                    b"C" => Consciousness::Confused,
                    b"V" => Consciousness::Voice,
                    b"P" => Consciousness::Pain,
                    b"U" => Consciousness::Unresponsive,
                    other => Consciousness::parse(std::str::from_utf8(other).ok()?)?,
                });
            }
            (Field::Ward, Scalar::Str(s)) => {
                let s = std::str::from_utf8(s).ok()?;
                if s.len() > MAX_WARD {
                    return None;
                }
                // A blank ward names none, as on the general path.
                record.ward = (!s.trim().is_empty()).then_some(s);
            }
            (Field::Validated, Scalar::Bool(b)) => record.validated = b,
            (Field::Spo2Scale, Scalar::Num(b"1", true)) => record.spo2_scale = Some(Spo2Scale::One),
            (Field::Spo2Scale, Scalar::Num(b"2", true)) => record.spo2_scale = Some(Spo2Scale::Two),
            (
                Field::Vital(_)
                | Field::OnOxygen
                | Field::Consciousness
                | Field::Ward
                | Field::Validated
                | Field::Spo2Scale,
                Scalar::Null,
            ) => {}
            _ => return None,
        }
        c.skip_ws();
        match c.peek()? {
            b',' => c.i += 1,
            b'}' => {
                c.i += 1;
                break;
            }
            _ => return None,
        }
    }
    c.skip_ws();
    if c.i != payload.len() || record.vitals.iter().all(Option::is_none) {
        return None;
    }
    record.patient_id = patient_id?;
    record.event_time_ns = event_time_ns?;
    Some(record)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|±HH:MM]` (no zone: UTC) in 2000..2199, as nanoseconds since the epoch.
fn rfc3339_ns(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8], at: usize, len: usize) -> Option<i64> {
        s.get(at..at + len)?.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    }
    let sep = |at: usize, c: u8| (s.get(at) == Some(&c)).then_some(());
    let year = num(s, 0, 4)?;
    sep(4, b'-')?;
    let month = num(s, 5, 2)?;
    sep(7, b'-')?;
    let day = num(s, 8, 2)?;
    sep(10, b'T')?;
    let hour = num(s, 11, 2)?;
    sep(13, b':')?;
    let minute = num(s, 14, 2)?;
    sep(16, b':')?;
    let second = num(s, 17, 2)?;
    if !(2000..2200).contains(&year) || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if s.get(i) == Some(&b'.') {
        let digits = s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(s, i + 1, digits)? * 10i64.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset_s = match s.get(i..)? {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2], 0, 2)?, num(&[*m1, *m2], 0, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    if seconds * 1000 < EARLIEST {
        return None;
    }
    Some(seconds * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Reading, decode_record};

    fn general(json: &str) -> Option<Reading> {
        decode_record(Some(json.as_bytes()), &crate::decode::DecodeOptions::default()).ok()
    }

    /// The fast path accepts `json` and agrees with the general path in every column.
    fn agrees(json: &str) {
        let fast = decode_flat(json.as_bytes()).unwrap_or_else(|| panic!("fast path declined {json}"));
        let slow = general(json).unwrap_or_else(|| panic!("general path rejects {json}"));
        assert_eq!(fast.patient_id, slow.patient_id, "{json}");
        assert_eq!(fast.event_time_ns, slow.event_time_ns, "{json}");
        assert_eq!(fast.vitals, slow.vitals, "{json}");
        assert_eq!((fast.on_oxygen, fast.consciousness), (slow.on_oxygen, slow.consciousness), "{json}");
        assert_eq!(
            (fast.ward, fast.validated, fast.spo2_scale),
            (slow.ward.as_deref(), slow.validated, slow.spo2_scale)
        );
    }

    #[test]
    fn agrees_with_the_general_path_on_simulated_records() {
        let mut sim = vitalflow_udf_model::simulate::VitalsSimulator::new(200, 7);
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:15:02.123Z").unwrap().to_utc();
        for i in 0..20_000 {
            let at = start + chrono::Duration::milliseconds(i * 7919);
            agrees(&serde_json::to_string(&sim.next_reading(at)).unwrap());
        }
    }

    #[test]
    fn agrees_on_time_forms_nulls_and_spacing() {
        for time in [
            "\"2026-11-23T10:15:02Z\"",
            "\"2026-11-23T10:15:02.1Z\"",
            "\"2026-11-23T10:15:02.123456789Z\"",
            "\"2026-11-23T10:15:02.123456\"",
            "\"2026-11-23T10:15:02\"",
            "\"2026-11-23T11:15:02.5+01:00\"",
            "\"2026-11-23T01:15:02-09:30\"",
            "\"2028-02-29T23:59:59.999Z\"",
            "\"2000-01-01T00:00:00Z\"",
            "\"2199-12-31T23:59:59Z\"",
            "1795428902123",
        ] {
            agrees(&format!(r#"{{"patient_id":"P1","timestamp":{time},"heart_rate":70}}"#));
        }
        agrees(
            " {\n\t\"patient_id\" : \"P é\" , \"timestamp\":\"2026-11-23T10:15:02Z\",\"spo2\":9.7e1,\"glucose\":null,\"on_oxygen\":false,\"consciousness\":\"new confusion\", \"respiratory_rate\": 12.25 } \r\n",
        );
        agrees(
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","temperature":36.900000000000006,"consciousness":null,"on_oxygen":null}"#,
        );
        for context in [
            r#""ward":"4 North","validated":true,"spo2_scale":2"#,
            r#""ward":"ICU","validated":false,"spo2_scale":1"#,
            r#""ward":null,"validated":null,"spo2_scale":null"#,
            r#""ward":"  ""#,
        ] {
            agrees(&format!(r#"{{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","spo2":90,{context}}}"#));
        }
        let row = decode_flat(
            br#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","spo2":90,"ward":"4 North","validated":true,"spo2_scale":2}"#,
        )
        .unwrap();
        assert_eq!((row.ward, row.validated, row.spo2_scale), (Some("4 North"), true, Some(Spo2Scale::Two)));
        let row = decode_flat(br#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","spo2":90}"#).unwrap();
        assert_eq!((row.ward, row.validated, row.spo2_scale), (None, false, None));
    }

    #[test]
    fn declines_everything_the_general_path_must_judge() {
        for json in [
            "",
            "[]",
            "{}",
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","hr":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"extra":1}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"heart_rate":80}"#,
            r#"{"patient_id":"P\u0031","timestamp":"2026-11-23T10:15:02Z","heart_rate":70}"#,
            r#"{"patient_id":" ","timestamp":"2026-11-23T10:15:02Z","heart_rate":70}"#,
            r#"{"patient_id":17,"timestamp":"2026-11-23T10:15:02Z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":900}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":"70"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":070}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70.}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":1e999}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70} x"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","glucose":null}"#,
            r#"{"patient_id":"P1","timestamp":1795428902,"heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":1795428902123.0,"heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-02-29T10:15:02Z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T24:15:02Z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23t10:15:02z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"1999-12-31T23:59:59Z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2000-01-01T00:30:00+01:00","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02.1234567891Z","heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":null,"heart_rate":70}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"consciousness":"Z"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"on_oxygen":"yes"}"#,
            r#"{"resourceType":"Observation"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":[70]}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"ward":7}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"ward":"W\u0031"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"validated":"yes"}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"spo2_scale":3}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"spo2_scale":2.0}"#,
            r#"{"patient_id":"P1","timestamp":"2026-11-23T10:15:02Z","heart_rate":70,"spo2_scale":"2"}"#,
        ] {
            assert!(decode_flat(json.as_bytes()).is_none(), "fast path accepted {json}");
        }
        assert!(
            decode_flat(b"{\"patient_id\":\"\xff\",\"timestamp\":\"2026-11-23T10:15:02Z\",\"heart_rate\":70}")
                .is_none()
        );
    }
}
