//! Tests of the alerts a ward acts on: the lifecycle's transitions, the muting rule and auto-resolve
//! on a scripted patient history with exact counts, escalation on time, replay, and the keeper with
//! the HTTP API over a real data location: every illegal action refused with its 4xx, 50 concurrent
//! actions on 10 alerts each recorded exactly once, and a restarted keeper holding the same alerts.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vitalflow_udf_model::lake::names::ETL_APP_ID;
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{ALERT_EVENTS_SCHEMA, ALERTS_SCHEMA, RISK_ALERTS_SCHEMA, table};

use super::book::{ActionRefusal, AlertBook, AlertEvent, SYSTEM_USER};
use super::keeper::read_events;
use super::kind::AlertKind;
use super::lifecycle::{Action, AlertState, next_state};
use super::muting::RiseToHigh;
use super::sources::{DEFAULT_WARD, LatestReading};
use super::{AlertKeeperHandle, KeeperRefusal, start_keeper};
use crate::config::{AuthConfig, HttpConfig, Role, UserConfig, WardAlertsConfig, WardRules};
use crate::front_door::auth::{Authenticator, basic_header, hash_password};
use crate::front_door::http::{HttpServices, start_http};
use crate::table_rows::read_table_file;

const MINUTE: i64 = 60_000;

/// The default rules without escalation by time, which the tests drive themselves.
fn rules() -> WardRules {
    WardRules { escalate_after_minutes: 0, ..WardRules::default() }
}

fn rise(id: &str, patient: &str, minute: i64, news2: Option<i32>, probability: Option<f64>) -> RiseToHigh {
    RiseToHigh {
        risk_alert_id: format!("raw/0/{id}"),
        patient_id: patient.into(),
        ward: DEFAULT_WARD.into(),
        reading_ms: minute * MINUTE,
        news2_score: news2,
        probability_high: probability,
    }
}

#[test]
fn each_action_is_allowed_only_where_the_lifecycle_says() {
    use AlertState::*;
    let allowed = |state, acknowledged, action| next_state(state, acknowledged, action);
    assert_eq!(allowed(Open, false, Action::Acknowledge), Some(Acknowledged));
    assert_eq!(allowed(Acknowledged, true, Action::Acknowledge), None, "acknowledged twice");
    assert_eq!(allowed(Escalated, false, Action::Acknowledge), Some(Escalated), "escalated by itself, then seen");
    assert_eq!(allowed(Escalated, true, Action::Acknowledge), None);
    assert_eq!(allowed(Open, false, Action::Escalate), Some(Escalated));
    assert_eq!(allowed(Acknowledged, true, Action::Escalate), Some(Escalated));
    assert_eq!(allowed(Escalated, true, Action::Escalate), None);
    for state in [Open, Acknowledged, Escalated] {
        assert_eq!(allowed(state, false, Action::Dismiss), Some(Dismissed));
        assert_eq!(allowed(state, false, Action::Resolve), Some(Resolved));
    }
    for closed in [Dismissed, Resolved] {
        for action in Action::BY_PEOPLE {
            assert_eq!(allowed(closed, true, action), None, "{action} on a {closed} alert");
        }
    }
    for state in AlertState::ALL {
        assert_eq!(allowed(state, false, Action::Raise), None);
    }
}

