"""Process harness for tests that run the real `vitalflow` binary against the real Kafka broker.

The test script (deploy/test.sh) starts Apache Kafka and exports KAFKA_BOOTSTRAP, and builds the binary
and exports VITALFLOW_BIN. Each child process logs to its own file; the tail is printed when a test
fails, and every child is killed when the test ends (the `cluster` fixture, tests/support/plugin.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.lake import TableStore, as_store
from tests.support.wait import wait_until


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suites through deploy/test.sh, which starts Kafka and builds vitalflow")
    return value


class Child:
    """One running vitalflow process."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._log.close()


# Flight SQL users of every test cluster (authentication is on by default): name → (password, role).
FLIGHT_SQL_USERS = {
    "admin": ("admin-test-pw", "admin"),
    "grafana": ("vitals-test-pw", "reader"),
    # Acts on alerts through the HTTP API.
    "nurse": ("nurse-test-pw", "clinician"),
}
# A static bearer token (role reader), as a dashboard service account would use.
FLIGHT_SQL_TOKEN = ("dashboard", "dashboard-test-token")
# What signs the Flight SQL tokens of every test cluster (`flight_sql.auth.token_secret`).
TOKEN_SECRET = "test-only-token-secret-0123456789abcdef"
# The secret every process of a test cluster shares: the Ballista ports refuse requests without its key.
CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"


def cluster_key(secret: str = CLUSTER_SECRET) -> str:
    """What a request to a Ballista port presents (`x-vitalflow-cluster-key`): HMAC-SHA256 of the secret, hex."""
    return hmac.new(secret.encode(), b"vitalflow cluster key v1", hashlib.sha256).hexdigest()


