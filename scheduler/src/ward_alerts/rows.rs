//! The book as Arrow rows: alerts as rows of `alerts`, events as rows of `alert_events` and back
//! (the keeper replays `alert_events` when it starts).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use vitalflow_udf_model::schema::{ALERT_EVENTS_SCHEMA, ALERTS_SCHEMA};

use super::book::{Alert, AlertEvent};
use super::kind::AlertKind;
use super::lifecycle::{Action, AlertState};
use crate::error::{Error, Result};

fn nanos(ms: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    let values: Vec<Option<i64>> = ms.into_iter().map(|t| t.map(|t| t.saturating_mul(1_000_000))).collect();
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

fn strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn table_error(table: &str) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::Config(format!("building rows of {table}: {e}"))
}

/// `alerts` rows of `alerts`.
pub fn alert_rows<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Result<RecordBatch> {
    let alerts: Vec<&Alert> = alerts.collect();
    let columns: Vec<ArrayRef> = vec![
        strings(alerts.iter().map(|a| Some(a.alert_id.as_str()))),
        strings(alerts.iter().map(|a| Some(a.patient_id.as_str()))),
        strings(alerts.iter().map(|a| Some(a.ward.as_str()))),
        strings(alerts.iter().map(|a| Some(a.state.as_str()))),
        nanos(alerts.iter().map(|a| Some(a.raised_at_ms))),
        strings(alerts.iter().map(|a| Some(a.risk_alert_id.as_str()))),
        Arc::new(Int32Array::from_iter(alerts.iter().map(|a| a.news2_score))),
        Arc::new(Float64Array::from_iter(alerts.iter().map(|a| a.probability_high))),
        nanos(alerts.iter().map(|a| Some(a.created_at_ms))),
        strings(alerts.iter().map(|a| a.acknowledged_by.as_deref())),
        nanos(alerts.iter().map(|a| a.acknowledged_at_ms)),
        strings(alerts.iter().map(|a| Some(a.updated_by.as_str()))),
        nanos(alerts.iter().map(|a| Some(a.updated_at_ms))),
        strings(alerts.iter().map(|a| a.reason.as_deref())),
        Arc::new(Int64Array::from_iter_values(alerts.iter().map(|a| a.events))),
        strings(alerts.iter().map(|a| Some(a.kind.as_str()))),
    ];
    RecordBatch::try_new(ALERTS_SCHEMA.clone(), columns).map_err(table_error("alerts"))
}

/// `events` as rows of `alert_events`.
pub fn event_rows(events: &[AlertEvent]) -> Result<RecordBatch> {
    let ids: Vec<String> = events.iter().map(AlertEvent::event_id).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(ids.iter().map(|id| Some(id.as_str()))),
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.event_seq))),
        strings(events.iter().map(|e| Some(e.alert_id.as_str()))),
        strings(events.iter().map(|e| Some(e.patient_id.as_str()))),
        strings(events.iter().map(|e| Some(e.ward.as_str()))),
        strings(events.iter().map(|e| Some(e.action.as_str()))),
        strings(events.iter().map(|e| e.from_state.map(AlertState::as_str))),
        strings(events.iter().map(|e| Some(e.to_state.as_str()))),
        strings(events.iter().map(|e| Some(e.user.as_str()))),
        Arc::new(BooleanArray::from_iter(events.iter().map(|e| Some(e.automatic)))),
        nanos(events.iter().map(|e| Some(e.time_ms))),
        nanos(events.iter().map(|e| e.reading_ms)),
        strings(events.iter().map(|e| e.reason.as_deref())),
        strings(events.iter().map(|e| e.risk_alert_id.as_deref())),
        Arc::new(Int32Array::from_iter(events.iter().map(|e| e.news2_score))),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.probability_high))),
        strings(events.iter().map(|e| Some(e.kind.as_str()))),
    ];
    RecordBatch::try_new(ALERT_EVENTS_SCHEMA.clone(), columns).map_err(table_error("alert_events"))
}

/// The events in rows of `alert_events` (as [`event_rows`] writes them, cast to the table's schema).
pub fn events_of(batch: &RecordBatch) -> Result<Vec<AlertEvent>> {
    let bad = |what: String| Error::Config(format!("alert_events: {what}"));
    fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
        let column =
            batch.column_by_name(name).ok_or_else(|| Error::Config(format!("alert_events has no column {name}")))?;
        column
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Config(format!("alert_events column {name} is {}", column.data_type())))
    }
    fn opt<A: Array, T>(array: &A, i: usize, value: impl Fn(&A, usize) -> T) -> Option<T> {
        (!array.is_null(i)).then(|| value(array, i))
    }
    let ms = |a: &TimestampNanosecondArray, i: usize| a.value(i).div_euclid(1_000_000);
    let event_id = col::<StringArray>(batch, "event_id")?;
    let event_seq = col::<Int64Array>(batch, "event_seq")?;
    let alert_id = col::<StringArray>(batch, "alert_id")?;
    let patient_id = col::<StringArray>(batch, "patient_id")?;
    let ward = col::<StringArray>(batch, "ward")?;
    let action = col::<StringArray>(batch, "action")?;
    let from_state = col::<StringArray>(batch, "from_state")?;
    let to_state = col::<StringArray>(batch, "to_state")?;
    let user = col::<StringArray>(batch, "user_name")?;
    let automatic = col::<BooleanArray>(batch, "automatic")?;
    let time = col::<TimestampNanosecondArray>(batch, "recorded_at")?;
    let reading_time = col::<TimestampNanosecondArray>(batch, "reading_time")?;
    let reason = col::<StringArray>(batch, "reason")?;
    let risk_alert_id = col::<StringArray>(batch, "risk_alert_id")?;
    let news2_score = col::<Int32Array>(batch, "news2_score")?;
    let probability_high = col::<Float64Array>(batch, "probability_high")?;
    // NULL in rows written before alerts had kinds: they were all risk alerts.
    let kind = col::<StringArray>(batch, "kind")?;
    let state = |name: &str| AlertState::parse(name).ok_or_else(|| bad(format!("unknown state {name:?}")));
    (0..batch.num_rows())
        .map(|i| {
            let id = event_id.value(i);
            let number = id
                .rsplit_once('#')
                .and_then(|(_, n)| n.parse().ok())
                .ok_or_else(|| bad(format!("event id {id:?} does not end in #<number>")))?;
            Ok(AlertEvent {
                event_seq: event_seq.value(i),
                alert_id: alert_id.value(i).to_string(),
                number,
                patient_id: patient_id.value(i).to_string(),
                ward: ward.value(i).to_string(),
                kind: match opt(kind, i, |a, i| a.value(i).to_string()) {
                    None => AlertKind::Risk,
                    Some(name) => AlertKind::parse(&name).ok_or_else(|| bad(format!("unknown kind {name:?}")))?,
                },
                action: Action::parse(action.value(i))
                    .ok_or_else(|| bad(format!("unknown action {:?}", action.value(i))))?,
                from_state: opt(from_state, i, |a, i| a.value(i).to_string()).map(|s| state(&s)).transpose()?,
                to_state: state(to_state.value(i))?,
                user: user.value(i).to_string(),
                automatic: automatic.value(i),
                time_ms: ms(time, i),
                reading_ms: opt(reading_time, i, ms),
                reason: opt(reason, i, |a, i| a.value(i).to_string()),
                risk_alert_id: opt(risk_alert_id, i, |a, i| a.value(i).to_string()),
                news2_score: opt(news2_score, i, Int32Array::value),
                probability_high: opt(probability_high, i, Float64Array::value),
            })
        })
        .collect()
}
