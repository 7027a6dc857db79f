//! HL7 FHIR R4 `Observation` resources of the vital-signs profile → a [`Reading`]. A record is FHIR when
//! its JSON object has a `resourceType` (sniffed by [`crate::decode::decode_record`]).
//!
//! Accepted: a single-vital Observation (its `valueQuantity`), a panel (vital-signs 85353-1, blood
//! pressure 85354-9: its `component`s), and a `Bundle` whose Observation entries are merged into one
//! row (one patient, one effective time). Vitals are picked by LOINC code and converted to the table's
//! units where UCUM says how (°F and K → °C, mmol/L glucose → mg/dL, kPa → mm[Hg]).
//!
//! Rejected (dead letters, the record kept whole): Observations `entered-in-error` or `cancelled` (they
//! must not be scored); a subject that is not a relative `Patient/<id>` reference (a group, a device,
//! an absolute URL of some server: no setting names this deployment's FHIR base, so none is ours); a
//! `valueQuantity` without a unit (never read as if in the table's units); and a Bundle whose
//! Observations have different times. A Kafka record lands as exactly one row, keyed by its topic,
//! partition and offset, so a Bundle of several times cannot become one row per time without a new
//! key column, and stamping all its values with the latest time would misdate the earlier ones.

use serde_json::{Map, Value};
use vitalflow_udf_model::schema::Vital;

use crate::reading::{EARLIEST, Reading, ReasonCode, Rejection, parse_time};

/// LOINC codes of the vitals we store (HL7 v2 OBX-3 reads them too).
pub(crate) fn vital_of_loinc(code: &str) -> Option<Vital> {
    Some(match code {
        "8867-4" => Vital::HeartRate,
        "8480-6" => Vital::SystolicBp,
        "8462-4" => Vital::DiastolicBp,
        "59408-5" | "2708-6" => Vital::Spo2,
        "8310-5" => Vital::Temperature,
        "2339-0" => Vital::Glucose,
        "9279-1" => Vital::RespiratoryRate,
        _ => return None,
    })
}

/// mg/dL per mmol/L of glucose (molar mass 180.156 g/mol).
const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.0156;
/// mm[Hg] per kPa.
const MMHG_PER_KPA: f64 = 7.500_62;

/// `value` in `unit` (a UCUM code, or the display unit when no code is given) in the table's unit; HL7 v2
/// OBX-6 units are converted by it too.
pub(crate) fn to_table_unit(vital: Vital, value: f64, unit: Option<&str>) -> Result<f64, Rejection> {
    let converted = match (vital, unit.map(str::trim)) {
        (_, None | Some("")) => Some(value),
        (
            Vital::HeartRate | Vital::RespiratoryRate,
            Some(
                "/min" | "{beats}/min" | "{beat}/min" | "{breaths}/min" | "{breath}/min" | "beats/minute"
                | "breaths/minute" | "bpm",
            ),
        ) => Some(value),
        (Vital::SystolicBp | Vital::DiastolicBp, Some("mm[Hg]" | "mmHg")) => Some(value),
        (Vital::SystolicBp | Vital::DiastolicBp, Some("kPa")) => Some(value * MMHG_PER_KPA),
        (Vital::Spo2, Some("%")) => Some(value),
        (Vital::Temperature, Some("Cel" | "C" | "°C")) => Some(value),
        (Vital::Temperature, Some("[degF]" | "F" | "°F")) => Some((value - 32.0) * 5.0 / 9.0),
        (Vital::Temperature, Some("K")) => Some(value - 273.15),
        (Vital::Glucose, Some("mg/dL" | "mg/dl")) => Some(value),
        (Vital::Glucose, Some("mmol/L" | "mmol/l")) => Some(value * GLUCOSE_MG_DL_PER_MMOL_L),
        _ => None,
    };
    converted.ok_or_else(|| {
        Rejection::new(
            ReasonCode::InvalidValue,
            format!("{}: unit {:?} is not one vitalflow converts", vital.column(), unit.unwrap_or_default()),
        )
    })
}

