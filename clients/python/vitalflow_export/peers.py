"""The compiled-forest peers of `vitalflow bench model`: the same scikit-learn forest run by ONNX Runtime
(converted with skl2onnx; one intra-op thread) and by Treelite/TL2cgen (compiled to a shared library with
the machine's gcc), each timed on the same rows as scikit-learn and its labels compared with
scikit-learn's. A peer whose packages are missing is reported as such, not fatal.

Both are called through Python: at small batches the call's overhead dominates their figures (the
report says so).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def onnxruntime_peer(model, workdir: str) -> tuple[str, Predict]:
    """ONNX Runtime's TreeEnsembleClassifier on the converted forest, one thread."""
    import onnxruntime as ort
    import skl2onnx
    from skl2onnx import to_onnx

    # float32 input, as scikit-learn compares; no ZipMap, so labels come back as an array.
    onx = to_onnx(model, np.zeros((1, model.n_features_in_), dtype=np.float32), options={id(model): {"zipmap": False}})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(onx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    label_name = session.get_outputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run([label_name], {input_name: x.astype(np.float32)})[0]

    return f"onnxruntime {ort.__version__}, skl2onnx {skl2onnx.__version__}", predict


def treelite_peer(model, workdir: str) -> tuple[str, Predict]:
    """The forest compiled to C by TL2cgen and built with gcc; one thread."""
    import tl2cgen
    import treelite

    libpath = os.path.join(workdir, "treelite-forest.so")
    # Split into several C files: one file of 400k nodes takes gcc far longer than the same in pieces.
    tl2cgen.export_lib(
        treelite.sklearn.import_model(model), toolchain="gcc", libpath=libpath, params={"parallel_comp": 16}, options=["-O1"]
    )
    predictor = tl2cgen.Predictor(libpath, nthread=1)
    classes = model.classes_

    def predict(x: np.ndarray) -> np.ndarray:
        # scikit-learn's inputs are float32; the imported thresholds are float64, so the float32
        # values are handed over as float64, which compares exactly as scikit-learn does.
        scores = predictor.predict(tl2cgen.DMatrix(x.astype(np.float32).astype(np.float64)))
        return classes[np.argmax(scores.reshape(len(x), -1), axis=1)]

    return f"treelite {treelite.__version__}, tl2cgen {tl2cgen.__version__}, gcc", predict


PEERS = {"onnxruntime": onnxruntime_peer, "treelite": treelite_peer}


def time_batches(predict: Predict, rows: np.ndarray, batches: list[int], seconds: float) -> list[dict]:
    """Calls of `batch` rows, moving through `rows`, for at least `seconds` per batch size."""
    timings = []
    for batch in batches:
        batch = min(batch, len(rows))
        calls, done, spent, start = 0, 0, 0.0, 0
        while calls == 0 or spent < seconds:
            chunk = rows[start : start + batch]
            t0 = time.perf_counter()
            predict(chunk)
            spent += time.perf_counter() - t0
            calls += 1
            done += len(chunk)
            start = (start + batch) % max(1, len(rows) - batch + 1)
        timings.append({"batch": batch, "calls": calls, "rows": done, "seconds": spent})
    return timings


def run_peers(names: list[str], model, rows: np.ndarray, reference: np.ndarray, batches: list[int], seconds: float, workdir: str) -> dict:
    """Each named peer's version, disagreements with `reference` (scikit-learn's labels of `rows`) and timings."""
    report = {}
    for name in names:
        make = PEERS.get(name)
        if make is None:
            report[name] = {"error": f"unknown peer (known: {', '.join(PEERS)})"}
            continue
        try:
            t0 = time.perf_counter()
            version, predict = make(model, workdir)
            build_seconds = time.perf_counter() - t0
        except ImportError as e:
            report[name] = {"error": f"not installed ({e}); see clients/requirements-bench.txt"}
            continue
        labels = np.concatenate([predict(rows[i : i + 100_000]) for i in range(0, len(rows), 100_000)])
        report[name] = {
            "version": version,
            "build_seconds": build_seconds,
            "disagreements": int(np.sum(labels.astype(str) != reference.astype(str))),
            "timings": time_batches(predict, rows, batches, seconds),
        }
    return report
