"""Exactly-once ingest through crashes, broker restarts and rebalances, checked on the landed files.

Each test streams records through the real Kafka into real `vitalflow ingest` processes, breaks
something mid-stream, and then requires the landed tables to hold exactly the records of the topic:
the set of (partition, offset) of `vitals_raw` plus `dead_letters` equals every offset of the topic,
and no (partition, offset) appears twice. INGEST_SOAK_RECORDS (e.g. 1000000) runs the streams at soak size.
Tests that take the `storage` fixture run twice: tables in a directory, then on the S3-compatible server.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support.lake import TableStore, positions, rows
from tests.support.wait import wait_until

RECORDS = int(os.environ.get("INGEST_SOAK_RECORDS", "100000"))
ROOT = Path(__file__).resolve().parents[2]
# A dead member leaves the group after this; the broker's minimum (6 s) keeps restarts quick.
FAST_GROUP = '[kafka.properties]\n"session.timeout.ms" = "6000"\n"heartbeat.interval.ms" = "1000"\n'
SMALL_FLUSHES = {"VITALFLOW__INGEST__FLUSH_RECORDS": "3000", "VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "50"}


def landed_positions(data: Path | TableStore, table: str) -> list[tuple[int, int]]:
    return positions(data, table)


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


def test_ingest_killed_at_random_points_lands_every_record_once(cluster, storage, fast_config):
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
    """The process aborts after its Delta commits and before the Kafka commit (or between the
    dead_letters and the vitals_raw commit); the restart flushes with other boundaries, so a replay
    keyed on the Kafka commit would duplicate."""
    group = f"{cluster.topic}-ingest"
    sim = simulate(cluster, 5000)
    produced = acknowledged(sim)
    bad = produce_payloads(cluster.kafka, cluster.topic, [b"{broken"] * 20)
    crashed = ingest(cluster, "ingest-crash", group,
                     env={"VITALFLOW_FAULT_INGEST": fault, "VITALFLOW__INGEST__FLUSH_RECORDS": "1000"})
    assert crashed.wait_exit(60) != 0, crashed.tail()
    if fault == "after-landing":
        # The first flush is committed to the tables, its Kafka offsets never committed.
        assert landed_positions(cluster.data, "vitals_raw")
        assert committed(cluster.kafka, cluster.topic, group) == {}, "the crashed process committed"
    else:
        # The bad records' range has its dead letters committed, but not its vitals_raw commit.
        assert landed_positions(cluster.data, "dead_letters")
    ingest(cluster, "ingest", group, env={"VITALFLOW__INGEST__FLUSH_RECORDS": "777"})
    wait_all_landed(cluster, produced + bad)
    assert_exactly_once(cluster, produced + bad)


def test_broker_stopped_and_restarted_mid_stream_loses_and_duplicates_nothing(cluster, storage, fast_config):
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


def test_a_topic_deleted_and_created_again_lands_all_its_records(cluster, fast_config):
    """Kafka gives a topic created again under the same name a new id and offsets from 0 again. Landing
    positions are kept per topic id, so none of the new topic's records is taken for one already landed
    from the old topic (whose rows stay)."""
    group = f"{cluster.topic}-ingest"
    first = acknowledged(simulate(cluster, 3000))
    proc = ingest(cluster, "ingest", group)
    wait_all_landed(cluster, first)
    proc.stop()
    admin = AdminClient({"bootstrap.servers": cluster.kafka})
    for done in admin.delete_topics([cluster.topic]).values():
        done.result(60)
    wait_until(lambda: cluster.topic not in admin.list_topics(timeout=10).topics, 60, "the topic deleted")
    # Fewer records than before: every offset of the new topic is one the old topic's rows already hold.
    second = acknowledged(simulate(cluster, 600, name="simulate-2"))
    proc = ingest(cluster, "ingest-2", group)
    wait_all_landed(cluster, first + second)
    proc.stop()
    landed = Counter(landed_positions(cluster.data, "vitals_raw") + landed_positions(cluster.data, "dead_letters"))
    new_topic = topic_offsets(cluster.kafka, cluster.topic)
    assert len(new_topic) == second
    assert sum(landed.values()) == first + second, f"{sum(landed.values())} rows for {first} + {second} records"
    assert {p for p, n in landed.items() if n == 2} == new_topic and max(landed.values()) == 2


def test_two_processes_in_one_group_one_killed_and_restarted(cluster, storage, fast_config):
    group = f"{cluster.topic}-ingest"
    sim = Stream(cluster.kafka, cluster.topic, RECORDS, rate=max(RECORDS / 15, 5000), partitions=6)
    a = ingest(cluster, "ingest-a", group)
    b = ingest(cluster, "ingest-b", group)
    # Both share the topic before one dies (a group forming can hand all partitions to one at first).
    logs = [cluster.workdir / f"{name}.log" for name in ("ingest-a", "ingest-b")]
    wait_until(lambda: all(log.exists() and "Partitions assigned" in log.read_text() for log in logs), 120,
               "both processes assigned partitions", details=cluster.logs)
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

    letters = rows(cluster.data, "dead_letters", ["payload", "source_offset", "stage", "reason_code", "reason"])
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
    landed = {fixtures[r["source_offset"]].stem: r for r in rows(cluster.data, "vitals_raw")}
    assert landed["heart-rate"]["heart_rate"] == 44 and landed["heart-rate"]["spo2"] is None
    assert landed["body-temperature-degF"]["temperature"] == pytest.approx(37.5)
    assert landed["glucose-mmol"]["glucose"] == pytest.approx(6.3 * 18.0156)
    assert (landed["blood-pressure-panel"]["systolic_bp"], landed["blood-pressure-panel"]["diastolic_bp"]) == (107, 60)
    bundle = landed["vital-signs-bundle"]
    assert (bundle["patient_id"], bundle["heart_rate"], bundle["spo2"], bundle["respiratory_rate"]) == ("P017", 101, 95, 26)


def test_a_zombie_ingest_commits_nothing_its_successor_landed(cluster, storage, fast_config):
    """An ingest process paused (SIGSTOP) with records buffered, past its group session: its partitions
    go to a successor, which lands on. Resumed, the zombie flushes its stale buffer; the Delta
    transactions refuse it, so every record is still landed exactly once."""
    group = f"{cluster.topic}-ingest"
    sim = Stream(cluster.kafka, cluster.topic, RECORDS, rate=max(RECORDS / 15, 5000), partitions=3)
    # Long flushes: the zombie holds seconds of records when it is paused.
    slow = {"VITALFLOW__INGEST__FLUSH_RECORDS": "1000000", "VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "4000"}
    zombie = ingest(cluster, "ingest-zombie", group, env=slow)
    wait_some_landed(cluster)
    time.sleep(2)  # mid-way through the next flush interval
    os.kill(zombie.proc.pid, signal.SIGSTOP)
    successor = ingest(cluster, "ingest-successor", group)
    successor_log = cluster.workdir / "ingest-successor.log"
    wait_until(lambda: "Partitions assigned" in successor_log.read_text(), 60, "the successor got the partitions",
               details=cluster.logs)
    landed_before = len(landed_positions(cluster.data, "vitals_raw"))
    wait_some_landed(cluster, at_least=landed_before + 1000)
    os.kill(zombie.proc.pid, signal.SIGCONT)
    produced = sim.join()
    wait_all_landed(cluster, produced)
    successor.stop()
    zombie.stop()
    assert_exactly_once(cluster, produced)
    # Resumed, the zombie meets one of two guards, whichever it reaches first: its flush is refused by
    # the Delta transaction, or librdkafka reports the lost session first and the zombie drops its
    # stale buffer on the revocation. Either way it committed nothing (checked above).
    zombie_log = (cluster.workdir / "ingest-zombie.log").read_text()
    refused = "already landed by another writer" in zombie_log or "lost to another writer" in zombie_log
    dropped = re.search(r"Partitions revoked.*dropped_unlanded=[1-9]", zombie_log) is not None
    assert refused or dropped, zombie_log[-3000:]


def hl7_fixture(name: str) -> bytes:
    """An HL7 v2 fixture with HL7's segment terminator (`\\r`)."""
    return (ROOT / "ingest" / "fixtures" / "hl7" / name).read_bytes().replace(b"\n", b"\r")