#[test]
fn muting_and_auto_resolve_on_a_scripted_history_give_exact_counts() {
    let rules = rules();
    let mut book = AlertBook::default();
    let mut events: Vec<AlertEvent> = Vec::new();
    let now = 0;
    let high = |book: &mut AlertBook, patient: &str, minute: i64, high: bool| {
        book.on_reading(patient, minute * MINUTE, high, &rules, now)
    };
    // P1: raised at 0; a second rise while open is muted; below High from 10: resolves at 40, not at 39.
    events.extend(book.on_rise(&rise("1", "P1", 0, Some(5), Some(0.70)), &rules, now));
    events.extend(high(&mut book, "P1", 1, true));
    events.extend(book.on_rise(&rise("2", "P1", 5, Some(6), Some(0.72)), &rules, now));
    for minute in [10, 20, 39] {
        events.extend(high(&mut book, "P1", minute, false));
    }
    assert_eq!(book.get("raw:0:1").unwrap().state, AlertState::Open, "29 minutes below High is not 30");
    events.extend(high(&mut book, "P1", 40, false));
    assert_eq!(book.get("raw:0:1").unwrap().state, AlertState::Resolved);
    // Within the hour after: NEWS2 +1 and P(High) +0.05 are muted; NEWS2 +2 raises.
    events.extend(book.on_rise(&rise("3", "P1", 50, Some(6), Some(0.75)), &rules, now));
    events.extend(book.on_rise(&rise("4", "P1", 70, Some(7), Some(0.75)), &rules, now));
    assert!(book.get("raw:0:4").is_some(), "NEWS2 rose by 2");
    let resolved = book.act("raw:0:4", Action::Resolve, "ana", None, now).unwrap();
    assert_eq!(resolved.reading_ms, Some(70 * MINUTE), "closed at the patient's latest reading");
    // Within the hour after the hand-resolve: P(High) +0.05 is muted, +0.15 raises.
    events.extend(book.on_rise(&rise("5", "P1", 100, Some(7), Some(0.80)), &rules, now));
    events.extend(book.on_rise(&rise("6", "P1", 110, Some(7), Some(0.90)), &rules, now));
    assert!(book.get("raw:0:6").is_some(), "P(High) rose by 0.15");
    book.act("raw:0:6", Action::Dismiss, "ana", Some("probe artefact"), now).unwrap();
    // The quiet time after a dismissal runs out at 170: a rise at 169 is muted, at 171 raises.
    events.extend(book.on_rise(&rise("7", "P1", 169, Some(7), Some(0.90)), &rules, now));
    events.extend(book.on_rise(&rise("8", "P1", 171, Some(7), Some(0.90)), &rules, now));
    // The same rise seen again (a re-read after a crash) raises nothing, nor does one from before the last close.
    events.extend(book.on_rise(&rise("8", "P1", 171, Some(7), Some(0.90)), &rules, now));
    book.act("raw:0:8", Action::Resolve, "ana", None, now).unwrap();
    events.extend(book.on_rise(&rise("5", "P1", 100, Some(9), Some(0.99)), &rules, now));
    // P2: no scores at all; a High reading restarts the 30 minutes below High.
    events.extend(book.on_rise(&rise("9", "P2", 0, None, None), &rules, now));
    for (minute, is_high) in [(10, false), (20, true), (25, false), (54, false)] {
        events.extend(high(&mut book, "P2", minute, is_high));
    }
    assert_eq!(book.get("raw:0:9").unwrap().state, AlertState::Open, "29 minutes since the last High");
    events.extend(high(&mut book, "P2", 55, false));

    let raised: Vec<&str> = events.iter().filter(|e| e.action == Action::Raise).map(|e| e.alert_id.as_str()).collect();
    assert_eq!(raised, ["raw:0:1", "raw:0:4", "raw:0:6", "raw:0:8", "raw:0:9"]);
    let auto_resolved: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Resolve && e.user == SYSTEM_USER)
        .map(|e| e.alert_id.as_str())
        .collect();
    assert_eq!(auto_resolved, ["raw:0:1", "raw:0:9"]);
    assert_eq!(book.alerts().count(), 5);
    assert_eq!(book.alerts().filter(|a| a.state.is_active()).count(), 0, "every alert closed");
    assert_eq!(book.last_seq(), 10, "5 raises, 2 auto-resolves, 2 resolves and a dismissal");
}

