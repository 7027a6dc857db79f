"""The Python side of `vitalflow bench model`: train a forest with the seed's settings, export it, and
time scikit-learn's `predict` and the compiled-forest peers (`peers.py`) at several batch sizes on the
rows vitalflow times too.

Run by `vitalflow bench model` (pinned to one core, BLAS/OpenMP at one thread); prints one JSON line.
Files are raw little-endian arrays: features float64 (rows x 6), labels and predictions uint8
(0 High, 1 Medium, 2 Low).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import export_forest
from .peers import run_peers, time_batches

CLASSES = np.array(["High", "Medium", "Low"])


def _rows(path: str) -> np.ndarray:
    return np.fromfile(path, dtype="<f8").reshape(-1, 6)


def _save(labels: np.ndarray, path: str) -> None:
    np.select([labels == c for c in CLASSES], [0, 1, 2]).astype(np.uint8).tofile(path)


def main(argv: list[str] | None = None) -> int:
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    p = argparse.ArgumentParser(prog="vitalflow_export.bench")
    p.add_argument("--train", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--model-out", required=True)
    p.add_argument("--predictions-out", required=True)
    p.add_argument("--batches", default="1,100,10000,1000000")
    p.add_argument("--seconds", type=float, default=2.0, help="time spent per batch size, at least one call")
    p.add_argument("--peers", default="onnxruntime,treelite", help="compiled-forest peers to time, comma-separated")
    p.add_argument("--workdir", default=".", help="where peers build their files")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    x = _rows(args.train)
    y = CLASSES[np.fromfile(args.labels, dtype=np.uint8)]
    ev = _rows(args.eval)
    # The seed's settings: 100 trees, unbounded depth; one job so the timing is one core's.
    model = RandomForestClassifier(n_estimators=args.trees, max_depth=None, n_jobs=1, random_state=0)
    t0 = time.perf_counter()
    model.fit(x, y)
    fit_seconds = time.perf_counter() - t0
    export_forest(model, args.model_out, version=f"sklearn-bench-{args.trees}")

    # The labels every other side is compared with (untimed), then the timings.
    labels = model.predict(ev)
    _save(labels, args.predictions_out)
    timings = time_batches(model.predict, ev, batches, args.seconds)
    peers = run_peers([p for p in args.peers.split(",") if p], model, ev, labels, batches, args.seconds, args.workdir)
    nodes = int(sum(e.tree_.node_count for e in model.estimators_))
    depth = int(max(e.tree_.max_depth for e in model.estimators_))
    report = {"sklearn": sklearn.__version__, "fit_seconds": fit_seconds, "nodes": nodes, "max_depth": depth}
    print(json.dumps(report | {"timings": timings, "peers": peers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
