"""A scikit-learn forest exported with clients/python/vitalflow_export scores identically in vitalflow.

Runs scikit-learn itself: trains a RandomForestClassifier with the seed's settings (100 trees, unbounded
depth) on rows labelled by the rubric, exports it, scores 100k rows with `vitalflow predict`, and
compares every label and every class probability with `predict` and `predict_proba`; and checks
`vitalflow predict --explain` (TreeSHAP over the exported node covers) against Shapley values computed
here by their definition from scikit-learn's own tree arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from tests.support import rubric
from tests.support.cluster import required_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from vitalflow_export import FEATURES, export_forest  # noqa: E402

sklearn_ensemble = pytest.importorskip("sklearn.ensemble")

# Where true vitals are drawn from: wide enough to reach every band of every feature.
RANGES = [(30, 180), (60, 240), (30, 135), (75, 100), (33.5, 41.5), (30, 500)]


def _binary() -> str:
    return required_env("VITALFLOW_BIN")


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.uniform(lo, hi, n) for lo, hi in RANGES])


def _labels(x: np.ndarray) -> np.ndarray:
    return np.array([rubric.label(dict(zip(FEATURES, row))) for row in x])


def _write_csv(path: Path, x: np.ndarray) -> None:
    # %.17g round-trips every float64 exactly.
    np.savetxt(path, x, delimiter=",", header=",".join(FEATURES), comments="", fmt="%.17g")


def _predict(model_path: Path, input_path: Path, out_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_binary(), "predict", "--model", str(model_path), "--input", str(input_path), "--output", str(out_path), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    rng = np.random.default_rng(20261124)
    x = _rows(rng, 10_000)
    # Monitors report whole numbers (temperature to a tenth); noise makes the labels a real question.
    x = np.round(x + rng.normal(0, 1.5, x.shape), 1)
    model = sklearn_ensemble.RandomForestClassifier(n_estimators=100, max_depth=None, n_jobs=1, random_state=0)
    model.fit(x, _labels(x))
    path = tmp_path_factory.mktemp("model") / "sklearn-forest.json"
    export_forest(model, path, version="sklearn-parity-test")
    return model, path


def test_vitalflow_gives_sklearns_labels_and_probabilities_on_100k_rows(forest, tmp_path):
    model, model_path = forest
    rng = np.random.default_rng(7)
    x = _rows(rng, 100_000)
    x[:30_000] = np.round(x[:30_000])
    # Rows sitting exactly on the forest's own thresholds, and one float32 step either side: where a
    # comparison done in the wrong precision goes the wrong way.
    thresholds = [(t.feature[i], t.threshold[i]) for e in model.estimators_[:20] for t in [e.tree_] for i in range(t.node_count) if t.feature[i] >= 0]
    picks = rng.choice(len(thresholds), 30_000)
    for row, k in zip(range(30_000, 60_000), picks):
        f, th = thresholds[k]
        x[row, f] = [th, float(np.nextafter(np.float32(th), np.float32(np.inf))), float(np.nextafter(np.float32(th), np.float32(-np.inf)))][row % 3]
    rows_csv = tmp_path / "rows.csv"
    _write_csv(rows_csv, x)
    out = tmp_path / "scores.csv"
    done = _predict(model_path, rows_csv, out)
    assert done.returncode == 0, done.stderr
    got = pacsv.read_csv(out).to_pydict()

    want = model.predict(x)
    differ = [i for i, (a, b) in enumerate(zip(got["risk"], want)) if a != b]
    assert len(got["risk"]) == len(x)
    assert not differ, f"{len(differ)} of {len(x)} labels differ, first rows {differ[:5]}"
    proba = model.predict_proba(x)
    for name, column in (("High", "p_high"), ("Medium", "p_medium"), ("Low", "p_low")):
        k = list(model.classes_).index(name)
        assert np.array_equal(np.array(got[column]), proba[:, k]), f"{name} probabilities differ"


def test_a_corrupt_model_file_is_an_error_naming_the_file(tmp_path):
    rows_csv = tmp_path / "rows.csv"
    _write_csv(rows_csv, _rows(np.random.default_rng(1), 10))
    corrupt = tmp_path / "corrupt-model.json"
    corrupt.write_text('{"format": "vitalflow-forest/1", "trees": [')
    done = _predict(corrupt, rows_csv, tmp_path / "out.csv")
    assert done.returncode != 0
    assert "corrupt-model.json" in done.stderr and "panicked" not in done.stderr, done.stderr


def test_a_model_with_other_features_is_an_error_naming_the_file_and_the_features(forest, tmp_path):
    _, model_path = forest
    doc = json.loads(model_path.read_text())
    doc["features"] = ["pulse", "sbp", "dbp", "sats", "temp", "bg"]
    renamed = tmp_path / "renamed-features.json"
    renamed.write_text(json.dumps(doc))
    rows_csv = tmp_path / "rows.csv"
    _write_csv(rows_csv, _rows(np.random.default_rng(2), 10))
    done = _predict(renamed, rows_csv, tmp_path / "out.csv")
    assert done.returncode != 0
    assert "renamed-features.json" in done.stderr and "pulse" in done.stderr and "heart_rate" in done.stderr, done.stderr
    assert "panicked" not in done.stderr, done.stderr


def _value(tree, high: int, row, known: set, node: int = 0) -> float:
    """The tree's expected P(High) when only the inputs in `known` are known (the rest averaged over the
    training samples' weights at each split), from scikit-learn's arrays."""
    left, right = tree.children_left[node], tree.children_right[node]
    if left == -1:
        value = tree.value[node, 0]
        return float(value[high] / value.sum())
    f = tree.feature[node]
    if f in known:
        goes_left = float(np.float32(row[f])) <= tree.threshold[node]
        return _value(tree, high, row, known, left if goes_left else right)
    w = tree.weighted_n_node_samples
    return (w[left] * _value(tree, high, row, known, left) + w[right] * _value(tree, high, row, known, right)) / w[node]


def test_explanations_of_an_exported_forest_are_its_shapley_values(tmp_path):
    from itertools import combinations
    from math import factorial

    rng = np.random.default_rng(3)
    x = np.round(_rows(rng, 3_000), 1)
    model = sklearn_ensemble.RandomForestClassifier(n_estimators=5, max_depth=5, n_jobs=1, random_state=1)
    model.fit(x, _labels(x))
    model_path = tmp_path / "small-forest.json"
    export_forest(model, model_path, version="explain-test")
    rows = np.round(_rows(rng, 25), 1)
    rows_csv = tmp_path / "rows.csv"
    _write_csv(rows_csv, rows)
    out = tmp_path / "explained.csv"
    done = _predict(model_path, rows_csv, out, "--explain")
    assert done.returncode == 0, done.stderr
    got = pacsv.read_csv(out).to_pydict()
    high = list(model.classes_).index("High")
    trees = [e.tree_ for e in model.estimators_]
    m = len(FEATURES)
    for i, row in enumerate(rows):
        def v(known):
            return sum(_value(t, high, row, set(known)) for t in trees) / len(trees)

        assert abs(got["why_base"][i] - v(())) < 1e-12
        total = got["why_base"][i]
        for f, name in enumerate(FEATURES):
            others = [g for g in range(m) if g != f]
            want = sum(
                factorial(k) * factorial(m - k - 1) / factorial(m) * (v(s + (f,)) - v(s))
                for k in range(m)
                for s in combinations(others, k)
            )
            assert abs(got[f"why_{name}"][i] - want) < 1e-12, (i, name, got[f"why_{name}"][i], want)
            total += got[f"why_{name}"][i]
        assert abs(total - got["p_high"][i]) < 1e-9