#[test]
fn the_alert_rate_is_per_35_patients_per_day() {
    use super::budget::per_35_patients_per_day;
    // The figure: 442 alerts for 50 patients in 22 minutes, about 580 per patient per day.
    let rate = per_35_patients_per_day(442, 50, 22.0 / 60.0).unwrap();
    assert!((rate / 35.0 - 578.6).abs() < 0.1, "{rate}");
    assert_eq!(per_35_patients_per_day(1, 35, 24.0), Some(1.0), "Kaiser's budget");
    assert_eq!(per_35_patients_per_day(3, 0, 24.0), None);
    assert_eq!(per_35_patients_per_day(3, 35, 0.0), None);
}

#[test]
fn a_rise_below_the_wards_probability_raises_nothing() {
    let rules = WardRules { min_probability_high: 0.8, ..rules() };
    let mut book = AlertBook::default();
    assert!(book.on_rise(&rise("1", "P1", 0, Some(9), Some(0.79)), &rules, 0).is_none());
    assert!(book.on_rise(&rise("2", "P1", 1, Some(9), Some(0.80)), &rules, 0).is_some());
}

#[test]
fn an_alert_nobody_acknowledged_escalates_once_on_time() {
    let rules = WardRules { escalate_after_minutes: 15, ..rules() };
    let mut book = AlertBook::default();
    book.on_rise(&rise("1", "P1", 0, Some(7), Some(0.9)), &rules, 0).unwrap();
    book.on_rise(&rise("2", "P2", 0, Some(7), Some(0.9)), &rules, 0).unwrap();
    book.act("raw:0:2", Action::Acknowledge, "ana", None, MINUTE).unwrap();
    assert!(book.escalate_overdue(|_| &rules, 15 * MINUTE - 1).is_empty());
    let escalated = book.escalate_overdue(|_| &rules, 15 * MINUTE);
    assert_eq!(escalated.len(), 1, "the acknowledged alert waits for no one");
    assert_eq!((escalated[0].alert_id.as_str(), escalated[0].user.as_str()), ("raw:0:1", SYSTEM_USER));
    assert!(escalated[0].automatic);
    assert!(book.escalate_overdue(|_| &rules, 30 * MINUTE).is_empty(), "once");
    // Seen after it escalated: it stays escalated and says who saw it; seeing it twice is refused.
    let seen = book.act("raw:0:1", Action::Acknowledge, "bo", None, 16 * MINUTE).unwrap();
    assert_eq!(seen.to_state, AlertState::Escalated);
    assert_eq!(book.get("raw:0:1").unwrap().acknowledged_by.as_deref(), Some("bo"));
    let twice = book.act("raw:0:1", Action::Acknowledge, "bo", None, 17 * MINUTE).unwrap_err();
    assert_eq!(twice.to_string(), "alert raw:0:1 is escalated and acknowledged: it cannot be acknowledged");
}

#[test]
fn refusals_name_the_alert_state_action_and_field() {
    let rules = rules();
    let mut book = AlertBook::default();
    book.on_rise(&rise("1", "P1", 0, Some(7), Some(0.9)), &rules, 0).unwrap();
    let unknown = book.act("raw:0:404", Action::Resolve, "ana", None, 0).unwrap_err();
    assert_eq!(unknown, ActionRefusal::UnknownAlert { alert_id: "raw:0:404".into() });
    let blank = book.act("raw:0:1", Action::Dismiss, "ana", Some("  "), 0).unwrap_err();
    assert_eq!(blank, ActionRefusal::MissingReason { action: Action::Dismiss });
    book.act("raw:0:1", Action::Dismiss, "ana", Some("moved to ICU"), 0).unwrap();
    let resolve = book.act("raw:0:1", Action::Resolve, "ana", None, 0).unwrap_err();
    assert_eq!(resolve.to_string(), "alert raw:0:1 is dismissed: it cannot be resolved");
    assert_eq!(book.last_seq(), 2, "refusals record nothing");
}

