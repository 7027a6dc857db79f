//! The HTTP API: the seed's FastAPI contract, `POST /predict_batch` and `GET /healthz`, plus
//! `GET /metrics` (Prometheus) and `GET /openapi.json`.
//!
//! Bodies are validated by hand rather than by a typed extractor so that every mistake is answered
//! with 422 and names the record index and the field, in FastAPI's `detail` shape that the seed's
//! clients already parse. A client's mistake is never a 5xx.
//!
//! `/predict_batch` takes the same credentials as Flight SQL (Basic, or a Bearer token the Flight SQL
//! handshake issued); `/healthz`, `/metrics` and `/openapi.json` carry no patient data and are open, so
//! that probes and Prometheus need no secret.

use std::collections::BTreeMap;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::prometheus::Exposition;
use vitalflow_udf_model::schema::{MODEL_FEATURES, Vital};
use vitalflow_udf_model::{RiskForest, RiskLevel};

use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::etl::EtlStats;
use crate::front_door::auth::Authenticator;

/// Errors reported per request, at most this many (FastAPI reports all; a 10k-record body of junk
/// should not produce a megabyte of errors).
const MAX_REPORTED_ERRORS: usize = 50;

/// The OpenAPI document of these routes (schemathesis tests the server against it).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[derive(Debug)]
struct HttpState {
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    max_batch_records: usize,
    stats: HttpStats,
    etl: Option<Arc<EtlStats>>,
}

/// Counters of `/predict_batch`, rendered on `/metrics`.
#[derive(Debug, Default)]
struct HttpStats {
    /// Responses by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Predictions made, by risk level in `RiskLevel::ALL` order.
    predictions: [AtomicU64; 3],
    /// Seconds spent answering, as microseconds (summed) and the number of answers.
    micros: AtomicU64,
    answered: AtomicU64,
}

impl HttpStats {
    fn record(&self, status: StatusCode, started: Instant) {
        if let Ok(mut responses) = self.responses.lock() {
            *responses.entry(status.as_u16()).or_default() += 1;
        }
        self.micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, etl: Option<&EtlStats>) -> String {
        let mut page = Exposition::new();
        let name = "vitalflow_http_predict_batch_responses_total";
        page.family(name, "counter", "/predict_batch answers by status code.");
        if let Ok(responses) = self.responses.lock() {
            for (status, n) in responses.iter() {
                page.sample(name, &format!("status=\"{status}\""), n);
            }
        }
        let name = "vitalflow_http_predictions_total";
        page.family(name, "counter", "Records scored by /predict_batch, by risk level.");
        for (level, n) in vitalflow_udf_model::RiskLevel::ALL.iter().zip(&self.predictions) {
            page.sample(name, &format!("risk=\"{level}\""), n.load(Ordering::Relaxed));
        }
        let name = "vitalflow_http_predict_batch_seconds";
        page.family(name, "summary", "Time answering /predict_batch.");
        page.sample(&format!("{name}_sum"), "", self.micros.load(Ordering::Relaxed) as f64 / 1e6);
        page.sample(&format!("{name}_count"), "", self.answered.load(Ordering::Relaxed));
        if let Some(etl) = etl {
            crate::metrics::render_etl(&mut page, etl);
        }
        page.finish()
    }
}

/// One entry of FastAPI's `detail` list: where, what, and a machine-readable kind.
#[derive(Debug, Serialize, PartialEq)]
struct FieldError {
    loc: Vec<Value>,
    msg: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl FieldError {
    fn body(msg: impl Into<String>, kind: &'static str) -> FieldError {
        FieldError { loc: vec![json!("body")], msg: msg.into(), kind }
    }

    fn field(index: usize, field: &str, msg: impl Into<String>, kind: &'static str) -> FieldError {
        FieldError { loc: vec![json!("body"), json!(index), json!(field)], msg: msg.into(), kind }
    }
}

/// One answer of `/predict_batch`, fields in the seed's order.
#[derive(Debug, Serialize)]
struct PredictionJson<'a> {
    risk: &'static str,
    probabilities: Probabilities,
    model_version: &'a str,
}

/// Class probabilities, rounded to four decimals.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Probabilities {
    high: f64,
    medium: f64,
    low: f64,
}

#[derive(Debug, Serialize)]
struct PredictBatchResponse<'a> {
    predictions: Vec<PredictionJson<'a>>,
}

/// The HTTP routes over a model.
pub fn router(
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    etl: Option<Arc<EtlStats>>,
    config: &HttpConfig,
) -> Router {
    let state = Arc::new(HttpState {
        forest,
        auth,
        max_batch_records: config.max_batch_records,
        stats: HttpStats::default(),
        etl,
    });
    Router::new()
        .route("/predict_batch", post(predict_batch))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let text = state.stats.render(state.etl.as_deref());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    Json(json!({
        "status": "ok",
        "model_version": state.forest.version(),
        "trees": state.forest.tree_count(),
    }))
    .into_response()
}

