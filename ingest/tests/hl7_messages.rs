//! HL7 v2: the published example messages (`ingest/fixtures/hl7/`) decoded through `decode_record`, as
//! ingest reads a Kafka record's value, and every kind of bad message made from them, one fault each.

/// Named so that `cargo test -p vitalflow-ingest hl7` selects these.
mod hl7 {
    use vitalflow_ingest::decode::{DecodeOptions, Reading, ReasonCode, Rejection, decode_record};
    use vitalflow_ingest::hl7::Hl7Settings;

    const MONITOR: &str = include_str!("../fixtures/hl7/pcd01-monitor.hl7");
    const CUSTOM: &str = include_str!("../fixtures/hl7/pcd01-custom-separators.hl7");
    const GLUCOSE: &str = include_str!("../fixtures/hl7/hl7-v2.4-glucose.hl7");

    /// 2009-08-13T09:57:15Z, the PCD-01 example's observation time.
    const T: i64 = 1_250_157_435_000_000_000;

    fn options(authority: &str, zone: Option<chrono_tz::Tz>) -> DecodeOptions {
        DecodeOptions {
            hl7: Hl7Settings { patient_id_authority: authority.into(), default_timezone: zone },
            ..DecodeOptions::default()
        }
    }

    /// `fixture` with HL7's segment terminator, decoded as a Kafka record's value.
    fn decode_with(fixture: &str, options: &DecodeOptions) -> Result<Reading, Rejection> {
        decode_record(Some(fixture.replace('\n', "\r").as_bytes()), options)
    }

    fn decode(fixture: &str) -> Result<Reading, Rejection> {
        decode_with(fixture, &options("", None))
    }

    #[test]
    fn the_pcd01_monitor_message_is_one_row_in_the_tables_units() {
        let r = decode(MONITOR).unwrap();
        assert_eq!((r.patient_id.as_str(), r.event_time_ns), ("789567", T));
        // heart rate (ECG, not the oximeter's 82), systolic, diastolic, SpO2, temperature, glucose, respiration.
        assert_eq!(r.vitals, [Some(80.0), Some(120.0), Some(80.0), Some(98.0), Some(37.1), None, Some(16.0)]);
        assert_eq!((r.on_oxygen, r.consciousness), (None, None));
        let by_authority = decode_with(MONITOR, &options("Imaginary Hospital", None)).unwrap();
        assert_eq!(by_authority.patient_id, "789567");
    }

    /// PV1-3.1 is the ward; OBX-11 F or C on every vital is a nurse-validated reading, R or P a device's.
    #[test]
    fn the_ward_comes_from_pv1_and_validation_from_every_vitals_obx_11() {
        let monitor = decode(MONITOR).unwrap();
        assert_eq!((monitor.ward.as_deref(), monitor.validated, monitor.spo2_scale), (Some("HOSP1ICU"), false, None));
        let charted = decode_with(CUSTOM, &options("St. Mary & St. John", None)).unwrap();
        assert_eq!((charted.ward.as_deref(), charted.validated), (Some("WARD 7"), true));
        let lab = decode_with(
            &GLUCOSE.replace("1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN", "2339-0^Glucose^LN"),
            &options("", Some(chrono_tz::Europe::London)),
        )
        .unwrap();
        assert_eq!((lab.ward, lab.validated), (None, true), "no PV1: no ward; OBX-11 F");
        // Every vital's OBX must be validated: one device value (R) makes the row a device's.
        let all_final = MONITOR.replace("|R|||2009", "|F|||2009");
        assert!(decode(&all_final).unwrap().validated);
        assert!(decode(&all_final.replace("|F|||2009", "|C|||2009")).unwrap().validated);
        assert!(!decode(&all_final.replacen("|F|||2009", "|P|||2009", 1)).unwrap().validated);
        assert!(!decode(&all_final.replacen("|F|||2009", "|U|||2009", 1)).unwrap().validated);
        // A PV1 without a point of care names no ward; an escaped one is decoded; a too long one is refused.
        assert_eq!(decode(&MONITOR.replace("PV1||I|HOSP1ICU^1^1", "PV1||I|^1^1")).unwrap().ward, None);
        let escaped = decode(&MONITOR.replace("HOSP1ICU^1^1", "ICU \\T\\ HDU^1^1")).unwrap();
        assert_eq!(escaped.ward.as_deref(), Some("ICU & HDU"));
        let long = decode(&MONITOR.replace("HOSP1ICU", &"W".repeat(65))).unwrap_err();
        assert_eq!(long.code, ReasonCode::InvalidValue);
        assert!(long.reason.contains("PV1-3.1"), "{}", long.reason);
    }

