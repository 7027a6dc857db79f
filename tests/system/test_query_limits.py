"""What one signed-in reader can take from a running pipeline (scheduler, a separate executor process, ingest,
the real Kafka): a query that would build a huge value or aggregate without end gets a clear RESOURCE_EXHAUSTED,
on the cluster path and in the front door's own process, after which the server answers a normal query and the
ETL keeps committing; and a user's queries past `flight_sql.max_queries_per_user` wait their turn, without holding
up another user, while one past `flight_sql.max_queued_per_user` is refused at once."""

from __future__ import annotations

import threading
import time
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.support.cluster import FLIGHT_SQL_USERS, query_one, running_cluster
from tests.support.pipeline import start_pipeline
from tests.support.wait import wait_until

# pyarrow raises RESOURCE_EXHAUSTED as ArrowInvalid, other codes as FlightError.
REFUSED = (flight.FlightError, pa.ArrowException)

READINGS = 200
PATIENTS = 5

# Small bounds so that the attacks fail in a second; the defaults are far larger.
LIMITS = {
    "VITALFLOW__FLIGHT_SQL__MAX_QUERIES_PER_USER": "1",
    "VITALFLOW__FLIGHT_SQL__MAX_QUEUED_PER_USER": "1",
    "VITALFLOW__FLIGHT_SQL__IN_PROCESS_MEMORY_MB": "64",
    "VITALFLOW__EXECUTOR__MEMORY_LIMIT_MB": "64",
}

# (query, what the error names): on the cluster path (no table, or vitals_clean) and in process (patient_latest).
ATTACKS = [
    ("SELECT array_repeat(1, 200000000)", ["array_repeat", "max_value_mb"]),
    ("SELECT count(*) FROM unnest(range(1, 100000000))", ["range", "max_value_mb"]),
    ("SELECT length(repeat('x', 1000000000))", ["repeat", "max_value_mb"]),
    ("SELECT length(lpad('x', 2000000000, 'ab'))", ["lpad", "max_value_mb"]),
    (
        "SELECT length(repeat('x', 1000000000)) FROM patient_latest",
        ["repeat", "flight_sql.max_value_mb"],
    ),
    ("SELECT length(lpad(patient_id, 2000000000)) FROM vitals_clean", ["lpad", "executor.max_value_mb"]),
    # Accounted memory: string_agg's accumulator reports its size, so the task's memory limit stops it.
    (
        "SELECT length(string_agg(a.patient_id || repeat('x', 2000), ',')) "
        "FROM vitals_clean a CROSS JOIN vitals_clean b CROSS JOIN vitals_clean c",
        ["AggregateStream", "executor.memory_limit_mb"],
    ),
    (
        "SELECT length(string_agg(a.patient_id || repeat('x', 200000), ',')) "
        "FROM patient_latest a CROSS JOIN patient_latest b CROSS JOIN patient_latest c CROSS JOIN patient_latest d",
        ["AggregateStream", "pool_size: 64.0 MB"],
    ),
]


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("limits")) as cluster:
        cluster.env.update(LIMITS)
        yield start_pipeline(cluster, READINGS, patients=PATIENTS, seed=11)


def client_of(door, user: str):
    client = flight.FlightClient(f"grpc://{door.flight_sql}")
    header = client.authenticate_basic_token(user, FLIGHT_SQL_USERS[user][0])
    return client, flight.FlightCallOptions(headers=[header], timeout=120)


