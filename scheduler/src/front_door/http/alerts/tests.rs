//! The body of an alert action: a reason read strictly.

use super::*;

#[test]
fn a_reason_is_read_and_a_key_named_twice_is_refused_naming_it() {
    assert_eq!(reason_of(b"").unwrap(), None);
    assert_eq!(reason_of(br#"{"reason": "seen at the bedside"}"#).unwrap().as_deref(), Some("seen at the bedside"));
    // Read as its last value, this would record a reason the clinician did not mean.
    let refused = reason_of(br#"{"reason": "false alarm", "reason": "patient transferred"}"#).unwrap_err();
    assert_eq!(refused.kind, "json_invalid");
    assert!(refused.msg.contains("\"reason\" appears twice"), "{}", refused.msg);
    assert_eq!(reason_of(b"[1]").unwrap_err().kind, "object_type");
}

/// Every status `act_on_alert` and `list_alerts` answer (their module doc), as the OpenAPI document
/// must list them: schemathesis checks answers against it.
const ACTION_STATUSES: [&str; 9] = ["200", "400", "401", "403", "404", "409", "413", "415", "503"];

#[test]
fn the_openapi_document_lists_every_alert_route_answer_and_field() {
    let doc: Value = serde_json::from_str(super::super::OPENAPI_JSON).expect("openapi.json is JSON");
    let statuses = |op: &Value| -> Vec<String> {
        let mut found: Vec<String> = op["responses"].as_object().expect("responses").keys().cloned().collect();
        found.sort();
        found
    };
    let list = &doc["paths"]["/alerts"]["get"];
    assert_eq!(statuses(list), ["200", "401", "503"]);
    assert_eq!(list["security"], json!([{"basic": []}, {"bearer": []}]));
    for action in Action::BY_PEOPLE {
        let op = &doc["paths"][format!("/alerts/{{alert_id}}/{action}")]["post"];
        assert_eq!(statuses(op), ACTION_STATUSES, "{action}");
        assert_eq!(op["security"], list["security"], "{action}");
        assert_eq!(op["parameters"][0]["name"], "alert_id", "{action}");
        assert_eq!(op["requestBody"]["required"], json!(action == Action::Dismiss), "{action}");
    }
    // The document's Alert is the answer's alert: the same fields, each required.
    let alert = Alert {
        alert_id: "raw:0:1".into(),
        patient_id: "P1".into(),
        ward: "default".into(),
        kind: crate::ward_alerts::AlertKind::Risk,
        state: crate::ward_alerts::AlertState::Open,
        raised_at_ms: 0,
        risk_alert_id: "raw/0/1".into(),
        news2_score: None,
        probability_high: None,
        created_at_ms: 0,
        acknowledged_by: None,
        acknowledged_at_ms: None,
        updated_by: "vitalflow".into(),
        updated_at_ms: 0,
        reason: None,
        events: 1,
        closed_reading_ms: None,
    };
    let mut answered: Vec<String> = alert_json(&alert).as_object().unwrap().keys().cloned().collect();
    answered.sort();
    let schema = &doc["components"]["schemas"]["Alert"];
    let mut required: Vec<String> =
        schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    required.sort();
    assert_eq!(required, answered);
    let mut documented: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    assert_eq!(documented, answered);
}