    #[test]
    fn the_simulators_oru_r01_decodes_to_the_simulated_readings() {
        use vitalflow_udf_model::simulate::{OutputFormat, SimulatorSettings, VitalsSimulator, encode};
        let mut simulator = VitalsSimulator::with_settings(20, 7, SimulatorSettings::default());
        let start = chrono::DateTime::from_timestamp(1_796_000_000, 0).unwrap();
        let mut decoded = 0;
        for i in 0..500 {
            let record = simulator.next_reading(start + chrono::Duration::milliseconds(i * 1_537));
            let reading = decode_record(Some(&encode(&record, OutputFormat::Hl7v2)), &options("VITALFLOW", None));
            // A reading the simulator sends with every vital missing is no reading in HL7 v2 either.
            if record.vitals().iter().all(Option::is_none) {
                assert_eq!(reading.unwrap_err().code, ReasonCode::NoVitals);
                continue;
            }
            let reading = reading.unwrap_or_else(|e| panic!("{record:?}: {e:?}"));
            let time = chrono::DateTime::parse_from_rfc3339(&record.timestamp).unwrap();
            assert_eq!(reading.patient_id, record.patient_id);
            assert_eq!(reading.event_time_ns, time.timestamp_nanos_opt().unwrap());
            for (got, sent) in reading.vitals.iter().zip(record.vitals()) {
                assert!(
                    got.zip(sent).is_none_or(|(g, s)| (g - s).abs() < 1e-9) && got.is_some() == sent.is_some(),
                    "{record:?}"
                );
            }
            decoded += 1;
        }
        assert!(decoded > 400, "{decoded} of 500 decoded");
    }

    #[test]
    fn mllp_framing_and_line_ends_are_tolerated() {
        let framed = [&[0x0b_u8][..], MONITOR.replace('\n', "\r").as_bytes(), &[0x1c_u8, 0x0d][..]].concat();
        assert_eq!(decode_record(Some(&framed), &options("", None)).unwrap(), decode(MONITOR).unwrap());
        let unix = decode_record(Some(MONITOR.as_bytes()), &options("", None)).unwrap();
        assert_eq!(unix, decode(MONITOR).unwrap());
    }

