//! Delivery against a real HTTP server on 127.0.0.1:0: only committed batches, at least once across a
//! restart, retried while the receiver answers 500.

use std::sync::atomic::AtomicUsize;

use arrow::array::ArrayRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use object_store::{ObjectStoreExt, PutPayload};
use vitalflow_udf_model::lake::names::{ETL_APP_ID, batch_prefix};
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::write_data_file;

use super::*;

/// What the receiver got (each request's array of messages), and how many requests it still refuses with 500.
struct Receiver<T = AlertMessage> {
    bodies: Mutex<Vec<Vec<T>>>,
    refuse: AtomicUsize,
    requests: AtomicUsize,
}

impl<T> Default for Receiver<T> {
    fn default() -> Self {
        Receiver { bodies: Mutex::new(Vec::new()), refuse: AtomicUsize::new(0), requests: AtomicUsize::new(0) }
    }
}

async fn receive<T: serde::de::DeserializeOwned>(
    State(receiver): State<Arc<Receiver<T>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_eq!(headers.get("authorization").unwrap(), "Bearer tok");
    if receiver.refuse.load(Ordering::SeqCst) > 0 {
        receiver.refuse.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

async fn serve_receiver<T: serde::de::DeserializeOwned + Send + Sync + 'static>(receiver: Arc<Receiver<T>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/alerts", post(receive::<T>)).with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/alerts")
}

/// `n` alerts of batch `batch`, offsets from `batch * 100`.
fn alerts_batch(batch: i64, n: usize) -> RecordBatch {
    let offsets: Vec<i64> = (0..n as i64).map(|i| batch * 100 + i).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(offsets.iter().map(|o| format!("vitals/0/{o}")))),
        Arc::new(StringArray::from_iter_values(offsets.iter().map(|o| format!("P{o:03}")))),
        Arc::new(TimestampNanosecondArray::from(vec![1_795_000_000_123_000_000; n]).with_timezone("UTC")),
        Arc::new(StringArray::from(vec!["High"; n])),
        Arc::new(StringArray::from((0..n).map(|i| (i % 2 == 0).then_some("Medium")).collect::<Vec<_>>())),
        Arc::new(Float64Array::from(vec![Some(0.9); n])),
        Arc::new(Int32Array::from(vec![Some(7); n])),
        Arc::new(Int32Array::from(vec![None; n])),
        Arc::new(StringArray::from(vec!["m1"; n])),
        Arc::new(StringArray::from(vec!["vitals"; n])),
        Arc::new(Int32Array::from(vec![0; n])),
        Arc::new(Int64Array::from(offsets)),
        Arc::new(Int64Array::from(vec![batch; n])),
        Arc::new(StringArray::from(vec!["rubric_points +0.412, spo2 +0.087"; n])),
        Arc::new(StringArray::from(vec![Some("4B"); n])),
    ];
    RecordBatch::try_new(RISK_ALERTS_SCHEMA.clone(), columns).unwrap()
}

