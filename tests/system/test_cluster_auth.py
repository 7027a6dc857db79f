"""The Ballista ports of a cluster (the scheduler's gRPC port, an executor's Flight port: executors poll for tasks and
open no gRPC port) answer only requests that carry the cluster key, so nothing reaches Ballista around the Flight SQL
front door; the front door itself keeps answering. With the cluster's TLS, only processes holding a certificate of
the cluster's CA complete a connection at all. Scheduler and executor run as separate processes; requests are raw
gRPC (grpcio)."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.support.cluster import cluster_key, query_one

SCHEDULER = "/ballista.protobuf.SchedulerGrpc/"
FLIGHT = "/arrow.flight.protocol.FlightService/"


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (bytes, string or message), written by hand."""
    assert len(payload) < 128, "one-byte lengths only"
    return bytes([number << 3 | 2, len(payload)]) + payload


# What an attacker sends: an ExecuteQueryParams with a plan (the bytes need not decode: the key is checked
# first), a fake executor's registration or work poll, a job cancellation, a shuffle fetch.
ATTACKS = [
    ("scheduler", SCHEDULER + "ExecuteQuery", field(1, b"\x0a\x05hand-built plan"), False),
    ("scheduler", SCHEDULER + "RegisterExecutor", field(1, field(1, b"fake-executor") + field(2, b"10.0.0.66")), False),
    ("scheduler", SCHEDULER + "CancelJob", field(1, b"any-job"), False),
    ("scheduler", SCHEDULER + "PollWork", field(1, field(1, b"fake-executor")), False),
    ("flight", FLIGHT + "DoGet", field(1, b"/etc/passwd"), True),
]

# Harmless requests that, with the key, must get past the check (any answer but UNAUTHENTICATED).
WITH_KEY = [
    ("scheduler", SCHEDULER + "GetJobStatus", field(1, b"no-such-job"), False),
    ("flight", FLIGHT + "DoGet", field(1, b"not a ticket"), True),
]


def call(
    address: str, method: str, body: bytes, stream: bool, key: str | None, tls: grpc.ChannelCredentials | None = None
) -> grpc.StatusCode:
    """The status of one raw gRPC call to `address`, with `key` in x-vitalflow-cluster-key when given, over TLS
    with `tls` when given."""
    metadata = [("x-vitalflow-cluster-key", key)] if key else None
    with grpc.secure_channel(address, tls) if tls else grpc.insecure_channel(address) as channel:
        try:
            if stream:
                list(channel.unary_stream(method)(body, metadata=metadata, timeout=15))
            else:
                channel.unary_unary(method)(body, metadata=metadata, timeout=15)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (from /proc: its socket inodes in state LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_ballista_ports_refuse_requests_without_the_cluster_key_and_flight_sql_keeps_answering(cluster):
    addrs = cluster.start_scheduler(executors=["executor"])
    ports = addrs["executors"][0]
    address = {
        "scheduler": addrs["scheduler"],
        "flight": f"127.0.0.1:{ports['flight']}",
    }
    conn = cluster.connect(addrs["flight_sql"])
    try:
        # The cluster works: a query runs as a Ballista job (front door → scheduler → executor → results).
        assert query_one(conn, "SELECT count(*) FROM (VALUES (1), (2), (3)) AS t(x)") == 3

        wrong = cluster_key("another-cluster-secret-0123456789abcdef")
        for presented in (None, wrong):
            for target, method, body, stream in ATTACKS:
                code = call(address[target], method, body, stream, presented)
                assert code == grpc.StatusCode.UNAUTHENTICATED, f"{method} on {target} with key {presented}: {code}"

        for target, method, body, stream in WITH_KEY:
            code = call(address[target], method, body, stream, cluster_key())
            assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE), f"{method}: {code}"

        # The executor opens no port but its Flight server and its probes: nothing else to reach it through.
        executor = next(c for c in cluster.children if c.name == "executor")
        assert executor.proc.poll() is None, executor.tail()
        assert listening_ports(executor.proc.pid) == {ports["flight"], ports["health"]}
        assert query_one(conn, "SELECT sum(x) FROM (VALUES (1), (2), (3)) AS t(x)") == 6
    finally:
        conn.close()
    scheduler_log = next(c for c in cluster.children if c.name == "scheduler").log_path.read_text(errors="replace")
    assert "without the cluster key" in scheduler_log


@pytest.mark.parametrize("service", ["scheduler", "executor"])
def test_a_ballista_port_off_loopback_without_a_cluster_secret_is_refused_at_start(cluster, service):
    env = {"VITALFLOW__CLUSTER__SECRET": "", f"VITALFLOW__{service.upper()}__BIND_HOST": "0.0.0.0"}
    args = ["--port", "0"] if service == "scheduler" else ["--scheduler", "127.0.0.1:1"]
    child = cluster.start(service, service, *args, env=env)
    assert child.wait_exit(timeout=60) != 0
    assert "cluster.secret" in child.tail() and f"{service}.bind_host" in child.tail(), child.tail()


