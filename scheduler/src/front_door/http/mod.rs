//! The HTTP API: the seed's FastAPI contract, `POST /predict_batch` and `GET /healthz`, plus
//! `GET /metrics` (Prometheus) and `GET /openapi.json`.
//!
//! Bodies are validated by hand rather than by a typed extractor so that every mistake is answered
//! with 422 and names the record index and the field, in FastAPI's `detail` shape that the seed's
//! clients already parse ([`records`]). A client's mistake is never a 5xx. A body must say it is JSON
//! (`Content-Type: application/json`), which a web page cannot send to another site without the
//! browser asking first: with authentication off (`vitalflow up`), no page the user visits can post to
//! the local API. Bodies are read after the credentials are checked, up to a size that follows
//! `http.max_batch_records` and within a time limit, each refusal a JSON answer.
//!
//! The alert routes (`GET /alerts`, `POST /alerts/{alert_id}/{action}`) are in [`alerts`].
//!
//! `/predict_batch` takes the same credentials as Flight SQL (Basic, or a Bearer token the Flight SQL
//! handshake issued); `/healthz`, `/metrics` and `/openapi.json` carry no patient data and are open, so
//! that probes and Prometheus need no secret.

use std::collections::BTreeMap;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalflow_ingest::prometheus::Exposition;
use vitalflow_udf_model::{RiskForest, RiskLevel};

use self::records::{FieldError, parse_records};

use crate::cluster::ClusterJobs;
use crate::cluster_executors::{ClusterExecutors, ExecutorCounts};
use crate::config::HttpConfig;
use crate::error::{Error, Result};
use crate::etl::EtlStats;
use crate::front_door::audit::AuditStats;
use crate::front_door::auth::Authenticator;
use crate::front_door::flight_sql::AdmissionStats;
use crate::ward_alerts::AlertKeeperHandle;

mod alerts;
mod records;
mod strict_json;
mod tls_listener;

/// Body bytes allowed per record of `http.max_batch_records`: a record pretty-printed with every alias
/// and a patient id fits many times over.
const BODY_BYTES_PER_RECORD: usize = 1024;
/// The smallest body limit, whatever `max_batch_records` says.
const MIN_BODY_BYTES: usize = 64 * 1024;
/// Time a client has to send its body once its credentials passed.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The OpenAPI document of these routes (schemathesis tests the server against it).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[derive(Debug)]
struct HttpState {
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    max_batch_records: usize,
    stats: HttpStats,
    etl: Option<Arc<EtlStats>>,
    /// The alert keeper, when this process keeps the alerts.
    alerts: Option<AlertKeeperHandle>,
    jobs: Option<ClusterJobs>,
    executors: Option<ClusterExecutors>,
    queries: Option<Arc<AdmissionStats>>,
    audit: Option<Arc<AuditStats>>,
}

/// The Ballista scheduler's figures on `/metrics`, when it runs in this process.
#[derive(Debug, Default)]
struct ClusterFigures {
    /// Jobs held: (running or queued, finished).
    jobs: Option<(usize, usize)>,
    executors: Option<ExecutorCounts>,
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

    fn render(
        &self,
        etl: Option<&EtlStats>,
        auth: &Authenticator,
        alerts: Option<&AlertKeeperHandle>,
        cluster: ClusterFigures,
        queries: Option<&AdmissionStats>,
        audit: Option<&AuditStats>,
    ) -> String {
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
        // Sign-in is shared with Flight SQL: these count both doors.
        let backoff = auth.backoff();
        page.counter(
            "vitalflow_sign_in_failures_total",
            "Wrong passwords (unknown users included).",
            backoff.failed_total(),
        );
        page.counter(
            "vitalflow_sign_in_backoff_refusals_total",
            "Sign-ins refused unchecked: their user name or client address had to wait after failures.",
            backoff.refused_total(),
        );
        page.counter(
            "vitalflow_password_hashes_total",
            "Password hashes computed: one per checked sign-in, an unknown user name's included; none for a \
             remembered success, a token or a backoff refusal.",
            auth.hash_calls(),
        );
        if let Some(etl) = etl {
            crate::metrics::render_etl(&mut page, etl);
        }
        if let Some(alerts) = alerts {
            crate::metrics::render_ward_alerts(&mut page, &alerts.stats);
        }
        if let Some(jobs) = cluster.jobs {
            crate::metrics::render_cluster_jobs(&mut page, jobs);
        }
        if let Some(executors) = cluster.executors {
            crate::metrics::render_cluster_executors(&mut page, executors);
        }
        if let Some(queries) = queries {
            queries.render(&mut page);
        }
        if let Some(audit) = audit {
            audit.render(&mut page);
        }
        page.finish()
    }
}