    #[test]
    fn custom_separators_escapes_authorities_and_fahrenheit() {
        let r = decode_with(CUSTOM, &options("St. Mary & St. John", None)).unwrap();
        assert_eq!((r.patient_id.as_str(), r.event_time_ns), ("789567", T));
        assert!((r.vitals[4].unwrap() - 37.0).abs() < 1e-9, "98.6 °F is 37 °C, got {:?}", r.vitals[4]);
        assert_eq!(r.vitals[0], Some(72.0));
        let by_universal_id = decode_with(CUSTOM, &options("2.16.840.1.113883.19.5", None)).unwrap();
        assert_eq!(by_universal_id.patient_id, "789567");
        assert_eq!(decode(CUSTOM).unwrap().patient_id, "A-1*7", "first identifier, \\S\\ unescaped");
        let e = decode_with(CUSTOM, &options("Imaginary Hospital", None)).unwrap_err();
        assert_eq!(e.code, ReasonCode::MissingField);
        assert!(
            e.reason.contains("\"Imaginary Hospital\"") && e.reason.contains("St. Mary & St. John"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn times_without_a_zone_are_read_in_the_configured_zone_never_as_utc() {
        let glucose = GLUCOSE.replace("1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN", "2339-0^Glucose^LN");
        let e = decode(&glucose).unwrap_err();
        assert_eq!(e.code, ReasonCode::TimeWithoutZone, "{}", e.reason);
        assert!(e.reason.contains("OBR-7") && e.reason.contains("200202150730"), "{}", e.reason);
        let r = decode_with(&glucose, &options("", Some(chrono_tz::America::New_York))).unwrap();
        assert_eq!(r.patient_id, "555-44-4444");
        assert_eq!(r.event_time_ns, 1_013_776_200_000_000_000, "07:30 EST is 12:30 UTC");
        assert_eq!(r.vitals, [None, None, None, None, None, Some(182.0), None]);
        // As published its code (12 h fasting glucose) is not one vitalflow stores.
        let as_published = decode_with(GLUCOSE, &options("", Some(chrono_tz::America::New_York))).unwrap_err();
        assert_eq!(as_published.code, ReasonCode::NoVitals);
    }

    #[test]
    fn a_message_of_several_observation_times_is_a_dead_letter_not_one_row_at_the_latest() {
        // A temperature five minutes after the message's other vitals: stamping the heart rate with its
        // time would misdate it, and the record lands as one row.
        let message = MONITOR.replace(
            "|37.1|268192^MDC_DIM_DEGC^MDC|||||R|||20090813095715+0000",
            "|37.4|268192^MDC_DIM_DEGC^MDC|||||R|||20090813100215+0000",
        );
        let e = decode(&message).unwrap_err();
        assert_eq!(e.code, ReasonCode::InvalidValue, "{}", e.reason);
        assert!(
            e.reason.contains("observation time 20090813100215+0000 differs from 20090813095715+0000"),
            "{}",
            e.reason
        );
        // A second value of a vital at the same time is no conflict: the message is one row at T.
        let twice = MONITOR.to_string()
            + "OBX|13|NM|150364^MDC_TEMP_BODY^MDC|1.5.1.1|37.2|268192^MDC_DIM_DEGC^MDC|||||R|||20090813095715+0000\n";
        let r = decode(&twice).unwrap();
        assert_eq!(r.event_time_ns, T);
        assert_eq!(r.vitals[0], Some(80.0));
        // An OBX without a value at another time carries nothing to misdate.
        let empty_later = MONITOR.to_string()
            + "OBX|13|NM|150364^MDC_TEMP_BODY^MDC|1.5.1.1||268192^MDC_DIM_DEGC^MDC|||||R|||20090813100215+0000\n";
        assert_eq!(decode(&empty_later).unwrap().event_time_ns, T);
    }

    #[test]
    fn a_message_without_obx_14_takes_its_obr_7() {
        let message = MONITOR.replace("|R|||20090813095715+0000", "|R|||");
        assert_eq!(decode(&message).unwrap().event_time_ns, T);
        let neither = message.replace("|||20090813095715+0000\n", "|||\n");
        let e = decode(&neither).unwrap_err();
        assert_eq!(e.code, ReasonCode::MissingField, "{}", e.reason);
    }

    #[test]
    fn every_bad_message_is_rejected_with_its_reason() {
        let monitor = MONITOR.to_string();
        let obr = monitor.lines().find(|l| l.starts_with("OBR")).unwrap_or_default();
        let cases: Vec<(String, ReasonCode, &str)> = vec![
            (monitor.replace("MSH|^~\\&|", "MSH|^~|"), ReasonCode::Hl7Syntax, "MSH-2"),
            (monitor.replace("|||789567^", "|||7895\\Z01\\67^"), ReasonCode::Hl7Syntax, "escape sequence"),
            (monitor.replace("PV1||I", "pv1||I"), ReasonCode::Hl7Syntax, "segment 3"),
            (monitor.replace("ORU^R01^ORU_R01", "ORM^O01^ORM_O01"), ReasonCode::Hl7MessageType, "ORM^O01"),
            (monitor.replace("ORU^R01^ORU_R01", "ORU^R30^ORU_R01"), ReasonCode::Hl7MessageType, "ORU^R30"),
            (monitor.replace("|P|2.6|", "|P|2.2|"), ReasonCode::Hl7Version, "\"2.2\""),
            (monitor.replace("|P|2.6|", "|P||"), ReasonCode::Hl7Version, "MSH-12"),
            (
                monitor.replace(&format!("{obr}\n"), "").replace("OBX|12", &format!("{obr}\nOBX|12")),
                ReasonCode::Hl7SegmentOrder,
                "OBX after PV1",
            ),
            (monitor.replace("PV1||I", "PID|||1^^^X\rPV1||I"), ReasonCode::Hl7SegmentOrder, "one patient per message"),
            (
                monitor.lines().filter(|l| !l.starts_with("PID")).map(|l| format!("{l}\n")).collect(),
                ReasonCode::Hl7MissingSegment,
                "no PID",
            ),
            (monitor.replace("PID|||789567^^^Imaginary Hospital^PI", "PID|||"), ReasonCode::MissingField, "PID-3"),
            (
                monitor
                    .lines()
                    .filter(|l| !l.starts_with("OBX") || l.contains("MDC_DEV_") || l.contains("_MEAN"))
                    .map(|l| format!("{l}\n"))
                    .collect(),
                ReasonCode::NoVitals,
                "no OBX",
            ),
            (monitor.replace("|R|||20090813095715+0000", "|R|||2009081309"), ReasonCode::InvalidTime, "OBX-14"),
            (monitor.replace("|R|||20090813095715+0000", "|R|||20090813095715"), ReasonCode::TimeWithoutZone, "OBX-14"),
            (monitor.replace("|98|262688", "|abc|262688"), ReasonCode::WrongType, "spo2"),
            (monitor.replace("|NM|150456", "|ST|150456"), ReasonCode::WrongType, "NM or SN"),
            (monitor.replace("|80|264864", "|900|264864"), ReasonCode::ImpossibleValue, "heart_rate: 900"),
            (
                monitor.replace("268192^MDC_DIM_DEGC^MDC", "999^MDC_DIM_FURLONG^MDC"),
                ReasonCode::InvalidValue,
                "MDC unit",
            ),
            (monitor.replace("262688^MDC_DIM_PERCENT^MDC", "Hz^^UCUM"), ReasonCode::InvalidValue, "unit \"Hz\""),
            (
                monitor.replace(
                    "|98|262688^MDC_DIM_PERCENT^MDC|90-100||||R|",
                    "|98|262688^MDC_DIM_PERCENT^MDC|90-100||||W|",
                ),
                ReasonCode::InvalidValue,
                "withdrawn",
            ),
        ];
        for (message, code, needle) in cases {
            let e = decode(&message).unwrap_err();
            assert_eq!(e.code, code, "{needle}: {}", e.reason);
            assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
        }
        // Truncated anywhere, a message is a dead letter or a row, never a panic.
        let bytes = monitor.replace('\n', "\r").into_bytes();
        for end in 0..bytes.len() {
            let _ = decode_record(Some(&bytes[..end]), &options("", None));
        }
    }

    #[test]
    fn unknown_codes_in_a_good_message_are_ignored() {
        let message = MONITOR.to_string()
            + "OBX|13|NM|151708^MDC_CONC_AWAY_CO2_ET^MDC|1.6.1.1|38|266016^MDC_DIM_MMHG^MDC|||||R|||20090813095715+0000\n"
            + "OBX|14|ST|99999^LOCAL_NOTE^L||fine||||||R\n";
        assert_eq!(decode(&message).unwrap(), decode(MONITOR).unwrap());
    }
}

/// HL7 v2 ADT: the published examples (`ingest/fixtures/hl7/adt-*.hl7`) decoded as movements, and bad
/// ones made from them, one fault each, each a dead letter with its reason.
mod hl7_adt {
    use vitalflow_ingest::decode::{DecodeOptions, Decoded, ReasonCode, Rejection, decode_any};
    use vitalflow_ingest::hl7::Hl7Settings;
    use vitalflow_ingest::movement::{Movement, MovementKind};

    const ADMIT: &str = include_str!("../fixtures/hl7/adt-a01-admit.hl7");
    const TRANSFER: &str = include_str!("../fixtures/hl7/adt-a02-transfer.hl7");
    const UPDATE: &str = include_str!("../fixtures/hl7/adt-a08-update.hl7");
    const DISCHARGE: &str = include_str!("../fixtures/hl7/adt-a03-discharge.hl7");

    fn options(authority: &str, zone: Option<chrono_tz::Tz>) -> DecodeOptions {
        DecodeOptions {
            hl7: Hl7Settings { patient_id_authority: authority.into(), default_timezone: zone },
            ..DecodeOptions::default()
        }
    }

    /// `fixture` with HL7's `\r`, decoded as a Kafka record's value in New York's zone.
    fn decode_with(fixture: &str, authority: &str) -> Result<Movement, Rejection> {
        match decode_any(
            Some(fixture.replace('\n', "\r").as_bytes()),
            &options(authority, Some(chrono_tz::America::New_York)),
        )? {
            Decoded::Movement(m) => Ok(m),
            Decoded::Reading(r) => panic!("an ADT message decoded to a reading: {r:?}"),
        }
    }

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("an RFC 3339 time")
            .timestamp_nanos_opt()
            .expect("a time in range")
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn the_published_adt_examples_are_movements() {
        assert_eq!(
            decode_with(ADMIT, "GOOD HEALTH HOSPITAL").unwrap(),
            Movement {
                patient_id: "PATID1234".into(),
                kind: MovementKind::Admit,
                ward: some("2000"),
                room: some("2012"),
                bed: some("01"),
                // EVN-2 200708181123 in New York's summer time (UTC-4).
                event_time_ns: utc("2007-08-18T15:23:00Z"),
                message_type: some("ADT^A01"),
            }
        );
        let transfer = decode_with(TRANSFER, "GENHOS").unwrap();
        // EVN-6 (occurred, 09:55 EST) wins over EVN-2 (recorded, 10:00).
        assert_eq!(
            (transfer.kind, transfer.patient_id.as_str(), transfer.event_time_ns),
            (MovementKind::Transfer, "191919", utc("2026-01-06T14:55:00Z"))
        );
        assert_eq!((transfer.ward, transfer.room, transfer.bed), (some("SICU"), some("0001"), some("02")));
        // The social security number of the second PID-3 repetition under its own authority.
        assert_eq!(decode_with(TRANSFER, "USSSA").unwrap().patient_id, "371-66-9256");
        let update = decode_with(UPDATE, "GENHOS").unwrap();
        assert_eq!((update.kind, update.bed, update.message_type), (MovementKind::Update, some("03"), some("ADT^A08")));
        let discharge = decode_with(DISCHARGE, "GENHOS").unwrap();
        assert_eq!(
            (discharge.kind, discharge.ward, discharge.event_time_ns),
            (MovementKind::Discharge, some("SICU"), utc("2026-01-10T20:01:00Z"))
        );
        // MLLP framing a gateway left in is tolerated, as for ORU^R01.
        let framed = format!("\u{0b}{}\u{1c}\r", TRANSFER.replace('\n', "\r"));
        let zone = Some(chrono_tz::America::New_York);
        let Ok(Decoded::Movement(m)) = decode_any(Some(framed.as_bytes()), &options("GENHOS", zone)) else {
            panic!("framed transfer not decoded")
        };
        assert_eq!(m.ward, some("SICU"));
    }

    #[test]
    fn every_bad_adt_is_a_dead_letter_with_its_reason() {
        let without = |id: &str| TRANSFER.lines().filter(|l| !l.starts_with(id)).collect::<Vec<_>>().join("\n");
        let cases: Vec<(String, ReasonCode, &str)> = vec![
            (without("PID"), ReasonCode::Hl7MissingSegment, "no PID"),
            (without("EVN"), ReasonCode::Hl7MissingSegment, "no EVN"),
            (without("PV1"), ReasonCode::Hl7MissingSegment, "no PV1"),
            (TRANSFER.replace("ADT^A02^ADT_A02", "ADT^A04^ADT_A01"), ReasonCode::Hl7MessageType, "A04"),
            (TRANSFER.replace("ADT^A02^ADT_A02", "ADT"), ReasonCode::Hl7MessageType, "only A01"),
            (TRANSFER.replace("|P|2.5", "|P|2.2"), ReasonCode::Hl7Version, "2.2"),
            (TRANSFER.replace("||01||202601060955", "||01||2026010609"), ReasonCode::InvalidTime, "EVN-6"),
            (
                TRANSFER.replace("EVN|A02|202601061000||01||202601060955", "EVN|A02|20260106100000+2500"),
                ReasonCode::InvalidTime,
                "EVN-2",
            ),
            (
                TRANSFER.replace("EVN|A02|202601061000||01||202601060955", "EVN|A02"),
                ReasonCode::MissingField,
                "EVN-6 and EVN-2",
            ),
            (TRANSFER.replace("SICU^0001^02^GENHOS", "^0001^02^GENHOS"), ReasonCode::MissingField, "PV1-3.1"),
            (TRANSFER.replace("191919^^^GENHOS^MR~", ""), ReasonCode::MissingField, "GENHOS"),
            (
                {
                    let mut lines: Vec<&str> = TRANSFER.lines().collect();
                    lines.swap(2, 3);
                    lines.join("\n")
                },
                ReasonCode::Hl7SegmentOrder,
                "PID after PV1",
            ),
            (format!("{TRANSFER}{}", TRANSFER.lines().nth(2).unwrap()), ReasonCode::Hl7SegmentOrder, "a second PID"),
            (TRANSFER.replace("MSH|^~\\&", "MSH|^^\\&"), ReasonCode::Hl7Syntax, "twice"),
        ];
        for (message, code, needle) in cases {
            let e = decode_with(&message, "GENHOS").unwrap_err();
            assert_eq!(e.code, code, "{message}: {}", e.reason);
            assert!(e.reason.contains(needle), "{:?} lacks {needle:?}", e.reason);
        }
        // A local time with no zone configured is refused, never read as UTC.
        let e = decode_any(Some(TRANSFER.replace('\n', "\r").as_bytes()), &options("GENHOS", None)).unwrap_err();
        assert_eq!(e.code, ReasonCode::TimeWithoutZone, "{}", e.reason);
    }
}
