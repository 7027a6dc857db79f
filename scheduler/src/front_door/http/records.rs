//! The body of `/predict_batch`: a JSON array of records, or `{"records": [...]}`, each record the six
//! model inputs under their column names or the seed's aliases, within what a living patient can show.
//! Every mistake is reported with the record index and the field, in FastAPI's `detail` shape.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value, json};
use vitalflow_udf_model::schema::{MODEL_FEATURES, Vital};

use super::strict_json::StrictValue;

/// Errors reported per request, at most this many (FastAPI reports all; a 10k-record body of junk
/// should not produce a megabyte of errors).
const MAX_REPORTED_ERRORS: usize = 50;

/// One entry of FastAPI's `detail` list: where, what, and a machine-readable kind.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct FieldError {
    pub(super) loc: Vec<Value>,
    pub(super) msg: String,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
}

impl FieldError {
    pub(super) fn body(msg: impl Into<String>, kind: &'static str) -> FieldError {
        FieldError { loc: vec![json!("body")], msg: msg.into(), kind }
    }

    pub(super) fn field(index: usize, field: &str, msg: impl Into<String>, kind: &'static str) -> FieldError {
        FieldError { loc: vec![json!("body"), json!(index), json!(field)], msg: msg.into(), kind }
    }
}

/// The six model inputs of every record, or the status and every error found.
pub(super) fn parse_records(body: &[u8], max_records: usize) -> Result<Vec<[f64; 6]>, (StatusCode, Vec<FieldError>)> {
    let unprocessable = |e: FieldError| (StatusCode::UNPROCESSABLE_ENTITY, vec![e]);
    let StrictValue(value) = serde_json::from_slice(body).map_err(|e| {
        unprocessable(FieldError::body(format!("the body cannot be read as JSON: {e}"), "json_invalid"))
    })?;
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
    fn refuses_other_shapes_and_oversized_batches() {
        assert_eq!(parse_records(b"{not json", 10).expect_err("bad").1[0].kind, "json_invalid");
        assert_eq!(errors_of(&json!({"rows": []})).1[0].kind, "missing");
        assert_eq!(errors_of(&json!(42)).1[0].kind, "list_type");
        assert_eq!(errors_of(&json!([1])).1[0].kind, "dict_type");
        let (status, _) = parse_records(json!([record(), record()]).to_string().as_bytes(), 1).expect_err("too many");
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_field_named_twice_is_refused_not_read_as_its_last_value() {
        let body = br#"[{"heart_rate": 88, "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104, "spo2": 75}]"#;
        let (status, errors) = parse_records(body, 100).expect_err("refused");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(errors[0].msg.contains("\"spo2\" appears twice"), "{}", errors[0].msg);
    }
}
