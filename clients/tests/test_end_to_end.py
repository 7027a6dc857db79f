"""Simulator → Apache Kafka → ingest → ETL on Ballista (scheduler and executor as separate processes)
→ a Python Flight SQL client (ADBC) reading vitals_clean and dead_letters."""

from __future__ import annotations

import time

import adbc_driver_flightsql.dbapi as flightsql
import pytest
from confluent_kafka import Producer

import rubric

READINGS = 400
BAD_MESSAGES = {
    # payload → (reason_code, words the reason must contain)
    b'{"patient_id": "P900", "timestamp": "2026-11-23T10:15:02.123Z", "heart_rate": 900, "spo2": 97}': (
        "impossible_value",
        "heart_rate: 900",
    ),
    b"{this is not json": ("invalid_json", "not valid JSON"),
    b'{"patient_id": "P901", "timestamp": "2026-11-23T10:15:02.123Z", "spo2": "ninety"}': ("wrong_type", "spo2"),
}


def query(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def wait_for(conn, sql: str, expected: int, cluster, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = query(conn, sql).column(0)[0].as_py()
        if got == expected:
            return
        time.sleep(0.5)
    pytest.fail(f"{sql!r} returned {got}, expected {expected}, after {timeout}s\n{cluster.logs()}")


def produce_bad_messages(kafka: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for payload in BAD_MESSAGES:
        producer.produce(topic, value=payload, key=b"bad")
    assert producer.flush(30) == 0, "bad messages were not all delivered"


def test_readings_flow_end_to_end_and_bad_records_are_dead_letters(cluster):
    # The simulator creates the topic (3 partitions) and produces every reading before the services
    # start: ingest then also proves it reads a backlog from the earliest offset.
    sim = cluster.start("simulate", "simulate", "--count", str(READINGS), "--rate", "0", "--patients", "40", "--seed", "11")
    assert sim.wait_exit(120) == 0, sim.tail()
    produce_bad_messages(cluster.kafka, cluster.topic)

    addrs = cluster.start_service(
        "scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", env={"VITALFLOW__ETL__MIN_INTERVAL_MS": "200"}
    )
    scheduler_port = addrs["scheduler"].rsplit(":", 1)[1]
    cluster.start_service("executor", "executor", "--scheduler", f"127.0.0.1:{scheduler_port}", "--flight-port", "0", "--grpc-port", "0")
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest")

    conn = flightsql.connect(f"grpc://{addrs['flight_sql']}", autocommit=True)
    try:
        wait_for(conn, "SELECT count(*) FROM vitals_clean", READINGS, cluster)
        wait_for(conn, "SELECT count(*) FROM dead_letters", len(BAD_MESSAGES), cluster)

        # Exactly once: every produced offset in vitals_raw once, and each raw row once in vitals_clean.
        for table in ("vitals_raw", "vitals_clean"):
            n = query(conn, f"SELECT count(*) FROM {table}").column(0)[0].as_py()
            distinct = query(
                conn, f"SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset FROM {table}) AS d"
            ).column(0)[0].as_py()
            assert (n, distinct) == (READINGS, READINGS), table

        rows = query(
            conn,
            "SELECT patient_id, event_time, heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, "
            "risk, rubric_score, news2_score, model_version FROM vitals_clean",
        ).to_pylist()
        version = query(conn, "SELECT model_version() AS v").column(0)[0].as_py()
        assert version and all(r["model_version"] == version for r in rows)
        assert all(r["risk"] in ("High", "Medium", "Low") for r in rows)
        assert all(r["event_time"].tzinfo is not None for r in rows)

        clear = [r for r in rows if rubric.is_clear(r)]
        normal = [r for r in clear if rubric.label(r) == "Low"]
        critical = [r for r in clear if rubric.label(r) == "High"]
        assert len(normal) >= 50 and len(critical) >= 10, f"{len(normal)} clear normal, {len(critical)} clear critical"
        wrong = [r for r in clear if r["risk"] != rubric.label(r)]
        assert not wrong, f"{len(wrong)} of {len(clear)} clear readings mislabelled, e.g. {wrong[:3]}"

        letters = query(conn, "SELECT payload, reason_code, reason, stage, source_topic FROM dead_letters").to_pylist()
        by_payload = {bytes(l["payload"]): l for l in letters}
        assert set(by_payload) == set(BAD_MESSAGES)
        for payload, (code, words) in BAD_MESSAGES.items():
            letter = by_payload[payload]
            assert (letter["reason_code"], letter["stage"], letter["source_topic"]) == (code, "ingest", cluster.topic)
            assert words in letter["reason"], letter["reason"]
    finally:
        conn.close()


def test_flight_sql_refuses_writes_and_names_bad_sql(cluster):
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0")
    conn = flightsql.connect(f"grpc://{addrs['flight_sql']}", autocommit=True)
    try:
        # Scoring with literals needs no data and no executor: it is planned and folded on the server.
        for sql, needle in [
            ("CREATE TABLE x AS SELECT 1", "DDL"),
            ("SELECT * FROM no_such_table", "no_such_table"),
            ("SELECT predict_risk('fast', 1, 2, 3, 4, 5)", "heart_rate"),
        ]:
            with pytest.raises(Exception) as err:
                query(conn, sql)
            assert needle in str(err.value), f"{sql}: {err.value}"
    finally:
        conn.close()
