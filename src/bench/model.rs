//! `vitalflow bench model`: the risk forest against scikit-learn, ONNX Runtime and Treelite on one core.
//!
//! One run: simulate training and evaluation rows; in a Python subprocess (pinned to the same core,
//! BLAS and OpenMP at one thread) train a scikit-learn `RandomForestClassifier` with the seed's
//! settings (100 trees, unbounded depth), export it with `clients/python/vitalflow_export`, time its
//! `predict` at each batch size, and time the same forest in ONNX Runtime and compiled by Treelite
//! (`peers.py`), counting where their labels differ from scikit-learn's; then load the exported forest
//! here and time `predict_risk` (labels, with the early exit), `risk_probability` (every tree) and
//! `predict_risk` on the scalar kernel over Arrow arrays at the same batch sizes on the same rows;
//! check that every label is identical; and time vitalflow's shipped forest too.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{Array, Float64Array};
use serde::Deserialize;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::forest::Kernel;
use vitalflow_udf_model::rubric::RiskLevel;
use vitalflow_udf_model::simulate::training_rows;
use vitalflow_udf_model::train::LabelledRows;
use vitalflow_udf_model::udf::{explain_risk_array, predict_risk_array, risk_probability_array};

use super::cli::BenchModelArgs;
use super::{pin_to_core, rows_per_sec};

/// The exporter and the timing driver, compiled in so that the benchmark needs no checkout.
const PYTHON_PACKAGE: [(&str, &str); 4] = [
    ("__init__.py", include_str!("../../clients/python/vitalflow_export/__init__.py")),
    ("__main__.py", include_str!("../../clients/python/vitalflow_export/__main__.py")),
    ("bench.py", include_str!("../../clients/python/vitalflow_export/bench.py")),
    ("peers.py", include_str!("../../clients/python/vitalflow_export/peers.py")),
];

/// The peers timed beside scikit-learn, as `peers.py` names them, with the names printed.
const PEERS: [(&str, &str); 2] = [("onnxruntime", "ONNX Runtime"), ("treelite", "Treelite")];

/// Batches up to this size are dominated by the Python call when a peer is timed through Python.
const PYTHON_BOUND_BATCH: usize = 100;

#[derive(Debug, Deserialize)]
struct SklearnReport {
    sklearn: String,
    fit_seconds: f64,
    nodes: u64,
    max_depth: u64,
    timings: Vec<Timing>,
    #[serde(default)]
    peers: std::collections::BTreeMap<String, PeerReport>,
}

/// One peer's outcome: its timings and disagreements with scikit-learn, or why it did not run.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PeerReport {
    version: String,
    build_seconds: f64,
    disagreements: u64,
    error: Option<String>,
    timings: Vec<Timing>,
}

#[derive(Debug, Clone, Deserialize)]
struct Timing {
    batch: usize,
    rows: u64,
    seconds: f64,
}