/// What the Observations of one record add up to.
#[derive(Debug, Default)]
struct Row {
    patient: Option<String>,
    time_ns: Option<i64>,
    vitals: [Option<f64>; 7],
    /// Whether every Observation so far was validated ([`is_validated`]); `None` before the first.
    validated: Option<bool>,
}

/// Decodes a FHIR resource (already parsed as a JSON object).
pub(crate) fn decode_resource(obj: &Map<String, Value>) -> Result<Reading, Rejection> {
    let mut row = Row::default();
    match obj.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => observation(obj, &mut row)?,
        Some("Bundle") => {
            let entries = obj.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for (i, entry) in entries.iter().enumerate() {
                let resource = entry.get("resource").and_then(Value::as_object);
                match resource {
                    Some(r) if r.get("resourceType").and_then(Value::as_str) == Some("Observation") => {
                        observation(r, &mut row)
                            .map_err(|e| Rejection::new(e.code, format!("Bundle entry {i}: {}", e.reason)))?;
                    }
                    // Patients, devices and other context resources carry no vitals.
                    _ => {}
                }
            }
        }
        Some(other) => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("resourceType {other:?} is not Observation or Bundle"),
            ));
        }
        None => return Err(Rejection::new(ReasonCode::WrongType, "resourceType: expected a string")),
    }
    let patient_id =
        row.patient.ok_or_else(|| Rejection::new(ReasonCode::MissingField, "subject: no Patient reference"))?;
    let event_time_ns = row.time_ns.ok_or_else(|| Rejection::new(ReasonCode::MissingField, "effective[x]: no time"))?;
    if row.vitals.iter().all(Option::is_none) {
        return Err(Rejection::new(
            ReasonCode::NoVitals,
            "no vital-sign Observation with a value (LOINC code not one vitalflow stores?)",
        ));
    }
    // No ward: an Observation has no location element, and its `encounter` is a reference to a resource
    // this record does not hold; no SpO2 scale either (no standard element says one is prescribed).
    Ok(Reading {
        patient_id,
        event_time_ns,
        vitals: row.vitals,
        validated: row.validated.unwrap_or(false),
        ..Reading::default()
    })
}

/// A person confirmed the Observation: its status is `final`, `amended` or `corrected` and it names a
/// performer (a device's stream is `preliminary`, or final with no performer: FHIR puts devices in
/// `device`, never in `performer`).
fn is_validated(obs: &Map<String, Value>) -> bool {
    let confirmed = matches!(obs.get("status").and_then(Value::as_str), Some("final" | "amended" | "corrected"));
    let performed = obs.get("performer").and_then(Value::as_array).is_some_and(|p| {
        p.iter().any(|r| r.get("reference").or_else(|| r.get("display")).is_some_and(Value::is_string))
    });
    confirmed && performed
}

fn observation(obs: &Map<String, Value>, row: &mut Row) -> Result<(), Rejection> {
    if let Some(status @ ("entered-in-error" | "cancelled")) = obs.get("status").and_then(Value::as_str) {
        return Err(Rejection::new(ReasonCode::InvalidValue, format!("status: {status} observations are not used")));
    }
    row.validated = Some(row.validated.unwrap_or(true) && is_validated(obs));
    let patient = subject(obs)?;
    match &row.patient {
        Some(p) if *p != patient => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("subject: Patient/{patient} differs from Patient/{p} in the same record"),
            ));
        }
        _ => row.patient = Some(patient),
    }
    let time = effective_time(obs)?;
    match row.time_ns {
        Some(earlier) if earlier != time => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!(
                    "effective[x]: {} differs from {} of an earlier Observation in this record; a record is one \
                     reading at one time, so send one Bundle per time",
                    utc_text(time),
                    utc_text(earlier)
                ),
            ));
        }
        _ => row.time_ns = Some(time),
    }
    if let Some(vital) = loinc_vital(obs.get("code"))
        && let Some(v) = quantity(obs, vital)?
    {
        row.vitals[vital_index(vital)] = Some(v);
    }
    for component in obs.get("component").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(c) = component.as_object() else { continue };
        if let Some(vital) = loinc_vital(c.get("code"))
            && let Some(v) = quantity(c, vital)?
        {
            row.vitals[vital_index(vital)] = Some(v);
        }
    }
    Ok(())
}

