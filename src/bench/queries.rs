//! `vitalflow bench queries`: the dashboard's queries on vitalflow's in-process DataFusion context
//! (the functions, tables and listing rules the scheduler plans with) and on DuckDB (Python `duckdb`
//! in a subprocess), over the same `vitals_clean` Parquet files; prints both medians and the ratio.
//!
//! The data: `--readings` rows of `--patients` patients, one reading per patient in turn, spread over
//! the last hour, in files of one million rows (a compacted table's shape).

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use vitalflow_scheduler::catalog::session::local_context;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::lake::checkpoint::{EtlCheckpoint, save_etl_checkpoint};
use vitalflow_udf_model::lake::names::{ETL_APP_ID, batch_prefix};
use vitalflow_udf_model::lake::table::Transaction;
use vitalflow_udf_model::lake::{DataLocation, LakeTable};
use vitalflow_udf_model::schema::{PATIENT_LATEST_SCHEMA, RISK_ALERTS_SCHEMA, VITALS_CLEAN_SCHEMA, table};

use super::cli::BenchQueriesArgs;

/// Latest reading per patient as DuckDB (or any engine without vitalflow's ETL) gets it: a window over
/// the whole history.
const LATEST_FROM_HISTORY: &str = "SELECT patient_id, event_time, heart_rate, spo2, risk, news2_score FROM (\
    SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY event_time DESC) AS rn FROM vitals_clean) latest \
    WHERE rn = 1 ORDER BY patient_id";

/// The same as vitalflow answers it: `patient_latest`, one row per patient kept by the ETL.
const LATEST: &str =
    "SELECT patient_id, event_time, heart_rate, spo2, risk, news2_score FROM patient_latest ORDER BY patient_id";

/// Rises to High of the last 15 minutes as vitalflow answers them: `risk_alerts`, written by the ETL.
const ALERTS: &str = "SELECT event_time, patient_id, previous_risk, news2_score, probability_high FROM risk_alerts \
    WHERE event_time > now() - INTERVAL '15 minutes' ORDER BY event_time DESC LIMIT 50";

/// The patient whose history is asked for (the ids this benchmark writes: `P` and five digits).
const PATIENT: &str = "P00017";

/// Every rise to High in the history, as a FROM ... WHERE: each reading's previous risk by a window over
/// all of it (a rise at the window's start needs the reading before), then the rises. The ETL's alert rule.
const RISES_FROM_HISTORY: &str = "FROM (SELECT *, lag(risk) OVER (PARTITION BY patient_id ORDER BY event_time) AS previous_risk \
    FROM vitals_clean) h WHERE risk = 'High' AND (previous_risk IS NULL OR previous_risk <> 'High')";

/// The dashboard's queries (clients/streamlit/app.py), by name: vitalflow's SQL and DuckDB's; the
/// patient view shows `patient`.
pub(crate) fn queries(patient: &str) -> Vec<(&'static str, String, String)> {
    let both = |sql: &str| (sql.to_string(), sql.to_string());
    let distribution =
        |latest: &str| format!("SELECT risk, count(*) AS patients FROM ({latest}) l GROUP BY risk ORDER BY risk");
    let history = both(&format!(
        "SELECT event_time, heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, risk, news2_score \
         FROM vitals_clean WHERE patient_id = '{patient}' AND event_time > now() - INTERVAL '60 minutes' ORDER BY event_time DESC LIMIT 2000",
    ));
    // The dashboard reads freshness from patient_latest; an engine without it takes the history's newest.
    let alerts_from_history = format!(
        "SELECT event_time, patient_id, previous_risk, news2_score, probability_high {RISES_FROM_HISTORY} \
         AND event_time > now() - INTERVAL '15 minutes' ORDER BY event_time DESC LIMIT 50"
    );
    let freshness = (
        "SELECT max(event_time) AS newest FROM patient_latest".to_string(),
        "SELECT max(event_time) AS newest FROM vitals_clean".to_string(),
    );
    vec![
        ("latest per patient", LATEST.to_string(), LATEST_FROM_HISTORY.to_string()),
        ("risk distribution", distribution(LATEST), distribution(LATEST_FROM_HISTORY)),
        ("alerts (rises to High), 15 min", ALERTS.to_string(), alerts_from_history),
        ("one patient's last hour", history.0, history.1),
        ("freshness", freshness.0, freshness.1),
    ]
}

