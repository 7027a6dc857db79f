//! Which OBX-3 codes are vitals and what OBX-6 units mean: IEEE 11073-10101 (MDC) terms, by number or by
//! reference id, and LOINC as the FHIR decoder reads it. Units become UCUM codes, converted by the FHIR
//! decoder's rules (°F → °C, kPa → mm[Hg], mmol/L glucose → mg/dL).

use vitalflow_udf_model::schema::Vital;

use super::message::Separators;
use crate::fhir::vital_of_loinc;
use crate::reading::{ReasonCode, Rejection};

/// MDC observation terms of the vitals, by number and reference id. For a vital measured twice in one
/// message the earlier entry wins: the ECG heart rate over a pulse rate, the cuff over an arterial line.
const MDC_VITALS: &[(u32, &str, Vital)] = &[
    (147842, "MDC_ECG_HEART_RATE", Vital::HeartRate),
    (149514, "MDC_PULS_RATE", Vital::HeartRate),
    (149546, "MDC_PULS_RATE_NON_INV", Vital::HeartRate),
    (149530, "MDC_PULS_OXIM_PULS_RATE", Vital::HeartRate),
    (149522, "MDC_BLD_PULS_RATE_INV", Vital::HeartRate),
    (150021, "MDC_PRESS_BLD_NONINV_SYS", Vital::SystolicBp),
    (150301, "MDC_PRESS_CUFF_SYS", Vital::SystolicBp),
    (150017, "MDC_PRESS_BLD_SYS", Vital::SystolicBp),
    (150033, "MDC_PRESS_BLD_ART_SYS", Vital::SystolicBp),
    (150037, "MDC_PRESS_BLD_ART_ABP_SYS", Vital::SystolicBp),
    (150022, "MDC_PRESS_BLD_NONINV_DIA", Vital::DiastolicBp),
    (150302, "MDC_PRESS_CUFF_DIA", Vital::DiastolicBp),
    (150018, "MDC_PRESS_BLD_DIA", Vital::DiastolicBp),
    (150034, "MDC_PRESS_BLD_ART_DIA", Vital::DiastolicBp),
    (150038, "MDC_PRESS_BLD_ART_ABP_DIA", Vital::DiastolicBp),
    (150456, "MDC_PULS_OXIM_SAT_O2", Vital::Spo2),
    (150364, "MDC_TEMP_BODY", Vital::Temperature),
    (150344, "MDC_TEMP", Vital::Temperature),
    (150368, "MDC_TEMP_CORE", Vital::Temperature),
    (150392, "MDC_TEMP_TYMP", Vital::Temperature),
    (188496, "MDC_TEMP_AXIL", Vital::Temperature),
    (150372, "MDC_TEMP_ESOPH", Vital::Temperature),
    (150380, "MDC_TEMP_NASOPH", Vital::Temperature),
    (150348, "MDC_TEMP_FOLEY", Vital::Temperature),
    (151562, "MDC_RESP_RATE", Vital::RespiratoryRate),
    (151578, "MDC_TTHOR_RESP_RATE", Vital::RespiratoryRate),
    (151570, "MDC_AWAY_RESP_RATE", Vital::RespiratoryRate),
    (151594, "MDC_CO2_RESP_RATE", Vital::RespiratoryRate),
    (151658, "MDC_PULS_OXIM_PLETH_RESP_RATE", Vital::RespiratoryRate),
    (160184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", Vital::Glucose),
    (160188, "MDC_CONC_GLU_CAPILLARY_PLASMA", Vital::Glucose),
];

/// Rank of LOINC codes among the MDC ones (after them: a PCD-01 message's MDC code is the device's own).
const LOINC_RANK: usize = MDC_VITALS.len();

/// MDC units (IEEE 11073-10101 partition 4) and the UCUM code of each.
const MDC_UNITS: &[(u32, &str, &str)] = &[
    (262688, "MDC_DIM_PERCENT", "%"),
    (264864, "MDC_DIM_BEAT_PER_MIN", "/min"),
    (264928, "MDC_DIM_RESP_PER_MIN", "/min"),
    (266016, "MDC_DIM_MMHG", "mm[Hg]"),
    (265987, "MDC_DIM_KILO_PA", "kPa"),
    (268192, "MDC_DIM_DEGC", "Cel"),
    (266560, "MDC_DIM_FAHR", "[degF]"),
    (264274, "MDC_DIM_MILLI_G_PER_DL", "mg/dL"),
    (266866, "MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"),
];

/// A vital an OBX-3 names, with its rank (lower wins when a message measures the vital twice).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VitalCode {
    pub(crate) vital: Vital,
    pub(crate) rank: usize,
}

