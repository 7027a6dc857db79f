"""vitalflow's Python client: a Flight SQL connection that answers with pandas or pyarrow.

    import vitalflow
    conn = vitalflow.connect("grpc://127.0.0.1:50060", user="admin", password="...")
    conn.query("SELECT * FROM patient_latest")          # pandas.DataFrame
    conn.query_arrow("SELECT * FROM vitals_clean")      # pyarrow.Table

and the scikit-learn exporter (`export_sklearn`, console script `vitalflow-export-sklearn`).
"""

from __future__ import annotations

from vitalflow_export import FEATURES, export_forest as export_sklearn, forest_to_dict

from .client import DEFAULT_URL, Connection, connect

__all__ = ["DEFAULT_URL", "FEATURES", "Connection", "connect", "export_sklearn", "forest_to_dict"]
