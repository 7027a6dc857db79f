"""deploy/local-cluster.sh: starts the processes the compose file runs (its own Kafka, the scheduler with ETL
and front door, two executors, two ingest processes, the dashboard), rows flow from Kafka to vitals_clean
through them, every probe answers, and stop leaves no process behind (checked by process group)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.support.cluster import FLIGHT_SQL_USERS, flight_sql_connect, query_one, required_env, write_test_config
from tests.support.http_json import http
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local-cluster.sh"
READINGS = 400
PROCESSES = ["scheduler", "executor-1", "executor-2", "ingest-1", "ingest-2", "dashboard"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(group: int) -> list[int]:
    """Live (not zombie) processes of process group `group`."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            alive.append(int(stat.parent.name))
    return alive


def script(env: dict[str, str], command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)


def logs(cluster_dir: Path) -> str:
    parts = []
    for log in sorted((cluster_dir / "logs").glob("*.log")) + [cluster_dir / "kafka" / "broker.log"]:
        if log.exists():
            parts.append(f"----- {log.name} -----\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts)


def metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_local_cluster_starts_flows_rows_end_to_end_and_stops_leaving_no_process(tmp_path):
    binary = required_env("VITALFLOW_BIN")
    cluster_dir = tmp_path / "cluster"
    config = write_test_config(tmp_path / "vitalflow.toml")
    dashboard_port = free_port()
    # The script's own Kafka, not the suite's: the whole cluster is started and stopped by it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALFLOW__") and k not in ("KAFKA_BOOTSTRAP", "VITALFLOW_KAFKA_DIR")}
    env.update(
        VITALFLOW_BIN=binary,
        VITALFLOW_CLUSTER_DIR=str(cluster_dir),
        VITALFLOW_CONFIG=str(config),
        # Free ports instead of the defaults, so the suite never collides with anything on the machine.
        VITALFLOW__SCHEDULER__PORT="0",
        VITALFLOW__FLIGHT_SQL__PORT="0",
        VITALFLOW__HTTP__PORT="0",
        VITALFLOW__ETL__MIN_INTERVAL_MS="200",
        DASHBOARD_PORT=str(dashboard_port),
        VITALFLOW_USER="grafana",
        VITALFLOW_PASSWORD=FLIGHT_SQL_USERS["grafana"][0],
    )
    groups: dict[str, int] = {}
    try:
        started = script(env, "start", timeout=600)
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}\n{logs(cluster_dir)}"
        status = script(env, "status", timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        states = {line.split()[0]: line.split()[2] for line in status.stdout.splitlines()[1:]}
        assert states == {name: "running" for name in ["kafka", *PROCESSES]}, status.stdout

        groups = {name: int((cluster_dir / "pids" / name).read_text()) for name in PROCESSES}
        groups["kafka"] = int((cluster_dir / "kafka" / "pid").read_text())
        ready = {name: json.loads((cluster_dir / "run" / f"{name}.json").read_text()) for name in PROCESSES}

        # Every probe a deployment relies on answers on the running processes.
        assert http("GET", f"http://{ready['scheduler']['http']}/healthz")[0] == 200
        for name in ("executor-1", "executor-2"):
            for probe in ("healthz", "readyz"):
                code, body, _ = http("GET", f"http://127.0.0.1:{ready[name]['health']}/{probe}")
                assert code == 200 and body["status"] == "ok" and all(body["checks"].values()), (name, probe, body)
        for name in ("ingest-1", "ingest-2"):
            assert http("GET", f"http://{ready[name]['metrics']}/healthz")[0] == 200
            assert http("GET", f"http://{ready[name]['metrics']}/readyz")[:2] == (200, {"status": "ready"})
        with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/_stcore/health", timeout=10) as r:
            assert r.read().decode().strip() == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/", timeout=10) as r:
            assert r.status == 200 and "<html" in r.read().decode().lower()

        # Rows flow: Kafka → both ingest processes → the ETL on the executors → vitals_clean, exactly once.
        kafka = (cluster_dir / "run" / "kafka").read_text().strip()
        simulate = subprocess.run(
            [binary, "--config", str(config), "--kafka", kafka, "simulate", "--count", str(READINGS), "--rate", "0",
             "--patients", "30", "--seed", "8", "--artefact-rate", "0", "--missing-rate", "0"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert simulate.returncode == 0, simulate.stderr
        conn = flight_sql_connect(ready["scheduler"]["flight_sql"])
        try:
            clean = [None]

            def all_clean() -> bool:
                clean[0] = query_one(conn, "SELECT count(*) FROM vitals_clean")
                return clean[0] == READINGS

            wait_until(all_clean, 180, lambda: f"vitals_clean has {clean[0]} rows, expected {READINGS}",
                       details=lambda: logs(cluster_dir))
            assert query_one(conn, "SELECT count(*) FROM vitals_raw") == READINGS
            assert query_one(conn, "SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset FROM vitals_clean) AS d") == READINGS
            assert query_one(conn, "SELECT count(*) FROM dead_letters") == 0
        finally:
            conn.close()
        landed = []
        for name in ("ingest-1", "ingest-2"):
            with urllib.request.urlopen(f"http://{ready[name]['metrics']}/metrics", timeout=10) as r:
                landed.append(metric(r.read().decode(), "vitalflow_ingest_records_landed_total"))
        # Both consumers of the group took a share of the topic's partitions, and together landed each record once.
        assert sum(landed) == READINGS and all(n > 0 for n in landed), landed
    finally:
        stopped = script(env, "stop", timeout=300)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    left = {name: group_alive(group) for name, group in groups.items()}
    assert all(not pids for pids in left.values()), f"processes left behind: {left}"
    after = script(env, "status", timeout=60)
    assert after.returncode == 3 and "no cluster running" in after.stdout, after.stdout
    # State stays for the next start: the tables and Kafka's log.
    assert any((cluster_dir / "data").iterdir()) and (cluster_dir / "kafka" / "data").is_dir()


def test_local_cluster_refuses_a_second_start_and_stop_without_a_cluster_is_a_no_op(tmp_path):
    env = dict(os.environ, VITALFLOW_CLUSTER_DIR=str(tmp_path / "cluster"))
    assert script(env, "stop", timeout=30).returncode == 0
    (tmp_path / "cluster" / "run").mkdir(parents=True)
    (tmp_path / "cluster" / "run" / "order").write_text("")
    second = script(env, "start", timeout=30)
    assert second.returncode == 1 and "run stop first" in second.stderr, second.stderr
    assert script(env, "bogus", timeout=30).returncode == 2
