"""The alerts a ward acts on, against a real pipeline (Kafka, ingest, a scheduler running the ETL in process):
each patient's rise to High raises one alert; the lifecycle through HTTP under the caller's name, read back
over Flight SQL from `alerts` and `alert_events`; every illegal action refused with its 4xx naming the problem;
50 concurrent actions on 10 alerts each recorded exactly once; and a kill -9 of the scheduler during a burst
of actions loses none that was answered."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from confluent_kafka import Consumer, Producer

from tests.support.cluster import FLIGHT_SQL_USERS, query
from tests.support.http_json import http
from tests.support.wait import wait_until
from tests.system.test_etl_faults import FAST

SINK_TOPIC = f"ward-alerts-{uuid.uuid4().hex[:10]}"
ENV = {
    **FAST,
    "VITALFLOW__ETL__RUN_ON": "in_process",
    "VITALFLOW__WARD_ALERTS__POLL_INTERVAL_MS": "100",
    "VITALFLOW__ALERTS__KAFKA_TOPIC": SINK_TOPIC,
}
CALM = {"heart_rate": 72, "systolic_bp": 120, "diastolic_bp": 78, "spo2": 98, "temperature": 36.8, "glucose": 95}
SICK = {"heart_rate": 150, "systolic_bp": 80, "diastolic_bp": 40, "spo2": 85, "temperature": 39.9, "glucose": 340}
PATIENTS = [f"W{i:02}" for i in range(20)]


def rows_of(conn, sql: str) -> list[dict]:
    return query(conn, sql).to_pylist()


def auth(user: str) -> dict[str, str]:
    password = FLIGHT_SQL_USERS[user][0]
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def produce_rises(kafka: str, topic: str) -> None:
    """Each patient calm, then a minute later High: one rise to High each."""
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    for patient in PATIENTS:
        for minute, vitals in ((0, CALM), (1, SICK)):
            stamp = (start + timedelta(minutes=minute)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record = {"patient_id": patient, "timestamp": stamp, **vitals}
            producer.produce(topic, key=patient, value=json.dumps(record).encode())
    assert producer.flush(30) == 0


def start_scheduler(cluster, name: str, executor: str) -> dict:
    """A scheduler running the ETL in process, with one executor for Flight SQL's queries."""
    return cluster.start_scheduler(name, executors=[executor], env=ENV, executor_env=ENV)


def alerts_by_patient(base: str) -> dict[str, dict] | None:
    """The alerts by patient; None while the scheduler's keeper has not started (503: it waits for the ETL lease)."""
    status, answer, _ = http("GET", f"{base}/alerts", None, auth("grafana"))
    if status == 503 and "ETL standby" in answer["detail"][0]["msg"]:
        return None
    assert status == 200, answer
    return {a["patient_id"]: a for a in answer["alerts"]}


def act(base: str, alert_id: str, action: str, user: str = "nurse", body: object | None = None) -> tuple[int, dict]:
    status, answer, _ = http("POST", f"{base}/alerts/{alert_id}/{action}", body if body is not None else {}, auth(user))
    return status, answer


def events_by_reason(conn) -> dict[str, list[dict]]:
    rows = rows_of(conn, "SELECT event_id, alert_id, action, user_name, reason FROM alert_events")
    found: dict[str, list[dict]] = {}
    for row in rows:
        if row["reason"]:
            found.setdefault(row["reason"], []).append(row)
    return found


