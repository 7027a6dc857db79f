//! HL7 v2 times (TS / DTM: `YYYYMMDDHHMM[SS[.S…]][+/-ZZZZ]`) → nanoseconds since the epoch, UTC.
//!
//! A vital needs its time to the minute at least. A time with an offset is exact; one without is read in
//! the configured zone (`ingest.hl7.default_timezone`), and refused when none is configured: a local time
//! silently taken as UTC would shift every reading by the zone's offset.

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::reading::{EARLIEST, ReasonCode, Rejection};

/// `text` (the DTM, TS's first component) of field `name` as ns since the epoch.
pub(crate) fn parse_ts(text: &str, name: &str, zone: Option<Tz>) -> Result<i64, Rejection> {
    let invalid = |why: &str| Rejection::new(ReasonCode::InvalidTime, format!("{name}: {text:?} {why}"));
    let (local, offset) = match text.find(['+', '-']) {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let naive =
        local_time(local).ok_or_else(|| invalid("is not an HL7 time to the minute (YYYYMMDDHHMM[SS[.S]][+ZZZZ])"))?;
    let utc = match offset {
        Some(offset) => {
            let offset = fixed_offset(offset).ok_or_else(|| invalid("has an offset that is not +HHMM or -HHMM"))?;
            offset.from_local_datetime(&naive).single().map(|t| t.to_utc())
        }
        None => {
            let Some(zone) = zone else {
                return Err(Rejection::new(
                    ReasonCode::TimeWithoutZone,
                    format!("{name}: {text:?} has no UTC offset and ingest.hl7.default_timezone is not set"),
                ));
            };
            match zone.from_local_datetime(&naive) {
                LocalResult::Single(t) => Some(t.to_utc()),
                LocalResult::Ambiguous(..) => {
                    return Err(invalid(&format!(
                        "happens twice in {zone} (clocks went back): the sender must give the offset"
                    )));
                }
                LocalResult::None => return Err(invalid(&format!("does not exist in {zone} (clocks went forward)"))),
            }
        }
    }
    .ok_or_else(|| invalid("is out of range"))?;
    if utc.timestamp_millis() < EARLIEST {
        return Err(Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {text} is before 2000-01-01")));
    }
    utc.timestamp_nanos_opt()
        .ok_or_else(|| Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {text} is out of range")))
}

/// `YYYYMMDDHHMM[SS[.S{1,9}]]`.
fn local_time(text: &str) -> Option<NaiveDateTime> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !(whole.len() == 12 || whole.len() == 14) {
        return None;
    }
    let num = |at: usize, len: usize| whole.get(at..at + len).and_then(|s| s.parse::<u32>().ok());
    let nanos = match fraction {
        None => 0,
        // A fraction only after seconds, 1 to 9 digits (HL7 says 4; devices send more).
        Some(f) if whole.len() == 14 && (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, num(4, 2)?, num(6, 2)?)?;
    let seconds = if whole.len() == 14 { num(12, 2)? } else { 0 };
    date.and_hms_nano_opt(num(8, 2)?, num(10, 2)?, seconds, nanos)
}

/// `+HHMM` / `-HHMM`.
fn fixed_offset(text: &str) -> Option<FixedOffset> {
    let (sign, digits) = text.split_at(1);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let seconds = hours * 3600 + minutes * 60;
    FixedOffset::east_opt(if sign == "-" { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_515_302_000_000_000; // 2026-11-24T10:15:02Z

    fn ts(text: &str, zone: Option<Tz>) -> Result<i64, Rejection> {
        parse_ts(text, "OBX-14", zone)
    }

    #[test]
    fn offsets_fractions_and_minutes() {
        assert_eq!(ts("20261124101502+0000", None).unwrap(), T);
        assert_eq!(ts("20261124111502+0100", None).unwrap(), T);
        assert_eq!(ts("20261124054502-0430", None).unwrap(), T);
        assert_eq!(ts("20261124101502.1234+0000", None).unwrap(), T + 123_400_000);
        assert_eq!(ts("202611241015+0000", None).unwrap(), T - 2_000_000_000);
    }

    #[test]
    fn a_time_without_offset_is_read_in_the_configured_zone_or_refused() {
        let e = ts("20261124111502", None).unwrap_err();
        assert_eq!(e.code, ReasonCode::TimeWithoutZone);
        assert!(e.reason.contains("ingest.hl7.default_timezone"), "{}", e.reason);
        assert_eq!(ts("20261124111502", Some(chrono_tz::Europe::Berlin)).unwrap(), T, "CET is UTC+1 in November");
        assert_eq!(
            ts("20260624121502", Some(chrono_tz::Europe::Berlin)).unwrap() % 86_400_000_000_000 / 1_000_000_000,
            10 * 3600 + 15 * 60 + 2,
            "CEST is UTC+2 in June"
        );
        let twice = ts("20261025023000", Some(chrono_tz::Europe::Berlin)).unwrap_err();
        assert_eq!(twice.code, ReasonCode::InvalidTime);
        assert!(twice.reason.contains("twice"), "{}", twice.reason);
        let never = ts("20260329023000", Some(chrono_tz::Europe::Berlin)).unwrap_err();
        assert_eq!(never.code, ReasonCode::InvalidTime);
        assert!(never.reason.contains("does not exist"), "{}", never.reason);
    }

    #[test]
    fn unreadable_times_are_refused() {
        for bad in [
            "",
            "20261124",
            "2026112410",
            "2026112410150",
            "20261124101502.+0000",
            "20261124101502.1234567890+0000",
            "202611241015.5+0000",
            "20261324101502+0000",
            "20261124251502+0000",
            "20261124101502+01",
            "20261124101502+2500",
            "20261124101502Z",
            "2026-11-24T10:15:02Z",
        ] {
            assert_eq!(ts(bad, None).unwrap_err().code, ReasonCode::InvalidTime, "{bad}");
        }
        assert_eq!(ts("19991231235959+0000", None).unwrap_err().code, ReasonCode::ImpossibleValue);
    }
}
