"""Compaction (Delta OPTIMIZE and VACUUM) while queries run, through kill -9 of the scheduler and of ingest.

Real processes (scheduler with the ETL driver and the compactor, an executor, ingest, the simulator,
Apache Kafka). Ingest flushes tiny files so that compaction has work; every count read meanwhile, over
Flight SQL and by engines that are not vitalflow (Python deltalake, polars), must be exact: no row
missing, none doubled, at any moment. It runs twice: tables in a directory, then on the S3-compatible server.
"""

from __future__ import annotations

import random
import signal
import time
import urllib.request

from tests.support import lake
from tests.support.cluster import query
from tests.support.wait import wait_until
from tests.system.test_end_to_end import assert_exactly_once

# Compact every second, from two files; replaced files stay 40 s before VACUUM deletes them, longer than a
# query may run (30 s), as the defaults keep it (600 s against 300 s): a query planned before the OPTIMIZE
# commit still finds its files. (A 3 s grace failed here: a loaded 2-core machine took 6 s from plan to read.)
FAST_COMPACTION = {
    "VITALFLOW__COMPACTION__INTERVAL_SECONDS": "1",
    "VITALFLOW__COMPACTION__MIN_FILES": "2",
    "VITALFLOW__COMPACTION__GRACE_SECONDS": "40",
    "VITALFLOW__FLIGHT_SQL__QUERY_TIMEOUT_SECONDS": "30",
    "VITALFLOW__ETL__MIN_INTERVAL_MS": "100",
    # A finished Ballista job (one per micro-batch and per query) is dropped from memory after 5 s.
    "VITALFLOW__SCHEDULER__FINISHED_JOB_SECONDS": "5",
    # Queries run as Ballista jobs, reading on the executors while compaction rewrites the files (tables
    # this small would otherwise be read in the scheduler's process), and each leaves a job to count.
    "VITALFLOW__FLIGHT_SQL__IN_PROCESS_MAX_SCAN_MB": "0",
}
SMALL_FLUSHES = {"VITALFLOW__INGEST__FLUSH_RECORDS": "25", "VITALFLOW__INGEST__FLUSH_INTERVAL_MS": "50"}


def compacted(cluster) -> bool:
    """Both tables have an OPTIMIZE commit."""
    return all("OPTIMIZE" in lake.operations(cluster.data, t) for t in ("vitals_raw", "vitals_clean"))


def start_scheduler(cluster, name: str) -> dict:
    return cluster.start_scheduler(name, executors=[f"{name}-executor"], env=FAST_COMPACTION)


def kill(cluster, *names: str) -> None:
    """kill -9 of the live children of exactly these names."""
    for child in cluster.children:
        if child.name in names and child.proc.poll() is None:
            child.stop(signal.SIGKILL)


def counts(conn, table: str) -> tuple[int, int]:
    """Rows and distinct (partition, offset) pairs, from one scan (one listing) of the table."""
    sql = f"SELECT count(*), count(DISTINCT CAST(source_partition AS BIGINT) * 1000000000 + source_offset) FROM {table}"
    row = query(conn, sql).to_pylist()[0]
    n, distinct = row.values()
    return n, distinct


def settled(cluster) -> bool:
    """Compacted, and few files are left in the latest snapshot."""
    return compacted(cluster) and len(lake.snapshot_files(cluster.data, "vitals_raw")) <= 3


def cluster_jobs(http_addr: str) -> dict[str, float]:
    """`vitalflow_cluster_jobs` from the scheduler's /metrics, by state."""
    text = urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10).read().decode()
    prefix = 'vitalflow_cluster_jobs{state="'
    return {
        line[len(prefix):].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines() if line.startswith(prefix)
    }


