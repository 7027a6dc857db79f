//! The keeper's timers across a restart: the escalation clock (wall clock from the raise), the quiet
//! time (reading time from the close) and the auto-resolve clock (reading time below High) come out the
//! same whether the keeper ran throughout or started again on the same data location, because each is
//! read from the tables (`alert_events`, `vitals_clean`), not from when the process started.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::SchemaRef;
use vitalflow_udf_model::lake::names::ETL_APP_ID;
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, table};

use super::book::{AlertBook, AlertEvent, SYSTEM_USER};
use super::keeper::{AlertKeeper, read_events};
use super::lifecycle::{Action, AlertState};
use super::muting::RiseToHigh;
use super::sources::DEFAULT_WARD;
use crate::config::{WardAlertsConfig, WardRules};

const MINUTE: i64 = 60_000;
/// Reading time 0 of the scripted histories: 2026-01-01T00:00Z.
const T0: i64 = 1_767_225_600_000;

fn rise(offset: i64, patient: &str, minute: i64) -> RiseToHigh {
    RiseToHigh {
        risk_alert_id: format!("raw/0/{offset}"),
        patient_id: patient.into(),
        ward: DEFAULT_WARD.into(),
        reading_ms: T0 + minute * MINUTE,
        news2_score: Some(7),
        probability_high: Some(0.9),
    }
}

#[test]
fn the_escalation_clock_and_the_quiet_time_are_the_same_after_a_replay() {
    let rules = WardRules { escalate_after_minutes: 15, realert_quiet_minutes: 60, ..WardRules::default() };
    let raised_wall = T0 + 500 * MINUTE;
    let mut book = AlertBook::default();
    let mut events: Vec<AlertEvent> = Vec::new();
    events.extend(book.on_rise(&rise(1, "P1", 0), &rules, raised_wall));
    events.extend(book.on_rise(&rise(2, "P2", 0), &rules, raised_wall));
    events.extend(book.on_reading("P2", T0 + 10 * MINUTE, false, &rules, raised_wall));
    events.push(book.act("raw:0:2", Action::Resolve, "ana", None, raised_wall + MINUTE).unwrap());
    assert_eq!(events.len(), 3);

    // A keeper started again replays alert_events: the same clocks, from the times the events recorded.
    let mut replayed = AlertBook::default();
    for event in &events {
        replayed.apply(event).unwrap();
    }
    assert!(replayed.escalate_overdue(|_| &rules, raised_wall + 15 * MINUTE - 1).is_empty());
    let escalated = replayed.escalate_overdue(|_| &rules, raised_wall + 15 * MINUTE);
    let escalated: Vec<(&str, &str)> = escalated.iter().map(|e| (e.alert_id.as_str(), e.user.as_str())).collect();
    assert_eq!(escalated, [("raw:0:1", SYSTEM_USER)], "15 min of wall clock after the raise, not after the restart");
    // P2 closed at its reading of minute 10: quiet until minute 70 of reading time.
    assert!(replayed.on_rise(&rise(3, "P2", 69), &rules, raised_wall + 20 * MINUTE).is_none());
    let again =
        replayed.on_rise(&rise(4, "P2", 70), &rules, raised_wall + 20 * MINUTE).expect("the quiet time is over");
    assert_eq!(again.alert_id, "raw:0:4");
}

/// Rows of `schema` for patient P1's readings `(minute, risk)` of ETL batch `batch`.
fn rows(schema: &SchemaRef, readings: &[(i64, &str)], batch: i64) -> RecordBatch {
    let n = readings.len();
    let strings = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "alert_id" => strings(readings.iter().map(|(m, _)| format!("raw/0/{m}")).collect()),
            "patient_id" => strings(vec!["P1".into(); n]),
            "event_time" => Arc::new(
                TimestampNanosecondArray::from_iter_values(readings.iter().map(|(m, _)| (T0 + m * MINUTE) * 1_000_000))
                    .with_timezone("UTC"),
            ),
            "risk" => strings(readings.iter().map(|(_, r)| r.to_string()).collect()),
            "model_version" => strings(vec!["test".into(); n]),
            "source_topic" => strings(vec!["raw".into(); n]),
            "source_partition" => Arc::new(Int32Array::from(vec![0; n])),
            "source_offset" => Arc::new(Int64Array::from_iter_values(readings.iter().map(|(m, _)| *m))),
            "etl_batch_id" => Arc::new(Int64Array::from(vec![batch; n])),
            _ => arrow::array::new_null_array(f.data_type(), n),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).unwrap()
}

