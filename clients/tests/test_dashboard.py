"""The Streamlit dashboard (clients/streamlit/app.py) against a live vitalflow: its logic through
Streamlit's AppTest, and the running page in headless Chromium (Debian's chromium and chromium-driver);
a clinician signed in on the page acknowledges an alert, which the server records under their name."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from streamlit.testing.v1 import AppTest

from tests.support import rubric
from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS, flight_sql_connect, running_cluster
from tests.support.http_json import http
from tests.support.pipeline import start_pipeline
from tests.support.wait import wait_until

APP = Path(__file__).resolve().parents[1] / "streamlit" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,2400"]

NORMAL = {"heart_rate": 72, "systolic_bp": 122, "diastolic_bp": 78, "spo2": 98, "temperature": 36.8, "glucose": 100,
          "respiratory_rate": 16, "on_oxygen": False, "consciousness": "A"}
CRITICAL = {"heart_rate": 150, "systolic_bp": 80, "diastolic_bp": 45, "spo2": 85, "temperature": 39.6, "glucose": 420,
            "respiratory_rate": 30, "on_oxygen": True, "consciousness": "V"}
# P901 stays well, P902 arrives critical, P903 deteriorates from well to critical.
READINGS = [(40, "P901", NORMAL), (20, "P901", NORMAL), (20, "P902", CRITICAL), (40, "P903", NORMAL), (20, "P903", CRITICAL)]


def load_app():
    spec = importlib.util.spec_from_file_location("vitalflow_dashboard", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


app = load_app()


@pytest.fixture(autouse=True)
def keep_main_module():
    """AppTest installs the page as sys.modules["__main__"]: put the real one back for the suites after."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def plotly_array(value) -> list:
    """A data array of a figure's JSON: a list, or (plotly 6+) numbers as base64 with a dtype."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


# --- logic without a server ------------------------------------------------------------------------

@pytest.mark.parametrize("vital", app.VITALS)
def test_normal_bands_are_the_rubrics_zero_point_bands(vital):
    low, high = app.NORMAL_BANDS[vital]
    step = 0.1 if vital == "temperature" else 1
    assert rubric.points(vital, low) == 0 and rubric.points(vital, high) == 0
    assert rubric.points(vital, round(low - step, 1)) > 0
    if vital != "spo2":  # SpO2 has no band above 100 %
        assert rubric.points(vital, round(high + step, 1)) > 0


def test_risk_changes_are_the_readings_where_the_level_moves():
    t = pd.Timestamp("2026-11-24T10:00:00Z")
    history = pd.DataFrame({
        "event_time": [t + pd.Timedelta(seconds=s) for s in (0, 5, 10, 15, 20, 25)],
        "risk": ["Low", "Low", None, "High", "High", "Medium"],
    }).sample(frac=1, random_state=1)  # the function orders by time itself
    changes = app.risk_changes(history)
    assert changes.to_dict("records") == [
        {"event_time": t + pd.Timedelta(seconds=15), "previous_risk": "Low", "risk": "High"},
        {"event_time": t + pd.Timedelta(seconds=25), "previous_risk": "High", "risk": "Medium"},
    ]


def test_alert_list_has_one_line_per_patient_with_its_newest_rise():
    now = datetime(2026, 11, 24, 10, 0, 30, tzinfo=timezone.utc)
    t = pd.Timestamp("2026-11-24T10:00:00Z")
    alerts = pd.DataFrame({
        "event_time": [t + pd.Timedelta(seconds=s) for s in (20, 10, 0)],
        "patient_id": ["P008", "P002", "P008"],
        "previous_risk": ["Medium", "Low", None],
        "news2_score": [4, None, 3],
        "probability_high": [0.96, 0.7, 0.9],
    })
    latest = pd.DataFrame({"patient_id": ["P002", "P008"], "risk": ["Medium", "High"]})
    items = app.alerts_html(alerts, latest, now).split("<li ")[1:]
    assert len(items) == 2
    assert "<b>P008</b> rose to High from Medium, 10 s ago · NEWS2 4 · P(High) 0.96 · now High · 2 rises in 15 min</li>" in items[0]
    assert "<b>P002</b> rose to High from Low, 20 s ago · NEWS2 – · P(High) 0.70 · now Medium</li>" in items[1]


def test_ward_alerts_list_active_first_with_state_and_who_acted():
    t = pd.Timestamp("2026-11-24T10:00:00Z")
    alerts = pd.DataFrame({
        "alert_id": ["raw:0:1", "raw:0:2", "raw:0:3"],
        "patient_id": ["P1", "P2", "P3"],
        "ward": ["default"] * 3,
        "kind": ["risk", "risk", "no_data"],
        "state": ["dismissed", "acknowledged", "open"],
        "raised_at": [t, t, t],
        "news2_score": [7, None, None],
        "probability_high": [0.91, 0.8, None],
        "acknowledged_by": [None, "ana", None],
        "updated_by": ["bo", "ana", "vitalflow"],
        "updated_at": [t + pd.Timedelta(minutes=m) for m in (3, 2, 0)],
        "reason": ["probe off the finger", None, "no reading for 30 min while the ward's other readings went on"],
        "events": [3, 2, 1],
    })
    items = app.ward_alerts_html(alerts).split("<li ")[1:]
    assert [re.search(r'data-alert="([^"]+)"', i).group(1) for i in items] == ["raw:0:3", "raw:0:2", "raw:0:1"]
    assert 'data-state="acknowledged"' in items[1] and "acknowledged by ana</li>" in items[1], items[1]
    assert "dismissed by bo at 10:03:00 · reason: probe off the finger</li>" in items[2], items[2]
    assert "<b>P3</b> no_data alert · <span class=\"vf-state\">open</span>" in items[0], items[0]
    assert app.budget_text(12, 24.0) == ("24.0", "24.0× the budget of 1 per 35 patients per day (12 raised)")
    assert app.budget_text(None, None) == ("–", "alerts not kept yet")
    assert app.widget_key("dismiss", "raw-patient:2:17/a b") == "dismiss-raw-patient-2-17-a-b"


def test_a_refusal_is_the_servers_message():
    body = json.dumps({"detail": [{"loc": ["path", "action"], "msg": "alert x is dismissed: it cannot be resolved",
                                   "type": "illegal_transition"}]}).encode()
    assert app.server_message(body) == "alert x is dismissed: it cannot be resolved"
    assert app.server_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    ok, message = app.act_on_alert(f"http://127.0.0.1:{free_port()}", "raw:0:1", "acknowledge", "ana", "pw", timeout=5)
    assert not ok and message.startswith(f"vitalflow's HTTP API is not answering at http://127.0.0.1:"), message


def test_settings_come_from_the_environment_before_the_secrets_file():
    file = {"flight_sql": "grpc+tls://ward:50060", "user": "grafana", "password": "from-file"}
    assert app.load_settings({}, {}) == app.Settings(url="grpc://127.0.0.1:50060")
    assert app.load_settings({}, file) == app.Settings(url="grpc+tls://ward:50060", user="grafana", password="from-file")
    env = {"VITALFLOW_FLIGHT_SQL_URL": "grpc://10.0.0.5:1", "VITALFLOW_TOKEN": "t0k", "VITALFLOW_USER": ""}
    assert app.load_settings(env, file) == app.Settings(url="grpc://10.0.0.5:1", token="t0k", user="grafana", password="from-file")
    assert app.Settings(token="t0k", user="grafana").db_kwargs() == {"adbc.flight.sql.authorization_header": "Bearer t0k"}


def test_the_deprecated_address_name_is_still_read_with_a_warning(caplog):
    assert app.load_settings({"VITALFLOW_FLIGHT_SQL": "grpc://10.0.0.5:1"}, {}) == app.Settings(url="grpc://10.0.0.5:1")
    assert "VITALFLOW_FLIGHT_SQL is deprecated: set VITALFLOW_FLIGHT_SQL_URL instead" in caplog.text
    both = {"VITALFLOW_FLIGHT_SQL": "grpc://old:1", "VITALFLOW_FLIGHT_SQL_URL": "grpc://new:2"}
    assert app.load_settings(both, {}).url == "grpc://new:2"


def free_port() -> int:
    """A port nothing listens on (closed again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_says_so_in_words_and_no_stack_trace(monkeypatch):
    url = f"grpc://127.0.0.1:{free_port()}"
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_URL", url)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1, warnings
    assert f"vitalflow is not answering at {url}" in warnings[0] and "Retrying every 5 s" in warnings[0], warnings


# --- against a live server ---------------------------------------------------------------------------

def produce_readings(kafka: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    now = datetime.now(timezone.utc)
    for seconds_ago, patient, vitals in READINGS:
        stamp = (now - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        producer.produce(topic, key=patient.encode(), value=json.dumps(dict(vitals, patient_id=patient, timestamp=stamp)).encode())
    assert producer.flush(30) == 0, "readings were not all delivered"


def rows(conn, sql: str) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table().to_pylist()


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """A cluster (authentication on) that has scored READINGS and raised an alert for each rise to High;
    yields (Flight SQL address, {patient: [risks oldest first]}, HTTP API address)."""
    with running_cluster(tmp_path_factory.mktemp("ward")) as cluster:
        scored = start_pipeline(
            cluster, len(READINGS), produce=lambda c: produce_readings(c.kafka, c.topic),
            until=lambda conn: len(rows(conn, "SELECT 1 FROM vitals_clean")) == len(READINGS),
        )
        with flight_sql_connect(scored.flight_sql) as conn:
            risks: dict[str, list[str]] = {}
            for row in rows(conn, "SELECT patient_id, risk FROM vitals_clean ORDER BY event_time"):
                risks.setdefault(row["patient_id"], []).append(row["risk"])
            # What the page must show rests on these labels of the model: check them, so that a failure says which.
            assert risks == {"P901": ["Low", "Low"], "P902": ["High"], "P903": ["Low", "High"]}, risks
            # One alert per rise to High: P902 (no earlier reading) and P903 (from Low).
            wait_until(lambda: len(rows(conn, "SELECT 1 FROM risk_alerts")) == 2, 60,
                       lambda: f"two alerts: {rows(conn, 'SELECT * FROM risk_alerts')}")
            # The alert keeper raises one alert a ward acts on per rise: open, nobody has acted.
            wait_until(lambda: alert_states(conn) == {"P902": ("open", None), "P903": ("open", None)}, 60,
                       lambda: f"two open alerts: {alert_states(conn)}")
        yield scored.flight_sql, risks, scored.addrs["http"]


def alert_states(conn) -> dict[str, tuple[str, str | None]]:
    """{patient: (state, acknowledged_by)} of the `alerts` table, over Flight SQL."""
    try:
        found = rows(conn, "SELECT patient_id, state, acknowledged_by FROM alerts")
    except Exception as error:  # noqa: BLE001 - the table does not exist until the keeper's first commit
        if "alerts" not in str(error):
            raise
        return {}
    return {r["patient_id"]: (r["state"], r["acknowledged_by"]) for r in found}


def token_env(monkeypatch, addr: str, token: str = FLIGHT_SQL_TOKEN[1]) -> None:
    monkeypatch.setenv("VITALFLOW_FLIGHT_SQL_URL", f"grpc://{addr}")
    monkeypatch.setenv("VITALFLOW_TOKEN", token)
    for name in ("VITALFLOW_USER", "VITALFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def test_page_shows_the_ward_alerts_and_a_patients_history(ward, monkeypatch):
    addr, risks, _ = ward
    token_env(monkeypatch, addr)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == "3" and metrics["High risk now"] == "2", metrics
    age = float(metrics["Newest reading"].removesuffix(" s ago"))
    assert 15 <= age < 600, metrics  # the newest reading was stamped 20 s before it was produced
    # The only warning the page may show is the stale-feed one, when (a slow debug cluster) took over a minute.
    warnings = [w.value for w in at.warning]
    if warnings:
        assert warnings == [f"No new reading for {age:.0f} s: is the feed (Kafka, ingest, ETL) running?"] and age >= app.STALE_SECONDS
    else:
        assert age <= app.STALE_SECONDS + 1, metrics

    html = [h.proto.body for h in at.get("html")]
    ward_tiles, alert_list = html[0], html[1]
    for patient, levels in risks.items():
        assert f'data-patient="{patient}" data-risk="{levels[-1]}"' in ward_tiles, ward_tiles
    # High first on the ward.
    assert ward_tiles.index('data-patient="P901"') > max(ward_tiles.index('data-patient="P902"'), ward_tiles.index('data-patient="P903"'))
    assert alert_list.count('class="vf-alert"') == 2, alert_list
    assert "<b>P903</b> rose to High from Low" in alert_list and "<b>P902</b> rose to High from no earlier reading" in alert_list

    assert len(at.get("plotly_chart")) == 2  # the risk pie and the drill-down
    pie = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert {label: value for t in pie for label, value in zip(plotly_array(t["labels"]), plotly_array(t["values"]))} == {"High": 2, "Low": 1}, pie

    # The drill-down opens on the most urgent patient; P903's history shows its one risk change.
    assert at.selectbox(key="patient").value in ("P902", "P903")
    at.selectbox(key="patient").set_value("P903").run()
    assert not at.exception, [e.value for e in at.exception]
    # Why High: P(High) split into the trend model's base and each input's push (explain_trend_risk), every
    # input of the shipped model listed (its sixteen: the reading's nine, five rolling means, two ward scores).
    why = next(h.proto.body for h in at.get("html") if 'class="vf-why"' in h.proto.body)
    assert 'class="vf-why" data-patient="P903" data-risk="High"' in why and "<b>Why High</b>: P(High)" in why, why
    pushes = dict(re.findall(r'<li data-input="(\w+)"[^>]*>[^<]* ([+-]\d\.\d{3})</li>', why))
    assert len(pushes) == 16 and {"respiratory_rate", "consciousness", "spo2_rolling_mean", "ward_points"} <= set(pushes), why
    p_high, base = (float(x) for x in re.search(r"P\(High\) (\d\.\d{3}) = the model's base (\d\.\d{3})", why).groups())
    assert abs(base + sum(float(v) for v in pushes.values()) - p_high) < 0.005, why
    assert p_high > 0.5 and float(pushes["ward_points"]) + float(pushes["ward_points_smoothed"]) > 0, why
    history = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert [len(plotly_array(t["x"])) for t in history["data"]] == [2] * len(app.VITALS)
    assert len([s for s in history["layout"]["shapes"] if s["type"] == "rect"]) == len(app.VITALS)
    assert len([s for s in history["layout"]["shapes"] if s["type"] == "line"]) == len(app.VITALS)  # one change, every row
    changes = at.dataframe[-1].value
    assert changes[["previous_risk", "risk"]].to_dict("records") == [{"previous_risk": "Low", "risk": "High"}]


def test_credentials_from_the_secrets_file_and_a_refused_sign_in_in_words(ward, monkeypatch):
    addr, _, _ = ward
    for name in ("VITALFLOW_FLIGHT_SQL_URL", "VITALFLOW_FLIGHT_SQL", "VITALFLOW_TOKEN", "VITALFLOW_USER", "VITALFLOW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["vitalflow"] = {"flight_sql": f"grpc://{addr}", "user": "grafana", "password": "vitals-test-pw"}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert all(w.value.startswith("No new reading for") for w in at.warning), [w.value for w in at.warning]
    assert {m.label: m.value for m in at.metric}["Patients"] == "3"

    token_env(monkeypatch, addr, token="not-the-token")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [w.value for w in at.warning] == [
        f"vitalflow at grpc://{addr} refused the sign-in: check VITALFLOW_TOKEN, or VITALFLOW_USER and "
        "VITALFLOW_PASSWORD. Retrying every 5 s."
    ]


def alert_of(addr: str, patient: str) -> str:
    with flight_sql_connect(addr) as conn:
        return rows(conn, f"SELECT alert_id FROM alerts WHERE patient_id = '{patient}'")[0]["alert_id"]


def server_alert(http_addr: str, alert_id: str) -> dict:
    """The alert as GET /alerts answers it (signed in as the reader grafana)."""
    status, answer, _ = http("GET", f"http://{http_addr}/alerts", None, basic_auth("grafana"))
    assert status == 200, answer
    return next(a for a in answer["alerts"] if a["alert_id"] == alert_id)


def basic_auth(user: str, password: str | None = None) -> dict[str, str]:
    password = FLIGHT_SQL_USERS[user][0] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def events_of(addr: str, alert_id: str) -> list[tuple[str, str]]:
    """(action, user_name) of the alert's rows of alert_events, in order, over Flight SQL."""
    with flight_sql_connect(addr) as conn:
        found = rows(conn, f"SELECT action, user_name FROM alert_events WHERE alert_id = '{alert_id}' ORDER BY event_seq")
    return [(r["action"], r["user_name"]) for r in found]


def signed_in_page(monkeypatch, ward, user: str, password: str) -> AppTest:
    """The page (read with the service account's token) after `user` signed in on it."""
    addr, _, http_addr = ward
    token_env(monkeypatch, addr)
    monkeypatch.setenv("VITALFLOW_HTTP_URL", f"http://{http_addr}")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [b for b in at.button if b.key and b.key.startswith("acknowledge-")], "actions offered before sign-in"
    at.text_input(key="sign_in_user").input(user)
    at.text_input(key="sign_in_password").input(password)
    at.button(key="sign_in").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_clinician_signed_in_on_the_page_acknowledges_an_alert_recorded_under_their_name(ward, monkeypatch):
    addr, _, http_addr = ward
    alert_id = alert_of(addr, "P903")
    at = signed_in_page(monkeypatch, ward, "nurse", FLIGHT_SQL_USERS["nurse"][0])
    assert any("Signed in as **nurse**" in m.value for m in at.sidebar.markdown), [m.value for m in at.sidebar.markdown]
    listed = next(h.proto.body for h in at.get("html") if 'class="vf-ward-alerts"' in h.proto.body)
    assert f'data-alert="{alert_id}" data-state="open"' in listed, listed

    at.button(key=app.widget_key("acknowledge", alert_id)).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.success] == [f"P903's alert {alert_id} is acknowledged: acknowledge recorded as nurse."]
    # On the server: the alert over HTTP, its events over Flight SQL, under the signed-in name (not the
    # page's service account, "dashboard").
    alert = server_alert(http_addr, alert_id)
    assert (alert["state"], alert["acknowledged_by"], alert["updated_by"]) == ("acknowledged", "nurse", "nurse"), alert
    assert events_of(addr, alert_id) == [("raise", "vitalflow"), ("acknowledge", "nurse")]
    # The page's list shows the new state and who acted.
    listed = next(h.proto.body for h in at.get("html") if 'class="vf-ward-alerts"' in h.proto.body)
    assert f'data-alert="{alert_id}" data-state="acknowledged"' in listed and "acknowledged by nurse" in listed, listed


def test_a_refused_action_shows_the_servers_message_and_changes_nothing(ward, monkeypatch):
    addr, _, http_addr = ward
    alert_id = alert_of(addr, "P902")
    escalate = f"http://{http_addr}/alerts/{alert_id}/escalate"
    for user, password, status in (("grafana", FLIGHT_SQL_USERS["grafana"][0], 403), ("admin", "not-the-password", 401)):
        # What the server answers this user, asked directly (a refusal changes nothing).
        got, answer, _ = http("POST", escalate, {}, basic_auth(user, password))
        assert got == status, answer
        message = answer["detail"][0]["msg"]
        if status == 403:
            assert "grafana" in message and "clinician" in message, message
        at = signed_in_page(monkeypatch, ward, user, password)
        at.button(key=app.widget_key("escalate", alert_id)).click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert [e.value for e in at.error] == [f"vitalflow refused to escalate alert {alert_id} ({status}): {message}"]
        assert not at.success
    alert = server_alert(http_addr, alert_id)
    assert (alert["state"], alert["acknowledged_by"], alert["events"]) == ("open", None, 1), alert


def test_the_header_shows_the_alert_rate_against_the_budget(ward, monkeypatch):
    addr, _, _ = ward
    token_env(monkeypatch, addr)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    with flight_sql_connect(addr) as conn:
        progress = rows(conn, "SELECT ward_alerts, alerts_per_35_patients_per_day FROM etl_progress")[0]
    assert progress["ward_alerts"] == 2 and progress["alerts_per_35_patients_per_day"] > 0, progress
    value = {m.label: m.value for m in at.metric}["Alerts per 35 patients per day"]
    rate = progress["alerts_per_35_patients_per_day"]
    assert value == f"{rate:.1f}", (value, progress)
    assert f"{rate / app.ALERT_BUDGET:.1f}× the budget of 1 per 35 patients per day (2 raised)" in [c.value for c in at.caption]


# --- the running page in headless Chromium -----------------------------------------------------------

@pytest.fixture
def dashboard(ward, tmp_path):
    """`streamlit run app.py` on a free port, reading the ward with the service-account token and acting on
    alerts through the HTTP API; yields its URL."""
    addr, _, http_addr = ward
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = dict(os.environ, VITALFLOW_FLIGHT_SQL_URL=f"grpc://{addr}", VITALFLOW_TOKEN=FLIGHT_SQL_TOKEN[1],
               VITALFLOW_HTTP_URL=f"http://{http_addr}",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    args = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true", "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.fileWatcherType", "none", "--global.developmentMode", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=tmp_path)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, f"streamlit exited ({proc.returncode}):\n{log.read_text()}"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as health:
                return health.read().strip() == b"ok"

        wait_until(healthy, 60, "streamlit healthy", interval=0.3, details=log.read_text, retry_on=(OSError,))
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_chromium_renders_the_page_and_a_signed_in_nurse_acknowledges_an_alert(dashboard, ward, tmp_path):
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} is missing: install the Debian packages chromium and chromium-driver (.ci/run does)"
    _, risks, _ = ward
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")), options=options)
    screenshot = tmp_path / "dashboard.png"
    try:
        driver.get(dashboard)
        css = lambda selector: driver.find_elements(By.CSS_SELECTOR, selector)  # noqa: E731
        wanted = {
            "the risk pie's slices": '[data-testid="stPlotlyChart"] g.slice',
            "the alert list": "li.vf-alert",
            "the patient tiles": "div.vf-tile",
            "the explanation of the patient's risk": "div.vf-why li",
        }
        try:
            WebDriverWait(driver, 90, poll_frequency=0.5).until(lambda _: all(css(s) for s in wanted.values()))
        except TimeoutException:
            driver.save_screenshot(str(screenshot))
            missing = [name for name, s in wanted.items() if not css(s)]
            pytest.fail(f"not on the page after 90 s: {missing} (screenshot {screenshot}):\n{driver.find_element(By.TAG_NAME, 'body').text[:3000]}")

        pie = css('[data-testid="stPlotlyChart"]')[0]
        assert len(pie.find_elements(By.CSS_SELECTOR, "g.slice")) == 2  # High and Low
        tiles = {t.get_attribute("data-patient"): t for t in css("div.vf-tile")}
        assert set(tiles) == set(risks)
        for patient, levels in risks.items():
            assert tiles[patient].get_attribute("data-risk") == levels[-1]
            assert f"{levels[-1]} · NEWS2" in tiles[patient].text
        why = css("div.vf-why")[0]
        assert why.text.startswith("Why High: P(High)") and len(why.find_elements(By.CSS_SELECTOR, "li")) == 16, why.text
        alerts = [a.text for a in css("li.vf-alert")]
        assert len(alerts) == 2 and any(a.startswith("P903 rose to High from Low") for a in alerts), alerts
        assert not css('[data-testid="stException"]'), "the page shows an exception"
        assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text

        # A nurse signs in on the page and acknowledges P902's alert (still open: the tests above acted on P903).
        addr, _, http_addr = ward
        alert_id = alert_of(addr, "P902")
        assert server_alert(http_addr, alert_id)["state"] == "open"
        for key, text in (("sign_in_user", "nurse"), ("sign_in_password", FLIGHT_SQL_USERS["nurse"][0])):
            field = css(f".st-key-{key} input")[0]
            field.send_keys(text)
        css(".st-key-sign_in button")[0].click()
        acknowledge = f".st-key-{app.widget_key('acknowledge', alert_id)} button"
        WebDriverWait(driver, 60, poll_frequency=0.5).until(lambda _: css(acknowledge))
        css(acknowledge)[0].click()
        acknowledged = f'li.vf-ward-alert[data-alert="{alert_id}"][data-state="acknowledged"]'
        try:
            WebDriverWait(driver, 60, poll_frequency=0.5).until(lambda _: css(acknowledged))
        except TimeoutException:
            driver.save_screenshot(str(screenshot))
            pytest.fail(f"no acknowledged alert on the page (screenshot {screenshot}):\n{driver.find_element(By.TAG_NAME, 'body').text[:3000]}")
        assert "acknowledged by nurse" in css(acknowledged)[0].text
        alert = server_alert(http_addr, alert_id)
        assert (alert["state"], alert["acknowledged_by"]) == ("acknowledged", "nurse"), alert
        assert events_of(addr, alert_id) == [("raise", "vitalflow"), ("acknowledge", "nurse")]
        driver.save_screenshot(str(screenshot))
        print(f"dashboard screenshot: {screenshot}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