/// The vital an OBX-3 (CE/CWE: code^text^system, alternate code^text^system) names, if any.
pub(crate) fn vital_of(separators: &Separators, field: &str) -> Result<Option<VitalCode>, Rejection> {
    for first in [1, 4] {
        let [code, text, system] = [0, 1, 2].map(|i| separators.component(field, first + i));
        let found = match system {
            "LN" | "LOINC" => vital_of_loinc(code).map(|vital| VitalCode { vital, rank: LOINC_RANK }),
            _ if is_mdc(code, text, system) => {
                mdc_entry(MDC_VITALS, code, text, "OBX-3", field)?.map(|(rank, _, vital)| VitalCode { vital, rank })
            }
            _ => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The UCUM code of an OBX-6 (CE/CWE); `None` when OBX-6 is empty (the value is then taken as in the
/// table's unit, as for FHIR). UCUM or free text is passed on as written; MDC units must be known.
pub(crate) fn ucum_of(separators: &Separators, field: &str) -> Result<Option<String>, Rejection> {
    let [code, text, system] = [1, 2, 3].map(|n| separators.component(field, n));
    if is_mdc(code, text, system) {
        return match mdc_entry(MDC_UNITS, code, text, "OBX-6", field)? {
            Some((_, _, ucum)) => Ok(Some(ucum.to_string())),
            None => Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("OBX-6 {field:?}: an MDC unit vitalflow does not convert"),
            )),
        };
    }
    let unit = separators.decode(if code.is_empty() { text } else { code })?;
    Ok(Some(unit).filter(|u| !u.is_empty()))
}

/// Whether a coded element is an MDC term: its system says so, or its code or text is one.
fn is_mdc(code: &str, text: &str, system: &str) -> bool {
    system == "MDC" || (system.is_empty() && (code.starts_with("MDC_") || text.starts_with("MDC_")))
}

/// The entry of `table` an MDC element names by number or by reference id; when it names one by each,
/// they must agree (a wrong unit would turn °F into °C silently).
fn mdc_entry<T: Copy>(
    table: &[(u32, &'static str, T)],
    code: &str,
    text: &str,
    name: &str,
    field: &str,
) -> Result<Option<(usize, &'static str, T)>, Rejection> {
    let by_number = code.parse::<u32>().ok().and_then(|n| table.iter().position(|(number, ..)| *number == n));
    let by_name = [code, text].into_iter().find_map(|t| table.iter().position(|(_, id, _)| *id == t));
    let index = match (by_number, by_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(Rejection::new(
                ReasonCode::InvalidValue,
                format!("{name} {field:?}: MDC code {} is {}, not {text}", table[a].0, table[a].1),
            ));
        }
        (a, b) => a.or(b),
    };
    Ok(index.map(|i| (i, table[i].1, table[i].2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Separators = Separators { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

    fn vital(field: &str) -> Option<Vital> {
        vital_of(&S, field).unwrap().map(|c| c.vital)
    }

    #[test]
    fn mdc_and_loinc_codes_name_vitals() {
        assert_eq!(vital("150456^MDC_PULS_OXIM_SAT_O2^MDC"), Some(Vital::Spo2));
        assert_eq!(vital("150456^^MDC"), Some(Vital::Spo2));
        assert_eq!(vital("^MDC_PRESS_BLD_NONINV_SYS^MDC"), Some(Vital::SystolicBp));
        assert_eq!(vital("MDC_RESP_RATE"), Some(Vital::RespiratoryRate));
        assert_eq!(vital("8867-4^Heart rate^LN"), Some(Vital::HeartRate));
        assert_eq!(vital("150364^MDC_TEMP_BODY^MDC^8310-5^Body temperature^LN"), Some(Vital::Temperature));
        assert_eq!(vital("X1^Local temp^L^8310-5^Body temperature^LN"), Some(Vital::Temperature));
        assert_eq!(vital("69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC"), None);
        assert_eq!(vital("8867-4^Heart rate^SCT"), None);
        let ecg = vital_of(&S, "147842^MDC_ECG_HEART_RATE^MDC").unwrap().unwrap();
        let pulse = vital_of(&S, "149530^MDC_PULS_OXIM_PULS_RATE^MDC").unwrap().unwrap();
        assert!(ecg.rank < pulse.rank, "the ECG heart rate wins over the oximeter's pulse rate");
        let e = vital_of(&S, "150456^MDC_ECG_HEART_RATE^MDC").unwrap_err();
        assert_eq!(e.code, ReasonCode::InvalidValue);
    }

    #[test]
    fn units_become_ucum() {
        let ucum = |f: &str| ucum_of(&S, f).unwrap();
        assert_eq!(ucum("266560^MDC_DIM_FAHR^MDC").as_deref(), Some("[degF]"));
        assert_eq!(ucum("^MDC_DIM_DEGC^MDC").as_deref(), Some("Cel"));
        assert_eq!(ucum("264864^MDC_DIM_BEAT_PER_MIN^MDC").as_deref(), Some("/min"));
        assert_eq!(ucum("mm[Hg]^^UCUM").as_deref(), Some("mm[Hg]"));
        assert_eq!(ucum("^mmHg").as_deref(), Some("mmHg"));
        assert_eq!(ucum(""), None);
        assert_eq!(ucum_of(&S, "268192^MDC_DIM_FAHR^MDC").unwrap_err().code, ReasonCode::InvalidValue);
        assert_eq!(ucum_of(&S, "999999^MDC_DIM_FURLONG^MDC").unwrap_err().code, ReasonCode::InvalidValue);
    }
}
