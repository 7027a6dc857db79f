"""Exactly-once ingest through crashes, broker restarts and rebalances, checked on the landed files.

Each test streams records through the real Kafka into real `vitalflow ingest` processes, breaks
something mid-stream, and then requires the landed tables to hold exactly the records of the topic:
the set of (partition, offset) of `vitals_raw` plus `dead_letters` equals every offset of the topic,
and no (partition, offset) appears twice. INGEST_SOAK_RECORDS (e.g. 1000000) runs the streams at soak size.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.wait import wait_until

RECORDS = int(os.environ.get("INGEST_SOAK_RECORDS", "100000"))
ROOT = Path(__file__).resolve().parents[2]
# A dead member leaves the group after this; the broker's minimum (6 s) keeps restarts quick.
FAST_GROUP = '[kafka.properties]\n"session.timeout.ms" = "6000"\n"heartbeat.interval.ms" = "1000"\n'
SMALL_FLUSHES = {"VITALFLOW__INGEST__FLUSH_RECORDS": "3000", "VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "50"}


def landed_positions(data: Path, table: str) -> list[tuple[int, int]]:
    positions: list[tuple[int, int]] = []
    for f in sorted((data / table).rglob("*.parquet")):
        t = pq.read_table(f, columns=["source_partition", "source_offset"])
        positions.extend(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
    return positions


def topic_offsets(kafka: str, topic: str) -> set[tuple[int, int]]:
    """Every (partition, offset) the topic holds."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "offsets-probe"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        out = set()
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            out.update((p, o) for o in range(low, high))
        return out
    finally:
        consumer.close()


def wait_all_landed(cluster, expected: int, timeout: float = 240) -> None:
    got = [0]

    def all_landed() -> bool:
        got[0] = len(landed_positions(cluster.data, "vitals_raw")) + len(landed_positions(cluster.data, "dead_letters"))
        return got[0] >= expected

    wait_until(all_landed, timeout, lambda: f"{got[0]} of {expected} records landed", details=cluster.logs)


def assert_exactly_once(cluster, produced: int) -> None:
    """vitals_raw + dead_letters hold every offset of the topic exactly once."""
    expected = topic_offsets(cluster.kafka, cluster.topic)
    assert len(expected) == produced, f"the topic holds {len(expected)} records, {produced} were acknowledged"
    landed = landed_positions(cluster.data, "vitals_raw") + landed_positions(cluster.data, "dead_letters")
    duplicates = [p for p, n in Counter(landed).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} records landed twice, e.g. {sorted(duplicates)[:5]}"
    missing = expected - set(landed)
    assert not missing, f"{len(missing)} records never landed, e.g. {sorted(missing)[:5]}"
    assert len(landed) == len(expected)


def simulate(cluster, count: int, partitions: int = 3, rate: float = 0, name: str = "simulate"):
    return cluster.start(name, "simulate", "--count", str(count), "--rate", str(rate), "--patients", "200",
                         "--seed", "9", "--partitions", str(partitions))