/// Position of `vital` in [`Vital::ALL`], the order of [`Reading::vitals`].
pub(crate) fn vital_index(vital: Vital) -> usize {
    Vital::ALL.iter().position(|v| *v == vital).unwrap_or_default()
}

/// The first LOINC coding of a CodeableConcept that names a stored vital.
fn loinc_vital(code: Option<&Value>) -> Option<Vital> {
    code?.get("coding")?.as_array()?.iter().find_map(|c| {
        let system = c.get("system").and_then(Value::as_str);
        if system.is_some_and(|s| s != "http://loinc.org") {
            return None;
        }
        vital_of_loinc(c.get("code")?.as_str()?)
    })
}

/// `subject.reference` as a patient id: `Patient/123` (or the version `Patient/123/_history/2`) →
/// `123`. Only a relative reference to a Patient names one of this deployment's patients: `Group/7`
/// or `Device/x` is not a patient, and an absolute URL points at a resource of some server (no setting
/// names this deployment's FHIR base).
fn subject(obs: &Map<String, Value>) -> Result<String, Rejection> {
    let reference = obs
        .get("subject")
        .and_then(|s| s.get("reference"))
        .ok_or_else(|| Rejection::new(ReasonCode::MissingField, "subject.reference is missing"))?;
    let Some(reference) = reference.as_str() else {
        return Err(Rejection::new(ReasonCode::WrongType, "subject.reference: expected a string"));
    };
    let not_a_patient = || {
        Rejection::new(
            ReasonCode::InvalidValue,
            format!("subject.reference {reference:?} is not a relative Patient/<id> reference"),
        )
    };
    let relative = reference.strip_prefix("Patient/").ok_or_else(not_a_patient)?;
    let id = relative.split_once("/_history/").map_or(relative, |(id, _version)| id);
    if !is_fhir_id(id) {
        return Err(not_a_patient());
    }
    Ok(id.to_string())
}

