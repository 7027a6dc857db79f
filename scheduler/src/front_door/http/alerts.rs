//! The alert routes: `GET /alerts` lists the alerts with their state and who acted; `POST
//! /alerts/{alert_id}/{action}` (`acknowledge`, `escalate`, `dismiss` with a `reason`, `resolve`) acts
//! on one under the caller's signed-in name. Reading needs any signed-in user; acting needs a role
//! that may act on alerts (`clinician`, `admin`).
//!
//! Answers: 200 with the alert after the action, once it is committed; 401 without valid
//! credentials; 403 for a role that may not act; 404 for an unknown action or alert, naming it; 409 for
//! an action the alert's state does not allow, naming both; 400 for a missing reason or a body that is
//! not a JSON object or names a key twice (naming it); 413 for a body over 16 KiB; 415 for a body not
//! sent as JSON; 503 when this process keeps no alerts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::records::FieldError;
use super::strict_json::StrictValue;
use super::{HttpState, Json, not_json, read_body, refusal, unauthenticated};
use crate::front_door::auth::Principal;
use crate::ward_alerts::{Action, ActionRefusal, Alert, AlertKeeperHandle, KeeperRefusal};

/// Largest body of an action: a reason, not an essay.
const MAX_ACTION_BODY_BYTES: usize = 16 * 1024;

fn time(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or(Value::Null, |t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

/// An alert as the API answers it (times RFC 3339 in UTC).
pub(super) fn alert_json(alert: &Alert) -> Value {
    json!({
        "alert_id": alert.alert_id,
        "patient_id": alert.patient_id,
        "ward": alert.ward,
        "kind": alert.kind,
        "state": alert.state,
        "raised_at": time(alert.raised_at_ms),
        "risk_alert_id": alert.risk_alert_id,
        "news2_score": alert.news2_score,
        "probability_high": alert.probability_high,
        "created_at": time(alert.created_at_ms),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at_ms.map(time),
        "updated_by": alert.updated_by,
        "updated_at": time(alert.updated_at_ms),
        "reason": alert.reason,
        "events": alert.events,
    })
}

fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())
}

/// The signed-in caller, or the 401 answer.
async fn caller(state: &HttpState, headers: &HeaderMap, extensions: &Extensions) -> Result<Principal, Response> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    state.auth.check_header(authorization, peer(extensions)).await.map_err(unauthenticated)
}

/// The keeper, or why there is none (answered with 503).
fn keeper(state: &HttpState) -> Result<&AlertKeeperHandle, FieldError> {
    state.alerts.as_ref().ok_or_else(|| {
        let msg = "this process keeps no alerts: they are kept by the scheduler process that runs the ETL driver \
                   (etl.enabled and ward_alerts.enabled)";
        FieldError { loc: vec![json!("path")], msg: msg.into(), kind: "unavailable" }
    })
}

fn unavailable(reason: String) -> Response {
    refusal(StatusCode::SERVICE_UNAVAILABLE, FieldError { loc: vec![json!("path")], msg: reason, kind: "unavailable" })
}

/// `GET /alerts`.
pub(super) async fn list_alerts(
    State(state): State<Arc<HttpState>>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = caller(&state, &headers, &extensions).await {
        return refused;
    }
    let keeper = match keeper(&state) {
        Ok(keeper) => keeper,
        Err(error) => return refusal(StatusCode::SERVICE_UNAVAILABLE, error),
    };
    match keeper.list().await {
        Ok(alerts) => Json(json!({ "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>() })).into_response(),
        Err(refusal) => unavailable(refusal.to_string()),
    }
}

/// The `reason` of an action's body (empty body: none), or what is wrong with it (answered with 400).
fn reason_of(body: &[u8]) -> Result<Option<String>, FieldError> {
    let bad = |msg: String, loc: Vec<Value>, kind| FieldError { loc, msg, kind };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let StrictValue(value) = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body cannot be read as JSON: {e}"), vec![json!("body")], "json_invalid"))?;
    let Value::Object(fields) = value else {
        return Err(bad(
            "the body must be a JSON object, e.g. {\"reason\": \"...\"}".into(),
            vec![json!("body")],
            "object_type",
        ));
    };
    match fields.get("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(reason)) => Ok(Some(reason.clone())),
        Some(other) => Err(bad(
            format!("reason must be a string, not {other}"),
            vec![json!("body"), json!("reason")],
            "string_type",
        )),
    }
}

/// `POST /alerts/{alert_id}/{action}`.
pub(super) async fn act_on_alert(
    State(state): State<Arc<HttpState>>,
    Path((alert_id, action)): Path<(String, String)>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = not_json(&headers) {
        return refused;
    }
    let who = match caller(&state, &headers, &extensions).await {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    if !who.role.may_act_on_alerts() {
        let msg = format!(
            "user {} has role {:?}, which may read alerts but not act on them: acting needs role clinician or admin",
            who.name, who.role
        );
        let error = FieldError { loc: vec![json!("header"), json!("authorization")], msg, kind: "forbidden" };
        return refusal(StatusCode::FORBIDDEN, error);
    }
    let Some(action) = Action::by_people(&action) else {
        let known: Vec<&str> = Action::BY_PEOPLE.iter().map(|a| a.as_str()).collect();
        let msg = format!("no action {action:?} on alerts; the actions are {}", known.join(", "));
        return refusal(
            StatusCode::NOT_FOUND,
            FieldError { loc: vec![json!("path"), json!("action")], msg, kind: "not_found" },
        );
    };
    let body = match read_body(body, MAX_ACTION_BODY_BYTES).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let reason = match reason_of(&body) {
        Ok(reason) => reason,
        Err(error) => return refusal(StatusCode::BAD_REQUEST, error),
    };
    let keeper = match keeper(&state) {
        Ok(keeper) => keeper,
        Err(error) => return refusal(StatusCode::SERVICE_UNAVAILABLE, error),
    };
    match keeper.act(&alert_id, action, &who.name, reason).await {
        Ok(alert) => Json(alert_json(&alert)).into_response(),
        Err(KeeperRefusal::Refused(refused)) => {
            let (status, loc, kind) = match &refused {
                ActionRefusal::UnknownAlert { .. } => (StatusCode::NOT_FOUND, json!(["path", "alert_id"]), "not_found"),
                ActionRefusal::Illegal(_) => (StatusCode::CONFLICT, json!(["path", "action"]), "illegal_transition"),
                ActionRefusal::MissingReason { .. } => (StatusCode::BAD_REQUEST, json!(["body", "reason"]), "missing"),
            };
            let loc = loc.as_array().cloned().unwrap_or_default();
            refusal(status, FieldError { loc, msg: refused.to_string(), kind })
        }
        Err(refused @ KeeperRefusal::Unavailable(_)) => unavailable(refused.to_string()),
    }
}

#[cfg(test)]
mod tests;
