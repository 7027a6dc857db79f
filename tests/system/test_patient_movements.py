"""Patient movements through real Kafka, ingest and the ETL, read over Flight SQL: HL7 v2 ADT (the published
examples of ingest/fixtures/hl7/) and the JSON movement record share the vitals topic; every record lands as a
reading, a movement or one dead letter; a discharged patient leaves patient_latest; with etl.require_admission
a reading outside an admission is a dead letter `not_admitted`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.support.cluster import query
from tests.support.pipeline import start_pipeline

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 6, 16, 0, tzinfo=timezone.utc)


def adt(name: str) -> bytes:
    """An ADT fixture with HL7's segment terminator."""
    return (ROOT / "ingest" / "fixtures" / "hl7" / name).read_bytes().replace(b"\n", b"\r")


def movement(patient: str, kind: str, at: datetime, ward: str | None = None) -> bytes:
    record = {"type": "movement", "patient_id": patient, "movement": kind, "event_time": at.isoformat()}
    if ward:
        record |= {"ward": ward, "bed": "1"}
    return json.dumps(record).encode()


def reading(patient: str, at: datetime) -> bytes:
    return json.dumps({"patient_id": patient, "timestamp": at.isoformat(), "heart_rate": 80, "systolic_bp": 120,
                       "diastolic_bp": 80, "spo2": 97, "temperature": 36.8, "glucose": 100,
                       "respiratory_rate": 16, "on_oxygen": False, "consciousness": "A"}).encode()


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


transfer = adt("adt-a02-transfer.hl7")
BAD_ADT = {
    # payload → reason code
    b"\r".join(s for s in transfer.split(b"\r") if not s.startswith(b"PID")): "hl7_missing_segment",
    transfer.replace(b"ADT^A02^ADT_A02", b"ADT^A04^ADT_A01"): "hl7_message_type",
    transfer.replace(b"||01||202601060955", b"||01||2026010609"): "invalid_time",
    movement("P1", "teleport", minutes(0)): "invalid_value",
}

# One partition, in this order. P1: admitted at 0 on ward-a, 3 readings, transferred to the ICU at 10, 2
# readings, discharged at 20, 2 readings after. P2: readings only (never admitted). 191919 (the fixtures'
# patient of GENHOS): transferred into the SICU (A02 at 14:55Z), an update (A08), 2 readings, discharged (A03
# on 2026-01-10) and 1 reading after. PATID1234: admitted by the A01 example (2007), 2 readings now.
RECORDS: list[tuple[bytes, str]] = (
    [(movement("P1", "admit", minutes(0), "ward-a"), "movement")]
    + [(reading("P1", minutes(m)), "in") for m in (1, 2, 3)]
    + [(movement("P1", "transfer", minutes(10), "icu"), "movement")]
    + [(reading("P1", minutes(m)), "in") for m in (11, 12)]
    + [(movement("P1", "discharge", minutes(20)), "movement")]
    + [(reading("P1", minutes(m)), "out") for m in (21, 22)]
    + [(reading("P2", minutes(m)), "out") for m in (1, 2, 3, 4)]
    + [(transfer, "movement"), (adt("adt-a08-update.hl7"), "movement")]
    + [(reading("191919", minutes(m)), "in") for m in (5, 6)]
    + [(adt("adt-a03-discharge.hl7"), "movement")]
    + [(reading("191919", datetime(2026, 1, 11, tzinfo=timezone.utc)), "out")]
    + [(adt("adt-a01-admit.hl7"), "movement")]
    + [(reading("PATID1234", minutes(m)), "in") for m in (7, 8)]
    + [(payload, "bad") for payload in BAD_ADT]
)


