"""What a record says of its reading beside the vitals, through the whole pipeline with the ETL on Ballista
(scheduler and executor as processes, real Kafka): the ward (flat JSON `ward`, HL7 v2 PV1-3), `validated`
with `etl.score = "validated"`, and NEWS2 on SpO2 scale 2 at every band edge, checked against the
independent rubric in tests/support/rubric.py."""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer

from tests.support import rubric
from tests.support.cluster import query, query_one

NORMAL = {"heart_rate": 75, "systolic_bp": 120, "diastolic_bp": 80, "temperature": 36.8, "glucose": 100,
          "respiratory_rate": 16, "consciousness": "A"}
# Both sides of every SpO2 band edge of scales 1 and 2.
SPO2 = [83, 84, 85, 86, 87, 88, 91, 92, 93, 94, 95, 96, 97, 100]
MONITOR = (Path(__file__).resolve().parents[2] / "ingest/fixtures/hl7/pcd01-monitor.hl7").read_text()


def records() -> list[dict]:
    """One patient per record: scale 2 and scale 1 at each SpO2 on air and on oxygen, on two wards or none,
    validated or not."""
    out = []
    for i, (spo2, on_oxygen, scale) in enumerate(
        (s, o, scale) for scale in (2, 1, None) for s in SPO2 for o in (False, True)
    ):
        record = {"patient_id": f"R{i:03d}", "timestamp": f"2026-11-23T10:{i // 60:02d}:{i % 60:02d}Z",
                  **NORMAL, "spo2": spo2, "on_oxygen": on_oxygen, "validated": i % 3 != 0}
        if scale is not None:
            record["spo2_scale"] = scale
        if i % 4:
            record["ward"] = "Respiratory" if i % 4 == 1 else "4 North"
        out.append(record)
    return out


def test_ward_validation_and_spo2_scale_reach_the_tables_on_the_cluster(pipeline):
    sent = records()

    def produce(cluster) -> None:
        producer = Producer({"bootstrap.servers": cluster.kafka, "enable.idempotence": True})
        for r in sent:
            producer.produce(cluster.topic, value=json.dumps(r).encode(), key=r["patient_id"].encode())
        producer.produce(cluster.topic, value=MONITOR.replace("\n", "\r").encode(), key=b"789567")
        assert producer.flush(30) == 0

    ward = pipeline(len(sent) + 1, produce=produce, scheduler_env={"VITALFLOW__ETL__SCORE": "validated"})
    conn = ward.connect()
    try:
        rows = query(
            conn,
            "SELECT patient_id, heart_rate, systolic_bp, diastolic_bp, spo2, temperature, glucose, respiratory_rate, "
            "on_oxygen, consciousness, ward, validated, spo2_scale, news2_score, risk, probability_high, "
            "unscored_reason FROM vitals_clean",
        ).to_pylist()
        by_patient = {r["patient_id"]: r for r in rows}
        assert len(rows) == len(sent) + 1
        for r in sent:
            got = by_patient[r["patient_id"]]
            assert (got["ward"], got["validated"], got["spo2_scale"]) == (
                r.get("ward"), r["validated"], r.get("spo2_scale")), got
            # NEWS2 against the published bands, on the prescribed scale.
            assert got["news2_score"] == rubric.news2_score(got), got
            if r["validated"]:
                assert got["risk"] in ("High", "Medium", "Low") and got["unscored_reason"] is None, got
            else:
                assert (got["risk"], got["probability_high"], got["unscored_reason"]) == (None, None, "not_validated"), got
        # Scale 2 moves the points as the chart says: 88-92 on air scores nothing for SpO2, 97 on oxygen 3 (+2 for oxygen).
        scale2 = {(r["spo2"], r["on_oxygen"]): by_patient[r["patient_id"]]["news2_score"] for r in sent if r.get("spo2_scale") == 2}
        assert (scale2[(88, False)], scale2[(92, False)], scale2[(97, False)], scale2[(97, True)]) == (0, 0, 0, 5)
        assert (scale2[(87, False)], scale2[(85, False)], scale2[(83, False)], scale2[(93, True)]) == (1, 2, 3, 3)
        # The monitor's HL7 v2 message: ward from PV1-3.1, a device's values (OBX-11 R), so not scored.
        monitor = by_patient["789567"]
        assert (monitor["ward"], monitor["validated"], monitor["unscored_reason"]) == ("HOSP1ICU", False, "not_validated")
        latest = {r["patient_id"]: r["ward"] for r in query(conn, "SELECT patient_id, ward FROM patient_latest").to_pylist()}
        assert latest == {r["patient_id"]: r["ward"] for r in rows}
        # Only validated readings rise to High; each rise carries its reading's ward.
        alerts = query(conn, "SELECT a.ward AS ward, c.ward AS reading_ward, c.validated AS validated FROM risk_alerts a "
                             "JOIN vitals_clean c ON a.source_offset = c.source_offset AND a.source_partition = c.source_partition").to_pylist()
        assert all(a["validated"] and a["ward"] == a["reading_ward"] for a in alerts), alerts
        assert query_one(conn, "SELECT count(*) FROM dead_letters") == 0
    finally:
        conn.close()
