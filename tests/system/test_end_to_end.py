"""Simulator → Apache Kafka → ingest → ETL on Ballista (scheduler and executor as separate processes)
→ a Python Flight SQL client (ADBC) reading vitals_clean and dead_letters."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support import rubric
from tests.support import lake
from tests.support.cluster import query, query_one
from tests.support.wait import wait_until

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


def wait_for(conn, sql: str, expected: int, cluster, timeout: float = 180) -> None:
    got = []
    wait_until(lambda: got.append(query_one(conn, sql)) or got[-1] == expected, timeout,
               lambda: f"{sql!r} returned {got[-1] if got else None}, expected {expected}", details=cluster.logs)


def assert_group_committed_to_end(kafka: str, topic: str, group: str, timeout: float = 30) -> None:
    """Every partition's committed offset equals its end: nothing left to re-read, nothing skipped."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        seen = {}

        def at_end() -> bool:
            seen["committed"] = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
            seen["ends"] = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
            return seen["committed"] == seen["ends"]

        wait_until(at_end, timeout, lambda: f"committed {seen['committed']}, partition ends {seen['ends']}")
    finally:
        consumer.close()


def assert_exactly_once(conn, expected: int) -> None:
    """vitals_raw and vitals_clean each hold every produced (partition, offset) exactly once."""
    for table in ("vitals_raw", "vitals_clean"):
        n = query(conn, f"SELECT count(*) FROM {table}").column(0)[0].as_py()
        distinct = query(
            conn, f"SELECT count(*) FROM (SELECT DISTINCT source_partition, source_offset FROM {table}) AS d"
        ).column(0)[0].as_py()
        assert (n, distinct) == (expected, expected), table


