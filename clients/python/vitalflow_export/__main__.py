"""vitalflow-export-sklearn (or python -m vitalflow_export) MODEL.pkl OUT.json [--features a,b,...] [--version V]"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

from . import FEATURES, export_forest


def _load(path: str):
    try:
        import joblib
    except ImportError:
        with open(path, "rb") as f:
            return pickle.load(f)
    return joblib.load(path)


def main(argv: list[str] | None = None) -> int:
    # Named as it was started: the console script vitalflow-export-sklearn or python -m vitalflow_export.
    prog = os.path.basename(sys.argv[0])
    parser = argparse.ArgumentParser(prog="python -m vitalflow_export" if prog == "__main__.py" else prog, description="Export a scikit-learn RandomForestClassifier to a vitalflow model file.")
    parser.add_argument("model", help="pickled, fitted RandomForestClassifier (pickle or joblib)")
    parser.add_argument("out", help="where to write the vitalflow model file (JSON)")
    parser.add_argument("--features", help=f"comma-separated input names in training order (default: the model's, else {','.join(FEATURES)})")
    parser.add_argument("--version", help="model version stamped on scored rows (default: sklearn-rf- and the trees' hash)")
    args = parser.parse_args(argv)
    try:
        model = _load(args.model)
    except Exception as e:  # noqa: BLE001 - whatever the unpickler says, the file is named
        print(f"{parser.prog}: {args.model}: not a readable pickle or joblib file ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    features = args.features.split(",") if args.features else None
    try:
        doc = export_forest(model, args.out, features=features, version=args.version)
    except (TypeError, ValueError) as e:
        print(f"{parser.prog}: {args.model}: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(doc['trees'])} trees, version {doc['version']}, features {','.join(doc['features'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