#[test]
fn replaying_the_events_rebuilds_the_same_book() {
    let rules = WardRules { escalate_after_minutes: 5, ..rules() };
    let mut book = AlertBook::default();
    let mut events = Vec::new();
    events.extend(book.on_rise(&rise("1", "P1", 0, Some(7), Some(0.9)), &rules, 0));
    events.extend(book.on_rise(&rise("2", "P2", 0, Some(7), Some(0.9)), &rules, 0));
    events.push(book.act("raw:0:1", Action::Acknowledge, "ana", None, MINUTE).unwrap());
    events.extend(book.escalate_overdue(|_| &rules, 5 * MINUTE));
    events.push(book.act("raw:0:2", Action::Dismiss, "bo", Some("artefact"), 6 * MINUTE).unwrap());
    let rows = super::rows::event_rows(&events).unwrap();
    let read_back = super::rows::events_of(&rows).unwrap();
    assert_eq!(read_back, events);
    let mut replayed = AlertBook::default();
    for event in &read_back {
        replayed.apply(event).unwrap();
    }
    let alerts = |b: &AlertBook| b.alerts().cloned().collect::<Vec<_>>();
    assert_eq!(alerts(&replayed), alerts(&book));
    // Out of order is a broken history, named.
    let err = AlertBook::default().apply(&events[1]).unwrap_err();
    assert!(err.to_string().contains("event 2"), "{err}");
}

fn latest(patient: &str, minute: i64) -> LatestReading {
    LatestReading {
        patient_id: patient.into(),
        ward: DEFAULT_WARD.into(),
        reading_ms: minute * MINUTE,
        high: Some(false),
    }
}

#[test]
fn a_patient_whose_readings_stop_gets_one_no_data_alert_resolved_when_they_resume() {
    let rules = WardRules { no_data_minutes: 15, ..rules() };
    let mut book = AlertBook::default();
    let mut events: Vec<AlertEvent> = Vec::new();
    // P2 reads every minute throughout; P1 stops after minute 10 and resumes at minute 35.
    let p1 = |m: i64| if (11..35).contains(&m) { 10 } else { m };
    for m in 0..=40 {
        events.extend(book.on_latest_readings(&[latest("P1", p1(m)), latest("P2", m)], |_| &rules, m * MINUTE));
    }
    let kinds: Vec<(AlertKind, Action, i64)> = events.iter().map(|e| (e.kind, e.action, e.time_ms / MINUTE)).collect();
    // Raised once, when P1 fell 15 minutes behind the ward (minute 25); resolved by its next reading.
    assert_eq!(kinds, vec![(AlertKind::NoData, Action::Raise, 25), (AlertKind::NoData, Action::Resolve, 35)]);
    assert_eq!(events[0].alert_id, format!("no_data:P1:{}", 10 * MINUTE));
    assert_eq!((events[0].patient_id.as_str(), events[0].reading_ms), ("P1", Some(10 * MINUTE)));
    assert_eq!(events[1].reason.as_deref(), Some("readings resumed"));

    // A second silence is a new alert; dismissed by a person while P1 is still silent, it is not raised again.
    let mut second = Vec::new();
    for m in 41..=70 {
        let p1 = if m > 45 { 45 } else { m };
        second.extend(book.on_latest_readings(&[latest("P1", p1), latest("P2", m)], |_| &rules, m * MINUTE));
        if m == 62 {
            second.push(
                book.act(
                    &format!("no_data:P1:{}", 45 * MINUTE),
                    Action::Dismiss,
                    "ana",
                    Some("transferred"),
                    m * MINUTE,
                )
                .unwrap(),
            );
        }
    }
    let actions: Vec<(Action, i64)> = second.iter().map(|e| (e.action, e.time_ms / MINUTE)).collect();
    assert_eq!(actions, vec![(Action::Raise, 60), (Action::Dismiss, 62)]);
    // The risk alerts' memory is untouched: a rise of P1 still raises a risk alert.
    assert!(book.on_rise(&rise("9", "P1", 71, Some(7), Some(0.9)), &rules, 71 * MINUTE).is_some());

    // The events, through rows and back (and from a file written before alerts had kinds), replay to the same book.
    events.extend(second);
    let rows = super::rows::event_rows(&events).unwrap();
    assert_eq!(super::rows::events_of(&rows).unwrap(), events);
    let mut replayed = AlertBook::default();
    for event in &events {
        replayed.apply(event).unwrap();
    }
    let no_kind = rows.project(&(0..rows.num_columns() - 1).collect::<Vec<_>>()).unwrap();
    let filled = crate::table_rows::with_added_columns(&no_kind, &ALERT_EVENTS_SCHEMA).unwrap();
    assert!(super::rows::events_of(&filled).unwrap().iter().all(|e| e.kind == AlertKind::Risk));
}