async fn predict_batch(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let response = answer_predict_batch(&state, &headers, &body);
    state.stats.record(response.status(), started);
    response
}

fn answer_predict_batch(state: &HttpState, headers: &HeaderMap, body: &[u8]) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(error) = state.auth.check_header(authorization) {
        let detail = json!({ "detail": [{ "loc": ["header", "authorization"], "msg": error.to_string(), "type": "unauthenticated" }] });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"vitalflow\", Bearer")],
            Json(detail),
        )
            .into_response();
    }
    let records = match parse_records(body, state.max_batch_records) {
        Ok(records) => records,
        Err((status, errors)) => return (status, Json(json!({ "detail": errors }))).into_response(),
    };
    let mut predictions = Vec::with_capacity(records.len());
    for (index, row) in records.iter().enumerate() {
        let Some(p) = state.forest.predict(row) else {
            // Ranges are checked above, so this means the model cannot score finite values it was given.
            let error = FieldError {
                loc: vec![json!("body"), json!(index)],
                msg: "the model cannot score this record".into(),
                kind: "value_error",
            };
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "detail": [error] }))).into_response();
        };
        // Probabilities come in RiskLevel::ALL order: High, Medium, Low.
        state.stats.predictions[RiskLevel::ALL.iter().position(|l| *l == p.risk).unwrap_or(0)]
            .fetch_add(1, Ordering::Relaxed);
        let [high, medium, low] = p.probabilities.map(round4);
        let probabilities = Probabilities { high, medium, low };
        predictions.push(PredictionJson {
            risk: p.risk.as_str(),
            probabilities,
            model_version: state.forest.version(),
        });
    }
    axum::Json(PredictBatchResponse { predictions }).into_response()
}

/// Probabilities are averages of leaf fractions; four decimals is what a reader can use.
fn round4(p: f64) -> f64 {
    (p * 10_000.0).round() / 10_000.0
}

/// The six model inputs of every record, or the status and every error found.
fn parse_records(body: &[u8], max_records: usize) -> Result<Vec<[f64; 6]>, (StatusCode, Vec<FieldError>)> {
    let unprocessable = |e: FieldError| (StatusCode::UNPROCESSABLE_ENTITY, vec![e]);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| unprocessable(FieldError::body(format!("the body is not valid JSON: {e}"), "json_invalid")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("records") {
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(unprocessable(FieldError {
                    loc: vec![json!("body"), json!("records")],
                    msg: "records must be a JSON array of records".into(),
                    kind: "list_type",
                }));
            }
            None => {
                return Err(unprocessable(FieldError::body(
                    "expected a JSON array of records or an object {\"records\": [...]}",
                    "missing",
                )));
            }
        },
        _ => {
            return Err(unprocessable(FieldError::body(
                "expected a JSON array of records or an object {\"records\": [...]}",
                "list_type",
            )));
        }
    };
    if items.len() > max_records {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            vec![FieldError::body(format!("{} records; at most {max_records} per request", items.len()), "too_long")],
        ));
    }
    let mut rows = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_record(index, item) {
            Ok(row) => rows.push(row),
            Err(mut e) => {
                errors.append(&mut e);
                if errors.len() >= MAX_REPORTED_ERRORS {
                    errors.truncate(MAX_REPORTED_ERRORS);
                    break;
                }
            }
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err((StatusCode::UNPROCESSABLE_ENTITY, errors)) }
}

/// A record's model inputs in feature order; a vital may be given under its column name or an alias.
fn parse_record(index: usize, item: &Value) -> Result<[f64; 6], Vec<FieldError>> {
    let Value::Object(record) = item else {
        let error = FieldError {
            loc: vec![json!("body"), json!(index)],
            msg: "a record must be a JSON object".into(),
            kind: "dict_type",
        };
        return Err(vec![error]);
    };
    let mut row = [0.0; 6];
    let mut errors = Vec::new();
    for (slot, vital) in row.iter_mut().zip(MODEL_FEATURES) {
        match vital_value(record, vital) {
            Ok(v) => *slot = v,
            Err(e) => errors.push(FieldError::field(index, vital.column(), e.0, e.1)),
        }
    }
    if errors.is_empty() { Ok(row) } else { Err(errors) }
}

fn vital_value(record: &Map<String, Value>, vital: Vital) -> Result<f64, (String, &'static str)> {
    let found = std::iter::once(vital.column())
        .chain(vital.aliases().iter().copied())
        .find_map(|name| record.get(name).map(|v| (name, v)));
    let Some((name, value)) = found else {
        return Err(("field required".into(), "missing"));
    };
    let number = match value {
        Value::Number(n) => {
            n.as_f64().ok_or_else(|| (format!("{name} is not a representable number"), "float_parsing"))?
        }
        Value::Null => return Err((format!("{name} is null; every model input is required"), "missing")),
        other => return Err((format!("{name} must be a number, got {}", json_kind(other)), "float_type")),
    };
    let (low, high) = vital.possible_range();
    if !(low..=high).contains(&number) {
        return Err((
            format!("{name} = {number} is outside what a living patient can show ({low}..={high})"),
            "value_error",
        ));
    }
    Ok(number)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `axum::Json` without pulling its extractor rejections into scope.
struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A running HTTP server.
#[derive(Debug)]
pub struct RunningHttp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The server task; ends after `shutdown` is cancelled.
    pub task: JoinHandle<()>,
}