def alert_events_on_topic(kafka: str, expected: set[str], timeout: float = 60) -> list[tuple[str, dict]]:
    """(key, message) of the `alert_event` messages on the sink topic, read until `expected` event ids are there."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"{SINK_TOPIC}-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([SINK_TOPIC])
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not expected <= {m["event_id"] for _, m in got}:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            message = json.loads(msg.value())
            if message.get("type") == "alert_event":
                got.append((msg.key().decode(), message))
    finally:
        consumer.close()
    return got


def assert_states_agree_with_events(conn) -> None:
    """Each alert of `alerts` is in the state its last event of `alert_events` left it."""
    states = {r["alert_id"]: r["state"] for r in rows_of(conn, "SELECT alert_id, state FROM alerts")}
    last = rows_of(conn, "SELECT alert_id, to_state FROM alert_events e WHERE event_seq = "
                       "(SELECT max(event_seq) FROM alert_events f WHERE f.alert_id = e.alert_id)")
    assert states == {r["alert_id"]: r["to_state"] for r in last}, (states, last)


def burst(base: str, alerts: list[str], tag: str, on_answer=None) -> dict[int, int | None]:
    """50 actions at once on `alerts`, each with its own reason `<tag><i>`; status per action (None: no answer)."""
    actions = ["acknowledge", "escalate", "resolve", "dismiss", "acknowledge"]

    def one(i: int) -> tuple[int, int | None]:
        try:
            status, _ = act(base, alerts[i % len(alerts)], actions[i // 10], body={"reason": f"{tag}{i}"})
        except (urllib.error.URLError, ConnectionError, OSError):
            return i, None
        if on_answer:
            on_answer()
        return i, status

    with ThreadPoolExecutor(max_workers=10) as pool:
        return dict(pool.map(one, range(50)))


def test_alert_lifecycle_over_http_and_flight_sql(cluster):
    addrs = start_scheduler(cluster, "scheduler", "executor-1")
    base = f"http://{addrs['http']}"
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", env=ENV)
    produce_rises(cluster.kafka, cluster.topic)
    alerts = wait_until(lambda: (found := alerts_by_patient(base)) and len(found) == len(PATIENTS) and found,
                        180, "an alert for every patient's rise to High", interval=0.5, details=cluster.logs)
    assert all(a["state"] == "open" and a["updated_by"] == "vitalflow" for a in alerts.values()), alerts
    first, second = alerts["W00"]["alert_id"], alerts["W01"]["alert_id"]

    # Refusals, each naming the problem.
    status, answer = act(base, first, "acknowledge", user="grafana")
    assert status == 403 and "clinician" in answer["detail"][0]["msg"], answer
    status, answer, _ = http("POST", f"{base}/alerts/{first}/acknowledge", {})
    assert status == 401, answer
    status, answer = act(base, "no-such-alert", "acknowledge")
    assert status == 404 and "no-such-alert" in answer["detail"][0]["msg"], answer
    status, answer = act(base, first, "approve")
    assert status == 404 and answer["detail"][0]["loc"] == ["path", "action"], answer
    status, answer = act(base, first, "dismiss")
    assert status == 400 and answer["detail"][0]["loc"] == ["body", "reason"], answer

    # The lifecycle, under the caller's name.
    status, answer = act(base, first, "acknowledge")
    assert (status, answer["state"], answer["acknowledged_by"]) == (200, "acknowledged", "nurse"), answer
    status, answer = act(base, first, "acknowledge")
    assert status == 409 and "is acknowledged" in answer["detail"][0]["msg"], answer
    status, answer = act(base, first, "resolve", body={"reason": "fluids given"})
    assert (status, answer["state"]) == (200, "resolved"), answer
    status, answer = act(base, first, "resolve")
    assert status == 409 and "is resolved: it cannot be resolved" in answer["detail"][0]["msg"], answer
    status, answer = act(base, second, "dismiss", body={"reason": "probe off"})
    assert (status, answer["state"]) == (200, "dismissed"), answer
    for action in ("acknowledge", "escalate", "resolve"):
        status, answer = act(base, second, action)
        assert status == 409 and "is dismissed" in answer["detail"][0]["msg"], answer

    conn = cluster.connect(addrs["flight_sql"])
    try:
        rows = rows_of(conn, f"SELECT state, acknowledged_by, reason FROM alerts WHERE alert_id = '{first}'")
        assert rows == [{"state": "resolved", "acknowledged_by": "nurse", "reason": "fluids given"}], rows
        rows = rows_of(conn, f"SELECT action, user_name, from_state, to_state FROM alert_events WHERE alert_id = '{first}' ORDER BY event_seq")
        assert [(r["action"], r["user_name"], r["from_state"], r["to_state"]) for r in rows] == [
            ("raise", "vitalflow", None, "open"),
            ("acknowledge", "nurse", "open", "acknowledged"),
            ("resolve", "nurse", "acknowledged", "resolved"),
        ], rows

        # 50 actions at once on 10 alerts (W00..W09): every accepted one recorded exactly once, none refused twice.
        ten = [alerts[p]["alert_id"] for p in PATIENTS[:10]]
        answers = burst(base, ten, "c")
        assert set(answers.values()) <= {200, 409}, answers
        recorded = events_by_reason(conn)
        for i, status in answers.items():
            assert len(recorded.get(f"c{i}", [])) == (1 if status == 200 else 0), (i, status, recorded.get(f"c{i}"))
        assert_states_agree_with_events(conn)

        # The alert budget's figure: 20 alerts raised, as a rate per 35 patients per day, in status and etl_progress.
        out = subprocess.run(cluster.base_args() + ["status", "--json"], capture_output=True, text=True, env=cluster.env, timeout=60)
        assert out.returncode == 0, out.stderr
        status = json.loads(out.stdout)
        assert status["ward_alerts"] == len(PATIENTS) and status["alerts_per_35_patients_per_day"] > 0, status
        progress = rows_of(conn, "SELECT ward_alerts, alerts_per_35_patients_per_day FROM etl_progress")
        assert progress[0]["ward_alerts"] == len(PATIENTS), progress

        # Every event went to the Kafka sink as an `alert_event` message, keyed by patient, with its stable id.
        events = {r["event_id"]: r for r in rows_of(conn, "SELECT event_id, patient_id, action, user_name FROM alert_events")}
        on_topic = alert_events_on_topic(cluster.kafka, set(events))
        assert set(events) <= {m["event_id"] for _, m in on_topic}, set(events) - {m["event_id"] for _, m in on_topic}
        for key, message in on_topic:
            row = events[message["event_id"]]
            assert (key, message["action"], message["user_name"]) == (row["patient_id"], row["action"], row["user_name"])
    finally:
        conn.close()

    # kill -9 during a burst on the other 10 alerts: every answered action survives.
    others = [alerts[p]["alert_id"] for p in PATIENTS[10:]]
    answered = []

    def maybe_kill() -> None:
        answered.append(1)
        if len(answered) == 8:
            cluster.kill("scheduler")

    answers = burst(base, others, "k", maybe_kill)
    accepted = [i for i, status in answers.items() if status == 200]
    assert accepted and None in answers.values(), f"the kill came during the burst: {answers}"
    addrs = start_scheduler(cluster, "scheduler-after-kill", "executor-2")
    # The killed scheduler's ETL lease runs out first (3 s here); then this one's keeper replays the events,
    # repairs `alerts` if the kill came between its two commits, and answers.
    after = wait_until(lambda: alerts_by_patient(f"http://{addrs['http']}"), 60, "the new scheduler's alert keeper")
    conn = cluster.connect(addrs["flight_sql"])
    try:
        recorded = events_by_reason(conn)
        for i in accepted:
            assert len(recorded.get(f"k{i}", [])) == 1, (i, recorded.get(f"k{i}"))
        assert all(len(recorded.get(f"k{i}", [])) <= 1 for i in range(50)), recorded
        assert_states_agree_with_events(conn)
        table = {r["alert_id"]: r["state"] for r in rows_of(conn, "SELECT alert_id, state FROM alerts")}
        assert {a["alert_id"]: a["state"] for a in after.values()} == table, (after, table)
    finally:
        conn.close()


def produce_calm(kafka: str, topic: str, patient: str, minutes: range, start: datetime) -> None:
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for minute in minutes:
        stamp = (start + timedelta(minutes=minute)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        producer.produce(topic, key=patient, value=json.dumps({"patient_id": patient, "timestamp": stamp, **CALM}).encode())
    assert producer.flush(30) == 0


def test_a_silent_patient_raises_one_no_data_alert_resolved_when_readings_resume(cluster):
    """S1's readings stop after minute 2 while S2's go on to minute 10: one `no_data` alert for S1 once it is
    5 minutes of readings behind, none for S2; S1's next reading resolves it; its events over Flight SQL are
    the raise and the resolve, nothing more."""
    env = {**ENV, "VITALFLOW__WARD_ALERTS__DEFAULT_WARD__NO_DATA_MINUTES": "5",
           "VITALFLOW__WARD_ALERTS__FEED_DOWN_MINUTES": "0"}
    addrs = cluster.start_scheduler("scheduler", executors=["executor-1"], env=env, executor_env=env)
    base = f"http://{addrs['http']}"
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", env=env)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    produce_calm(cluster.kafka, cluster.topic, "S1", range(0, 3), start)
    produce_calm(cluster.kafka, cluster.topic, "S2", range(0, 11), start)

    def no_data_alerts() -> list[dict] | None:
        status, answer, _ = http("GET", f"{base}/alerts", None, auth("grafana"))
        if status != 200:
            return None
        return [a for a in answer["alerts"] if a["kind"] == "no_data"]

    found = wait_until(no_data_alerts, 180, "a no_data alert for the silent patient", interval=0.5, details=cluster.logs)
    assert [(a["patient_id"], a["state"], a["updated_by"]) for a in found] == [("S1", "open", "vitalflow")], found
    assert "no reading for 5 min" in found[0]["reason"], found
    alert_id = found[0]["alert_id"]
    time.sleep(2)  # twenty more looks of the keeper: still one alert
    assert [a["alert_id"] for a in no_data_alerts()] == [alert_id]

    produce_calm(cluster.kafka, cluster.topic, "S1", range(11, 12), start)
    wait_until(lambda: [a["state"] for a in no_data_alerts() or []] == ["resolved"], 180,
               "the no_data alert resolved by the next reading", interval=0.5, details=cluster.logs)
    conn = cluster.connect(addrs["flight_sql"])
    try:
        rows = rows_of(conn, f"SELECT action, kind, reason FROM alert_events WHERE alert_id = '{alert_id}' ORDER BY event_seq")
        assert [(r["action"], r["kind"]) for r in rows] == [("raise", "no_data"), ("resolve", "no_data")], rows
        assert rows[1]["reason"] == "readings resumed", rows
        assert rows_of(conn, "SELECT count(*) AS n FROM alerts") == [{"n": 1}], "no other alert"
    finally:
        conn.close()