def hl7_kinds() -> dict[str, tuple[bytes, str | None]]:
    """Good HL7 v2 messages (reason None) and one bad message per reason code, made from the fixtures."""
    monitor = hl7_fixture("pcd01-monitor.hl7")
    glucose = hl7_fixture("hl7-v2.4-glucose.hl7")
    obr = next(s for s in monitor.split(b"\r") if s.startswith(b"OBR"))
    return {
        "monitor": (monitor, None),
        "monitor_mllp": (b"\x0b" + monitor + b"\x1c\x0d", None),
        "custom_separators": (hl7_fixture("pcd01-custom-separators.hl7"), None),
        "glucose_local_time": (glucose.replace(b"1554-5^GLUCOSE^POST 12H CFST:MCNC:PT:SER/PLAS:QN", b"2339-0^Glucose^LN"), None),
        "bad_msh": (monitor.replace(b"MSH|^~\\&|", b"MSH|^~|"), "hl7_syntax"),
        "order_message": (monitor.replace(b"ORU^R01^ORU_R01", b"ORM^O01^ORM_O01"), "hl7_message_type"),
        "v2_2": (monitor.replace(b"|P|2.6|", b"|P|2.2|"), "hl7_version"),
        "obx_before_obr": (monitor.replace(obr + b"\r", b"").replace(b"OBX|12", obr + b"\rOBX|12"), "hl7_segment_order"),
        "no_pid": (b"\r".join(s for s in monitor.split(b"\r") if not s.startswith(b"PID")), "hl7_missing_segment"),
        "no_known_code": (glucose, "no_vitals"),
        "bad_time": (monitor.replace(b"|R|||20090813095715+0000", b"|R|||2009081309"), "invalid_time"),
        "withdrawn": (monitor.replace(b"|90-100||||R|", b"|90-100||||W|"), "invalid_value"),
        "heart_rate_900": (monitor.replace(b"|80|264864", b"|900|264864"), "impossible_value"),
        "no_patient_id": (monitor.replace(b"PID|||789567^^^Imaginary Hospital^PI", b"PID|||"), "missing_field"),
        "text_value": (monitor.replace(b"|98|262688", b"|abc|262688"), "wrong_type"),
    }


