"""One ETL per data location: a second scheduler on the same location stands by and says so while the
first runs the ETL; after a kill -9 of the first it takes over within the lease's expiry, and nothing is
lost or duplicated. Real processes (two schedulers with an executor each, ingest, the simulator, Kafka)."""

from __future__ import annotations

import time

from tests.support.wait import wait_until
from tests.system.test_etl_faults import FAST, assert_exactly_once, committed_batches, wait_all_processed

LEASE = {**FAST, "VITALFLOW__ETL__LEASE_SECONDS": "6"}
STANDBY = "ETL standby: another scheduler holds the ETL lease"


def test_a_second_etl_driver_stands_by_and_takes_over_after_a_kill_9(cluster, storage):
    first_wave, second_wave = 600, 400
    sim = cluster.start("simulate", "simulate", "--count", str(first_wave), "--rate", "0", "--patients", "20", "--seed", "51")
    assert sim.wait_exit(120) == 0, sim.tail()
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0", env=LEASE)
    cluster.start_scheduler("scheduler-a", executors=["executor-a"], env=LEASE, executor_env=LEASE)
    wait_until(lambda: committed_batches(cluster) >= 1, 120, "a first batch committed by scheduler-a", details=cluster.logs)
    cluster.start_scheduler("scheduler-b", executors=["executor-b"], env=LEASE, executor_env=LEASE)
    log_a, log_b = (cluster.workdir / f"scheduler-{x}.log" for x in "ab")
    wait_until(lambda: STANDBY in log_b.read_text(), 60, "scheduler-b standing by", details=cluster.logs)
    wait_all_processed(cluster, first_wave)
    # While a holds the lease, b runs no batch: every commit so far is a's.
    assert "Holding the ETL lease" in log_a.read_text() and "Holding the ETL lease" not in log_b.read_text()

    sim = cluster.start("simulate-2", "simulate", "--count", str(second_wave), "--rate", "100", "--patients", "20", "--seed", "52")
    time.sleep(1)
    killed_at = time.monotonic()
    cluster.kill("scheduler-a", "executor-a")
    wait_until(lambda: "Holding the ETL lease" in log_b.read_text(), 60, "scheduler-b taking over", details=cluster.logs)
    took = time.monotonic() - killed_at
    assert took < 6 + 10, f"the standby took {took:.1f} s to take over a 6 s lease"
    assert sim.wait_exit(120) == 0, sim.tail()
    wait_all_processed(cluster, first_wave + second_wave)
    assert_exactly_once(cluster, first_wave + second_wave)