#[test]
fn a_discharged_patient_gets_no_no_data_alert_and_an_open_one_resolves() {
    let rules = WardRules { no_data_minutes: 15, ..rules() };
    let mut book = AlertBook::default();
    let mut events: Vec<AlertEvent> = Vec::new();
    // P1 stops after minute 10 and is discharged at minute 30; P2 reads every minute. From the discharge on,
    // the keeper's latest readings leave P1 out (`sources::latest_readings`), and its open alert resolves.
    for m in 0..=60 {
        let readings = if m < 30 { vec![latest("P1", m.min(10)), latest("P2", m)] } else { vec![latest("P2", m)] };
        events.extend(book.on_latest_readings(&readings, |_| &rules, m * MINUTE));
        let discharged: &[&str] = if m < 30 { &[] } else { &["P1"] };
        events.extend(book.on_discharged(discharged.iter().copied(), m * MINUTE));
    }
    let actions: Vec<(AlertKind, Action, i64)> =
        events.iter().map(|e| (e.kind, e.action, e.time_ms / MINUTE)).collect();
    assert_eq!(actions, vec![(AlertKind::NoData, Action::Raise, 25), (AlertKind::NoData, Action::Resolve, 30)]);
    assert_eq!(events[1].reason.as_deref(), Some("patient discharged"));
    assert_eq!(events[1].user, SYSTEM_USER);
    // An open risk alert of a discharged patient resolves too (no reading will ever resolve it); once.
    let raised = book.on_rise(&rise("7", "P3", 61, Some(7), Some(0.9)), &rules, 61 * MINUTE).unwrap();
    let resolved = book.on_discharged(["P3"].into_iter(), 62 * MINUTE);
    assert_eq!(resolved.len(), 1);
    assert_eq!((resolved[0].alert_id.as_str(), resolved[0].action), (raised.alert_id.as_str(), Action::Resolve));
    assert!(book.on_discharged(["P3", "P1"].into_iter(), 63 * MINUTE).is_empty());
}

#[test]
fn a_feed_that_stops_raises_one_feed_down_alert_and_no_per_patient_ones() {
    let rules = WardRules { no_data_minutes: 5, ..rules() };
    let mut book = AlertBook::default();
    let mut events: Vec<AlertEvent> = Vec::new();
    // Every patient's last reading is at minute 10; the process's clock runs on to minute 40.
    let readings = [latest("P1", 10), latest("P2", 10), latest("P3", 9)];
    for silent in 0..=30 {
        let now = (10 + silent) * MINUTE;
        events.extend(book.on_latest_readings(&readings, |_| &rules, now));
        events.extend(book.on_feed(Some(10 * MINUTE), silent * MINUTE, 10, now));
    }
    let actions: Vec<(AlertKind, Action, i64)> =
        events.iter().map(|e| (e.kind, e.action, e.time_ms / MINUTE)).collect();
    assert_eq!(actions, vec![(AlertKind::FeedDown, Action::Raise, 20)], "one alert, none per patient");
    assert_eq!((events[0].patient_id.as_str(), events[0].ward.as_str()), ("*", "*"));
    // Readings arrive again: resolved, and a later stop is a new alert.
    let back = book.on_feed(Some(41 * MINUTE), 0, 10, 41 * MINUTE).unwrap();
    assert_eq!(
        (back.action, back.to_state, back.reason.as_deref()),
        (Action::Resolve, AlertState::Resolved, Some("readings arrive again"))
    );
    assert!(book.on_feed(Some(41 * MINUTE), 9 * MINUTE, 10, 50 * MINUTE).is_none());
    let again = book.on_feed(Some(41 * MINUTE), 10 * MINUTE, 10, 51 * MINUTE).unwrap();
    assert_eq!((again.kind, again.action), (AlertKind::FeedDown, Action::Raise));
    // No readings ever: nothing to say; 0 minutes: never.
    assert!(AlertBook::default().on_feed(None, 60 * MINUTE, 10, 0).is_none());
    assert!(AlertBook::default().on_feed(Some(0), 60 * MINUTE, 0, 0).is_none());
}

