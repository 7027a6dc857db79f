"""Export a fitted scikit-learn RandomForestClassifier to a vitalflow model file (JSON).

    from vitalflow_export import export_forest
    export_forest(model, "model.json")            # model: a fitted RandomForestClassifier

or from a pickle, as the seed saves it:

    python -m vitalflow_export model.pkl model.json [--features heart_rate,systolic_bp,...] [--version V]

vitalflow loads the file (`--model` / `model.path`) and gives the same labels as `model.predict` on every
row: it reproduces scikit-learn's float32 comparisons and its averaging of the trees' class fractions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

FORMAT = "vitalflow-forest/1"

# vitalflow's model inputs, in order: a forest must have been trained on these columns in this order.
FEATURES = ("heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose")


def _leaf_fractions(tree, sklearn_version: tuple[int, ...]):
    """Each node's class fractions exactly as the tree's predict_proba returns them."""
    import numpy as np

    value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
    if sklearn_version < (1, 4):
        # Before 1.4 leaves hold weighted counts and predict_proba normalises them; do the same here.
        normaliser = value.sum(axis=1)[:, np.newaxis]
        normaliser[normaliser == 0.0] = 1.0
        value = value / normaliser
    return value


def forest_to_dict(model, features: Sequence[str] | None = None, version: str | None = None) -> dict:
    """The vitalflow model file for a fitted RandomForestClassifier, as a dict."""
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    if not isinstance(model, RandomForestClassifier):
        raise TypeError(f"expected a RandomForestClassifier, got {type(model).__name__}")
    if not hasattr(model, "estimators_"):
        raise ValueError("the forest is not fitted")
    if getattr(model, "n_outputs_", 1) != 1:
        raise ValueError("only single-output forests can be exported")
    if features is None:
        names = getattr(model, "feature_names_in_", None)
        features = [str(n) for n in names] if names is not None else list(FEATURES)
    features = list(features)
    if len(features) != model.n_features_in_:
        raise ValueError(f"the forest has {model.n_features_in_} inputs but {len(features)} feature names were given")
    sk_version = tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit())
    trees = []
    for estimator in model.estimators_:
        t = estimator.tree_
        fractions = _leaf_fractions(t, sk_version)
        leaf = t.children_left == -1
        trees.append(
            {
                "feature": [-1 if leaf[i] else int(t.feature[i]) for i in range(t.node_count)],
                "threshold": [-2.0 if leaf[i] else float(t.threshold[i]) for i in range(t.node_count)],
                "left": [int(c) for c in t.children_left],
                "right": [int(c) for c in t.children_right],
                "value": [[float(v) for v in fractions[i]] if leaf[i] else [] for i in range(t.node_count)],
                # What explain_risk weighs the branches by (TreeSHAP), as the tree's trainer counted it.
                "cover": [float(w) for w in t.weighted_n_node_samples],
            }
        )
    body = json.dumps(trees, allow_nan=False).encode()
    digest = hashlib.sha256(body).hexdigest()
    return {
        "format": FORMAT,
        "version": version or f"sklearn-rf-{digest[:12]}",
        "features": features,
        "classes": [str(c) for c in model.classes_],
        "training": {
            "trainer": f"scikit-learn {sklearn.__version__}",
            # The training rows are not in the pickle; the trees' own hash identifies the model.
            "data_hash": f"trees-sha256:{digest}",
            "rows": 0,
            "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
        },
        "trees": trees,
    }


def export_forest(model, path, features: Sequence[str] | None = None, version: str | None = None) -> dict:
    """Writes a fitted RandomForestClassifier to `path` as a vitalflow model file; returns the dict written."""
    doc = forest_to_dict(model, features=features, version=version)
    with open(path, "w", encoding="utf-8") as f:
        # json writes each float as its shortest round-tripping repr: thresholds and fractions load exactly.
        json.dump(doc, f, allow_nan=False)
    return doc