def produce_bad_messages(kafka: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    for payload in BAD_MESSAGES:
        producer.produce(topic, value=payload, key=b"bad")
    assert producer.flush(30) == 0, "bad messages were not all delivered"


def assert_shadow_mode_reads_the_lake(cluster, rows: list[dict]) -> None:
    """`vitalflow evaluate --history vitals_clean` reads the landed table (on a directory or S3) with a
    hospital's events file: here one event per patient at their first reading with NEWS2 ≥ 7."""
    events = {}
    for r in sorted(rows, key=lambda r: r["event_time"]):
        if r["news2_score"] >= 7 and r["patient_id"] not in events:
            events[r["patient_id"]] = r["event_time"]
    events_csv = cluster.workdir / "events.csv"
    events_csv.write_text("patient_id,event_time\n" + "".join(f"{p},{t.isoformat()}\n" for p, t in events.items()))
    done = subprocess.run(
        cluster.base_args() + ["evaluate", "--history", "vitals_clean", "--events", str(events_csv), "--json",
                               "--resamples", "20"],
        env={**cluster.env, **lake.as_store(cluster.data).env}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    ward = report["ward"]
    assert (ward["patients"], ward["readings"]) == (len({r["patient_id"] for r in rows}), len(rows))
    assert ward["source"]["kind"] == "recorded" and ward["source"]["history"] == "vitals_clean"
    # Every event is at a reading's time, so every one is observed and is an episode.
    assert (ward["source"]["events_given"], ward["source"]["events_unobserved"], ward["episodes"]) == (len(events), 0, len(events))
    # The readings at the events score NEWS2 ≥ 7: NEWS2 ranks the positive readings above the others.
    assert report["auroc"]["news2"] > 0.5, report["auroc"]
    assert [m["alerts_per_35_per_day"] for m in report["matched"]] == [0.5, 1, 2, 4]


def test_readings_flow_end_to_end_and_bad_records_are_dead_letters(pipeline, storage):
    # The simulator creates the topic (3 partitions) and produces every reading before the services
    # start: ingest then also proves it reads a backlog from the earliest offset.
    # No artefacts and no missing fields: every row is scored and compared with the rubric on all six vitals.
    ward = pipeline(
        READINGS, patients=40, seed=11, simulate_args=("--artefact-rate", "0", "--missing-rate", "0"),
        produce=lambda cluster: produce_bad_messages(cluster.kafka, cluster.topic),
        scheduler_env={"VITALFLOW__ETL__MIN_INTERVAL_MS": "200"},
    )
    cluster = ward.cluster
    group = f"{cluster.topic}-ingest"

    conn = ward.connect()
    try:
        wait_for(conn, "SELECT count(*) FROM vitals_clean", READINGS, cluster)
        wait_for(conn, "SELECT count(*) FROM dead_letters", len(BAD_MESSAGES), cluster)

        assert_exactly_once(conn, READINGS)
        assert_group_committed_to_end(cluster.kafka, cluster.topic, group)

        rows = query(
            conn,
            "SELECT patient_id, event_time, heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, "
            "respiratory_rate, on_oxygen, consciousness, risk, rubric_score, news2_score, model_version FROM vitals_clean",
        ).to_pylist()
        version = query(conn, "SELECT model_version() AS v").column(0)[0].as_py()
        assert version and all(r["model_version"] == version for r in rows)
        assert all(r["risk"] in ("High", "Medium", "Low") for r in rows)
        assert all(r["event_time"].tzinfo is not None for r in rows)
        # The SQL scores against the published bands, computed independently here, on every row.
        assert [r["rubric_score"] for r in rows] == [rubric.rubric_score(r) for r in rows]
        assert [r["news2_score"] for r in rows] == [rubric.news2_score(r) for r in rows]
        assert any(r["news2_score"] >= 7 for r in rows) and any(r["news2_score"] == 0 for r in rows)

        # Plainly normal readings (every vital far from every band edge) and plainly critical ones (a rubric
        # score of 9 or more, two points past High: the simulator's septic patients rarely have every vital
        # clear of an edge at once) must get the rubric's label.
        normal = [r for r in rows if rubric.is_clear(r) and rubric.label(r) == "Low"]
        critical = [r for r in rows if rubric.rubric_score(r) >= 9]
        assert len(normal) >= 50 and len(critical) >= 10, f"{len(normal)} clear normal, {len(critical)} critical"
        wrong = [r for r in normal + critical if r["risk"] != rubric.label(r)]
        assert not wrong, f"{len(wrong)} of {len(normal) + len(critical)} plain readings mislabelled, e.g. {wrong[:3]}"

        assert_shadow_mode_reads_the_lake(cluster, rows)

        letters = query(conn, "SELECT payload, reason_code, reason, stage, source_topic FROM dead_letters").to_pylist()
        by_payload = {bytes(l["payload"]): l for l in letters}
        assert set(by_payload) == set(BAD_MESSAGES)
        for payload, (code, words) in BAD_MESSAGES.items():
            letter = by_payload[payload]
            assert (letter["reason_code"], letter["stage"], letter["source_topic"]) == (code, "ingest", cluster.topic)
            assert words in letter["reason"], letter["reason"]
    finally:
        conn.close()


def test_etl_killed_mid_stream_resumes_without_loss_or_duplicates(cluster):
    total = 600
    # Small ingest flushes make many files, so the ETL works in several micro-batches while readings arrive.
    small_flushes = {"VITALFLOW__INGEST__FLUSH_RECORDS": "25", "VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "50"}
    sim = cluster.start("simulate", "simulate", "--count", str(total), "--rate", "150", "--patients", "20", "--seed", "3")
    addrs = cluster.start_scheduler("scheduler", executors=["executor"])
    (executor,) = addrs["executors"]
    assert executor["flight"] > 0
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0", env=small_flushes)

    conn = cluster.connect(addrs['flight_sql'])
    try:
        wait_until(lambda: query_one(conn, "SELECT count(*) FROM vitals_clean") != 0, 120, "a first row in vitals_clean",
                   interval=0.2, details=cluster.logs)
    finally:
        conn.close()
    for child in cluster.children:
        if child.name in ("scheduler", "executor"):
            child.stop(signal.SIGKILL)

    addrs = cluster.start_scheduler("scheduler-2", executors=["executor-2"])
    assert sim.wait_exit(120) == 0, sim.tail()
    conn = cluster.connect(addrs['flight_sql'])
    try:
        wait_for(conn, "SELECT count(*) FROM vitals_clean", total, cluster)
        assert_exactly_once(conn, total)
        batches = query(conn, "SELECT count(DISTINCT etl_batch_id) FROM vitals_clean").column(0)[0].as_py()
        assert batches >= 2, f"{batches} micro-batches: the stream was not split"
    finally:
        conn.close()


def test_etl_crash_between_output_and_checkpoint_rewrites_instead_of_duplicating(cluster):
    total = 200
    sim = cluster.start("simulate", "simulate", "--count", str(total), "--rate", "0", "--patients", "20", "--seed", "5")
    assert sim.wait_exit(120) == 0, sim.tail()
    addrs = cluster.start_service(
        "scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", env={"VITALFLOW_FAULT_ETL": "after-output"}
    )
    port = addrs["scheduler"].rsplit(":", 1)[1]
    executor = cluster.start("executor", "executor", "--scheduler", f"127.0.0.1:{port}", "--flight-port", "0")
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0")

    # The first micro-batch writes its output, then the process dies before the checkpoint.
    crashed = cluster.children[1]
    assert crashed.wait_exit(120) != 0, crashed.tail()
    assert lake.snapshot_files(cluster.data, "vitals_clean"), "the first batch committed no vitals_clean file"
    # Not committed: the checkpoint holds batch 1 only as pending (its files, so the re-run takes the same rows),
    # in the position of its partition group (every group's batch stops before its commit).
    checkpoint = json.loads((cluster.data / "_checkpoints" / "etl.json").read_text())
    pending = [group["pending"]["id"] for group in checkpoint["groups"] if "pending" in group]
    assert checkpoint["last_batch_id"] == 0 and 1 in pending, checkpoint
    executor.stop(signal.SIGKILL)

    addrs = cluster.start_scheduler("scheduler-2", executors=["executor-2"])
    conn = cluster.connect(addrs['flight_sql'])
    try:
        wait_for(conn, "SELECT count(*) FROM vitals_clean", total, cluster)
        assert_exactly_once(conn, total)
        # Batch 1 ran again under the same id and replaced its own file.
        assert query(conn, "SELECT min(etl_batch_id) FROM vitals_clean").column(0)[0].as_py() == 1
    finally:
        conn.close()


def test_flight_sql_refuses_writes_and_names_bad_sql(cluster):
    addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0")
    conn = cluster.connect(addrs['flight_sql'])
    try:
        # Scoring with literals needs no data and no executor: it is planned and folded on the server.
        for sql, needle in [
            ("CREATE TABLE x AS SELECT 1", "read-only"),
            ("SELECT * FROM no_such_table", "no_such_table"),
            ("SELECT predict_risk('fast', 1, 2, 3, 4, 5)", "heart_rate"),
        ]:
            with pytest.raises(Exception) as err:
                query(conn, sql)
            assert needle in str(err.value), f"{sql}: {err.value}"
    finally:
        conn.close()


def test_ignore_nulls_windows_are_refused_on_the_cluster_by_name_and_last_known_carries_values(cluster, tmp_path):
    """The plan sent to executors loses IGNORE NULLS on window functions (NULLs would come back): the front door
    refuses such a query naming it and the alternative, and an ETL SQL file using it is refused at start."""
    addrs = cluster.start_scheduler("scheduler", "--no-etl", executors=["executor"])
    conn = cluster.connect(addrs["flight_sql"])
    rows = "(VALUES (1, 10), (2, NULL), (3, NULL), (4, 40)) AS t(ts, v)"
    try:
        with pytest.raises(Exception) as err:
            query(conn, f"SELECT ts, last_value(v) IGNORE NULLS OVER (ORDER BY ts) AS v FROM {rows}")
        assert "last_value(...) IGNORE NULLS" in str(err.value) and "last_known" in str(err.value), err.value
        carried = query(conn, f"SELECT ts, last_known(v) OVER (ORDER BY ts) AS v FROM {rows} ORDER BY ts")
        assert carried.column("v").to_pylist() == [10, 10, 10, 40], carried
    finally:
        conn.close()

    # An ETL SQL of window functions (the one the shipped SQL replaced, kept as `bench etl`'s reference)
    # with its carry-forward written the way the cluster loses.
    windows = (Path(__file__).resolve().parents[2] / "src" / "bench" / "etl_window_passes.sql").read_text()
    sql_file = tmp_path / "etl.sql"
    sql_file.write_text(windows.replace("last_known(m_heart_rate) OVER w", "last_value(m_heart_rate) IGNORE NULLS OVER w"))
    assert sql_file.read_text() != windows
    child = cluster.start("scheduler-etl-sql", "scheduler", "--port", "0", "--flight-sql-port", "0",
                          env={"VITALFLOW__ETL__SQL_FILE": str(sql_file)})
    assert child.wait_exit(timeout=60) != 0
    assert "IGNORE NULLS" in child.tail() and "last_known" in child.tail(), child.tail()