/// `risk_alerts` rows as the ETL writes them, one per rise: (offset, patient).
fn risk_alert_rows(rises: &[(i64, &str)], reading_ms: i64) -> RecordBatch {
    let n = rises.len();
    let strings = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let columns: Vec<ArrayRef> = RISK_ALERTS_SCHEMA
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "alert_id" => strings(rises.iter().map(|(o, _)| format!("raw/0/{o}")).collect()),
            "patient_id" => strings(rises.iter().map(|(_, p)| p.to_string()).collect()),
            "event_time" => {
                Arc::new(TimestampNanosecondArray::from(vec![reading_ms * 1_000_000; n]).with_timezone("UTC"))
            }
            "risk" => strings(vec!["High".into(); n]),
            "model_version" => strings(vec!["test".into(); n]),
            "source_topic" => strings(vec!["raw".into(); n]),
            "source_partition" => Arc::new(Int32Array::from(vec![0; n])),
            "source_offset" => Arc::new(Int64Array::from_iter_values(rises.iter().map(|(o, _)| *o))),
            "etl_batch_id" => Arc::new(Int64Array::from(vec![1; n])),
            "news2_score" => Arc::new(Int32Array::from(vec![7; n])),
            "probability_high" => Arc::new(Float64Array::from(vec![0.9; n])),
            _ => arrow::array::new_null_array(f.data_type(), n),
        })
        .collect();
    RecordBatch::try_new(RISK_ALERTS_SCHEMA.clone(), columns).unwrap()
}