def statement(sql: str) -> flight.FlightDescriptor:
    def pb(field: int, payload: bytes) -> bytes:
        length, out = len(payload), b""
        while True:
            out += bytes([(length & 0x7F) | (0x80 if length > 0x7F else 0)])
            length >>= 7
            if not length:
                break
        return bytes([field << 3 | 2]) + out + payload

    command = pb(1, b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery") + pb(2, pb(1, sql.encode()))
    return flight.FlightDescriptor.for_command(command)


def open_stream(door, user: str, sql: str):
    client, options = client_of(door, user)
    info = client.get_flight_info(statement(sql), options)
    return client.do_get(info.endpoints[0].ticket, options)


def run(door, user: str, sql: str):
    return open_stream(door, user, sql).read_all()


def metrics(door) -> str:
    with urllib.request.urlopen(f"http://{door.addrs['http']}/metrics", timeout=10) as response:
        return response.read().decode()


def test_attacks_get_a_clear_error_and_the_server_and_the_etl_carry_on(door):
    with door.connect("grafana") as conn:
        for sql, needles in ATTACKS:
            started = time.monotonic()
            with pytest.raises(REFUSED) as failure:
                run(door, "grafana", sql)
            message = str(failure.value)
            assert "resource" in message.lower(), f"{sql}: {message}"
            for needle in needles:
                assert needle in message, f"{sql}: {needle} missing in {message}"
            assert time.monotonic() - started < 60, f"{sql} took {time.monotonic() - started:.0f} s to fail"
            # After each attack the server answers a normal query, on the cluster and in process.
            assert query_one(conn, "SELECT count(*) FROM vitals_clean") >= READINGS, sql
            assert query_one(conn, "SELECT count(*) FROM patient_latest") == PATIENTS, sql
    # The executor is still there, and the ETL still commits: more readings arrive and are processed.
    executor = next(c for c in door.cluster.children if c.name == "executor")
    assert executor.proc.poll() is None, executor.tail()
    sim = door.cluster.start("simulate-more", "simulate", "--count", "50", "--rate", "0", "--patients", str(PATIENTS),
                             "--seed", "12")
    assert sim.wait_exit(120) == 0, sim.tail()
    with door.connect("admin") as conn:
        wait_until(lambda: query_one(conn, "SELECT count(*) FROM vitals_clean") == READINGS + 50, 120,
                   "the ETL processing readings after the attacks", details=door.cluster.logs)
        wait_until(lambda: query_one(conn, "SELECT sum(lag_records) FROM etl_progress") == 0, 60,
                   "etl_progress without lag", details=door.cluster.logs)


def test_a_users_queries_past_the_limit_wait_and_other_users_are_not_held_up(door):
    # grafana's first query holds its one slot while its client reads nothing past the first batch.
    wide = "SELECT a.*, b.* FROM vitals_clean a CROSS JOIN vitals_clean b"
    holding = open_stream(door, "grafana", wide)
    holding.read_chunk()
    before = metrics(door)

    second: dict = {}

    def second_query():
        try:
            second["rows"] = run(door, "grafana", "SELECT count(*) AS n FROM vitals_clean").column(0)[0].as_py()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            second["error"] = error

    waiting = threading.Thread(target=second_query)
    waiting.start()
    time.sleep(2)
    assert waiting.is_alive(), f"the second query of the same user did not wait: {second}"

    # Another user is not held up.
    assert run(door, "admin", "SELECT count(*) AS n FROM vitals_clean").column(0)[0].as_py() >= READINGS

    # One more of grafana's is past the line (one running, one waiting): refused at once, naming the setting.
    started = time.monotonic()
    with pytest.raises(REFUSED) as refused:
        run(door, "grafana", "SELECT 1")
    assert "resource exhausted" in str(refused.value), refused.value
    assert "flight_sql.max_queued_per_user" in str(refused.value), refused.value
    assert time.monotonic() - started < 5

    # The holder goes away: its slot frees and the waiting query runs.
    holding.cancel()
    waiting.join(60)
    assert second.get("rows", 0) >= READINGS, second
    after = metrics(door)
    count = lambda page, name: int(next(line.split()[-1] for line in page.splitlines() if line.startswith(name + " ")))  # noqa: E731
    assert count(after, "vitalflow_flight_sql_queries_queued_total") > count(before, "vitalflow_flight_sql_queries_queued_total")
    assert count(after, "vitalflow_flight_sql_queries_refused_total") > count(before, "vitalflow_flight_sql_queries_refused_total")