/// Commits batch `batch`'s `n` alerts to `risk_alerts`, as the ETL does before its checkpoint.
async fn write_alerts(location: &DataLocation, batch: i64, n: usize) {
    let mut alerts = LakeTable::open_or_create(location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await.unwrap();
    let file =
        write_data_file(location, table::RISK_ALERTS, &batch_prefix(batch), &[alerts_batch(batch, n)]).await.unwrap();
    alerts.append(&[file], vec![Transaction::new(ETL_APP_ID, batch)]).await.unwrap();
}

async fn commit(location: &DataLocation, batch: i64) {
    let json = format!("{{\"last_batch_id\":{batch},\"raw_version\":0}}");
    location
        .store()
        .put(&location.path(vitalflow_udf_model::lake::names::ETL_CHECKPOINT), PutPayload::from(json))
        .await
        .unwrap();
}

fn webhook_delivery(location: &DataLocation, url: &str, stats: &Arc<AlertDeliveryStats>) -> Delivery {
    let sink = webhook::WebhookSink::new(url, "tok", Duration::from_secs(5)).unwrap();
    Delivery {
        sink: Sink::Webhook(sink),
        location: location.clone(),
        stats: stats.clone(),
        delivered: None,
        alerts: None,
    }
}

fn received_ids(receiver: &Receiver) -> Vec<String> {
    receiver.bodies.lock().unwrap().iter().flatten().map(|a| a.alert_id.clone()).collect()
}

#[tokio::test]
async fn delivers_committed_batches_only_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = serve_receiver(receiver.clone()).await;
    let stats = Arc::new(AlertDeliveryStats::default());

    // A new sink starts after what is committed when it first runs: batch 1's alerts are history.
    write_alerts(&location, 1, 2).await;
    commit(&location, 1).await;
    let mut delivery = webhook_delivery(&location, &url, &stats);
    assert!(!delivery.deliver_pending().await.unwrap());
    assert_eq!(
        load_delivery_checkpoint(&location, "webhook").await.unwrap(),
        Some(DeliveryCheckpoint { last_batch_id: 1, alerts_version: 1 })
    );

    // Batch 2 committed (3 alerts), batch 3 committed without alerts, batch 4's alerts in the table but the
    // batch not committed (the ETL crashed before its checkpoint).
    write_alerts(&location, 2, 3).await;
    write_alerts(&location, 4, 5).await;
    commit(&location, 3).await;
    assert!(delivery.deliver_pending().await.unwrap());
    assert_eq!(received_ids(&receiver), ["vitals/0/200", "vitals/0/201", "vitals/0/202"]);
    assert_eq!(
        load_delivery_checkpoint(&location, "webhook").await.unwrap(),
        // Read up to version 2 (batch 2): version 3 adds batch 4, not committed yet.
        Some(DeliveryCheckpoint { last_batch_id: 3, alerts_version: 2 })
    );
    assert_eq!(stats.webhook.delivered.load(Ordering::Relaxed), 3);
    assert_eq!(stats.webhook.last_batch_id.load(Ordering::Relaxed), 3);

    // The message: the row, with the time in RFC 3339 UTC and NULLs as null.
    let first = receiver.bodies.lock().unwrap()[0][0].clone();
    assert_eq!(
        serde_json::to_value(&first).unwrap(),
        serde_json::json!({
            "alert_id": "vitals/0/200", "patient_id": "P200", "event_time": "2026-11-18T11:06:40.123Z",
            "risk": "High", "previous_risk": "Medium", "probability_high": 0.9, "news2_score": 7,
            "rubric_score": null, "model_version": "m1", "etl_batch_id": 2,
            "top_reasons": "rubric_points +0.412, spo2 +0.087"
        })
    );

    // A restarted process resumes from the sink's checkpoint: batch 4 once it is committed, nothing again.
    commit(&location, 4).await;
    let mut restarted = webhook_delivery(&location, &url, &stats);
    assert!(restarted.deliver_pending().await.unwrap());
    let batch_4: Vec<String> = (400..405).map(|o| format!("vitals/0/{o}")).collect();
    assert_eq!(
        received_ids(&receiver),
        [
            &["vitals/0/200", "vitals/0/201", "vitals/0/202"][..],
            &batch_4.iter().map(String::as_str).collect::<Vec<_>>()
        ]
        .concat()
    );
    assert!(!restarted.deliver_pending().await.unwrap());
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_batch_committed_after_a_higher_one_of_another_partition_group_is_delivered_too() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = serve_receiver(receiver.clone()).await;
    let stats = Arc::new(AlertDeliveryStats::default());
    commit(&location, 4).await;
    let mut delivery = webhook_delivery(&location, &url, &stats);
    assert!(!delivery.deliver_pending().await.unwrap());

    // One group commits batch 6's alerts while another's batch 5 still runs: nothing is sent yet.
    write_alerts(&location, 6, 1).await;
    commit(&location, 4).await;
    assert!(!delivery.deliver_pending().await.unwrap());
    // Batch 5's alerts come after batch 6's in the table; both batches are then committed.
    write_alerts(&location, 5, 2).await;
    commit(&location, 6).await;
    assert!(delivery.deliver_pending().await.unwrap());
    let mut received = received_ids(&receiver);
    received.sort();
    assert_eq!(received, ["vitals/0/500", "vitals/0/501", "vitals/0/600"]);
    assert!(!webhook_delivery(&location, &url, &stats).deliver_pending().await.unwrap(), "nothing twice");
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refusing_webhook_is_retried_and_gets_every_alert_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let receiver = Arc::new(Receiver::default());
    let url = serve_receiver(receiver.clone()).await;
    let stats = Arc::new(AlertDeliveryStats::default());
    commit(&location, 0).await;
    let mut delivery = webhook_delivery(&location, &url, &stats);
    assert!(!delivery.deliver_pending().await.unwrap());

    // 600 alerts (two requests) in batch 1; the receiver answers 500 three times.
    write_alerts(&location, 1, 600).await;
    commit(&location, 1).await;
    receiver.refuse.store(3, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(delivery.run(Duration::from_millis(10), Duration::from_millis(40), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats.webhook.last_batch_id.load(Ordering::Relaxed) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "not delivered: {:?}", stats.webhook.last_error());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let ids = received_ids(&receiver);
    let expected: Vec<String> = (100..700).map(|o| format!("vitals/0/{o}")).collect();
    // At least once: a failure after the first 500 were taken sends them again; every alert arrives.
    let distinct: std::collections::BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(distinct, expected.into_iter().collect());
    assert_eq!(stats.webhook.failures.load(Ordering::Relaxed), 3);
    assert_eq!(stats.webhook.last_error(), None);
    assert!(receiver.bodies.lock().unwrap().iter().all(|b| b.len() <= 500));
}

#[test]
fn alert_files_name_their_batch() {
    assert_eq!(alert_batch_id("batch-000000000042-5f0c2a.parquet"), Some(42));
    assert_eq!(alert_batch_id("etl-batch-000000000042-5f0c2a.parquet"), None);
    assert_eq!(alert_batch_id("part-00001-5f0c2a-c000.zstd.parquet"), None);
    assert_eq!(alert_batch_id("batch-x-5f0c2a.parquet"), None);
}

#[tokio::test]
async fn alert_events_go_out_as_alert_event_messages_once_committed_and_once_acknowledged() {
    use crate::config::WardRules;
    use crate::ward_alerts::muting::RiseToHigh;
    use crate::ward_alerts::rows::event_rows;
    use crate::ward_alerts::{Action, AlertBook};
    use vitalflow_udf_model::schema::ALERT_EVENTS_SCHEMA;

    let dir = tempfile::tempdir().unwrap();
    let location = DataLocation::open(dir.path().to_str().unwrap()).unwrap();
    let receiver = Arc::new(Receiver::<serde_json::Value>::default());
    let url = serve_receiver(receiver.clone()).await;
    let stats = Arc::new(AlertDeliveryStats::default());
    let delivery = |stats: &Arc<AlertDeliveryStats>| {
        let sink = webhook::WebhookSink::new(&url, "tok", Duration::from_secs(5)).unwrap();
        alert_events::EventDelivery::new(Sink::Webhook(sink), &location, stats.clone())
    };
    let mut events_table =
        LakeTable::open_or_create(&location, table::ALERT_EVENTS, &ALERT_EVENTS_SCHEMA).await.unwrap();
    let mut book = AlertBook::default();
    let rules = WardRules::default();
    let rise = |n: i64| RiseToHigh {
        risk_alert_id: format!("vitals/0/{n}"),
        patient_id: format!("P{n}"),
        ward: "default".into(),
        reading_ms: 1_000 * n,
        news2_score: Some(7),
        probability_high: Some(0.9),
    };
    // Before the sink's first run: not sent (a new sink starts now).
    let old = book.on_rise(&rise(1), &rules, 0).unwrap();
    // As the keeper commits: with its transactions.
    let txn = |seq| vec![Transaction::new("vitalflow-alerts", seq)];
    events_table.append_batches("seq-1", &[event_rows(&[old]).unwrap()], txn(1)).await.unwrap();
    let mut first = delivery(&stats);
    assert!(!first.deliver_pending().await.unwrap());

    let raised = book.on_rise(&rise(2), &rules, 0).unwrap();
    let seen = book.act("vitals:0:2", Action::Acknowledge, "ana", None, 5).unwrap();
    events_table.append_batches("seq-3", &[event_rows(&[raised, seen]).unwrap()], txn(3)).await.unwrap();
    // A commit without events (how far the keeper read risk_alerts) is read past.
    events_table.append(&[], vec![Transaction::new("vitalflow-alerts/risk_alerts", 7)]).await.unwrap();
    assert!(first.deliver_pending().await.unwrap());
    assert!(!first.deliver_pending().await.unwrap(), "nothing new");
    let received: Vec<serde_json::Value> = receiver.bodies.lock().unwrap().iter().flatten().cloned().collect();
    let summary: Vec<(&str, &str, &str, &str)> = received
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or("");
            (text("type"), text("event_id"), text("action"), text("user_name"))
        })
        .collect();
    assert_eq!(
        summary,
        [("alert_event", "vitals:0:2#1", "raise", "vitalflow"), ("alert_event", "vitals:0:2#2", "acknowledge", "ana")]
    );
    assert_eq!(received[1]["to_state"], "acknowledged");
    assert_eq!(stats.webhook_events.delivered.load(Ordering::SeqCst), 2);

    // Restarted: resumes after what was acknowledged.
    let mut restarted = delivery(&Arc::new(AlertDeliveryStats::default()));
    assert!(!restarted.deliver_pending().await.unwrap());
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 1);
}
