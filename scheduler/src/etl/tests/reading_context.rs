//! What a record says of its reading beside the vitals, through the ETL: the ward (into `vitals_clean`,
//! `patient_latest` and `risk_alerts`, and from there the ward's alert rules and budget), `validated` with
//! `etl.score = "validated"`, the NEWS2 SpO2 scale, and tables written before these columns existed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::rubric::Spo2Scale;
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA};

use super::*;
use crate::config::{ScoreReadings, WardAlertsConfig, WardRules};
use crate::ward_alerts::budget::read_alert_rates;
use crate::ward_alerts::{AlertKeeperHandle, start_keeper};

/// `reading` on `ward`.
fn on_ward(patient: &str, minute: i64, vitals: [Option<f64>; 7], ward: Option<&str>) -> Reading {
    Reading { ward: ward.map(str::to_string), ..reading(patient, minute, vitals) }
}

/// Rules that raise an alert for every rise to High, and a `no_data` alert after `no_data_minutes` (0: never).
fn rules(no_data_minutes: u64) -> WardRules {
    WardRules { min_probability_high: 0.0, escalate_after_minutes: 0, no_data_minutes, ..WardRules::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reading_carries_its_ward_and_each_alert_follows_its_wards_rules() {
    let f = Fixture::new();
    // The ICU raises `no_data` after 5 minutes of silence; step-down and the default ward never do.
    let mut wards = std::collections::BTreeMap::new();
    wards.insert("ICU".to_string(), rules(5));
    wards.insert("Step-down".to_string(), rules(0));
    let config = WardAlertsConfig { poll_interval_ms: 20, default_ward: rules(0), wards, ..Default::default() };
    let shutdown = CancellationToken::new();
    let keeper = AlertKeeperHandle::default();
    // The keeper starts before the rises (a new keeper pages nobody with earlier ones).
    let task = start_keeper(&f.location, &config, &keeper, shutdown.clone()).await.unwrap();

    // P1-P4 rise to High (P4 names no ward); P5 is calm; P6 and P7 read 10 minutes later, so P1, P2, P5 (ICU)
    // and P3 (step-down) are 10 minutes behind their ward's newest reading.
    let icu = Some("ICU");
    let step_down = Some("Step-down");
    f.land(
        0,
        vec![
            on_ward("P1", 0, CRITICAL, icu),
            on_ward("P2", 0, CRITICAL, icu),
            on_ward("P3", 0, CRITICAL, step_down),
            on_ward("P4", 0, CRITICAL, None),
            on_ward("P5", 0, NORMAL, icu),
            on_ward("P6", 10, NORMAL, icu),
            on_ward("P7", 10, NORMAL, step_down),
        ],
    )
    .await;
    f.driver().await.run_once().await.unwrap().unwrap();
    let expected: Vec<Option<String>> =
        [icu, icu, step_down, None, icu, icu, step_down].iter().map(|w| w.map(str::to_string)).collect();
    assert_eq!(f.strings("SELECT ward FROM vitals_clean ORDER BY source_offset").await, expected);
    assert_eq!(f.strings("SELECT ward FROM patient_latest ORDER BY patient_id").await, expected);
    assert_eq!(f.strings("SELECT ward FROM vitals_raw ORDER BY source_offset").await, expected);
    let rises = f.strings("SELECT ward FROM risk_alerts ORDER BY source_offset").await;
    assert_eq!(rises, expected[..4].to_vec(), "four rises to High, each with its reading's ward");

    let mut waited = 0;
    while keeper.list().await.unwrap().len() < 7 {
        assert!(waited < 500, "the keeper raised {:?}", keeper.list().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut raised: Vec<(String, String, String)> =
        keeper.list().await.unwrap().into_iter().map(|a| (a.patient_id, a.ward, format!("{:?}", a.kind))).collect();
    raised.sort();
    let alert = |p: &str, w: &str, k: &str| (p.to_string(), w.to_string(), k.to_string());
    assert_eq!(
        raised,
        [
            alert("P1", "ICU", "NoData"),
            alert("P1", "ICU", "Risk"),
            alert("P2", "ICU", "NoData"),
            alert("P2", "ICU", "Risk"),
            alert("P3", "Step-down", "Risk"),
            alert("P4", "default", "Risk"),
            alert("P5", "ICU", "NoData"),
        ],
        "every rise on its ward; no_data only under the ICU's rule"
    );

    // The budget per ward: its alerts over its patients, on one clock.
    let rates = read_alert_rates(&f.location).await.unwrap().unwrap();
    let per_ward: Vec<(&str, u64, u64)> = rates.wards.iter().map(|w| (w.ward.as_str(), w.alerts, w.patients)).collect();
    assert_eq!(per_ward, [("ICU", 5, 4), ("Step-down", 1, 2), ("default", 1, 1)]);
    assert_eq!(rates.raised, 7);
    let all = rates.per_35_patients_per_day.expect("patients and a time span");
    let rate = |i: usize| rates.wards[i].per_35_patients_per_day.expect("the ward has patients");
    for (i, ratio) in [(0, 5.0 / 4.0), (1, 1.0 / 2.0), (2, 1.0)] {
        assert!((rate(i) / all - ratio).abs() < 1e-9, "{rates:?}");
    }
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn only_validated_readings_are_scored_when_the_etl_says_so() {
    let f = Fixture::new();
    let validated =
        |patient: &str, minute: i64, vitals, validated: bool| Reading { validated, ..reading(patient, minute, vitals) };
    let readings = || {
        vec![
            validated("P1", 0, CRITICAL, false),
            validated("P1", 1, CRITICAL, true),
            validated("P2", 0, NORMAL, true),
            validated("P2", 1, NORMAL, false),
        ]
    };
    f.land(0, readings()).await;
    let config = EtlConfig { score: ScoreReadings::Validated, ..EtlConfig::default() };
    let ctx = local_context(&f.location, &f.forest).unwrap();
    let mut driver = EtlDriver::new(ctx, f.location.clone(), &config, Arc::new(EtlStats::default())).await.unwrap();
    driver.run_once().await.unwrap().unwrap();
    let column = |sql: &'static str| f.strings(sql);
    assert_eq!(
        column("SELECT validated FROM vitals_clean ORDER BY source_offset").await,
        ["false", "true", "true", "false"].map(|v| Some(v.to_string()))
    );
    let risk = column("SELECT risk FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(risk, [None, Some("High".to_string()), Some("Low".to_string()), None]);
    let reasons = column("SELECT unscored_reason FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(reasons, [Some("not_validated".to_string()), None, None, Some("not_validated".to_string())]);
    // The device's critical reading raised nothing; the nurse's confirmation of it is the rise.
    assert_eq!(f.strings("SELECT source_offset FROM risk_alerts").await, [Some("1".to_string())]);
    // Unscored readings still have their NEWS2 (arithmetic on the values) and probabilities NULL.
    assert_eq!(f.count("SELECT count(*) FROM vitals_clean WHERE news2_score IS NULL").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM vitals_clean WHERE validated AND probability_high IS NULL").await, 0);
    assert_eq!(
        f.count("SELECT count(*) FROM vitals_clean WHERE NOT validated AND probability_high IS NOT NULL").await,
        0
    );

    // The default, `all`, scores every reading and gives no reason.
    let g = Fixture::new();
    g.land(0, readings()).await;
    g.driver().await.run_once().await.unwrap().unwrap();
    assert_eq!(g.count("SELECT count(*) FROM vitals_clean WHERE risk IS NULL OR unscored_reason IS NOT NULL").await, 0);
    assert_eq!(g.count("SELECT count(*) FROM risk_alerts").await, 1, "P1's first reading rises, the second stays High");
    assert_eq!(g.strings("SELECT source_offset FROM risk_alerts").await, [Some("0".to_string())]);
}

#[tokio::test]
async fn news2_scores_spo2_on_the_scale_the_record_prescribes() {
    let f = Fixture::new();
    // SpO2 90 % on air (NORMAL otherwise): scale 1 gives 3 points, scale 2 none (within 88–92).
    let mut low_spo2 = NORMAL;
    low_spo2[3] = Some(90.0);
    let scaled = |patient: &str, scale| Reading { spo2_scale: scale, ..reading(patient, 0, low_spo2) };
    f.land(0, vec![scaled("P1", None), scaled("P2", Some(Spo2Scale::One)), scaled("P3", Some(Spo2Scale::Two))]).await;
    f.driver().await.run_once().await.unwrap().unwrap();
    let news2 = f.strings("SELECT news2_score FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(news2, ["3", "3", "0"].map(|n| Some(n.to_string())));
    let scales = f.strings("SELECT spo2_scale FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(scales, [None, Some("1".to_string()), Some("2".to_string())]);
}

/// `schema` without the columns added with the reading's ward, validation and SpO2 scale: as an earlier
/// vitalflow created its tables.
fn before_the_new_columns(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    let new = ["ward", "validated", "spo2_scale", "unscored_reason"];
    let fields: Vec<_> = schema.fields().iter().filter(|f| !new.contains(&f.name().as_str())).cloned().collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

#[tokio::test]
async fn tables_written_before_the_new_columns_gain_them_and_keep_their_rows() {
    let f = Fixture::new();
    // An earlier vitalflow's tables, with a landed row and a processed batch.
    for (name, schema) in [
        (table::VITALS_RAW, &VITALS_RAW_SCHEMA),
        (table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA),
        (table::PATIENT_LATEST, &PATIENT_LATEST_SCHEMA),
        (table::RISK_ALERTS, &RISK_ALERTS_SCHEMA),
        (vitalflow_udf_model::lake::names::ETL_STATE_TABLE, &PATIENT_LATEST_SCHEMA),
    ] {
        LakeTable::open_or_create(&f.location, name, &before_the_new_columns(schema)).await.unwrap();
    }
    let mut builder = VitalsRawBuilder::default();
    builder.append_reading(0, &reading("P1", 0, CRITICAL));
    let full = builder.finish("vitals", 0, T0 + 60 * MINUTE).unwrap();
    let old_schema = before_the_new_columns(&VITALS_RAW_SCHEMA);
    let old_columns: Vec<usize> =
        old_schema.fields().iter().map(|f| full.schema().index_of(f.name()).unwrap()).collect();
    let old_rows = full.project(&old_columns).unwrap();
    let mut raw = LakeTable::open(&f.location, table::VITALS_RAW, None).await.unwrap().unwrap();
    let file = write_data_file(&f.location, table::VITALS_RAW, "vitals-p0", &[old_rows]).await.unwrap();
    raw.append(&[file], vec![Transaction::new("test-ingest/vitals/0", 0)]).await.unwrap();

    // This vitalflow's ETL opens them (adding the columns), cleans the old row, then a new one with a ward.
    let mut driver = f.driver().await;
    driver.run_once().await.unwrap().unwrap();
    f.land(1, vec![on_ward("P1", 1, NORMAL, Some("ICU"))]).await;
    driver.run_once().await.unwrap().unwrap();
    for name in [table::VITALS_RAW, table::VITALS_CLEAN, table::PATIENT_LATEST, table::RISK_ALERTS] {
        let table = LakeTable::open(&f.location, name, None).await.unwrap().unwrap();
        assert!(table.has_column(WARD_COLUMN), "{name} gained the ward column");
    }
    let wards = f.strings("SELECT ward FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(wards, [None, Some("ICU".to_string())]);
    let validated = f.strings("SELECT validated FROM vitals_raw ORDER BY source_offset").await;
    assert_eq!(validated, [None, Some("false".to_string())], "the old row says nothing; the new one is a device's");
    assert_eq!(f.strings("SELECT ward FROM risk_alerts").await, [None], "the old row's rise, with no ward");
    assert_eq!(f.strings("SELECT ward FROM patient_latest").await, [Some("ICU".to_string())]);
    let risks = f.strings("SELECT risk FROM vitals_clean ORDER BY source_offset").await;
    assert_eq!(risks, [Some("High".to_string()), Some("Low".to_string())], "the old row scored as before");
}

/// The ward column's name.
const WARD_COLUMN: &str = vitalflow_udf_model::schema::WARD;