fn write_rows(path: &Path, rows: &LabelledRows) -> anyhow::Result<()> {
    let mut bytes = Vec::with_capacity(rows.features.len() * 48);
    for row in &rows.features {
        for v in row {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn class_code(level: RiskLevel) -> u8 {
    RiskLevel::ALL.iter().position(|l| *l == level).unwrap_or(0) as u8
}

/// Times `score` over Arrow columns: calls of `batch` rows for at least `seconds`, moving through the rows.
fn time_calls(cols: &[Float64Array], batch: usize, seconds: f64, score: impl Fn(&[Float64Array]) -> usize) -> Timing {
    let n = cols[0].len();
    let batch = batch.min(n).max(1);
    let (mut rows, mut spent, mut calls, mut start) = (0u64, 0.0f64, 0u64, 0usize);
    while calls == 0 || spent < seconds {
        let t0 = Instant::now();
        let slice: Vec<Float64Array> = cols.iter().map(|c| c.slice(start, batch)).collect();
        std::hint::black_box(score(&slice));
        spent += t0.elapsed().as_secs_f64();
        calls += 1;
        rows += batch as u64;
        start = (start + batch) % (n - batch + 1);
    }
    Timing { batch, rows, seconds: spent }
}

/// `predict_risk`'s rows/s.
fn labels_per_sec(forest: &RiskForest, cols: &[Float64Array], batch: usize, seconds: f64) -> f64 {
    let t = time_calls(cols, batch, seconds, |c| predict_risk_array(forest, c).len());
    rows_per_sec(t.rows, t.seconds)
}

/// `risk_probability`'s rows/s.
fn probabilities_per_sec(forest: &RiskForest, cols: &[Float64Array], batch: usize, seconds: f64) -> f64 {
    let t = time_calls(cols, batch, seconds, |c| risk_probability_array(forest, c).map_or(0, |a| a.len()));
    rows_per_sec(t.rows, t.seconds)
}

/// Batch size `explain_risk` is timed at: what the ETL explains per micro-batch is its alert rows.
const EXPLAIN_BATCH: usize = 1_000;

/// Microseconds per row of `explain_risk` and of `predict_risk`, at [`EXPLAIN_BATCH`].
fn explain_cost_us(forest: &RiskForest, cols: &[Float64Array], seconds: f64) -> (f64, f64) {
    let explain = time_calls(cols, EXPLAIN_BATCH, seconds, |c| explain_risk_array(forest, c).map_or(0, |a| a.len()));
    let predict = time_calls(cols, EXPLAIN_BATCH, seconds, |c| predict_risk_array(forest, c).len());
    (1e6 / rows_per_sec(explain.rows, explain.seconds), 1e6 / rows_per_sec(predict.rows, predict.seconds))
}

/// The trend model's arguments for about `n` readings of a simulated held-out ward, each patient's
/// readings through the ETL's per-patient pass in time order; a missing value is a NULL, as SQL passes it.
fn trend_argument_columns(trend: &RiskForest, n: usize) -> anyhow::Result<Vec<Float64Array>> {
    use vitalflow_udf_model::evaluate::scores::LabelledReading;
    use vitalflow_udf_model::evaluate::ward::{SimulatedWard, WardSettings};
    use vitalflow_udf_model::trend::{PatientTrend, TrendSettings};

    let columns = trend.argument_columns().context("the shipped trend model names columns the ETL derives")?;
    let defaults = WardSettings::default();
    let readings_per_patient = (defaults.hours * 3_600.0 / defaults.seconds_per_reading).max(1.0);
    let ward = WardSettings { patients: (n as f64 / readings_per_patient).ceil().max(1.0) as usize, ..defaults };
    let mut passes: std::collections::HashMap<String, PatientTrend> = std::collections::HashMap::new();
    let mut values: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(n); columns.len()];
    for reading in SimulatedWard::new(&ward) {
        let reading = LabelledReading::simulated(reading)?;
        let pass = passes
            .entry(reading.record.patient_id.clone())
            .or_insert_with(|| PatientTrend::new(TrendSettings::default()));
        if let Some(row) = pass.push(reading.seconds, &reading.record.measured()) {
            for (column, value) in values.iter_mut().zip(row.values(&columns)) {
                column.push(value.is_finite().then_some(value));
            }
        }
    }
    Ok(values.into_iter().map(Float64Array::from).collect())
}

/// A peer's rows/s at `batch`, if it ran.
fn peer_rate(report: &SklearnReport, peer: &str, batch: usize) -> Option<f64> {
    let timing = report.peers.get(peer)?.timings.iter().find(|t| t.batch == batch)?;
    Some(rows_per_sec(timing.rows, timing.seconds))
}

/// `vitalflow bench model`.
pub fn run(args: &BenchModelArgs) -> anyhow::Result<()> {
    let pinned = pin_to_core(args.core);
    let dir = tempfile::tempdir().context("creating a scratch directory")?;
    let package = dir.path().join("vitalflow_export");
    std::fs::create_dir(&package)?;
    for (name, text) in PYTHON_PACKAGE {
        std::fs::write(package.join(name), text)?;
    }

    eprintln!("simulating {} training and {} evaluation rows", args.train_rows, args.rows);
    let train = training_rows(args.train_rows, 101);
    let eval = training_rows(args.rows, 202);
    let (train_x, train_y, eval_x) =
        (dir.path().join("train.f64"), dir.path().join("train.u8"), dir.path().join("eval.f64"));
    write_rows(&train_x, &train)?;
    std::fs::write(&train_y, train.labels.iter().map(|l| class_code(*l)).collect::<Vec<u8>>())?;
    write_rows(&eval_x, &eval)?;
    let model_json = dir.path().join("sklearn-forest.json");
    let predictions = dir.path().join("sklearn-predictions.u8");

    let batches: Vec<String> = args.batches.iter().map(|b| b.min(&eval.features.len()).to_string()).collect();
    eprintln!(
        "training scikit-learn's forest ({} trees, unbounded depth), timing its predict and the peers' on core {}",
        args.trees, args.core
    );
    let mut python = Command::new("taskset");
    python.args(["-c", &args.core.to_string(), &args.python]);
    if !pinned {
        python = Command::new(&args.python);
    }
    let output = python
        .args(["-m", "vitalflow_export.bench", "--train"])
        .arg(&train_x)
        .arg("--labels")
        .arg(&train_y)
        .arg("--eval")
        .arg(&eval_x)
        .args([
            "--trees",
            &args.trees.to_string(),
            "--batches",
            &batches.join(","),
            "--seconds",
            &args.seconds.to_string(),
            "--peers",
            &args.peers.join(","),
        ])
        .arg("--workdir")
        .arg(dir.path())
        .arg("--model-out")
        .arg(&model_json)
        .arg("--predictions-out")
        .arg(&predictions)
        .current_dir(dir.path())
        .env("PYTHONPATH", dir.path())
        // TL2cgen builds its C sources in a temporary directory: keep them in ours, removed at the end.
        .env("TMPDIR", dir.path())
        .envs(["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"].map(|k| (k, "1")))
        .output()
        .with_context(|| {
            format!("running {} (set --python or VITALFLOW_PYTHON to a Python with scikit-learn)", args.python)
        })?;
    if !output.status.success() {
        bail!("the scikit-learn side failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: SklearnReport = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("reading the scikit-learn report from: {stdout}"))?;

    let imported = RiskForest::load(&model_json)?;
    let shipped = RiskForest::bundled()?;
    let cols: Vec<Float64Array> =
        (0..6).map(|f| Float64Array::from_iter_values(eval.features.iter().map(|r| r[f]))).collect();

    // Parity on every evaluation row.
    let sklearn_labels = std::fs::read(&predictions).with_context(|| format!("reading {}", predictions.display()))?;
    let ours = predict_risk_array(&imported, &cols);
    let mut differ = 0usize;
    for (i, code) in sklearn_labels.iter().enumerate() {
        let label = RiskLevel::ALL.get(*code as usize).map(|l| l.as_str());
        if !ours.is_valid(i) || Some(ours.value(i)) != label {
            differ += 1;
        }
    }
    if sklearn_labels.len() != ours.len() {
        bail!("scikit-learn labelled {} rows, vitalflow {}", sklearn_labels.len(), ours.len());
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(
        out,
        "vitalflow bench model: {} evaluation rows, one core{}, vitalflow's {} kernel",
        eval.features.len(),
        if pinned { " (taskset)" } else { " (NOT pinned)" },
        imported.kernel().name()
    )?;
    writeln!(
        out,
        "scikit-learn {}: {} trees, {} nodes, depth ≤ {}, fitted on {} rows in {:.1} s; vitalflow lays it out in {:.1} MB",
        report.sklearn,
        args.trees,
        report.nodes,
        report.max_depth,
        train.features.len(),
        report.fit_seconds,
        imported.layout_bytes() as f64 / 1e6
    )?;
    writeln!(
        out,
        "vitalflow's labels identical to sklearn.predict: {} of {} rows ({differ} differ)",
        ours.len() - differ,
        ours.len()
    )?;
    for (key, name) in PEERS {
        match report.peers.get(key) {
            Some(PeerReport { error: Some(error), .. }) => writeln!(out, "{name}: not run: {error}")?,
            Some(peer) => writeln!(
                out,
                "{name} ({}; built in {:.1} s): labels identical to sklearn.predict on {} of {} rows ({} differ)",
                peer.version,
                peer.build_seconds,
                ours.len() as u64 - peer.disagreements,
                ours.len(),
                peer.disagreements
            )?,
            None => writeln!(out, "{name}: not asked for (--peers)")?,
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "rows/s: vitalflow predict_risk (early exit), risk_probability (every tree), predict_risk on the scalar kernel; \
         the peers on the same forest; then predict_risk's ratio to each peer"
    )?;
    writeln!(
        out,
        "{:>9} {:>12} {:>12} {:>12} {:>12} {:>13} {:>13} {:>9} {:>9} {:>9}",
        "batch",
        "predict_risk",
        "risk_prob",
        "scalar",
        "sklearn",
        "ONNX Runtime",
        "Treelite",
        "×sklearn",
        "×ORT",
        "×Treelite"
    )?;
    let scalar = imported.with_kernel(Kernel::Scalar).context("the scalar kernel runs everywhere")?;
    let cell = |rate: Option<f64>, batch: usize| match rate {
        Some(r) if batch <= PYTHON_BOUND_BATCH => format!("{r:.0}*"),
        Some(r) => format!("{r:.0}"),
        None => "-".into(),
    };
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map_or("-".into(), |t| format!("{:.1}x", ours / t));
    for t in &report.timings {
        let ours = labels_per_sec(&imported, &cols, t.batch, args.seconds);
        let probabilities = probabilities_per_sec(&imported, &cols, t.batch, args.seconds);
        let on_scalar = labels_per_sec(&scalar, &cols, t.batch, args.seconds);
        let sklearn = rows_per_sec(t.rows, t.seconds);
        let (onnx, treelite) = (peer_rate(&report, PEERS[0].0, t.batch), peer_rate(&report, PEERS[1].0, t.batch));
        writeln!(
            out,
            "{:>9} {ours:>12.0} {probabilities:>12.0} {on_scalar:>12.0} {sklearn:>12.0} {:>13} {:>13} {:>9} {:>9} {:>9}",
            t.batch,
            cell(onnx, t.batch),
            cell(treelite, t.batch),
            format!("{:.1}x", ours / sklearn),
            ratio(ours, onnx),
            ratio(ours, treelite)
        )?;
    }
    writeln!(
        out,
        "(* the peer is called through Python, whose per-call overhead dominates at batch ≤ {PYTHON_BOUND_BATCH}; \
         scikit-learn is too, at every batch)"
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "vitalflow's shipped forest ({} trees, {} nodes, depth ≤ {}), against scikit-learn's forest above:",
        shipped.tree_count(),
        shipped.node_count(),
        shipped.max_depth()
    )?;
    writeln!(out, "{:>9} {:>12} {:>12} {:>12} {:>9}", "batch", "predict_risk", "risk_prob", "sklearn", "×sklearn")?;
    for t in &report.timings {
        let ours = labels_per_sec(&shipped, &cols, t.batch, args.seconds);
        let probabilities = probabilities_per_sec(&shipped, &cols, t.batch, args.seconds);
        let sklearn = rows_per_sec(t.rows, t.seconds);
        writeln!(out, "{:>9} {ours:>12.0} {probabilities:>12.0} {sklearn:>12.0} {:>8.1}x", t.batch, ours / sklearn)?;
    }
    writeln!(out)?;
    writeln!(out, "explain_risk (exact TreeSHAP) beside predict_risk, µs per row at batch {EXPLAIN_BATCH}:")?;
    for (name, forest) in [("shipped forest", &shipped), ("scikit-learn's forest", &imported)] {
        let (explain, predict) = explain_cost_us(forest, &cols, args.seconds);
        writeln!(
            out,
            "{name:>22}: explain_risk {explain:>9.2} µs, predict_risk {predict:>7.3} µs ({:.0}x)",
            explain / predict
        )?;
    }
    // What the ETL runs on every reading: the shipped file's trend model, on readings of a simulated ward.
    if let Some(trend) = shipped.trend() {
        let trend_cols = trend_argument_columns(trend, cols[0].len())?;
        let (explain, predict) = explain_cost_us(trend, &trend_cols, args.seconds);
        writeln!(
            out,
            "{:>22}: explain_trend_risk {explain:>9.2} µs, predict_trend_risk {predict:>7.3} µs ({:.0}x); \
             {} trees, {} nodes, {} arguments",
            "shipped trend model",
            explain / predict,
            trend.tree_count(),
            trend.node_count(),
            trend_cols.len()
        )?;
    }
    drop(out);
    if differ > 0 {
        bail!("{differ} labels differ from scikit-learn's");
    }
    Ok(())
}
