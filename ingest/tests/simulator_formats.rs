//! Every format `vitalflow simulate --format` writes is read back by ingest's decoder as the same reading.

use chrono::{DateTime, Utc};
use vitalflow_ingest::decode::{DecodeOptions, decode_record};
use vitalflow_udf_model::simulate::{OutputFormat, SimulatorSettings, VitalsSimulator, encode};

#[test]
fn ingest_decodes_every_simulator_format_to_the_same_reading() {
    let at = DateTime::parse_from_rfc3339("2026-11-24T10:15:02.123Z").unwrap().with_timezone(&Utc);
    // Default settings: artefacts and missing fields included.
    let mut sim = VitalsSimulator::with_settings(30, 17, SimulatorSettings::default());
    let options = DecodeOptions { max_bytes: 1 << 20, ..DecodeOptions::default() };
    for _ in 0..3_000 {
        let record = sim.next_reading(at);
        let vitals = record.vitals();
        for format in OutputFormat::ALL {
            let payload = encode(&record, format);
            let reading = decode_record(Some(&payload), &options)
                .unwrap_or_else(|e| panic!("{format:?} {}: {e:?}", String::from_utf8_lossy(&payload)));
            assert_eq!(reading.patient_id, record.patient_id, "{format:?}");
            assert_eq!(reading.event_time_ns, 1_795_515_302_123_000_000, "{format:?}");
            assert_eq!(reading.vitals, vitals, "{format:?}");
            // FHIR vital-signs Observations and monitor ORU^R01 messages carry neither oxygen nor consciousness.
            if !matches!(format, OutputFormat::Fhir | OutputFormat::Hl7v2) {
                assert_eq!(reading.on_oxygen, record.on_oxygen, "{format:?}");
                let letter = reading.consciousness.map(|c| c.letter().to_string());
                assert_eq!(letter, record.consciousness, "{format:?}");
            }
        }
    }
}
