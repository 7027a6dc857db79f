"""The `vitalflow` Python package (clients/python) as a user installs it (deploy/test.sh installs it into
the test venv), its example notebook run top to bottom with nbclient, and the Grafana datasource
provisioning file, against one live cluster (scheduler, executor, ingest over the real Kafka).

The Grafana dashboards' panels run in clients/go/dashboards_test.go (via test_flight_sql_clients.py).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import adbc_driver_manager.dbapi
import pandas as pd
import pyarrow as pa
import pytest

import vitalflow
from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS, query_one, running_cluster
from tests.support.pipeline import start_pipeline

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "clients" / "notebooks" / "vitals_and_risk.ipynb"
READINGS, PATIENTS = 400, 8


def _count(conn, sql: str) -> int:
    return conn.query_arrow(sql).column(0)[0].as_py()


def _processed(conn) -> bool:
    """Every reading landed (or dead-lettered) and every landed one cleaned (or dead-lettered)."""
    raw = query_one(conn, "SELECT count(*) FROM vitals_raw")
    done = query_one(conn, "SELECT count(*) FROM vitals_clean") + query_one(
        conn, "SELECT count(*) FROM dead_letters WHERE stage = 'etl'")
    landed = raw + query_one(conn, "SELECT count(*) FROM dead_letters WHERE stage = 'ingest'")
    return landed == READINGS and done == raw and query_one(conn, "SELECT count(*) FROM patient_latest") == PATIENTS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A cluster whose pipeline has processed READINGS readings of PATIENTS patients; yields the Flight SQL address."""
    with running_cluster(tmp_path_factory.mktemp("pyclient")) as cluster:
        yield start_pipeline(cluster, READINGS, patients=PATIENTS, seed=21, until=_processed).flight_sql


# --- The package ----------------------------------------------------------------------------------


def test_connect_with_a_password_answers_with_pandas_and_pyarrow(server):
    user = "grafana"
    with vitalflow.connect(f"grpc://{server}", user=user, password=FLIGHT_SQL_USERS[user][0]) as conn:
        assert isinstance(conn, adbc_driver_manager.dbapi.Connection)
        rows = _count(conn, "SELECT count(*) FROM vitals_clean")
        df = conn.query("SELECT patient_id, event_time, heart_rate, risk FROM vitals_clean ORDER BY event_time")
        assert isinstance(df, pd.DataFrame) and len(df) == rows > 0
        assert list(df.columns) == ["patient_id", "event_time", "heart_rate", "risk"]
        assert isinstance(df["event_time"].dtype, pd.DatetimeTZDtype) and str(df["event_time"].dt.tz) == "UTC"
        assert df["event_time"].is_monotonic_increasing
        assert set(df["risk"].dropna()) <= {"High", "Medium", "Low"}

        table = conn.query_arrow("SELECT patient_id, event_time FROM patient_latest")
        assert isinstance(table, pa.Table) and table.num_rows == PATIENTS
        assert table.schema.field("event_time").type == pa.timestamp("ns", tz="UTC")

        # `?` parameters, bound by the server.
        patient = df["patient_id"].iloc[0]
        mine = conn.query("SELECT count(*) AS n FROM vitals_clean WHERE patient_id = ?", [patient])
        assert mine["n"].iloc[0] == (df["patient_id"] == patient).sum()
        # Still a DB-API connection.
        with conn.cursor() as cur:
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone() == (1,)


def test_connect_with_a_token_and_from_the_environment(server, monkeypatch):
    name, token = FLIGHT_SQL_TOKEN
    with vitalflow.connect(server, token=token) as conn:  # host:port, as Grafana takes it
        assert _count(conn, "SELECT count(*) FROM patient_latest") == PATIENTS
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_URL", f"grpc://{server}")
    monkeypatch.setenv("VITALFLOW_USER", "admin")
    monkeypatch.setenv("VITALFLOW_PASSWORD", FLIGHT_SQL_USERS["admin"][0])
    with vitalflow.connect() as conn:
        assert _count(conn, "SELECT count(*) FROM patient_latest") == PATIENTS


def test_deprecated_environment_names_are_still_read_with_a_warning(monkeypatch):
    from vitalflow.client import DEPRECATED_ENV, _url, env

    for name, old in DEPRECATED_ENV.items():
        for n in (name, *old):
            monkeypatch.delenv(n, raising=False)
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_HOST", "ward:50060")
    monkeypatch.setenv("VITALFLOW_GRAFANA_USER", "grafana")
    with pytest.warns(FutureWarning, match="VITALFLOW_FLIGHT_SQL_HOST is deprecated: set VITALFLOW_FLIGHT_SQL_URL instead"):
        assert _url(None) == "grpc://ward:50060"
    with pytest.warns(FutureWarning, match="VITALFLOW_GRAFANA_USER is deprecated: set VITALFLOW_USER instead"):
        assert env("VITALFLOW_USER") == "grafana"
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_URL", "grpc+tls://ward:50061")
    assert _url(None) == "grpc+tls://ward:50061"


