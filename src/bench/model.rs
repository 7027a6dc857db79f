//! `vitalflow bench model`: the risk forest against scikit-learn on one core.
//!
//! One run: simulate training and evaluation rows; in a Python subprocess (pinned to the same core,
//! BLAS and OpenMP at one thread) train a scikit-learn `RandomForestClassifier` with the seed's
//! settings (100 trees, unbounded depth), export it with `clients/python/vitalflow_export`, and time
//! its `predict` at each batch size; then load the exported forest here and time `predict_risk` over
//! Arrow arrays at the same batch sizes on the same rows; check that every label is identical; and
//! time vitalflow's shipped forest too.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{Array, Float64Array};
use serde::Deserialize;
use vitalflow_udf_model::RiskForest;
use vitalflow_udf_model::rubric::RiskLevel;
use vitalflow_udf_model::simulate::training_rows;
use vitalflow_udf_model::train::LabelledRows;
use vitalflow_udf_model::udf::predict_risk_array;

use super::cli::BenchModelArgs;
use super::{pin_to_core, rows_per_sec};

/// The exporter and the timing driver, compiled in so that the benchmark needs no checkout.
const PYTHON_PACKAGE: [(&str, &str); 3] = [
    ("__init__.py", include_str!("../../clients/python/vitalflow_export/__init__.py")),
    ("__main__.py", include_str!("../../clients/python/vitalflow_export/__main__.py")),
    ("bench.py", include_str!("../../clients/python/vitalflow_export/bench.py")),
];

#[derive(Debug, Deserialize)]
struct SklearnReport {
    sklearn: String,
    fit_seconds: f64,
    nodes: u64,
    max_depth: u64,
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

/// Times `predict_risk` over Arrow columns: calls of `batch` rows for at least `seconds`.
fn time_vitalflow(forest: &RiskForest, cols: &[Float64Array], batch: usize, seconds: f64) -> Timing {
    let n = cols[0].len();
    let batch = batch.min(n).max(1);
    let (mut rows, mut spent, mut calls, mut start) = (0u64, 0.0f64, 0u64, 0usize);
    while calls == 0 || spent < seconds {
        let t0 = Instant::now();
        let slice: Vec<Float64Array> = cols.iter().map(|c| c.slice(start, batch)).collect();
        let labels = predict_risk_array(forest, &slice);
        spent += t0.elapsed().as_secs_f64();
        std::hint::black_box(labels.len());
        calls += 1;
        rows += batch as u64;
        start = (start + batch) % (n - batch + 1);
    }
    Timing { batch, rows, seconds: spent }
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
        "training scikit-learn's forest ({} trees, unbounded depth) and timing its predict on core {}",
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
        ])
        .arg("--model-out")
        .arg(&model_json)
        .arg("--predictions-out")
        .arg(&predictions)
        .current_dir(dir.path())
        .env("PYTHONPATH", dir.path())
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
        "vitalflow bench model: {} evaluation rows, one core{}",
        eval.features.len(),
        if pinned { " (taskset)" } else { " (NOT pinned)" }
    )?;
    writeln!(
        out,
        "scikit-learn {}: {} trees, {} nodes, depth ≤ {}, fitted on {} rows in {:.1} s; vitalflow loads it as {} nodes, depth ≤ {}",
        report.sklearn,
        args.trees,
        report.nodes,
        report.max_depth,
        train.features.len(),
        report.fit_seconds,
        imported.node_count(),
        imported.max_depth()
    )?;
    writeln!(
        out,
        "labels identical to sklearn.predict: {} of {} rows ({differ} differ)",
        ours.len() - differ,
        ours.len()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<34} {:>9} {:>16} {:>16} {:>9}",
        "forest", "batch", "vitalflow rows/s", "sklearn rows/s", "ratio"
    )?;
    let shipped_name = format!("vitalflow shipped ({} trees)", shipped.tree_count());
    for (name, forest) in [("same sklearn forest, imported", &imported), (shipped_name.as_str(), &shipped)] {
        for t in &report.timings {
            let ours = time_vitalflow(forest, &cols, t.batch, args.seconds);
            let (v, s) = (rows_per_sec(ours.rows, ours.seconds), rows_per_sec(t.rows, t.seconds));
            writeln!(out, "{name:<34} {:>9} {v:>16.0} {s:>16.0} {:>8.1}x", t.batch, v / s)?;
        }
    }
    writeln!(
        out,
        "(the shipped forest's ratio compares it with the sklearn forest above: what a seed user gains by switching models)"
    )?;
    drop(out);
    if differ > 0 {
        bail!("{differ} labels differ from scikit-learn's");
    }
    Ok(())
}
