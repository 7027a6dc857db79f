"""The audit log is a durable Delta table under the data location: what users queried before a restart of
the scheduler is still in `audit_log`, only admins query it, any Delta reader reads it with the SQL as sent,
and the log lines keep the literals out. Run on a directory and on S3 (the `storage` fixture)."""

from __future__ import annotations

import re
import urllib.request
import uuid

import pytest

from tests.support.cluster import query, query_one
from tests.support.lake import read_table
from tests.support.wait import wait_until

SECRET = "P-secret-4711"


def audited(conn, marker: str) -> list[dict]:
    """The `audit_log` rows whose SQL holds `marker`, oldest first (the marker is a parameter: this query's
    own SQL does not hold it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT user_name, outcome, sql, rows_returned FROM audit_log WHERE sql LIKE ? ORDER BY time",
                    (f"%{marker}%",))
        return cur.fetch_arrow_table().to_pylist()


def written(http_addr: str) -> int:
    """`vitalflow_audit_entries_written_total` on the scheduler's /metrics."""
    text = urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10).read().decode()
    return int(re.search(r"^vitalflow_audit_entries_written_total (\d+)$", text, re.M).group(1))


def test_audit_log_survives_a_restart_as_a_delta_table_only_admins_read(cluster, storage):
    marker = f"audit-{uuid.uuid4().hex[:8]}"
    # patient_latest is read in the scheduler's process: no executor is needed, and no ETL.
    user_sql = f"SELECT count(*) AS \"{marker}\" FROM patient_latest WHERE patient_id = '{SECRET}'"
    first = cluster.start_scheduler("scheduler", "--no-etl")
    with cluster.connect(first["flight_sql"], "grafana") as conn:
        assert query_one(conn, user_sql) == 0
        with pytest.raises(Exception, match="admin role only"):
            query(conn, f"SELECT count(*) AS \"{marker}\" FROM audit_log")
    with cluster.connect(first["flight_sql"], "admin") as conn:
        assert query_one(conn, f"SELECT count(*) AS \"{marker}-admin\" FROM patient_latest") == 0
        # At once, before any flush: the entries not yet written are read with the table.
        seen = [(r["user_name"], r["outcome"]) for r in audited(conn, marker)]
        assert seen == [("grafana", "ok"), ("grafana", "refused"), ("admin", "ok")], seen
    # Appended within about a second, the admin's audit query included.
    wait_until(lambda: written(first["http"]) >= 4, 10, "the audit entries appended to audit_log")
    # The last query is only appended by the flush at shutdown (the next periodic one is a second away).
    with cluster.connect(first["flight_sql"], "grafana") as conn:
        assert query_one(conn, f"SELECT count(*) AS \"{marker}-last\" FROM patient_latest") == 0

    scheduler = next(c for c in cluster.children if c.name == "scheduler")
    scheduler.stop()
    assert scheduler.proc.returncode == 0, scheduler.tail()
    # The log line has the query without its values; the table (admins only) has it as sent.
    log = scheduler.log_path.read_text()
    assert "Query audited." in log and "patient_id = ?" in log and SECRET not in log

    # Another engine reads the Delta table (delta-rs for Python): every entry once, timestamps in µs, UTC.
    table = read_table(storage, "audit_log")
    assert table is not None and str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    rows = [r for r in table.to_pylist() if marker in r["sql"]]
    assert sorted((r["user_name"], r["outcome"]) for r in rows) == [
        ("admin", "ok"), ("grafana", "ok"), ("grafana", "ok"), ("grafana", "refused")], rows
    assert user_sql in [r["sql"] for r in rows if r["user_name"] == "grafana" and r["outcome"] == "ok"]

    # A new scheduler on the same data location: the queries of the first are in audit_log, once each.
    second = cluster.start_scheduler("scheduler-again", "--no-etl")
    with cluster.connect(second["flight_sql"], "grafana") as conn:
        with pytest.raises(Exception, match="admin role only"):
            query(conn, "SELECT count(*) FROM audit_log")
        assert query_one(conn, "SELECT count(*) FROM patient_latest") == 0, "still answering after the refusal"
    with cluster.connect(second["flight_sql"], "admin") as conn:
        before_restart = audited(conn, marker)
        assert [(r["user_name"], r["outcome"]) for r in before_restart] == [
            ("grafana", "ok"), ("grafana", "refused"), ("admin", "ok"), ("grafana", "ok")], before_restart
        assert before_restart[0]["sql"] == user_sql and before_restart[0]["rows_returned"] == 1
        # The reader's refusal on the second scheduler is there too (waiting or written).
        refusals = query_one(conn, "SELECT count(*) FROM audit_log WHERE user_name = 'grafana' AND outcome = 'refused'")
        assert refusals == 2