def produce(cluster) -> None:
    """The records on one partition of a new topic, in order."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.kafka})
    admin.create_topics([NewTopic(cluster.topic, num_partitions=1, replication_factor=1)])[cluster.topic].result(30)
    producer = Producer({"bootstrap.servers": cluster.kafka, "enable.idempotence": True})
    for payload, _ in RECORDS:
        producer.produce(cluster.topic, value=payload)
    assert producer.flush(30) == 0


def count(kind: str) -> int:
    return sum(1 for _, k in RECORDS if k == kind)


@pytest.mark.parametrize("require_admission", [False, True])
def test_movements_land_once_and_a_discharge_leaves_patient_latest(cluster, require_admission):
    readings = count("in") + count("out")
    clean = count("in") if require_admission else readings
    env = {
        "VITALFLOW__ETL__MIN_INTERVAL_MS": "200",
        "VITALFLOW__ETL__REQUIRE_ADMISSION": str(require_admission).lower(),
    }
    cluster.env["VITALFLOW__INGEST__HL7__DEFAULT_TIMEZONE"] = "America/New_York"
    latest = ["PATID1234"] if require_admission else ["P2", "PATID1234"]
    refused = count("out") if require_admission else 0

    def done(conn) -> bool:
        return query(conn, f"""SELECT (SELECT count(*) FROM vitals_clean) = {clean}
            AND (SELECT count(*) FROM dead_letters WHERE stage = 'etl') = {refused}
            AND (SELECT count(*) FROM patient_latest) = {len(latest)}""").column(0)[0].as_py()

    pipeline = start_pipeline(cluster, clean, produce=produce, scheduler_env=env, until=done)
    with pipeline.connect() as conn:
        # Every record once: a reading, a movement or a dead letter.
        positions = query(conn, """
            SELECT source_offset FROM vitals_raw UNION ALL SELECT source_offset FROM patient_movements
            UNION ALL SELECT source_offset FROM dead_letters WHERE stage = 'ingest'""").column(0).to_pylist()
        assert sorted(positions) == list(range(len(RECORDS)))
        kinds = {offset: kind for offset, (_, kind) in enumerate(RECORDS)}
        moved = query(conn, "SELECT * FROM patient_movements ORDER BY source_offset").to_pylist()
        assert [m["source_offset"] for m in moved] == [o for o, k in kinds.items() if k == "movement"]
        assert [(m["patient_id"], m["movement"], m["ward"]) for m in moved] == [
            ("P1", "admit", "ward-a"), ("P1", "transfer", "icu"), ("P1", "discharge", None),
            ("191919", "transfer", "SICU"), ("191919", "update", "SICU"), ("191919", "discharge", "SICU"),
            ("PATID1234", "admit", "2000"),
        ]
        a02 = moved[3]
        assert (a02["room"], a02["bed"], a02["message_type"]) == ("0001", "02", "ADT^A02")
        assert a02["event_time"] == datetime(2026, 1, 6, 14, 55, tzinfo=timezone.utc)
        assert moved[6]["event_time"] == datetime(2007, 8, 18, 15, 23, tzinfo=timezone.utc)

        letters = query(conn, "SELECT payload, reason_code, stage FROM dead_letters WHERE stage = 'ingest'").to_pylist()
        assert {bytes(l["payload"]): l["reason_code"] for l in letters} == BAD_ADT

        assert query(conn, "SELECT count(*) FROM vitals_raw").column(0)[0].as_py() == readings
        assert query(conn, "SELECT count(*) FROM vitals_clean").column(0)[0].as_py() == clean
        refused = query(conn, "SELECT reason_code, count(*) AS n FROM dead_letters WHERE stage = 'etl' "
                              "GROUP BY reason_code").to_pylist()
        assert refused == ([{"reason_code": "not_admitted", "n": count("out")}] if require_admission else [])

        # Discharged patients are out of patient_latest; the history stays in vitals_clean and patient_movements.
        assert sorted(query(conn, "SELECT patient_id FROM patient_latest").column(0).to_pylist()) == latest
        p1 = query(conn, "SELECT count(*) FROM vitals_clean WHERE patient_id = 'P1'").column(0)[0].as_py()
        assert p1 == (5 if require_admission else 7)