def cluster_certs(directory: Path) -> dict[str, Path]:
    """A cluster CA and a certificate it signs, made by the script operators use."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "cluster-certs.sh"
    subprocess.run([str(script), str(directory)], check=True, capture_output=True)
    return {name: directory / name for name in ("ca.pem", "cluster.pem", "cluster.key")}


def tls_env(certs: dict[str, Path]) -> dict[str, str]:
    return {
        "VITALFLOW__CLUSTER__TLS_CERT_PATH": str(certs["cluster.pem"]),
        "VITALFLOW__CLUSTER__TLS_KEY_PATH": str(certs["cluster.key"]),
        "VITALFLOW__CLUSTER__TLS_CA_PATH": str(certs["ca.pem"]),
    }


def cluster_tls(certs: dict[str, Path], client_cert: bool) -> grpc.ChannelCredentials:
    """TLS trusting the cluster's CA, presenting the cluster's certificate only when `client_cert`."""
    return grpc.ssl_channel_credentials(
        root_certificates=certs["ca.pem"].read_bytes(),
        private_key=certs["cluster.key"].read_bytes() if client_cert else None,
        certificate_chain=certs["cluster.pem"].read_bytes() if client_cert else None,
    )


def test_with_cluster_tls_on_every_interface_only_holders_of_a_cluster_certificate_reach_ballista(cluster, tmp_path):
    certs = cluster_certs(tmp_path / "certs")
    # Every port on every interface, as in a container: the cluster's traffic over mutual TLS, the front door
    # (Flight SQL and HTTP) over TLS with the same certificate.
    env = {
        **tls_env(certs),
        "VITALFLOW__SCHEDULER__BIND_HOST": "0.0.0.0",
        "VITALFLOW__EXECUTOR__BIND_HOST": "0.0.0.0",
        "VITALFLOW__FLIGHT_SQL__BIND_HOST": "0.0.0.0",
        "VITALFLOW__FLIGHT_SQL__TLS_CERT_PATH": str(certs["cluster.pem"]),
        "VITALFLOW__FLIGHT_SQL__TLS_KEY_PATH": str(certs["cluster.key"]),
        "VITALFLOW__HTTP__BIND_HOST": "0.0.0.0",
        "VITALFLOW__HTTP__TLS_CERT_PATH": str(certs["cluster.pem"]),
        "VITALFLOW__HTTP__TLS_KEY_PATH": str(certs["cluster.key"]),
    }
    addrs = cluster.start_scheduler(executors=["executor"], env=env, executor_env=env)
    port = lambda addr: addr.rsplit(":", 1)[1]  # noqa: E731
    address = {"scheduler": f"127.0.0.1:{port(addrs['scheduler'])}", "flight": f"127.0.0.1:{addrs['executors'][0]['flight']}"}

    # The front door over TLS: a query runs as a Ballista job, its plan, task polls and results all over
    # mutual TLS between the scheduler and the executor.
    import adbc_driver_flightsql.dbapi as flightsql
    from adbc_driver_flightsql import DatabaseOptions

    conn = flightsql.connect(
        f"grpc+tls://localhost:{port(addrs['flight_sql'])}",
        db_kwargs={"username": "admin", "password": "admin-test-pw", DatabaseOptions.TLS_ROOT_CERTS.value: certs["ca.pem"].read_text()},
        autocommit=True,
    )
    try:
        assert query_one(conn, "SELECT count(*) FROM (VALUES (1), (2), (3)) AS t(x)") == 3

        for target, method, body, stream in WITH_KEY:
            # The key alone, in clear: no gRPC answer at all.
            code = call(address[target], method, body, stream, cluster_key())
            assert code == grpc.StatusCode.UNAVAILABLE, f"plaintext {method} on {target}: {code}"
            # TLS and the key, but no certificate of the cluster: the handshake fails.
            code = call(address[target], method, body, stream, cluster_key(), cluster_tls(certs, client_cert=False))
            assert code == grpc.StatusCode.UNAVAILABLE, f"{method} on {target} without a client certificate: {code}"
            # With both, the request gets past TLS and the key check.
            code = call(address[target], method, body, stream, cluster_key(), cluster_tls(certs, client_cert=True))
            assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE), f"{method}: {code}"

        # The HTTP API over TLS; plain HTTP gets no answer.
        context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
        with urllib.request.urlopen(f"https://localhost:{port(addrs['http'])}/healthz", context=context, timeout=10) as answer:
            assert answer.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port(addrs['http'])}/healthz", timeout=10)
        assert query_one(conn, "SELECT sum(x) FROM (VALUES (1), (2), (3)) AS t(x)") == 6
    finally:
        conn.close()


@pytest.mark.parametrize(
    "service,env,setting",
    [
        ("executor", {"VITALFLOW__EXECUTOR__BIND_HOST": "0.0.0.0"}, "cluster.tls_cert_path"),
        ("scheduler", {"VITALFLOW__SCHEDULER__BIND_HOST": "0.0.0.0"}, "cluster.tls_cert_path"),
        ("scheduler", {"VITALFLOW__FLIGHT_SQL__BIND_HOST": "0.0.0.0"}, "flight_sql.tls_cert_path"),
        ("scheduler", {"VITALFLOW__HTTP__BIND_HOST": "0.0.0.0"}, "http.tls_cert_path"),
    ],
    ids=["executor", "scheduler", "flight_sql", "http"],
)
def test_a_port_off_loopback_without_tls_is_refused_at_start_naming_the_setting(cluster, service, env, setting):
    args = ["--port", "0", "--no-etl"] if service == "scheduler" else ["--scheduler", "127.0.0.1:1"]
    child = cluster.start(service, service, *args, env=env)
    assert child.wait_exit(timeout=60) != 0
    assert setting in child.tail() and "allow_plaintext" in child.tail(), child.tail()