const DUCKDB_DRIVER: &str = r#"
import json, sys, time
import duckdb
args = json.loads(sys.argv[1])
con = duckdb.connect()
con.execute("SET threads TO %d" % args["threads"])
# Its progress bar (queries over 2 s) writes to stdout, where the report goes; and it costs time.
con.execute("SET enable_progress_bar = false")
# DuckDB 2 reads nanosecond times as TIMESTAMPTZ_NS, which does not compare with now(): cast in the view.
con.execute("CREATE VIEW vitals_clean AS SELECT * REPLACE (event_time::TIMESTAMPTZ AS event_time) FROM read_parquet('%s/*.parquet')" % args["dir"])
# Results as Arrow tables, as DataFusion returns them (the method was renamed in DuckDB 2).
fetch = lambda r: r.to_arrow_table() if hasattr(r, "to_arrow_table") else r.arrow()
out = {"duckdb": duckdb.__version__, "seconds": []}
for sql in args["queries"]:
    times = []
    for _ in range(args["repeats"] + 1):
        t = time.perf_counter(); fetch(con.sql(sql)); times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    out["seconds"].append(times[len(times) // 2])
print(json.dumps(out))
"#;

#[derive(Debug, serde::Deserialize)]
struct DuckReport {
    duckdb: String,
    seconds: Vec<f64>,
}

/// Runs the benchmark and prints the table.
pub async fn run(args: BenchQueriesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.patients > 0 && args.readings > 0 && args.repeats > 0,
        "--patients, --readings and --repeats must be above 0"
    );
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let location = DataLocation::open(dir.path().to_str().context("temporary directory is not UTF-8")?)?;
    let started = Instant::now();
    let written = generate(&location, args.readings, args.patients).await?;
    eprintln!(
        "generated {} readings of {} patients in {written} files ({:.1} s)",
        args.readings,
        args.patients,
        started.elapsed().as_secs_f64()
    );

    let forest = Arc::new(RiskForest::bundled()?);
    let ctx = local_context(&location, &forest)?;
    write_etl_tables(&ctx, &location).await?;
    let mut ours = Vec::new();
    for (name, sql, _) in queries(PATIENT) {
        let mut times = Vec::new();
        for _ in 0..=args.repeats {
            let t = Instant::now();
            ctx.sql(&sql)
                .await
                .with_context(|| format!("planning {name}"))?
                .collect()
                .await
                .with_context(|| format!("running {name}"))?;
            times.push(t.elapsed().as_secs_f64());
        }
        ours.push(median(&mut times[1..].to_vec()));
    }

    let table_dir = dir.path().join(table::VITALS_CLEAN);
    let request = serde_json::json!({
        "dir": table_dir.to_string_lossy(),
        "queries": queries(PATIENT).into_iter().map(|(_, _, duck)| duck).collect::<Vec<_>>(),
        "repeats": args.repeats,
        "threads": std::thread::available_parallelism().map_or(2, |n| n.get()),
    });
    let output = Command::new(&args.python)
        .args(["-c", DUCKDB_DRIVER, &request.to_string()])
        .output()
        .with_context(|| format!("starting {} (needs `pip install duckdb`)", args.python))?;
    if !output.status.success() {
        bail!(
            "DuckDB driver failed (is `duckdb` installed for {}?):\n{}",
            args.python,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let duck: DuckReport = serde_json::from_slice(&output.stdout).context("reading the DuckDB driver's report")?;

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "dashboard queries on {} readings of {} patients (median of {} runs, after one warm-up)",
        args.readings, args.patients, args.repeats
    )?;
    writeln!(
        out,
        "{:<30} {:>14} {:>14} {:>10}",
        "query",
        "vitalflow ms",
        format!("duckdb {} ms", duck.duckdb),
        "ratio"
    )?;
    for (((name, _, _), v), d) in queries(PATIENT).iter().zip(&ours).zip(&duck.seconds) {
        writeln!(out, "{name:<30} {:>14.1} {:>14.1} {:>9.2}x", v * 1e3, d * 1e3, v / d)?;
    }
    writeln!(
        out,
        "ratio = vitalflow time / DuckDB time (below 1: vitalflow is faster); vitalflow = in-process DataFusion with vitalflow's session"
    )?;
    writeln!(
        out,
        "latest per patient: vitalflow reads patient_latest (kept by the ETL), DuckDB computes it from the history"
    )?;
    Ok(())
}

/// `patient_latest` and `risk_alerts` as the ETL would have left them after the generated history: the
/// latest reading of each patient (one committed version) and every rise to High.
async fn write_etl_tables(ctx: &datafusion::prelude::SessionContext, location: &DataLocation) -> anyhow::Result<()> {
    let columns: Vec<String> = PATIENT_LATEST_SCHEMA
        .fields()
        .iter()
        .map(|f| match VITALS_CLEAN_SCHEMA.field_with_name(f.name()) {
            Ok(_) => f.name().clone(),
            Err(_) => format!("NULL AS {}", f.name()),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM (SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY event_time DESC) AS rn FROM vitals_clean) WHERE rn = 1",
        columns.join(", ")
    );
    let txn = || vec![Transaction::new(ETL_APP_ID, 1)];
    let mut latest = LakeTable::open_or_create(location, table::PATIENT_LATEST, &PATIENT_LATEST_SCHEMA).await?;
    latest.replace_batches(&batch_prefix(1), &query_as(ctx, &sql, &PATIENT_LATEST_SCHEMA).await?, txn()).await?;

    // risk_alerts: every rise to High in the history, as the ETL's alert rule writes them.
    let alerts_sql = format!(
        "SELECT concat(patient_id, '/', CAST(source_offset AS VARCHAR)) AS alert_id, patient_id, event_time, risk, previous_risk, \
           probability_high, news2_score, rubric_score, model_version, source_topic, source_partition, source_offset, etl_batch_id \
         {RISES_FROM_HISTORY} ORDER BY event_time"
    );
    let mut alerts = LakeTable::open_or_create(location, table::RISK_ALERTS, &RISK_ALERTS_SCHEMA).await?;
    alerts.append_batches(&batch_prefix(1), &query_as(ctx, &alerts_sql, &RISK_ALERTS_SCHEMA).await?, txn()).await?;
    save_etl_checkpoint(location, &EtlCheckpoint { last_batch_id: 1, ..EtlCheckpoint::default() }).await?;
    Ok(())
}

/// `sql`'s result with its columns, in order, cast to `schema`'s types.
async fn query_as(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    schema: &SchemaRef,
) -> anyhow::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        batches.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(batches)
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Writes the readings as `vitals_clean` commits of at most one million rows each; returns how many.
async fn generate(location: &DataLocation, readings: usize, patients: usize) -> anyhow::Result<usize> {
    const FILE_ROWS: usize = 1_000_000;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let now_ns = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos())?;
    let hour_ns = 3_600_000_000_000i64;
    let step = hour_ns / readings as i64;
    let mut files = 0;
    let mut clean = LakeTable::open_or_create(location, table::VITALS_CLEAN, &VITALS_CLEAN_SCHEMA).await?;
    for start in (0..readings).step_by(FILE_ROWS) {
        let n = FILE_ROWS.min(readings - start);
        let ids: Vec<usize> = (start..start + n).collect();
        let patient = StringArray::from_iter_values(ids.iter().map(|i| format!("P{:05}", i % patients)));
        let time = TimestampNanosecondArray::from_iter_values(ids.iter().map(|i| now_ns - hour_ns + *i as i64 * step))
            .with_timezone("UTC");
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in VITALS_CLEAN_SCHEMA.fields() {
            let column: ArrayRef = match field.name().as_str() {
                "patient_id" => Arc::new(patient.clone()),
                "event_time" => Arc::new(time.clone()),
                "heart_rate" => uniform(&mut rng, n, 40.0, 160.0),
                "systolic_bp" => uniform(&mut rng, n, 80.0, 180.0),
                "diastolic_bp" => uniform(&mut rng, n, 50.0, 110.0),
                "spo2" => uniform(&mut rng, n, 85.0, 100.0),
                "temperature" => uniform(&mut rng, n, 35.0, 40.0),
                "glucose" => uniform(&mut rng, n, 60.0, 250.0),
                "respiratory_rate" => uniform(&mut rng, n, 8.0, 30.0),
                "risk" => Arc::new(StringArray::from_iter_values(
                    (0..n).map(|_| ["High", "Medium", "Low", "Low", "Low"][rng.below(5)]),
                )),
                "news2_score" | "rubric_score" => {
                    Arc::new(Int32Array::from_iter_values((0..n).map(|_| rng.below(12) as i32)))
                }
                "model_version" => Arc::new(StringArray::from_iter_values((0..n).map(|_| "bench"))),
                _ if field.is_nullable() => arrow::array::new_null_array(field.data_type(), n),
                _ => cast(
                    &(Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| *i as i64))) as ArrayRef),
                    field.data_type(),
                )?,
            };
            columns.push(cast(&column, field.data_type())?);
        }
        let batch = RecordBatch::try_new(VITALS_CLEAN_SCHEMA.clone(), columns)?;
        files += 1;
        clean
            .append_batches(&batch_prefix(files as i64), &[batch], vec![Transaction::new(ETL_APP_ID, files as i64)])
            .await?;
    }
    Ok(files)
}

fn uniform(rng: &mut XorShift, n: usize, low: f64, high: f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values((0..n).map(|_| low + (high - low) * rng.unit())))
}

/// A small deterministic generator: the data only needs to look varied, the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
