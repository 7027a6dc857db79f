"""`vitalflow up`: the whole pipeline and the dashboard from one command, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql

from tests.support.cluster import required_env
from tests.support.http_json import http
from tests.support.wait import wait_until

RISK_LEVELS = {"High", "Medium", "Low"}
RECORD = {"patient_id": "P001", "heart_rate": 88, "systolic_bp": 121, "diastolic_bp": 79, "spo2": 97, "temperature": 36.9, "glucose": 104}


def binary() -> str:
    return required_env("VITALFLOW_BIN")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, whatever process group or session it moved to."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_up(what: str, check, timeout: float, log: Path, proc: subprocess.Popen):
    """wait_until `check()` answers, while `up` runs; any error of `check` means "not ready yet"."""

    def answered():
        if proc.poll() is not None:
            raise AssertionError(f"vitalflow up exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-4000:]}")
        return check()

    return wait_until(answered, timeout, what, details=lambda: log.read_text()[-4000:], retry_on=(Exception,))


def wait_ready(path: Path, proc: subprocess.Popen, log: Path) -> dict:
    return wait_up("the ready file", lambda: path.exists() and json.loads(path.read_text()), 90, log, proc)


def test_up_runs_the_pipeline_and_dashboard_and_ctrl_c_leaves_nothing(tmp_path):
    log = tmp_path / "up.log"
    ready = tmp_path / "up.json"
    args = [binary(), "--data", str(tmp_path / "data"), "up", "--patients", "10", "--rate", "20",
            "--flight-sql-port", "0", "--http-port", "0", "--dashboard-port", "0", "--broker-port", "0",
            "--ready-file", str(ready)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        addrs = wait_ready(ready, proc, log)
        assert addrs["embedded_broker"] is True
        for key in ("flight_sql", "http", "dashboard", "kafka"):
            assert addrs[key].startswith("127.0.0.1:"), addrs

        # Simulated readings go through the embedded broker, ingest and the ETL on Ballista.
        conn = flightsql.connect(f"grpc://{addrs['flight_sql']}", autocommit=True)

        def scored_rows():
            cur = conn.cursor()
            cur.execute("SELECT patient_id, risk, news2_score, model_version FROM vitals_clean WHERE risk IS NOT NULL LIMIT 20")
            rows = cur.fetchall()
            cur.close()
            return rows

        rows = wait_up("risk-labelled rows in vitals_clean", scored_rows, 180, log, proc)
        assert {r[1] for r in rows} <= RISK_LEVELS
        assert all(r[0].startswith("P") and r[3] for r in rows), rows
        conn.close()

        # The seed's HTTP contract.
        status, health, _ = http("GET", f"http://{addrs['http']}/healthz")
        assert status == 200 and health["status"] == "ok", health
        status, answer, _ = http("POST", f"http://{addrs['http']}/predict_batch", [RECORD, dict(RECORD, heart_rate=150, spo2=85, systolic_bp=80)])
        assert status == 200, answer
        predictions = answer["predictions"]
        assert len(predictions) == 2
        for p in predictions:
            assert p["risk"] in RISK_LEVELS
            assert set(p["probabilities"]) == RISK_LEVELS
            assert abs(sum(p["probabilities"].values()) - 1) < 1e-3
            assert p["model_version"] == health["model_version"]
        status, answer, _ = http("POST", f"http://{addrs['http']}/predict_batch", {"records": [RECORD, dict(RECORD, spo2="high")]})
        assert status == 422, answer
        assert answer["detail"][0]["loc"] == ["body", 1, "spo2"], answer

        # The dashboard: its first run makes a venv, so allow for pip.
        dashboard = addrs["dashboard"]

        def dashboard_page():
            with urllib.request.urlopen(f"http://{dashboard}/_stcore/health", timeout=5) as health_check:
                if health_check.read().strip() != b"ok":
                    return None
            with urllib.request.urlopen(f"http://{dashboard}/", timeout=5) as page:
                return page.status == 200 and b"<div id=\"root\">" in page.read()

        wait_up("the dashboard on its port", dashboard_page, 600, log, proc)

        children = descendants(proc.pid)
        assert children, "the dashboard should run as a child process"
    finally:
        # Ctrl-C reaches only `up` (the dashboard runs in its own process group): up must stop it.
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"vitalflow up did not stop on Ctrl-C:\n{log.read_text()[-4000:]}")
    assert code == 0, log.read_text()[-4000:]
    wait_until(lambda: not any(alive(p) for p in children), 10,
               lambda: f"processes left behind after Ctrl-C: {[p for p in children if alive(p)]}", interval=0.2)
    assert not (tmp_path / "data" / "_run" / "up.pid").exists()


def test_up_detach_then_stop(tmp_path):
    data = str(tmp_path / "data")
    started = subprocess.run(
        [binary(), "--data", data, "up", "--detach", "--no-dashboard", "--patients", "5", "--rate", "5",
         "--flight-sql-port", "0", "--http-port", "0", "--broker-port", "0"],
        capture_output=True, timeout=150, text=True,
    )
    assert started.returncode == 0, started.stderr
    addrs = json.loads(started.stdout)
    pid = addrs["pid"]
    try:
        assert alive(pid)
        status, health, _ = http("GET", f"http://{addrs['http']}/healthz")
        assert status == 200, health
        again = subprocess.run([binary(), "--data", data, "up", "--detach", "--no-dashboard"], capture_output=True, timeout=60, text=True)
        assert again.returncode != 0 and "already running" in again.stderr, again.stderr
        stopped = subprocess.run([binary(), "--data", data, "stop"], capture_output=True, timeout=90, text=True)
        assert stopped.returncode == 0, stopped.stderr
        assert not alive(pid)
        log = Path(data, "_run", "up.log").read_text()
        assert "stopped." in log, log[-2000:]
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_up_restarted_on_its_data_lands_every_reading_of_the_new_broker(tmp_path):
    """`up` embeds a new in-memory broker each time, whose offsets start at 0 again, below what the first
    run landed: every reading produced after the restart must still land (positions are per cluster)."""
    from confluent_kafka import Producer

    data = str(tmp_path / "data")

    def start() -> dict:
        started = subprocess.run(
            [binary(), "--data", data, "up", "--detach", "--no-dashboard", "--patients", "20", "--rate", "100",
             "--flight-sql-port", "0", "--http-port", "0", "--broker-port", "0"],
            capture_output=True, timeout=150, text=True,
        )
        assert started.returncode == 0, started.stderr
        return json.loads(started.stdout)

    def count(addrs: dict, where: str) -> int:
        conn = flightsql.connect(f"grpc://{addrs['flight_sql']}", autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT count(*) FROM vitals_raw WHERE {where}")
            return cur.fetchone()[0]
        finally:
            conn.close()

    def stop(addrs: dict) -> None:
        stopped = subprocess.run([binary(), "--data", data, "stop"], capture_output=True, timeout=90, text=True)
        assert stopped.returncode == 0, stopped.stderr
        assert not alive(addrs["pid"])

    first = start()
    try:
        wait_until(lambda: count(first, "true") >= 1500, 120, "1500 simulated readings landed", retry_on=(Exception,))
    finally:
        stop(first)
    second = start()
    try:
        producer = Producer({"bootstrap.servers": second["kafka"]})
        n = 300
        for i in range(n):
            record = dict(RECORD, patient_id=f"R{i:03d}", timestamp=1795515302123 + i)
            producer.produce("raw-patient", value=json.dumps(record).encode(), key=f"R{i:03d}".encode())
        assert producer.flush(60) == 0
        wait_until(lambda: count(second, "patient_id LIKE 'R%'") == n, 120,
                   f"the {n} readings produced after the restart to land", retry_on=(Exception,))
    finally:
        stop(second)