/// One answer of `/predict_batch`, fields in the seed's order.
#[derive(Debug, Serialize)]
struct PredictionJson<'a> {
    risk: &'static str,
    probabilities: Probabilities,
    model_version: &'a str,
    /// With `?explain=true`: P(High) as `base` plus each input's contribution (exact TreeSHAP,
    /// unrounded, so they add up to the unrounded probability).
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Value>,
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

/// What the HTTP API serves beside the model: the ETL's counters and the alerts, when this process has them.
#[derive(Debug, Clone, Default)]
pub struct HttpServices {
    /// The ETL driver's counters (on `/metrics`).
    pub etl: Option<Arc<EtlStats>>,
    /// The alert keeper (the alert routes; without it they answer 503).
    pub alerts: Option<AlertKeeperHandle>,
    /// The Ballista scheduler's jobs, counted on `/metrics`.
    pub jobs: Option<ClusterJobs>,
    /// The Ballista scheduler's executors, counted on `/metrics`.
    pub executors: Option<ClusterExecutors>,
    /// The Flight SQL front door's admission counters (on `/metrics`).
    pub queries: Option<Arc<AdmissionStats>>,
    /// The Flight SQL audit log's counters (on `/metrics`), when Flight SQL runs in this process.
    pub audit: Option<Arc<AuditStats>>,
}

/// The HTTP routes over a model.
pub fn router(
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    services: HttpServices,
    config: &HttpConfig,
) -> Router {
    let state = Arc::new(HttpState {
        forest,
        auth,
        max_batch_records: config.max_batch_records,
        stats: HttpStats::default(),
        etl: services.etl,
        alerts: services.alerts,
        jobs: services.jobs,
        executors: services.executors,
        queries: services.queries,
        audit: services.audit,
    });
    Router::new()
        .route("/alerts", get(alerts::list_alerts))
        .route("/alerts/{alert_id}/{action}", post(alerts::act_on_alert))
        .route("/predict_batch", post(predict_batch))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        // The body is read (and its size limited) by `read_body`, which answers in JSON.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let jobs = match &state.jobs {
        Some(jobs) => jobs.held().await,
        None => None,
    };
    let executors = match &state.executors {
        Some(executors) => Some(executors.counts().await),
        None => None,
    };
    let text = state.stats.render(
        state.etl.as_deref(),
        &state.auth,
        state.alerts.as_ref(),
        ClusterFigures { jobs, executors },
        state.queries.as_deref(),
        state.audit.as_deref(),
    );
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

async fn predict_batch(
    State(state): State<Arc<HttpState>>,
    extensions: Extensions,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let started = Instant::now();
    // The client's address (for the sign-in backoff): known when served by `start_http`.
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let response = answer_predict_batch(&state, &headers, query.as_deref(), body, peer).await;
    state.stats.record(response.status(), started);
    response
}

/// The 401 answer to missing or wrong credentials.
fn unauthenticated(error: Error) -> Response {
    let detail = json!({ "detail": [{ "loc": ["header", "authorization"], "msg": error.to_string(), "type": "unauthenticated" }] });
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"vitalflow\", Bearer")], Json(detail))
        .into_response()
}

/// A refusal in FastAPI's `detail` shape.
fn refusal(status: StatusCode, error: FieldError) -> Response {
    (status, Json(json!({ "detail": [error] }))).into_response()
}