def test_bad_connections_fail_clearly(server):
    with pytest.raises(ValueError, match="either user and password, or token"):
        vitalflow.connect(server, user="admin", password="x", token="t")
    with pytest.raises(ValueError, match="user and password go together"):
        vitalflow.connect(server, user="admin")
    with pytest.raises(ValueError, match="'http://.*' is not a Flight SQL URL"):
        vitalflow.connect(f"http://{server}", token="t")
    with pytest.raises(ValueError, match="tls_root_certs needs a grpc\\+tls"):
        vitalflow.connect(server, token="t", tls_root_certs=b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(Exception, match="(?i)unauthenticated"):
        with vitalflow.connect(server, user="admin", password="not-the-password") as conn:
            conn.query("SELECT 1")
    with pytest.raises(Exception, match="credentials required"):
        with vitalflow.connect(server) as conn:
            conn.query("SELECT 1")


def test_installed_with_the_exporter_as_a_console_script(tmp_path):
    assert metadata.version("vitalflow")
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts") if ep.dist.name == "vitalflow"}
    # No script named plain `vitalflow`: it would shadow the server's binary on PATH.
    assert scripts == {"vitalflow-export-sklearn": "vitalflow_export.__main__:main"}
    sklearn_ensemble = pytest.importorskip("sklearn.ensemble")
    import numpy as np

    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (200, 6))
    y = np.where(x[:, 0] > 0.6, "High", np.where(x[:, 1] > 0.5, "Medium", "Low"))
    model = sklearn_ensemble.RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps(model))
    script = Path(sys.executable).parent / "vitalflow-export-sklearn"
    out = subprocess.run([str(script), str(pickled), str(tmp_path / "a.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "3 trees" in out.stdout, out.stderr
    assert vitalflow.export_sklearn(model, tmp_path / "b.json")["trees"] == vitalflow.forest_to_dict(model)["trees"]
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    # docs/model.md's `python -m vitalflow_export` still works, and a bad input is named.
    bad = subprocess.run([sys.executable, "-m", "vitalflow_export", str(tmp_path / "a.json"), str(tmp_path / "c.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and not (tmp_path / "c.json").exists(), bad.stderr
    assert f"python -m vitalflow_export: {tmp_path / 'a.json'}: not a readable pickle" in bad.stderr, bad.stderr


# --- The notebook ---------------------------------------------------------------------------------


def test_notebook_runs_top_to_bottom(server, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    # The kernel inherits this environment: the notebook's `vitalflow.connect()` reads it, as a user's would.
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_URL", f"grpc://{server}")
    monkeypatch.setenv("VITALFLOW_USER", "grafana")
    monkeypatch.setenv("VITALFLOW_PASSWORD", FLIGHT_SQL_USERS["grafana"][0])
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    try:
        nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        # The executed notebook, outputs and charts included, to open when something looks wrong.
        nbformat.write(nb, tmp_path / NOTEBOOK.name)

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Charts: risk counts, the patient's history, the SpO2 sweep, P(High) by NEWS2.
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4

    def text_of(marker: str) -> str:
        cell = next(c for c in nb.cells if c.cell_type == "code" and marker in c.source)
        return "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in cell.outputs)

    with vitalflow.connect(server, user="grafana", password=FLIGHT_SQL_USERS["grafana"][0]) as conn:
        readings = _count(conn, "SELECT count(*) FROM vitals_clean")
    assert re.search(rf"0\s+{readings}\s+{PATIENTS}\s", text_of("count(DISTINCT patient_id) AS patients"))
    # The what-if cases, scored on the server: the steady patient is Low with NEWS2 0, the shocked and
    # hypoxic one High with NEWS2 17 (RR 3, SpO2 3, oxygen 2, SBP 3, HR 2, new confusion 3, temperature 1).
    scored = text_of("scored = score(cases)")
    assert re.search(r"steady\s+Low\s+\S+\s+0\b", scored), scored
    assert re.search(r"shocked, hypoxic\s+High\s+\S+\s+17\b", scored), scored
    assert re.search(r"agree on \d+% of \d+ readings", text_of("agreement ="))


# --- Grafana's datasource provisioning -------------------------------------------------------------


def test_grafana_datasource_provisioning_signs_in(server):
    yaml = pytest.importorskip("yaml")
    path = ROOT / "clients" / "grafana" / "provisioning" / "datasources" / "vitalflow.yaml"
    env = {"VITALFLOW_FLIGHT_SQL_HOST": server, "VITALFLOW_USER": "grafana", "VITALFLOW_PASSWORD": FLIGHT_SQL_USERS["grafana"][0]}

    def expand(value):
        """Grafana expands ${VAR} in a provisioning file's values from its environment (unset: empty)."""
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)
        return value

    (source,) = expand(yaml.safe_load(path.read_text()))["datasources"]
    assert source["type"] == "influxdata-flightsql-datasource"
    data, secure = source["jsonData"], source["secureJsonData"]
    # The keys the plugin's backend reads (pkg/flightsql/flightsql.go `config`), with the types it decodes.
    assert set(data) <= {"host", "metadata", "secure", "username", "password", "token", "selectedAuthType"}
    assert isinstance(data["secure"], bool) and data["selectedAuthType"] == "username/password"
    assert re.fullmatch(r"[^:]+:\d+", data["host"])
    scheme = "grpc+tls" if data["secure"] else "grpc"
    with vitalflow.connect(f"{scheme}://{data['host']}", user=data["username"], password=secure["password"]) as conn:
        assert _count(conn, "SELECT count(*) FROM patient_latest") == PATIENTS
