"""A running pipeline that has processed N readings: simulator (or the test's own producer) → Kafka →
ingest → the ETL on a scheduler and an executor, read over Flight SQL. The `pipeline` fixture
(tests/support/plugin.py) starts one per test; module-scoped fixtures call `start_pipeline` on a
`running_cluster`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tests.support.cluster import Cluster, query_one
from tests.support.wait import wait_until


@dataclass
class Pipeline:
    cluster: Cluster
    addrs: dict  # the scheduler's ready file: flight_sql, http, scheduler; and "executors"

    @property
    def flight_sql(self) -> str:
        return self.addrs["flight_sql"]

    def connect(self, user: str = "admin"):
        return self.cluster.connect(self.flight_sql, user)


def start_pipeline(
    cluster: Cluster,
    readings: int,
    *,
    patients: int | None = None,
    seed: int | None = None,
    simulate_args: tuple[str, ...] = (),
    produce: Callable[[Cluster], None] | None = None,
    scheduler_env: dict[str, str] | None = None,
    until: Callable[[object], bool] | None = None,
    timeout: float = 180,
) -> Pipeline:
    """Simulates `readings` readings of `patients` patients with `seed` (at full speed, before the services
    start, so ingest also reads a backlog); or, without `patients`, lets `produce(cluster)` write the topic.
    Then starts the scheduler, one executor and ingest, and waits until `until(conn)` holds on a Flight SQL
    connection (default: vitals_clean holds `readings` rows)."""
    if patients is not None:
        sim = cluster.start("simulate", "simulate", "--count", str(readings), "--rate", "0", "--patients", str(patients),
                            "--seed", str(seed), *simulate_args)
        assert sim.wait_exit(120) == 0, sim.tail()
    if produce is not None:
        produce(cluster)
    addrs = cluster.start_scheduler("scheduler", executors=["executor"], env=scheduler_env)
    cluster.start("ingest", "ingest", "--group", f"{cluster.topic}-ingest", "--metrics-port", "0")
    done = until or (lambda conn: query_one(conn, "SELECT count(*) FROM vitals_clean") == readings)
    with cluster.connect(addrs["flight_sql"]) as conn:
        wait_until(lambda: done(conn), timeout, f"the pipeline processing {readings} readings", details=cluster.logs)
    return Pipeline(cluster, addrs)