/// `None` when the request says its body is JSON (`application/json`, or a `+json` type); otherwise the
/// 415 answer. Browsers send other sites only form and text bodies without asking first.
fn not_json(headers: &HeaderMap) -> Option<Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        return None;
    }
    let error = FieldError {
        loc: vec![json!("header"), json!("content-type")],
        msg: format!(
            "the body must be JSON sent with Content-Type: application/json, not {:?} (curl: -H 'Content-Type: application/json')",
            content_type
        ),
        kind: "content_type",
    };
    Some(refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, error))
}

/// The body, at most `limit` bytes and within [`BODY_TIMEOUT`]; otherwise the 413 or 408 answer.
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let too_long =
                std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_long {
                let msg = format!("the body is over {limit} bytes (http.max_batch_records × {BODY_BYTES_PER_RECORD})");
                Err(refusal(StatusCode::PAYLOAD_TOO_LARGE, FieldError::body(msg, "too_long")))
            } else {
                Err(refusal(
                    StatusCode::BAD_REQUEST,
                    FieldError::body(format!("reading the body: {error}"), "body_read"),
                ))
            }
        }
        Err(_) => {
            let msg = format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs());
            Err(refusal(StatusCode::REQUEST_TIMEOUT, FieldError::body(msg, "timeout")))
        }
    }
}

/// Whether the query asks for explanations (`explain=true|false|1|0`); otherwise the error naming it.
fn wants_explanation(query: Option<&str>) -> Result<bool, FieldError> {
    let mut explain = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "explain" {
            continue;
        }
        explain = match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(FieldError {
                    loc: vec![json!("query"), json!("explain")],
                    msg: format!("explain must be true or false, not {other:?}"),
                    kind: "bool_parsing",
                });
            }
        };
    }
    Ok(explain)
}

/// The `explanation` of one record: `base` and a contribution per model input, by name.
fn explanation_json(forest: &RiskForest, row: &[f64; 6]) -> Option<Value> {
    let explained = forest.explain(row).ok()??;
    let contributions: serde_json::Map<String, Value> =
        forest.inputs().iter().zip(explained.contributions).map(|(name, c)| (name.to_string(), json!(c))).collect();
    Some(json!({ "base": explained.base, "contributions": contributions }))
}

async fn answer_predict_batch(
    state: &HttpState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
    peer: Option<IpAddr>,
) -> Response {
    if let Some(refused) = not_json(headers) {
        return refused;
    }
    let explain = match wants_explanation(query) {
        Ok(explain) => explain,
        Err(error) => return refusal(StatusCode::BAD_REQUEST, error),
    };
    if explain && state.forest.explainer().is_none() {
        let msg = format!(
            "model {} records no node covers, which explanations need; ask without explain=true",
            state.forest.version()
        );
        let error = FieldError { loc: vec![json!("query"), json!("explain")], msg, kind: "not_available" };
        return refusal(StatusCode::NOT_IMPLEMENTED, error);
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(error) = state.auth.check_header(authorization, peer).await {
        return unauthenticated(error);
    }
    let limit = state.max_batch_records.saturating_mul(BODY_BYTES_PER_RECORD).max(MIN_BODY_BYTES);
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let records = match parse_records(&body, state.max_batch_records) {
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
            explanation: if explain { explanation_json(&state.forest, row) } else { None },
        });
    }
    axum::Json(PredictBatchResponse { predictions }).into_response()
}