async fn send(client: &reqwest::Client, request: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = client;
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_through_http_refuses_what_it_must_and_records_every_accepted_action_once() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let config = WardAlertsConfig { poll_interval_ms: 20, ..WardAlertsConfig::default() };
    let shutdown = CancellationToken::new();
    // Rises from before the keeper's first start page nobody.
    let mut risk_alerts = LakeTable::open_or_create(&location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await.unwrap();
    risk_alerts
        .append_batches("batch-1", &[risk_alert_rows(&[(0, "OLD")], 0)], vec![Transaction::new(ETL_APP_ID, 1)])
        .await
        .unwrap();
    let keeper = AlertKeeperHandle::default();
    // Before its keeper starts (a standby's handle), actions are refused as unavailable, nothing changed.
    assert!(matches!(keeper.list().await, Err(KeeperRefusal::Unavailable(why)) if why.contains("standby")));
    let keeper_task = start_keeper(&location, &config, &keeper, shutdown.clone()).await.unwrap();
    let rises: Vec<(i64, String)> = (1..=10).map(|o| (o, format!("P{o}"))).collect();
    let rises: Vec<(i64, &str)> = rises.iter().map(|(o, p)| (*o, p.as_str())).collect();
    let now = chrono::Utc::now().timestamp_millis();
    risk_alerts
        .append_batches("batch-2", &[risk_alert_rows(&rises, now)], vec![Transaction::new(ETL_APP_ID, 2)])
        .await
        .unwrap();
    let mut waited = 0;
    while keeper.list().await.unwrap().len() < 10 {
        assert!(waited < 500, "the keeper raised no alerts from the new rises");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    let ids: Vec<String> = (1..=10).map(|o| format!("raw:0:{o}")).collect();
    let listed: Vec<String> = keeper.list().await.unwrap().into_iter().map(|a| a.alert_id).collect();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected, "one alert per new rise, none for the old one");

    let user = |name: &str, role| UserConfig { name: name.into(), password_hash: hash_password("pw", 1000), role };
    let auth =
        AuthConfig { users: vec![user("ana", Role::Clinician), user("bo", Role::Reader)], ..AuthConfig::default() };
    let auth = Arc::new(Authenticator::new(&auth).unwrap());
    let http_config = HttpConfig { port: 0, ..HttpConfig::default() };
    let forest = Arc::new(vitalflow_udf_model::RiskForest::bundled().unwrap());
    let services = HttpServices { alerts: Some(keeper.clone()), ..HttpServices::default() };
    let http = start_http(&http_config, forest, auth, services, shutdown.clone()).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://{}", http.addr);
    let ana = basic_header("ana", "pw", true);
    let bo = basic_header("bo", "pw", true);
    let post = |path: String, who: &str, body: &str| {
        client
            .post(format!("{base}{path}"))
            .header("authorization", who)
            .header("content-type", "application/json")
            .body(body.to_string())
    };

    let (status, listed) = send(&client, client.get(format!("{base}/alerts")).header("authorization", &bo)).await;
    assert_eq!(status, 200, "a reader reads the alerts");
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 10);
    assert!(listed["alerts"].as_array().unwrap().iter().all(|a| a["state"] == "open"));
    let a = &ids[0];
    let (status, body) = send(&client, post(format!("/alerts/{a}/acknowledge"), &bo, "{}")).await;
    assert_eq!(status, 403, "a reader may not act: {body}");
    assert!(body.to_string().contains("clinician"), "{body}");
    let (status, _) =
        send(&client, client.post(format!("{base}/alerts/{a}/acknowledge")).header("content-type", "application/json"))
            .await;
    assert_eq!(status, 401);
    let (status, body) = send(&client, post("/alerts/raw:9:9/acknowledge".into(), &ana, "")).await;
    assert_eq!(status, 404);
    assert!(body.to_string().contains("raw:9:9"), "{body}");
    let (status, body) = send(&client, post(format!("/alerts/{a}/frobnicate"), &ana, "")).await;
    assert_eq!((status, body["detail"][0]["loc"][1].as_str()), (404, Some("action")), "{body}");
    let (status, body) = send(&client, post(format!("/alerts/{a}/dismiss"), &ana, "{}")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"][0]["loc"], serde_json::json!(["body", "reason"]));
    let (status, body) = send(&client, post(format!("/alerts/{a}/dismiss"), &ana, "{\"reason\": 3}")).await;
    assert_eq!((status, body["detail"][0]["loc"][1].as_str()), (400, Some("reason")), "{body}");
    let (status, _) = send(
        &client,
        client
            .post(format!("{base}/alerts/{a}/acknowledge"))
            .header("authorization", &ana)
            .header("content-type", "text/plain"),
    )
    .await;
    assert_eq!(status, 415);

    let (status, body) = send(&client, post(format!("/alerts/{a}/acknowledge"), &ana, "")).await;
    assert_eq!(
        (status, body["state"].as_str(), body["acknowledged_by"].as_str()),
        (200, Some("acknowledged"), Some("ana"))
    );
    let (status, body) = send(&client, post(format!("/alerts/{a}/acknowledge"), &ana, "")).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("is acknowledged"), "{body}");
    let (status, _) = send(&client, post(format!("/alerts/{a}/resolve"), &ana, "")).await;
    assert_eq!(status, 200);
    let (status, body) = send(&client, post(format!("/alerts/{a}/resolve"), &ana, "")).await;
    assert_eq!(status, 409);
    assert!(body.to_string().contains("is resolved: it cannot be resolved"), "{body}");
    let b = &ids[1];
    let (status, body) = send(&client, post(format!("/alerts/{b}/dismiss"), &ana, "{\"reason\": \"probe off\"}")).await;
    assert_eq!((status, body["reason"].as_str()), (200, Some("probe off")));
    let (status, body) = send(&client, post(format!("/alerts/{b}/resolve"), &ana, "")).await;
    assert_eq!(status, 409);
    assert!(body.to_string().contains("is dismissed: it cannot be resolved"), "{body}");

    // 50 actions at once on the 10 alerts, each with its own reason to find it by.
    let actions = ["acknowledge", "escalate", "resolve", "dismiss", "acknowledge"];
    let requests = (0..50).map(|i| {
        let path = format!("/alerts/{}/{}", ids[i % 10], actions[i / 10]);
        let request = post(path, &ana, &format!("{{\"reason\": \"r{i}\"}}"));
        let client = client.clone();
        tokio::spawn(async move { (i, send(&client, request).await.0) })
    });
    let answers: Vec<(usize, u16)> =
        futures::future::join_all(requests).await.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|(_, s)| *s == 200 || *s == 409), "{answers:?}");
    let accepted: Vec<usize> = answers.iter().filter(|(_, s)| *s == 200).map(|(i, _)| *i).collect();
    // The two closed alerts take none; each of the 8 open ones takes at least its first action.
    assert!(answers.iter().filter(|(i, _)| i % 10 < 2).all(|(_, s)| *s == 409), "{answers:?}");
    assert!(accepted.len() >= 8, "{answers:?}");

    let events_table = LakeTable::open(&location, table::ALERT_EVENTS, None).await.unwrap().unwrap();
    let events = read_events(&location, &events_table).await.unwrap();
    for (i, status) in &answers {
        let reason = format!("r{i}");
        let recorded = events.iter().filter(|e| e.reason.as_deref() == Some(reason.as_str())).count();
        assert_eq!(recorded, usize::from(*status == 200), "action {i} ({status}) recorded {recorded} times");
    }
    assert_eq!(events.len(), 10 + 3 + accepted.len(), "10 raises, the 3 single actions, the accepted ones");
    let seqs: Vec<i64> = events.iter().map(|e| e.event_seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "numbered without gaps");

    // `alerts` agrees with the events: each alert in the state its last event left it.
    let alerts_table = LakeTable::open(&location, table::ALERTS, None).await.unwrap().unwrap();
    let mut states = Vec::new();
    for file in alerts_table.files() {
        let path = location.path(&format!("{}/{}", table::ALERTS, file.path));
        for batch in read_table_file(&location, &path, &ALERTS_SCHEMA).await.unwrap() {
            let id = batch.column_by_name("alert_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            let state = batch.column_by_name("state").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            states.extend((0..batch.num_rows()).map(|i| (id.value(i).to_string(), state.value(i).to_string())));
        }
    }
    assert_eq!(states.len(), 10);
    for (id, state) in &states {
        let last = events.iter().rev().find(|e| &e.alert_id == id).unwrap();
        assert_eq!(last.to_state.as_str(), state, "alert {id}");
    }

    // A keeper started again on the location holds the same alerts.
    let before = keeper.list().await.unwrap();
    shutdown.cancel();
    keeper_task.await.unwrap();
    http.task.await.unwrap();
    let again = CancellationToken::new();
    // The lease ended the keeper's term: its handle refuses until the next term's keeper starts.
    assert!(matches!(keeper.list().await, Err(KeeperRefusal::Unavailable(_))));
    let reopened = AlertKeeperHandle::default();
    let task = start_keeper(&location, &config, &reopened, again.clone()).await.unwrap();
    assert_eq!(reopened.list().await.unwrap(), before);
    again.cancel();
    task.await.unwrap();
}