def password_hash(password: str, iterations: int = 1000) -> str:
    """A `password_hash` as `vitalflow hash-password` writes it; few iterations keep debug builds quick."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"pbkdf2-sha256${iterations}${b64(salt)}${b64(digest)}"


def write_test_config(path: Path) -> Path:
    """A vitalflow.toml giving Flight SQL the test users and token (the file holds only hashes)."""
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    # Every port the suites do not pass as a flag is 0 here, so that suites running side by side never collide.
    lines = ["[ingest]", "metrics_port = 0", "[cluster]", f'secret = "{CLUSTER_SECRET}"']
    lines += ["[flight_sql.auth]", f'token_secret = "{TOKEN_SECRET}"']
    for name, (password, role) in FLIGHT_SQL_USERS.items():
        lines += ["[[flight_sql.auth.users]]", f'name = "{name}"', f'password_hash = "{password_hash(password)}"', f'role = "{role}"']
    name, token = FLIGHT_SQL_TOKEN
    lines += ["[[flight_sql.auth.tokens]]", f'name = "{name}"', f'token_sha256 = "{sha(token)}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def flight_sql_connect(addr: str, user: str = "admin"):
    """An ADBC Flight SQL connection signed in as one of FLIGHT_SQL_USERS."""
    import adbc_driver_flightsql.dbapi as flightsql

    password = FLIGHT_SQL_USERS[user][0]
    return flightsql.connect(f"grpc://{addr}", db_kwargs={"username": user, "password": password}, autocommit=True)


class Cluster:
    """Starts vitalflow processes for one test and cleans up after it."""

    def __init__(self, binary: str, kafka: str, workdir: Path):
        self.binary = binary
        self.kafka = kafka
        self.workdir = workdir
        # Where the tables live: a directory, or an S3 prefix (TableStore) set before any process starts.
        self.data: Path | TableStore = workdir / "data"
        self.topic = f"vitals-{uuid.uuid4().hex[:10]}"
        self.children: list[Child] = []
        self.config = write_test_config(workdir / "vitalflow.toml")
        # Port 0 for the HTTP API, ingest's /metrics and the executors' probes too: several processes (and other suites on the
        # same machine) must not fight over 8000 or 9464.
        self.env = dict(
            os.environ,
            # Delta Lake's kernel logs every snapshot it builds at INFO, drowning what a failed test prints.
            RUST_LOG=os.environ.get("RUST_LOG", "info,buoyant_kernel=warn,delta_kernel=warn,deltalake_core=warn"),
            RUST_BACKTRACE="1",
            VITALFLOW__HTTP__PORT="0",
            VITALFLOW__INGEST__METRICS_PORT="0",
            VITALFLOW__EXECUTOR__HEALTH_PORT="0",
        )

    def base_args(self, data: Path | TableStore | None = None) -> list[str]:
        data = data or self.data
        return [self.binary, "--config", str(self.config), "--data", str(data), "--kafka", self.kafka, "--topic", self.topic]

    def start(self, name: str, *args: str, env: dict[str, str] | None = None, data: Path | TableStore | None = None) -> Child:
        # The object store's credentials and endpoint (none for a directory), then the caller's variables.
        store_env = as_store(data or self.data).env
        child = Child(name, self.base_args(data) + list(args), self.workdir, {**self.env, **store_env, **(env or {})})
        self.children.append(child)
        return child

    def start_service(
        self, name: str, *args: str, timeout: float = 60, env: dict[str, str] | None = None, data: Path | TableStore | None = None
    ) -> dict:
        """Starts a service with --ready-file and returns the addresses it wrote."""
        ready = self.workdir / f"{name}.ready.json"
        child = self.start(name, *args, "--ready-file", str(ready), env=env, data=data)

        def addresses() -> dict | None:
            if ready.exists():
                return json.loads(ready.read_text())
            if child.proc.poll() is not None:
                raise AssertionError(f"{name} exited with {child.proc.returncode}:\n{child.tail()}")
            return None

        return wait_until(addresses, timeout, f"{name} wrote no ready file", interval=0.1, details=child.tail)

    def start_scheduler(
        self,
        name: str = "scheduler",
        *args: str,
        executors: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        executor_env: dict[str, str] | None = None,
        data: Path | TableStore | None = None,
    ) -> dict:
        """`vitalflow scheduler` on free ports (extra `args` appended) and the named executors registered with
        it; returns the scheduler's addresses, with the executors' under "executors"."""
        addrs = self.start_service(name, "scheduler", "--port", "0", "--flight-sql-port", "0", *args, env=env, data=data)
        port = addrs["scheduler"].rsplit(":", 1)[1]
        addrs["executors"] = [
            self.start_service(
                executor, "executor", "--scheduler", f"127.0.0.1:{port}", "--flight-port", "0",
                env=executor_env, data=data,
            )
            for executor in executors
        ]
        return addrs

    def kill(self, *prefixes: str) -> None:
        """kill -9 of every live child whose name starts with one of `prefixes`."""
        for child in self.children:
            if child.proc.poll() is None and child.name.startswith(prefixes):
                child.stop(signal.SIGKILL)

    def connect(self, addr: str, user: str = "admin"):
        """An ADBC Flight SQL connection to `addr` signed in as `user`."""
        return flight_sql_connect(addr, user)

    def logs(self) -> str:
        return "\n\n".join(f"----- {c.name} -----\n{c.tail()}" for c in self.children)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


def new_cluster(workdir: Path) -> Cluster:
    """A Cluster of the binary and Kafka the test script gives (VITALFLOW_BIN, KAFKA_BOOTSTRAP)."""
    return Cluster(required_env("VITALFLOW_BIN"), required_env("KAFKA_BOOTSTRAP"), workdir)


@contextmanager
def running_cluster(workdir: Path) -> Iterator[Cluster]:
    """A cluster for a module-scoped fixture: its logs are printed if starting it fails, and every process
    is stopped at the end."""
    cluster = new_cluster(workdir)
    try:
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop_all()


def query(conn, sql: str):
    """The answer to `sql` as a pyarrow.Table (any ADBC DB-API connection)."""
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def query_one(conn, sql: str):
    """The first column of the first row of the answer to `sql`."""
    return query(conn, sql).column(0)[0].as_py()