def test_hl7_v2_messages_land_exactly_once_and_bad_ones_are_dead_letters_with_reasons(cluster, fast_config):
    rng = random.Random(int(os.environ.get("INGEST_FAULT_SEED", "1234")))
    kinds = hl7_kinds()
    names = sorted(kinds) + [rng.choice(sorted(kinds)) for _ in range(400)]
    rng.shuffle(names)
    subprocess.run([cluster.binary, "--kafka", cluster.kafka, "--topic", cluster.topic, "simulate", "--count", "0",
                    "--partitions", "1"], check=True, capture_output=True)
    produce_payloads(cluster.kafka, cluster.topic, [kinds[n][0] for n in names])
    ingest(cluster, "ingest", f"{cluster.topic}-ingest", env={"VITALFLOW__INGEST__HL7__DEFAULT_TIMEZONE": "America/New_York"})
    wait_all_landed(cluster, len(names))
    assert_exactly_once(cluster, len(names))

    letters = {l["source_offset"]: l for l in rows(cluster.data, "dead_letters", ["source_offset", "reason_code", "reason"])}
    landed = {r["source_offset"]: r for r in rows(cluster.data, "vitals_raw")}
    for offset, name in enumerate(names):
        expected = kinds[name][1]
        if expected is None:
            assert offset in landed and offset not in letters, (name, letters.get(offset))
        else:
            assert offset not in landed, name
            assert letters[offset]["reason_code"] == expected, (name, letters[offset]["reason"])
    first = {name: landed[names.index(name)] for name, (_, reason) in kinds.items() if reason is None}
    monitor = first["monitor"]
    assert monitor["patient_id"] == "789567" and monitor["event_time"].isoformat().startswith("2009-08-13T09:57:15")
    assert [monitor[c] for c in ("heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "respiratory_rate")] \
        == [80, 120, 80, 98, pytest.approx(37.1), 16]
    def columns(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in ("source_offset", "ingest_time")}

    assert columns(first["monitor_mllp"]) == columns(monitor), "MLLP framing changes nothing"
    custom = first["custom_separators"]
    assert (custom["patient_id"], custom["heart_rate"], custom["temperature"]) == ("A-1*7", 72, pytest.approx(37.0))
    glucose = first["glucose_local_time"]
    assert glucose["glucose"] == 182 and glucose["event_time"].isoformat().startswith("2002-02-15T12:30:00")


def test_the_simulators_hl7_v2_lands_every_reading_exactly_once(cluster, fast_config):
    """`vitalflow simulate --format hl7v2` (ORU^R01, IHE PCD-01) through real Kafka and ingest: every
    message lands as its reading, none is a dead letter."""
    sim = cluster.start("simulate", "simulate", "--count", "300", "--patients", "20", "--seed", "5", "--partitions", "2",
                        "--format", "hl7v2", "--missing-rate", "0")
    produced = acknowledged(sim)
    assert produced == 300, produced
    ingest(cluster, "ingest", f"{cluster.topic}-ingest")
    wait_all_landed(cluster, produced)
    assert_exactly_once(cluster, produced)
    assert landed_positions(cluster.data, "dead_letters") == []
    landed = rows(cluster.data, "vitals_raw")
    assert len({r["patient_id"] for r in landed}) == 20
    # Every vital a monitor sends arrived; oxygen and consciousness are not in PCD-01.
    for vital in ("heart_rate", "systolic_bp", "diastolic_bp", "spo2", "temperature", "glucose", "respiratory_rate"):
        assert all(r[vital] is not None for r in landed), vital
    assert all(r["on_oxygen"] is None and r["consciousness"] is None for r in landed)
