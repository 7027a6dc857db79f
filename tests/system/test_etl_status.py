"""`vitalflow status` and the Flight SQL table `etl_progress` against a running pipeline (one scheduler, two
executors, the real Kafka): the lag behind ingest before the ETL runs, then batches, rows, rejected rows,
alerts and alert delivery equal to what the tables and the checkpoint hold once the stream has drained."""

from __future__ import annotations

import json
import subprocess

from tests.support import lake
from tests.support.cluster import query
from tests.support.wait import wait_until
from tests.system.test_etl_faults import committed_batches, read_table, start_cluster, wait_all_processed


def status(cluster) -> dict:
    out = subprocess.run(cluster.base_args() + ["status", "--json"], capture_output=True, text=True, env=cluster.env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_landed(cluster, total: int) -> list[dict]:
    """The vitals_raw rows once ingest has landed (or dead-lettered) `total` records."""
    rows: dict[str, list[dict]] = {}

    def landed() -> bool:
        rows["raw"] = read_table(cluster, "vitals_raw", ["source_offset"])
        letters = [r for r in read_table(cluster, "dead_letters", ["stage"]) if r["stage"] == "ingest"]
        return len(rows["raw"]) + len(letters) == total

    wait_until(landed, 120, f"{total} records landed", interval=0.2, details=cluster.logs)
    return rows["raw"]


def test_status_and_etl_progress_match_the_tables(cluster):
    total = 300
    sim = cluster.start("simulate", "simulate", "--count", str(total), "--rate", "0", "--patients", "20", "--seed", "41")
    assert sim.wait_exit(120) == 0, sim.tail()
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest")

    # Before any ETL: everything ingest landed is lag.
    raw = wait_landed(cluster, total)
    landed_files = len(lake.snapshot_files(cluster.data, "vitals_raw"))
    before = status(cluster)
    assert (before["batches_committed"], before["lag_files"], before["lag_records"]) == (0, landed_files, len(raw)), before
    assert before["lag_seconds"] > 0 and before["last_commit_time"] is None and before["failures"] is None, before

    addrs = start_cluster(cluster, "")
    wait_all_processed(cluster, len(raw))
    # A second wave: the figures add up over batches.
    sim = cluster.start("simulate-2", "simulate", "--count", "100", "--rate", "0", "--patients", "20", "--seed", "43")
    assert sim.wait_exit(120) == 0, sim.tail()
    raw = wait_landed(cluster, total + 100)
    wait_all_processed(cluster, len(raw))
    conn = cluster.connect(addrs["flight_sql"])
    try:
        # Lag 0 and alerts delivered to the (default) Kafka topic once the stream has drained.
        last = {}

        def drained() -> dict | None:
            progress = query(conn, "SELECT * FROM etl_progress").to_pylist()
            assert len(progress) == 1, progress
            p = last["p"] = progress[0]
            if p["lag_records"] == 0 and p["kafka_delivered_batch_id"] == p["batches_committed"] and p["pending_batch_id"] is None:
                return p
            return None

        p = wait_until(drained, 60, lambda: f"{last.get('p')}", details=cluster.logs)
        counts = query(
            conn,
            "SELECT (SELECT count(*) FROM vitals_clean) AS clean, "
            "(SELECT count(*) FROM dead_letters WHERE stage = 'etl') AS rejected, (SELECT count(*) FROM risk_alerts) AS alerts",
        ).to_pylist()[0]
        assert p["batches_committed"] == committed_batches(cluster) >= 2
        assert (p["rows_out"], p["rejected"], p["alerts"]) == (counts["clean"], counts["rejected"], counts["alerts"]), (p, counts)
        assert counts["clean"] + counts["rejected"] == len(raw)
        assert (p["lag_files"], p["lag_seconds"], p["kafka_lag_batches"]) == (0, None, 0), p
        assert p["last_commit_time"] is not None and p["failures"] is not None, p
        # Grafana and JDBC find it through GetTables.
        objects = conn.adbc_get_objects(depth="tables", table_name_filter="etl_progress").read_all().to_pylist()
        tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []]
        assert tables == ["etl_progress"], objects
        # A reader (not only an admin) may see the progress.
        reader = cluster.connect(addrs["flight_sql"], user="grafana")
        try:
            assert query(reader, "SELECT batches_committed FROM etl_progress").to_pylist() == [{"batches_committed": p["batches_committed"]}]
        finally:
            reader.close()
    finally:
        conn.close()

    # `vitalflow status` reads the same figures from the store, also with everything stopped.
    cluster.stop_all()
    after = status(cluster)
    same = ["batches_committed", "pending_batch_id", "rows_out", "rejected", "alerts", "lag_files", "lag_records",
            "kafka_delivered_batch_id", "kafka_lag_batches"]
    assert {k: after[k] for k in same} == {k: p[k] for k in same}, (after, p)
    assert after["lag_seconds"] is None and after["failures"] is None, after
    print("etl_progress:", p, "\nstatus --json:", after)
    human = subprocess.run(cluster.base_args() + ["status"], capture_output=True, text=True, env=cluster.env, timeout=60)
    assert human.returncode == 0 and f"batches committed   {p['batches_committed']} " in human.stdout, human.stdout