/// FHIR R4's `id` type: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A time in ns since the epoch, as RFC 3339 UTC, for reasons.
fn utc_text(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `effectiveDateTime`, `effectiveInstant`, `effectivePeriod.start` or `issued`, in ns since the epoch.
fn effective_time(obs: &Map<String, Value>) -> Result<i64, Rejection> {
    let candidates = [
        ("effectiveDateTime", obs.get("effectiveDateTime")),
        ("effectiveInstant", obs.get("effectiveInstant")),
        ("effectivePeriod.start", obs.get("effectivePeriod").and_then(|p| p.get("start"))),
        ("issued", obs.get("issued")),
    ];
    let Some((name, value)) = candidates.into_iter().find_map(|(n, v)| v.map(|v| (n, v))) else {
        return Err(Rejection::new(ReasonCode::MissingField, "effective[x] is missing"));
    };
    let Some(text) = value.as_str() else {
        return Err(Rejection::new(ReasonCode::WrongType, format!("{name}: expected a dateTime string")));
    };
    // FHIR allows a bare date; it is taken as midnight UTC.
    let time = parse_time(text)
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| Rejection::new(ReasonCode::WrongType, format!("{name}: {text:?} is not a dateTime")))?;
    if time.timestamp_millis() < EARLIEST {
        return Err(Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {text} is before 2000-01-01")));
    }
    time.timestamp_nanos_opt()
        .ok_or_else(|| Rejection::new(ReasonCode::ImpossibleValue, format!("{name}: {text} is out of range")))
}

/// The vital's value from `valueQuantity`, converted and range-checked; `None` when absent
/// (a `dataAbsentReason` instead of a value).
fn quantity(element: &Map<String, Value>, vital: Vital) -> Result<Option<f64>, Rejection> {
    let Some(q) = element.get("valueQuantity") else { return Ok(None) };
    let name = vital.column();
    let Some(value) = q.get("value").and_then(Value::as_f64).filter(|v| v.is_finite()) else {
        return Err(Rejection::new(ReasonCode::WrongType, format!("{name}: valueQuantity.value is not a number")));
    };
    let unit_in = |key: &str| q.get(key).and_then(Value::as_str).map(str::trim).filter(|u| !u.is_empty());
    let Some(unit) = unit_in("code").or_else(|| unit_in("unit")) else {
        return Err(Rejection::new(
            ReasonCode::MissingField,
            format!(
                "{name}: valueQuantity has no unit (neither unit nor code); a value is never read as if in the table's unit"
            ),
        ));
    };
    let v = to_table_unit(vital, value, Some(unit))?;
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
    use crate::decode::decode_record;

    fn decode(json: &str) -> Result<Reading, Rejection> {
        decode_record(Some(json.as_bytes()), &crate::decode::DecodeOptions::default())
    }

    const T: i64 = 1_795_515_302_000_000_000; // 2026-11-24T10:15:02Z

    #[test]
    fn a_single_vital_observation_lands_as_a_row_with_that_vital() {
        let r = decode(include_str!("../fixtures/fhir/heart-rate.json")).unwrap();
        assert_eq!((r.patient_id.as_str(), r.event_time_ns), ("example", T));
        assert_eq!(r.vitals, [Some(44.0), None, None, None, None, None, None]);
    }

    /// Validated: final, amended or corrected with a performer, in every Observation of the record; a
    /// device's stream (preliminary, or final with no performer) is not.
    #[test]
    fn validated_needs_a_confirmed_status_and_a_performer() {
        let hr = include_str!("../fixtures/fhir/heart-rate.json");
        let by_nurse = "\"performer\": [{\"reference\": \"Practitioner/f005\"}], \"status\": ";
        let with = |status: &str| hr.replace("\"status\": \"final\"", &format!("{by_nurse}\"{status}\""));
        for (json, validated) in [
            (with("final"), true),
            (with("amended"), true),
            (with("corrected"), true),
            (with("preliminary"), false),
            (hr.to_string(), false),
            (hr.replace("\"status\": \"final\"", "\"performer\": [], \"status\": \"final\""), false),
        ] {
            let r = decode(&json).unwrap();
            assert_eq!(r.validated, validated, "{json}");
            assert_eq!((r.ward, r.spo2_scale), (None, None), "FHIR readings carry no ward or scale");
        }
        // A Bundle is validated only when each of its Observations is.
        let bundle = include_str!("../fixtures/fhir/vital-signs-bundle.json");
        assert!(!decode(bundle).unwrap().validated);
        let all = bundle.replace("\"status\": \"final\"", &format!("{by_nurse}\"final\""));
        assert!(decode(&all).unwrap().validated, "{all}");
        let one_short = all.replacen(&format!("{by_nurse}\"final\""), "\"status\": \"preliminary\"", 1);
        assert!(!decode(&one_short).unwrap().validated);
    }

    #[test]
    fn units_are_converted_where_ucum_says_so() {
        let t = decode(include_str!("../fixtures/fhir/body-temperature-degF.json")).unwrap();
        assert_eq!(t.event_time_ns, T - 3_600_000_000_000, "+01:00 offset to UTC");
        assert!((t.vitals[4].unwrap() - 37.5).abs() < 1e-9, "99.5 °F is 37.5 °C");
        let g = decode(include_str!("../fixtures/fhir/glucose-mmol.json")).unwrap();
        assert_eq!(g.patient_id, "f001");
        assert!((g.vitals[5].unwrap() - 6.3 * 18.0156).abs() < 1e-9);
        assert_eq!(g.event_time_ns, T, "effectivePeriod.start");
    }

    #[test]
    fn panels_and_bundles_fill_one_row() {
        let bp = decode(include_str!("../fixtures/fhir/blood-pressure-panel.json")).unwrap();
        assert_eq!(bp.vitals, [None, Some(107.0), Some(60.0), None, None, None, None]);
        let b = decode(include_str!("../fixtures/fhir/vital-signs-bundle.json")).unwrap();
        assert_eq!((b.patient_id.as_str(), b.event_time_ns), ("P017", T));
        assert_eq!(b.vitals, [Some(101.0), None, None, Some(95.0), Some(37.8), None, Some(26.0)]);
    }

    #[test]
    fn bad_fhir_is_rejected_with_a_reason() {
        let hr = include_str!("../fixtures/fhir/heart-rate.json");
        let cases = [
            (hr.replace("\"value\": 44", "\"value\": 900"), ReasonCode::ImpossibleValue, "heart_rate: 900"),
            (hr.replace("\"value\": 44", "\"value\": \"44\""), ReasonCode::WrongType, "valueQuantity.value"),
            (hr.replace("\"code\": \"/min\"", "\"code\": \"Hz\""), ReasonCode::InvalidValue, "unit \"Hz\""),
            (
                hr.replace("\"status\": \"final\"", "\"status\": \"entered-in-error\""),
                ReasonCode::InvalidValue,
                "entered-in-error",
            ),
            (hr.replace("\"subject\": {\"reference\": \"Patient/example\"},", ""), ReasonCode::MissingField, "subject"),
            (hr.replace("effectiveDateTime", "note"), ReasonCode::MissingField, "effective"),
            (hr.replace("8867-4", "1234-5"), ReasonCode::NoVitals, "LOINC"),
            (hr.replace("\"Observation\"", "\"Patient\""), ReasonCode::InvalidValue, "resourceType"),
            (hr[..hr.len() / 2].to_string(), ReasonCode::InvalidJson, "not valid JSON"),
        ];
        for (json, code, needle) in cases {
            let e = decode(&json).unwrap_err();
            assert_eq!(e.code, code, "{}", e.reason);
            assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
        }
        let subject = "\"subject\": {\"reference\": \"Patient/example\"}";
        let missing_unit =
            hr.replace("\"unit\": \"beats/minute\",", "").replace("\"code\": \"/min\"", "\"code\": \"\"");
        let more_cases = [
            (hr.replace(subject, "\"subject\": {\"reference\": \"Group/7\"}"), "\"Group/7\""),
            (hr.replace(subject, "\"subject\": {\"reference\": \"Device/x\"}"), "\"Device/x\""),
            (
                hr.replace(subject, "\"subject\": {\"reference\": \"https://other.example/fhir/Patient/example\"}"),
                "https://other.example",
            ),
            (hr.replace(subject, "\"subject\": {\"reference\": \"Patient/\"}"), "relative Patient/<id>"),
            (hr.replace(subject, "\"subject\": {\"reference\": \"Patient/a b\"}"), "relative Patient/<id>"),
        ];
        for (json, needle) in more_cases {
            let e = decode(&json).unwrap_err();
            assert_eq!(e.code, ReasonCode::InvalidValue, "{}", e.reason);
            assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
        }
        assert!(!missing_unit.contains("beats/minute"), "the fixture changed: {missing_unit}");
        let e = decode(&missing_unit).unwrap_err();
        assert_eq!(e.code, ReasonCode::MissingField, "{}", e.reason);
        assert!(e.reason.contains("heart_rate: valueQuantity has no unit"), "{}", e.reason);
        let versioned = hr.replace("Patient/example", "Patient/example/_history/2");
        assert_eq!(decode(&versioned).unwrap().patient_id, "example");

        let two_patients =
            include_str!("../fixtures/fhir/vital-signs-bundle.json").replacen("Patient/P017", "Patient/P018", 1);
        assert_eq!(decode(&two_patients).unwrap_err().code, ReasonCode::InvalidValue);
    }

    #[test]
    fn a_bundle_of_several_times_is_a_dead_letter_not_one_row_at_the_latest() {
        let bundle = include_str!("../fixtures/fhir/vital-signs-bundle.json");
        let later = bundle.replacen("2026-11-24T10:15:02Z", "2026-11-24T10:20:02Z", 1);
        let e = decode(&later).unwrap_err();
        assert_eq!(e.code, ReasonCode::InvalidValue, "{}", e.reason);
        assert!(
            e.reason.contains("Bundle entry 2: effective[x]: 2026-11-24T10:15:02Z differs from 2026-11-24T10:20:02Z"),
            "{}",
            e.reason
        );
        // The same instant written in another zone is one time.
        let same = bundle.replacen("2026-11-24T10:15:02Z", "2026-11-24T11:15:02+01:00", 1);
        assert_eq!(decode(&same).unwrap().event_time_ns, T);
    }
}
