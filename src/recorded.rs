//! `vitalflow evaluate` on recorded data (shadow mode before go-live): a history of readings (a CSV or
//! Parquet file, or the lake's `vitals_raw` / `vitals_clean`) and a file of recorded events, read into
//! what the model crate evaluates.
//!
//! A history has `patient_id`, a time (`event_time`, or `timestamp` as in the Kafka JSON) and any of the
//! vitals columns (`heart_rate` … `consciousness`; one absent is missing on every reading). An events
//! file has `patient_id` and a time (`event_time`, or `timestamp`). Times are timestamps, or text in
//! RFC 3339 (without an offset: UTC).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMillisecondType};
use datafusion::prelude::SessionContext;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::evaluate::events::RecordedEvent;
use vitalflow_udf_model::evaluate::scores::LabelledReading;
use vitalflow_udf_model::schema::{Vital, table};
use vitalflow_udf_model::simulate::VitalsRecord;

use crate::config::VitalflowConfig;
use crate::input_file::register_file;

/// Names a time column may have, in the order they are looked for.
const TIME_COLUMNS: [&str; 2] = ["event_time", "timestamp"];

/// Lake tables a history may be read from.
const HISTORY_TABLES: [&str; 2] = [table::VITALS_RAW, table::VITALS_CLEAN];

/// The readings of `source`: a file when one exists at that path, else a history table of the data
/// location. Every reading starts unlabelled: the events label them.
pub async fn read_history(
    config: &VitalflowConfig,
    forest: &Arc<RiskForest>,
    source: &str,
) -> anyhow::Result<Vec<LabelledReading>> {
    let path = Path::new(source);
    let (ctx, name) = if path.is_file() {
        let ctx = SessionContext::new();
        register_file(&ctx, "history", path).await?;
        (ctx, "history")
    } else if let Some(name) = HISTORY_TABLES.iter().find(|t| **t == source) {
        // The lake's tables with the object stores of its location (file:// or s3://).
        let location = crate::process::open_data(config)?;
        let ctx = vitalflow_scheduler::catalog::session::local_context(&location, forest)
            .with_context(|| format!("opening {source} in {}", config.storage.data_url))?;
        (ctx, *name)
    } else {
        anyhow::bail!(
            "--history {source}: no such file, and not a table of the data location ({})",
            HISTORY_TABLES.join(" or ")
        );
    };
    let batches = collect(&ctx, name, source).await?;
    let mut readings = Vec::new();
    for batch in &batches {
        read_readings(batch, source, readings.len(), &mut readings)?;
    }
    Ok(readings)
}

/// The events of the file at `path`.
pub async fn read_events(path: &Path) -> anyhow::Result<Vec<RecordedEvent>> {
    let ctx = SessionContext::new();
    let shown = path.display().to_string();
    register_file(&ctx, "events", path).await?;
    let mut events = Vec::new();
    for batch in &collect(&ctx, "events", &shown).await? {
        let patients = patient_ids(batch, &shown)?;
        let times = times_ms(batch, &shown)?;
        for (row, (patient, time)) in patients.into_iter().zip(times).enumerate() {
            let (Some(patient_id), Some(ms)) = (patient, time) else {
                anyhow::bail!("{shown}: event {} has no patient_id or no time", events.len() + row + 1);
            };
            events.push(RecordedEvent { patient_id, seconds: ms as f64 / 1_000.0 });
        }
    }
    Ok(events)
}

async fn collect(ctx: &SessionContext, name: &str, shown: &str) -> anyhow::Result<Vec<RecordBatch>> {
    ctx.table(name)
        .await
        .with_context(|| format!("reading {shown}"))?
        .collect()
        .await
        .with_context(|| format!("reading {shown}"))
}

/// The column `name` cast to `to`; `None` when the batch has no such column.
fn column_as(batch: &RecordBatch, name: &str, to: &DataType, shown: &str) -> anyhow::Result<Option<ArrayRef>> {
    let Some(column) = batch.column_by_name(name) else { return Ok(None) };
    cast(column, to).map(Some).with_context(|| format!("{shown}: column {name} ({}) is not {to}", column.data_type()))
}

fn patient_ids(batch: &RecordBatch, shown: &str) -> anyhow::Result<Vec<Option<String>>> {
    let column = column_as(batch, "patient_id", &DataType::Utf8, shown)?
        .with_context(|| format!("{shown}: no patient_id column"))?;
    Ok(column.as_string::<i32>().iter().map(|p| p.map(str::to_string)).collect())
}

/// Milliseconds since the epoch of the first time column there is.
fn times_ms(batch: &RecordBatch, shown: &str) -> anyhow::Result<Vec<Option<i64>>> {
    let utc_ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    for name in TIME_COLUMNS {
        if let Some(column) = column_as(batch, name, &utc_ms, shown)? {
            return Ok(column.as_primitive::<TimestampMillisecondType>().iter().collect());
        }
    }
    anyhow::bail!("{shown}: no time column ({})", TIME_COLUMNS.join(" or "))
}

/// Appends the readings of one batch (`before` rows came earlier) to `readings`.
fn read_readings(
    batch: &RecordBatch,
    shown: &str,
    before: usize,
    readings: &mut Vec<LabelledReading>,
) -> anyhow::Result<()> {
    let patients = patient_ids(batch, shown)?;
    let times = times_ms(batch, shown)?;
    let mut vitals: Vec<Option<ArrayRef>> = Vec::new();
    for vital in Vital::ALL {
        vitals.push(column_as(batch, vital.column(), &DataType::Float64, shown)?);
    }
    let on_oxygen = column_as(batch, "on_oxygen", &DataType::Boolean, shown)?;
    let consciousness = column_as(batch, "consciousness", &DataType::Utf8, shown)?;
    if before == 0 && vitals.iter().all(Option::is_none) {
        let names: Vec<&str> = Vital::ALL.iter().map(|v| v.column()).collect();
        anyhow::bail!("{shown}: none of the vitals columns ({})", names.join(", "));
    }
    let number = |column: &Option<ArrayRef>, row: usize| {
        column.as_ref().and_then(|c| c.is_valid(row).then(|| c.as_primitive::<Float64Type>().value(row)))
    };
    for (row, (patient, time)) in patients.into_iter().zip(times).enumerate() {
        let (Some(patient_id), Some(ms)) = (patient, time) else {
            anyhow::bail!("{shown}: reading {} has no patient_id or no time", before + row + 1);
        };
        let [heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate] =
            std::array::from_fn(|i| number(&vitals[i], row));
        let record = VitalsRecord {
            patient_id,
            timestamp: String::new(),
            heart_rate,
            systolic_bp,
            diastolic_bp,
            spo2,
            temperature,
            glucose,
            respiratory_rate,
            on_oxygen: on_oxygen.as_ref().and_then(|c| c.is_valid(row).then(|| c.as_boolean().value(row))),
            consciousness: consciousness
                .as_ref()
                .and_then(|c| c.is_valid(row).then(|| c.as_string::<i32>().value(row).to_string())),
        };
        readings.push(LabelledReading { record, seconds: ms as f64 / 1_000.0, truly_high: false });
    }
    Ok(())
}