/// Binds and serves the HTTP API until `shutdown` is cancelled.
pub async fn start_http(
    config: &HttpConfig,
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    etl: Option<Arc<EtlStats>>,
    shutdown: CancellationToken,
) -> Result<RunningHttp> {
    let bind = format!("{}:{}", config.bind_host, config.port);
    let bind_err = |source| Error::Bind { what: "http", addr: bind.clone(), source };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let app = router(forest, auth, etl, config);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %error, "HTTP server stopped.");
        }
    });
    tracing::info!(%addr, "HTTP API listening.");
    Ok(RunningHttp { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({"patient_id": "P1", "heart_rate": 88, "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104})
    }

    fn errors_of(body: &Value) -> (StatusCode, Vec<FieldError>) {
        parse_records(body.to_string().as_bytes(), 100).expect_err("must be refused")
    }

    #[test]
    fn accepts_a_list_and_the_records_object_with_aliases() {
        let mut aliased = record();
        let obj = aliased.as_object_mut().expect("object");
        let hr = obj.remove("heart_rate").expect("hr");
        obj.insert("hr".into(), hr);
        let rows = parse_records(json!([record(), aliased]).to_string().as_bytes(), 100).expect("valid");
        assert_eq!(rows, vec![[88.0, 121.0, 79.0, 97.0, 36.9, 104.0]; 2]);
        let rows = parse_records(json!({"records": [record()]}).to_string().as_bytes(), 100).expect("valid");
        assert_eq!(rows.len(), 1);
        assert!(parse_records(b"[]", 100).expect("empty is fine").is_empty());
    }

    #[test]
    fn names_record_index_and_field() {
        let mut bad = record();
        bad["spo2"] = json!("97");
        let mut missing = record();
        missing.as_object_mut().expect("object").remove("glucose");
        let mut impossible = record();
        impossible["heart_rate"] = json!(900);
        let (status, errors) = errors_of(&json!([record(), bad, missing, impossible]));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let locs: Vec<_> = errors.iter().map(|e| (e.loc.clone(), e.kind)).collect();
        assert_eq!(
            locs,
            vec![
                (vec![json!("body"), json!(1), json!("spo2")], "float_type"),
                (vec![json!("body"), json!(2), json!("glucose")], "missing"),
                (vec![json!("body"), json!(3), json!("heart_rate")], "value_error"),
            ]
        );
        assert!(errors[0].msg.contains("a string"), "{}", errors[0].msg);
    }

    #[test]
    fn openapi_document_states_the_ranges_the_server_enforces() {
        let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        let record = &doc["components"]["schemas"]["VitalsRecord"];
        let required: Vec<&str> =
            record["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
        assert_eq!(required, MODEL_FEATURES.map(Vital::column));
        for vital in MODEL_FEATURES {
            let field = &record["properties"][vital.column()];
            let (low, high) = vital.possible_range();
            assert_eq!(
                (field["minimum"].as_f64(), field["maximum"].as_f64()),
                (Some(low), Some(high)),
                "{}",
                vital.column()
            );
        }
    }

    #[test]
    fn metrics_count_answers_and_predictions() {
        let stats = HttpStats::default();
        stats.record(StatusCode::OK, Instant::now());
        stats.record(StatusCode::UNPROCESSABLE_ENTITY, Instant::now());
        stats.predictions[0].fetch_add(2, Ordering::Relaxed);
        let etl = EtlStats::default();
        etl.batches.fetch_add(5, Ordering::Relaxed);
        let text = stats.render(Some(&etl));
        for line in [
            "vitalflow_http_predict_batch_responses_total{status=\"200\"} 1",
            "vitalflow_http_predict_batch_responses_total{status=\"422\"} 1",
            "vitalflow_http_predictions_total{risk=\"High\"} 2",
            "vitalflow_http_predict_batch_seconds_count 2",
            "vitalflow_etl_batches_total 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn refuses_other_shapes_and_oversized_batches() {
        assert_eq!(parse_records(b"{not json", 10).expect_err("bad").1[0].kind, "json_invalid");
        assert_eq!(errors_of(&json!({"rows": []})).1[0].kind, "missing");
        assert_eq!(errors_of(&json!(42)).1[0].kind, "list_type");
        assert_eq!(errors_of(&json!([1])).1[0].kind, "dict_type");
        let (status, _) = parse_records(json!([record(), record()]).to_string().as_bytes(), 1).expect_err("too many");
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