class Stream:
    """Produces `count` good records from a thread at about `rate` per second; `join()` returns how many
    the broker acknowledged."""

    def __init__(self, kafka: str, topic: str, count: int, rate: float, partitions: int):
        subprocess.run([os.environ["VITALFLOW_BIN"], "--kafka", kafka, "--topic", topic, "simulate", "--count", "0",
                        "--partitions", str(partitions)], check=True, capture_output=True)
        self.acked = 0
        self.failed: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(kafka, topic, count, rate), daemon=True)
        self._thread.start()

    def _on_delivery(self, err, _msg):
        if err is None:
            self.acked += 1
        else:
            self.failed.append(str(err))

    def _run(self, kafka: str, topic: str, count: int, rate: float) -> None:
        producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "linger.ms": 5})
        started = time.monotonic()
        for i in range(count):
            if i % 1000 == 0:
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                producer.poll(0)
            while True:
                try:
                    producer.produce(topic, value=good_record(i), key=f"P{i % 200}".encode(), on_delivery=self._on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.flush(120)

    def join(self) -> int:
        self._thread.join(300)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert not self.failed, f"{len(self.failed)} deliveries failed, e.g. {self.failed[:3]}"
        return self.acked


def acknowledged(sim) -> int:
    assert sim.wait_exit(300) == 0, sim.tail()
    text = sim.log_path.read_text()
    return int(text.split("vitalflow simulate: ", 1)[1].split(" ", 1)[0])


def ingest(cluster, name: str, group: str, env: dict[str, str] | None = None):
    # The cluster passes its own --config to every child; `fast_config` adds the short group timeouts to it.
    return cluster.start(name, "ingest", "--group", group, "--metrics-port", "0",
                         env=dict(SMALL_FLUSHES, **(env or {})))


@pytest.fixture
def fast_config(cluster) -> Path:
    with open(cluster.config, "a") as config:
        config.write(FAST_GROUP)
    return cluster.config


def wait_some_landed(cluster, at_least: int = 1, timeout: float = 120) -> None:
    wait_until(lambda: len(landed_positions(cluster.data, "vitals_raw")) >= at_least, timeout,
               f"{at_least} records in vitals_raw", interval=0.1, details=cluster.logs)


def test_ingest_killed_at_random_points_lands_every_record_once(cluster, fast_config):
    seed = int(os.environ.get("INGEST_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"INGEST_FAULT_SEED={seed}")
    group = f"{cluster.topic}-ingest"
    # A paced stream: the kills fall while records arrive, not after.
    sim = Stream(cluster.kafka, cluster.topic, RECORDS, rate=max(RECORDS / 15, 5000), partitions=3)
    proc = ingest(cluster, "ingest-0", group)
    wait_some_landed(cluster)
    for i in range(1, 7):
        time.sleep(rng.uniform(0.2, 2.0))
        proc.stop(signal.SIGKILL)
        proc = ingest(cluster, f"ingest-{i}", group)
    produced = sim.join()
    wait_all_landed(cluster, produced)
    proc.stop()
    assert_exactly_once(cluster, produced)


@pytest.mark.parametrize("fault", ["after-landing", "between-files"])
def test_ingest_crash_inside_a_flush_resumes_from_the_landed_files(cluster, fast_config, fault):
    """The process aborts after writing files and before committing (or between a range's two files);
    the restart flushes with other boundaries, so a replay keyed on the commit would duplicate."""
    group = f"{cluster.topic}-ingest"
    sim = simulate(cluster, 5000)
    produced = acknowledged(sim)
    bad = produce_payloads(cluster.kafka, cluster.topic, [b"{broken"] * 20)
    crashed = ingest(cluster, "ingest-crash", group,
                     env={"VITALFLOW_FAULT_INGEST": fault, "VITALFLOW__INGEST__FLUSH_RECORDS": "1000"})
    assert crashed.wait_exit(60) != 0, crashed.tail()
    if fault == "after-landing":
        # The first flush's files are written, its offsets never committed.
        assert landed_positions(cluster.data, "vitals_raw")
        assert committed(cluster.kafka, cluster.topic, group) == {}, "the crashed process committed"
    else:
        # The bad records' range has its dead letters but not its vitals_raw file.
        assert landed_positions(cluster.data, "dead_letters")
    ingest(cluster, "ingest", group, env={"VITALFLOW__INGEST__FLUSH_RECORDS": "777"})
    wait_all_landed(cluster, produced + bad)
    assert_exactly_once(cluster, produced + bad)


def test_broker_stopped_and_restarted_mid_stream_loses_and_duplicates_nothing(cluster, fast_config):
    kafka_dir = os.environ.get("VITALFLOW_KAFKA_DIR")
    if not kafka_dir:
        pytest.skip("needs the test script's broker (VITALFLOW_KAFKA_DIR) to restart it")
    group = f"{cluster.topic}-ingest"
    produced = acknowledged(simulate(cluster, RECORDS))
    proc = ingest(cluster, "ingest", group, env={"VITALFLOW__INGEST__FLUSH_RECORDS": "1000"})
    wait_some_landed(cluster, at_least=1000)
    kafka_sh = [str(ROOT / "deploy" / "kafka" / "kafka.sh")]
    subprocess.run(kafka_sh + ["stop"], check=True)
    time.sleep(3)
    subprocess.run(kafka_sh + ["start"], check=True, stdout=subprocess.DEVNULL)
    wait_all_landed(cluster, produced)
    assert proc.proc.poll() is None, f"ingest exited during the broker restart:\n{proc.tail()}"
    proc.stop()
    assert_exactly_once(cluster, produced)


def test_two_processes_in_one_group_one_killed_and_restarted(cluster, fast_config):
    group = f"{cluster.topic}-ingest"
    sim = Stream(cluster.kafka, cluster.topic, RECORDS, rate=max(RECORDS / 15, 5000), partitions=6)
    a = ingest(cluster, "ingest-a", group)
    b = ingest(cluster, "ingest-b", group)
    wait_some_landed(cluster, at_least=RECORDS // 10)
    a.stop(signal.SIGKILL)
    time.sleep(2)
    a = ingest(cluster, "ingest-a2", group)
    produced = sim.join()
    wait_all_landed(cluster, produced)
    assert a.proc.poll() is None and b.proc.poll() is None, cluster.logs()
    for p in (a, b):
        p.stop()
    assert_exactly_once(cluster, produced)
    # Both processes really shared the topic, and b saw its partitions revoked and reassigned.
    log_b = (cluster.workdir / "ingest-b.log").read_text()
    assert "Partitions revoked" in log_b and log_b.count("Partitions assigned") >= 2, log_b[-3000:]
    assert "Partitions assigned" in (cluster.workdir / "ingest-a.log").read_text()


def produce_payloads(kafka: str, topic: str, payloads: list[bytes | None]) -> int:
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "message.max.bytes": 2_000_000})
    for i, payload in enumerate(payloads):
        producer.produce(topic, value=payload, key=f"k{i % 7}".encode())
    assert producer.flush(60) == 0
    return len(payloads)


def committed(kafka: str, topic: str, group: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10) if tp.offset >= 0}
    finally:
        consumer.close()


def good_record(i: int) -> bytes:
    return json.dumps({"patient_id": f"P{i % 50:03d}", "timestamp": 1795515302123 + i, "heart_rate": 60 + i % 40,
                       "spo2": 95, "systolic_bp": 120, "diastolic_bp": 80}).encode()


FUZZ_KINDS = {
    "oversized": lambda rng: b'{"patient_id": "P1", "note": "' + b"x" * 70_000 + b'"}',
    "empty_payload": lambda rng: None,
    "invalid_json": lambda rng: b'{"patient_id": "P1", "heart_rate": ',
    "not_an_object": lambda rng: b"[1, 2, 3]",
    "missing_field": lambda rng: b'{"timestamp": "2026-11-24T10:00:00Z", "heart_rate": 80}',
    "wrong_type": lambda rng: b'{"patient_id": "P1", "timestamp": "2026-11-24T10:00:00Z", "heart_rate": "fast"}',
    "impossible_value": lambda rng: b'{"patient_id": "P1", "timestamp": "2026-11-24T10:00:00Z", "heart_rate": 900}',
    "invalid_value": lambda rng: b'{"patient_id": "P1", "timestamp": "2026-11-24T10:00:00Z", "spo2": 97, "consciousness": "Q"}',
    "no_vitals": lambda rng: b'{"patient_id": "P1", "timestamp": "2026-11-24T10:00:00Z"}',
    # Random bytes, made invalid UTF-8 by their first byte so that no draw is accidentally valid JSON.
    "random_bytes": lambda rng: b"\xff" + rng.randbytes(rng.randrange(1, 300)),
    "truncated_fhir": lambda rng: json.dumps(FHIR_HEART_RATE).encode()[: rng.randrange(10, 200)],
}
EXPECTED_CODE = {"random_bytes": "invalid_json", "truncated_fhir": "invalid_json"}

FHIR_HEART_RATE = {
    "resourceType": "Observation", "id": "heart-rate", "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/example"}, "effectiveDateTime": "1999-07-02",
    "valueQuantity": {"value": 44, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
}


def test_fuzzed_bad_messages_are_dead_letters_with_reasons_and_good_ones_land(cluster, fast_config):
    rng = random.Random(int(os.environ.get("INGEST_FAULT_SEED", "1234")))
    payloads: list[bytes | None] = []
    kinds: list[str | None] = []
    for i in range(3000):
        if rng.random() < 0.2:
            kind = rng.choice(sorted(FUZZ_KINDS))
            payloads.append(FUZZ_KINDS[kind](rng))
            kinds.append(kind)
        else:
            payloads.append(good_record(i))
            kinds.append(None)
    for kind in FUZZ_KINDS:  # every kind at least once
        payloads.append(FUZZ_KINDS[kind](rng))
        kinds.append(kind)
    cluster_topic_partitions = 1  # one partition keeps produce order = offset order, to match letters to kinds
    subprocess.run([cluster.binary, "--kafka", cluster.kafka, "--topic", cluster.topic, "simulate", "--count", "0",
                    "--partitions", str(cluster_topic_partitions)], check=True, capture_output=True)
    produce_payloads(cluster.kafka, cluster.topic, payloads)
    dead_letter_topic = f"{cluster.topic}-dead-letters"
    ingest(cluster, "ingest", f"{cluster.topic}-ingest", env={"VITALFLOW__INGEST__DEAD_LETTER_TOPIC": dead_letter_topic})
    wait_all_landed(cluster, len(payloads))
    assert_exactly_once(cluster, len(payloads))

    letters = []
    for f in sorted((cluster.data / "dead_letters").rglob("*.parquet")):
        letters.extend(pq.read_table(f, columns=["payload", "source_offset", "stage", "reason_code", "reason"]).to_pylist())
    by_offset = {l["source_offset"]: l for l in letters}
    good = [o for o, k in enumerate(kinds) if k is None]
    assert sorted(o for o, k in enumerate(kinds) if k is not None) == sorted(by_offset)
    assert sorted(p for _, p in landed_positions(cluster.data, "vitals_raw")) == good
    for offset, kind in enumerate(kinds):
        if kind is None:
            continue
        letter = by_offset[offset]
        assert letter["reason_code"] == EXPECTED_CODE.get(kind, kind), (kind, letter["reason"])
        assert letter["reason"] and letter["stage"] == "ingest"
        assert (letter["payload"] or b"") == (payloads[offset] or b""), kind

    # The dead-letter topic has each dead letter too (no crash in this run, so exactly once), keyed by
    # its source position, with the reason in its headers and the payload as it was.
    on_topic = read_topic(cluster.kafka, dead_letter_topic, len(by_offset))
    assert sorted(on_topic) == sorted(f"{cluster.topic}-0-{o}" for o in by_offset)
    for key, (value, headers) in on_topic.items():
        letter = by_offset[int(key.rsplit("-", 1)[1])]
        assert headers["reason_code"] == letter["reason_code"] and headers["reason"] == letter["reason"], key
        assert headers["stage"] == "ingest" and headers["source_topic"] == cluster.topic and headers["source_partition"] == "0"
        assert (value or b"") == (letter["payload"] or b""), key


def read_topic(kafka: str, topic: str, expected: int, timeout: float = 60) -> dict[str, tuple[bytes | None, dict[str, str]]]:
    """Every message of `topic` by key: (value, headers), after at least `expected` have arrived."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"{topic}-reader", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: dict[str, tuple[bytes | None, dict[str, str]]] = {}
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            count += 1
            out[m.key().decode()] = (m.value(), {k: v.decode() for k, v in (m.headers() or [])})
    finally:
        consumer.close()
    assert count == expected, f"{count} of {expected} dead letters on {topic}"
    return out


def test_fhir_observations_land_with_their_vitals_in_table_units(cluster, fast_config):
    fixtures = sorted((ROOT / "ingest" / "fixtures" / "fhir").glob("*.json"))
    subprocess.run([cluster.binary, "--kafka", cluster.kafka, "--topic", cluster.topic, "simulate", "--count", "0",
                    "--partitions", "1"], check=True, capture_output=True)
    produce_payloads(cluster.kafka, cluster.topic, [f.read_bytes() for f in fixtures])
    ingest(cluster, "ingest", f"{cluster.topic}-ingest")
    wait_all_landed(cluster, len(fixtures))
    assert_exactly_once(cluster, len(fixtures))
    assert landed_positions(cluster.data, "dead_letters") == []
    rows = {}
    for f in sorted((cluster.data / "vitals_raw").rglob("*.parquet")):
        for r in pq.read_table(f).drop_columns(["event_time", "ingest_time"]).to_pylist():
            rows[fixtures[r["source_offset"]].stem] = r
    assert rows["heart-rate"]["heart_rate"] == 44 and rows["heart-rate"]["spo2"] is None
    assert rows["body-temperature-degF"]["temperature"] == pytest.approx(37.5)
    assert rows["glucose-mmol"]["glucose"] == pytest.approx(6.3 * 18.0156)
    assert (rows["blood-pressure-panel"]["systolic_bp"], rows["blood-pressure-panel"]["diastolic_bp"]) == (107, 60)
    bundle = rows["vital-signs-bundle"]
    assert (bundle["patient_id"], bundle["heart_rate"], bundle["spo2"], bundle["respiratory_rate"]) == ("P017", 101, 95, 26)
