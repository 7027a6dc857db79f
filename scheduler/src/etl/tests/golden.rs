//! The ETL SQL against its golden files (`golden/`, whose README says what they hold): readings in,
//! the rows of `vitals_clean`, `dead_letters` and `risk_alerts` out, in files a reviewer can read.

use std::path::PathBuf;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use vitalflow_ingest::decode::Reading;
use vitalflow_udf_model::rubric::{Consciousness, Spo2Scale};

use super::{Fixture, MINUTE, T0};

/// The golden files' folder.
fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/etl/tests/golden")
}

/// The readings of `readings.csv`, grouped by batch in file order.
fn readings() -> Vec<Vec<Reading>> {
    let text = std::fs::read_to_string(golden_dir().join("readings.csv")).expect("readings.csv");
    let mut lines = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty());
    let header = lines.next().expect("a header");
    assert!(header.starts_with("batch,patient_id,minute,heart_rate"), "{header}");
    let mut batches: Vec<Vec<Reading>> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 15, "{line}");
        let number = |s: &str| (!s.is_empty()).then(|| s.parse::<f64>().expect(line));
        let batch: usize = f[0].parse().expect(line);
        let minute: i64 = f[2].parse().expect(line);
        let reading = Reading {
            patient_id: f[1].to_string(),
            event_time_ns: T0 + minute * MINUTE,
            vitals: std::array::from_fn(|i| number(f[3 + i])),
            on_oxygen: (!f[10].is_empty()).then(|| f[10] == "true"),
            consciousness: (!f[11].is_empty()).then(|| Consciousness::parse(f[11]).expect(line)),
            ward: (!f[12].is_empty()).then(|| f[12].to_string()),
            validated: f[13] == "true",
            spo2_scale: (!f[14].is_empty()).then(|| Spo2Scale::of_number(f[14].parse().expect(line)).expect(line)),
        };
        while batches.len() < batch {
            batches.push(Vec::new());
        }
        batches[batch - 1].push(reading);
    }
    batches
}

/// `batches` as CSV: timestamps as minutes after T0, floats to 3 decimals, NULL as nothing.
fn csv(batches: &[arrow::record_batch::RecordBatch]) -> String {
    let Some(first) = batches.first() else { return String::new() };
    let mut out = first.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",") + "\n";
    for batch in batches {
        let columns: Vec<Vec<String>> = batch.columns().iter().map(|c| cells(c.as_ref())).collect();
        for row in 0..batch.num_rows() {
            out += &columns.iter().map(|c| c[row].as_str()).collect::<Vec<_>>().join(",");
            out += "\n";
        }
    }
    out
}

/// One column's cells as the golden files write them.
fn cells(column: &dyn Array) -> Vec<String> {
    let n = column.len();
    match column.data_type() {
        DataType::Timestamp(..) => {
            let ns = arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None)).unwrap();
            let ns = arrow::compute::cast(&ns, &DataType::Int64).unwrap();
            let ns = ns.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| if ns.is_valid(i) { number((ns.value(i) - T0) as f64 / MINUTE as f64) } else { String::new() })
                .collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let f = arrow::compute::cast(column, &DataType::Float64).unwrap();
            let f = f.as_primitive::<Float64Type>();
            (0..n).map(|i| if f.is_valid(i) { number(f.value(i)) } else { String::new() }).collect()
        }
        _ => {
            let s = arrow::compute::cast(column, &DataType::Utf8).unwrap();
            let s = s.as_string::<i32>();
            (0..n).map(|i| if s.is_valid(i) { s.value(i).to_string() } else { String::new() }).collect()
        }
    }
}

/// A number to 3 decimals, without trailing zeros.
fn number(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// Compares `actual` with the golden file `name`, or writes it when VITALFLOW_BLESS is set.
fn check(name: &str, actual: &str) -> Option<String> {
    let path = golden_dir().join(name);
    if std::env::var_os("VITALFLOW_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual)
        .then(|| format!("{name} differs from the golden file; expected:\n{expected}\nactual:\n{actual}"))
}

#[tokio::test]
async fn the_etl_sql_turns_the_golden_readings_into_the_golden_rows() {
    let f = Fixture::new();
    let mut driver = f.driver().await;
    let mut offset = 0;
    for batch in readings() {
        let n = batch.len() as i64;
        f.land(offset, batch).await;
        offset += n;
        driver.run_once().await.unwrap().expect("the batch ran");
    }
    let clean = f
        .query(
            "SELECT source_offset, patient_id, event_time AS minute, heart_rate, systolic_bp, diastolic_bp, spo2, \
                    temperature, glucose, respiratory_rate, on_oxygen, consciousness, risk, news2_score, \
                    heart_rate_rolling_mean, heart_rate_change, spo2_rolling_mean, spo2_change, anomaly, \
                    ward, validated, spo2_scale, unscored_reason \
             FROM vitals_clean ORDER BY source_offset",
        )
        .await;
    let letters = f
        .query("SELECT source_offset, reason_code, reason FROM dead_letters WHERE stage = 'etl' ORDER BY source_offset")
        .await;
    let alerts = f
        .query("SELECT source_offset, patient_id, event_time AS minute, risk, previous_risk, ward FROM risk_alerts ORDER BY source_offset")
        .await;
    let differences: Vec<String> = [
        check("vitals_clean.csv", &csv(&clean)),
        check("dead_letters.csv", &csv(&letters)),
        check("risk_alerts.csv", &csv(&alerts)),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // Every reading is accounted for once: clean or rejected.
    let rows = |b: &[arrow::record_batch::RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(&clean) + rows(&letters), offset as usize);
}