/// Probabilities are averages of leaf fractions; four decimals is what a reader can use.
fn round4(p: f64) -> f64 {
    (p * 10_000.0).round() / 10_000.0
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

/// Binds and serves the HTTP API (HTTPS with `http.tls_cert_path`) until `shutdown` is cancelled.
pub async fn start_http(
    config: &HttpConfig,
    forest: Arc<RiskForest>,
    auth: Arc<Authenticator>,
    services: HttpServices,
    shutdown: CancellationToken,
) -> Result<RunningHttp> {
    let bind = format!("{}:{}", config.bind_host, config.port);
    let bind_err = |source| Error::Bind { what: "http", addr: bind.clone(), source };
    config.validate()?;
    let tls = match config.tls_cert_path.is_empty() {
        true => None,
        false => Some(tls_listener::server_config(&config.tls_cert_path, &config.tls_key_path)?),
    };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let app = router(forest, auth, services, config).into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = tokio::spawn(async move {
        let stopped = shutdown.cancelled_owned();
        let served = match tls {
            // tap_io: axum passes a tapped listener's peer address on as the connection's info.
            Some(tls) => match tls_listener::TlsListener::new(listener, tls) {
                Ok(listener) => axum::serve(listener.tap_io(|_| ()), app).with_graceful_shutdown(stopped).await,
                Err(error) => Err(error),
            },
            None => axum::serve(listener, app).with_graceful_shutdown(stopped).await,
        };
        if let Err(error) = served {
            tracing::error!(error = %error, "HTTP server stopped.");
        }
    });
    tracing::info!(%addr, scheme, "HTTP API listening.");
    Ok(RunningHttp { addr, task })
}

#[cfg(test)]
mod tests {
    use vitalflow_udf_model::schema::{MODEL_FEATURES, Vital};

    use super::*;

    #[test]
    fn only_json_bodies_are_read() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        for ok in ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"] {
            assert!(not_json(&with(ok)).is_none(), "{ok}");
        }
        // What a web page can send to another site without the browser asking first, and nothing at all.
        for refused in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            assert_eq!(not_json(&with(refused)).unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
        }
        assert_eq!(not_json(&HeaderMap::new()).unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn a_415_is_json_and_names_the_type_expected() {
        let mut form = HeaderMap::new();
        form.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
        let refused = not_json(&form).unwrap();
        assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(refused.into_body(), 4096).await.unwrap();
        let detail: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(detail["detail"][0]["type"], "content_type");
        let msg = detail["detail"][0]["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("Content-Type: application/json"), "{msg}");
    }

    #[tokio::test]
    async fn an_over_size_body_is_a_json_413() {
        assert_eq!(read_body(Body::from(vec![b' '; 100]), 100).await.unwrap().len(), 100);
        let refused = read_body(Body::from(vec![b' '; 101]), 100).await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(refused.into_body(), 4096).await.unwrap();
        let detail: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(detail["detail"][0]["type"], "too_long");
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
        let auth = Authenticator::new(&crate::config::AuthConfig { required: false, ..Default::default() }).unwrap();
        auth.backoff().failed("ana", None);
        let queries = AdmissionStats::default();
        queries.refused.fetch_add(3, Ordering::Relaxed);
        let audit = AuditStats::default();
        audit.dropped.fetch_add(3, Ordering::Relaxed);
        let executors = ExecutorCounts { alive: 1, silent: 0, replaced_ended: 0, replaced_silent: 2 };
        let text = stats.render(
            Some(&etl),
            &auth,
            None,
            ClusterFigures { jobs: None, executors: Some(executors) },
            Some(&queries),
            Some(&audit),
        );
        for line in [
            "vitalflow_sign_in_failures_total 1",
            "vitalflow_sign_in_backoff_refusals_total 0",
            "vitalflow_password_hashes_total 0",
            "vitalflow_http_predict_batch_responses_total{status=\"200\"} 1",
            "vitalflow_http_predict_batch_responses_total{status=\"422\"} 1",
            "vitalflow_http_predictions_total{risk=\"High\"} 2",
            "vitalflow_http_predict_batch_seconds_count 2",
            "vitalflow_etl_batches_total 5",
            "vitalflow_flight_sql_queries_queued_total 0",
            "vitalflow_flight_sql_queries_refused_total 3",
            "vitalflow_audit_entries_dropped_total 3",
            "vitalflow_audit_entries_waiting 0",
            "vitalflow_cluster_executors{state=\"alive\"} 1",
            "vitalflow_cluster_executors_replaced_total{reason=\"silent\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