def outside_counts(cluster, table: str) -> list[tuple[int, int]]:
    """Rows and distinct (partition, offset) pairs as Python deltalake and polars read the table."""
    out = []
    t = lake.read_table(cluster.data, table, ["source_partition", "source_offset"])
    if t is not None:
        pairs = list(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
        out.append((len(pairs), len(set(pairs))))
        frame = lake.read_polars(cluster.data, table, columns=["source_partition", "source_offset"])
        out.append((frame.height, frame.unique().height))
    return out


def assert_exact_while_compacting(conn, cluster, expected: int, timeout: float = 300) -> int:
    """Queries while readings land, are processed and compacted, until all are in and compaction has
    settled: no answer ever holds a row twice, and counts never go down (no row lost). Returns how
    many queries ran before compaction settled."""
    before_settled = 0
    seen = {"vitals_raw": 0, "vitals_clean": 0}

    def all_in_and_settled() -> bool:
        nonlocal before_settled
        done = settled(cluster)
        for table in seen:
            n, distinct = counts(conn, table)
            assert n == distinct, f"{table}: {n} rows but {distinct} distinct offsets\n{cluster.logs()}"
            assert seen[table] <= n <= expected, f"{table}: {n} rows after {seen[table]} (expected up to {expected})"
            # Readers that are not vitalflow see a consistent snapshot too, never behind an earlier answer.
            for engine, (m, m_distinct) in zip(("deltalake", "polars"), outside_counts(cluster, table)):
                assert m == m_distinct, f"{engine} {table}: {m} rows but {m_distinct} distinct offsets"
                assert seen[table] <= m <= expected, f"{engine} {table}: {m} rows after {seen[table]}"
            seen[table] = n
        if not done:
            before_settled += 1
            return False
        return seen == {"vitals_raw": expected, "vitals_clean": expected}

    wait_until(all_in_and_settled, timeout,
               lambda: f"not settled: {seen}, {len(lake.snapshot_files(cluster.data, 'vitals_raw'))} files",
               interval=0, details=cluster.logs)
    return before_settled


def test_compaction_keeps_counts_exact_during_queries_and_kill_9(cluster, storage):
    first, second = 1200, 800
    sim = cluster.start("simulate", "simulate", "--count", str(first), "--rate", "0", "--patients", "30", "--seed", "21")
    assert sim.wait_exit(120) == 0, sim.tail()
    addrs = start_scheduler(cluster, "scheduler")
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0", env=SMALL_FLUSHES)

    conn = cluster.connect(addrs["flight_sql"])
    try:
        queries = assert_exact_while_compacting(conn, cluster, first)
        assert queries >= 2, "compaction settled before any query ran during it"
    finally:
        conn.close()

    # Ingest killed after its ranges were compacted: it must resume after the compacted ranges.
    kill(cluster, "ingest")
    sim = cluster.start("simulate-2", "simulate", "--count", str(second), "--rate", "200", "--patients", "30", "--seed", "22")
    cluster.start("ingest-2", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0", env=SMALL_FLUSHES)

    # kill -9 the scheduler (ETL driver and compactor) and its executor at random moments while
    # readings land, are processed and compacted.
    rng = random.Random(6)
    for round_ in range(3):
        time.sleep(rng.uniform(0.5, 2.5))
        kill(cluster, f"scheduler-{round_}" if round_ else "scheduler", f"scheduler-{round_}-executor" if round_ else "scheduler-executor")
        addrs = start_scheduler(cluster, f"scheduler-{round_ + 1}")
    assert sim.wait_exit(120) == 0, sim.tail()

    conn = cluster.connect(addrs["flight_sql"])
    try:
        total = first + second
        assert_exact_while_compacting(conn, cluster, total)
        assert_exactly_once(conn, total)
        # The scheduler's job history stays bounded: the jobs just run are held for
        # scheduler.finished_job_seconds, then dropped (Ballista's default keeps each for an hour).
        counts(conn, "vitals_raw")
        assert cluster_jobs(addrs["http"]).get("finished", 0) >= 1
        wait_until(lambda: cluster_jobs(addrs["http"]) == {"running": 0, "finished": 0}, 60,
                   lambda: f"jobs still held: {cluster_jobs(addrs['http'])}")
    finally:
        conn.close()