/// P1 rises to High at minute 0, is High at 5, below High from 10 on.
const BATCHES: [&[(i64, &str)]; 4] =
    [&[(0, "High"), (5, "High")], &[(10, "Medium"), (20, "Medium")], &[(39, "Medium")], &[(40, "Low")]];

/// Commits ETL batch `batch` (1-based) of [`BATCHES`] as the ETL does: `vitals_clean`, `risk_alerts`
/// (the rise) and `patient_latest` (the latest reading).
async fn commit_batch(location: &DataLocation, batch: usize) {
    let readings = BATCHES[batch - 1];
    let txn = || vec![Transaction::new(ETL_APP_ID, batch as i64)];
    let prefix = format!("batch-{batch}");
    let mut clean = LakeTable::open_or_create(location, table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA).await.unwrap();
    clean.append_batches(&prefix, &[rows(&VITALS_CLEAN_SCHEMA, readings, batch as i64)], txn()).await.unwrap();
    if batch == 1 {
        let mut rises = LakeTable::open_or_create(location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await.unwrap();
        rises.append_batches(&prefix, &[rows(&RISK_ALERTS_SCHEMA, &readings[..1], 1)], txn()).await.unwrap();
    }
    let mut latest = LakeTable::open_or_create(location, table::PATIENT_LATEST, &PATIENT_LATEST_SCHEMA).await.unwrap();
    let last = &readings[readings.len() - 1..];
    latest.replace_batches(&prefix, &[rows(&PATIENT_LATEST_SCHEMA, last, batch as i64)], txn()).await.unwrap();
}

/// Runs the keeper through [`BATCHES`], one look after each, started again after batch `restart_after`
/// (if any); returns P1's alert's state after each look and the events of `alert_events`.
async fn run(restart_after: Option<usize>) -> (Vec<AlertState>, Vec<AlertEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    // Only the auto-resolve clock: no escalation, no stale-feed alerts.
    let rules = WardRules { escalate_after_minutes: 0, no_data_minutes: 0, ..WardRules::default() };
    let config = WardAlertsConfig { default_ward: rules, feed_down_minutes: 0, ..WardAlertsConfig::default() };
    LakeTable::open_or_create(&location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await.unwrap();
    let mut keeper = AlertKeeper::open(&location, &config, Arc::default()).await.unwrap();
    let mut states = Vec::new();
    for batch in 1..=BATCHES.len() {
        commit_batch(&location, batch).await;
        keeper.look().await.unwrap();
        let alert = keeper.book().get("raw:0:0").expect("the rise raised an alert");
        states.push(alert.state);
        if restart_after == Some(batch) {
            drop(keeper);
            keeper = AlertKeeper::open(&location, &config, Arc::default()).await.unwrap();
        }
    }
    let events_table = LakeTable::open(&location, table::ALERT_EVENTS, None).await.unwrap().unwrap();
    (states, read_events(&location, &events_table).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auto_resolve_clock_runs_from_the_first_reading_below_high_restart_or_not() {
    use AlertState::{Open, Resolved};
    for restart_after in [None, Some(1), Some(2), Some(3)] {
        let (states, events) = run(restart_after).await;
        // Below High from minute 10 (not 20, the first the keeper saw): 29 min at 39, 30 at 40.
        assert_eq!(states, [Open, Open, Open, Resolved], "restarted after batch {restart_after:?}");
        let summary: Vec<(Action, Option<i64>, &str)> =
            events.iter().map(|e| (e.action, e.reading_ms.map(|ms| (ms - T0) / MINUTE), e.user.as_str())).collect();
        assert_eq!(
            summary,
            [(Action::Raise, Some(0), SYSTEM_USER), (Action::Resolve, Some(40), SYSTEM_USER)],
            "restarted after batch {restart_after:?}"
        );
    }
}
