"""The attack suite: what a hostile client sends to the front door of a running cluster with sign-in on, and
what it must get back. Forbidden statements (writes, settings, files and URLs, table functions, statements
hidden by comments, unicode or a CTE, a reader reaching for audit_log) over Flight SQL, as a query and as a
prepared statement; oversized and deeply nested SQL; password guessing (an unknown name costs the same
password hash as a wrong password, counted on /metrics; 200 wrong passwords make the name wait); forged,
expired and foreign tokens and statement handles; schemathesis over /openapi.json and hand-made HTTP bodies.

Every refusal is a client error (never INTERNAL, never an HTTP 5xx) naming what was refused, and after each
attack group the scheduler is still running and answers `SELECT count(*) FROM vitals_clean`. One cluster
(scheduler, executor, ingest over the real Kafka) serves the whole module. Run it alone with
`python -m pytest tests/system/test_attack_suite.py` under deploy/test.sh's environment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS, TOKEN_SECRET, running_cluster, write_test_config
from tests.support.flight_sql import answer, pb, pb_fields, prepare, pyarrow_client, statement_query
from tests.support.http_json import RECORD, basic, http
from tests.support.pipeline import Pipeline, start_pipeline

READINGS = 120
# Refusals are client errors: PERMISSION_DENIED (the read-only policy, a role) or INVALID_ARGUMENT (SQL that
# does not parse or plan, a limit). pyarrow raises FlightInternalError for INTERNAL, which is neither.
REFUSED = (flight.FlightUnauthorizedError, pa.ArrowInvalid)
READ_ONLY = "is refused: vitalflow's Flight SQL is read-only"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Pipeline:
    """A cluster whose vitals_clean holds READINGS rows; /predict_batch takes at most 100 records."""
    with running_cluster(tmp_path_factory.mktemp("attack")) as cluster:
        yield start_pipeline(cluster, READINGS, patients=12, seed=11,
                             scheduler_env={"VITALFLOW__HTTP__MAX_BATCH_RECORDS": "100"})


@pytest.fixture(scope="module")
def clients(server) -> dict[str, tuple[flight.FlightClient, flight.FlightCallOptions]]:
    """pyarrow Flight SQL clients signed in once per module as the admin and a reader."""
    return {user: pyarrow_client(server.flight_sql, user) for user in ("admin", "grafana")}


def assert_serving(server: Pipeline) -> None:
    """The scheduler process is alive and a normal query answers (through a static token: no password,
    so no sign-in backoff an attack left behind can delay it)."""
    scheduler = next(c for c in server.cluster.children if c.name == "scheduler")
    assert scheduler.proc.poll() is None, f"the scheduler exited:\n{scheduler.tail()}"
    client = flight.FlightClient(f"grpc://{server.flight_sql}")
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {FLIGHT_SQL_TOKEN[1]}".encode())])
    assert answer(client, options, "SELECT count(*) FROM vitals_clean").column(0)[0].as_py() == READINGS


# --- Forbidden statements ------------------------------------------------------------------------

# (SQL, what the refusal must say). Sent by the admin, who may read everything: what is refused is the
# statement, not the caller.
FORBIDDEN = [
    # DDL
    ("CREATE TABLE x AS SELECT 1", "CREATE TABLE " + READ_ONLY),
    ("CREATE TABLE x (a INT)", "CREATE TABLE " + READ_ONLY),
    ("CREATE OR REPLACE VIEW vitals_clean AS SELECT 1", "CREATE OR REPLACE VIEW " + READ_ONLY),
    ("CREATE TEMPORARY VIEW t AS SELECT 1", "CREATE TEMPORARY VIEW " + READ_ONLY),
    ("DROP TABLE vitals_clean", "DROP TABLE " + READ_ONLY),
    ("ALTER TABLE vitals_clean ADD COLUMN x INT", "ALTER TABLE " + READ_ONLY),
    ("TRUNCATE TABLE vitals_raw", "TRUNCATE TABLE " + READ_ONLY),
    ("CREATE SCHEMA s", "CREATE SCHEMA " + READ_ONLY),
    ("DROP SCHEMA public CASCADE", "DROP SCHEMA " + READ_ONLY),
    ("CREATE INDEX i ON vitals_clean (patient_id)", "CREATE INDEX " + READ_ONLY),
    ("GRANT SELECT ON audit_log TO PUBLIC", "GRANT SELECT " + READ_ONLY),
    # DML, and a SELECT that creates a table
    ("INSERT INTO vitals_clean SELECT * FROM vitals_clean", "INSERT INTO " + READ_ONLY),
    ("DELETE FROM vitals_raw", "DELETE FROM " + READ_ONLY),
    ("UPDATE vitals_raw SET heart_rate = 1", "UPDATE vitals_raw " + READ_ONLY),
    ("MERGE INTO vitals_raw t USING vitals_clean s ON t.patient_id = s.patient_id WHEN MATCHED THEN DELETE",
     "MERGE INTO " + READ_ONLY),
    ("SELECT * INTO leaked FROM vitals_clean", "SELECT INTO (creating a table) " + READ_ONLY),
    # COPY and external tables: writing and reading files and URLs
    ("COPY (SELECT * FROM vitals_clean) TO '/tmp/leak.parquet'", "COPY (writing files) " + READ_ONLY),
    ("COPY vitals_clean TO 's3://bucket/leak.csv' STORED AS CSV", "COPY (writing files) " + READ_ONLY),
    ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE (reading files or URLs)"),
    ("CREATE EXTERNAL TABLE s STORED AS PARQUET LOCATION 's3://bucket/x/'", "CREATE EXTERNAL TABLE (reading files"),
    ("CREATE UNBOUNDED EXTERNAL TABLE u STORED AS JSON LOCATION 'http://169.254.169.254/latest/'",
     "CREATE EXTERNAL TABLE (reading files"),
    # settings
    ("SET datafusion.execution.batch_size = 1", "SET datafusion.execution.batch_size " + READ_ONLY),
    ("SET datafusion.runtime.memory_limit = '100G'", "SET datafusion.runtime.memory_limit " + READ_ONLY),
    ("RESET datafusion.execution.batch_size", "RESET " + READ_ONLY),
    ("SET TIME ZONE 'UTC'", "SET TIME ZONE " + READ_ONLY),
    # several statements, some behind comments
    ("SELECT 1; DROP TABLE vitals_clean", "this request holds 2 statements"),
    ("VALUES (1);; SELECT 2", "this request holds 2 statements"),
    ("SELECT 1 -- the rest is a comment?\n; DROP TABLE vitals_clean", "this request holds 2 statements"),
    ("SELECT 1 /* ; */ ; DELETE FROM vitals_raw", "this request holds 2 statements"),
    ("/* SELECT 1 */ DROP TABLE vitals_clean", "DROP TABLE " + READ_ONLY),
    # a path or URL is not a table
    ("SELECT * FROM '/etc/passwd'", "table 'datafusion.public./etc/passwd' not found"),
    ("SELECT * FROM 'file:///etc/hosts'", "table 'datafusion.public.file:///etc/hosts' not found"),
    ("SELECT * FROM 's3://bucket/data.parquet'", "table 'datafusion.public.s3://bucket/data.parquet' not found"),
    ("SELECT * FROM 'http://169.254.169.254/latest/meta-data'", "http://169.254.169.254/latest/meta-data' not found"),
    ('SELECT count(*) FROM vitals_clean JOIN "/etc/passwd" ON true', "table 'datafusion.public./etc/passwd' not found"),
    ("WITH x AS (SELECT * FROM '/etc/passwd') SELECT * FROM x", "table 'datafusion.public./etc/passwd' not found"),
    # table functions
    ("SELECT * FROM read_csv('/etc/passwd')", "table function 'read_csv' not found"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "table function 'read_parquet' not found"),
    ("SELECT * FROM generate_series(1, 10)", "generate_series() is refused: only vitalflow's tables can be queried"),
    ("SELECT * FROM range(10)", "range() is refused: only vitalflow's tables can be queried"),
    # EXPLAIN (ANALYZE would run it)
    ("EXPLAIN ANALYZE DELETE FROM vitals_raw", "EXPLAIN of a statement " + READ_ONLY),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/leak.parquet'", "EXPLAIN of a statement " + READ_ONLY),
    # server-side prepared statements, functions, extensions and other databases
    ("PREPARE p AS SELECT 1", "PREPARE p " + READ_ONLY),
    ("EXECUTE p", "EXECUTE p " + READ_ONLY),
    ("CREATE FUNCTION f(a INT) RETURNS INT RETURN a + 1", "CREATE FUNCTION " + READ_ONLY),
    ("DROP FUNCTION predict_risk", "DROP FUNCTION " + READ_ONLY),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH DATABASE " + READ_ONLY),
    ("INSTALL httpfs", "INSTALL httpfs " + READ_ONLY),
    ("LOAD httpfs", "LOAD httpfs " + READ_ONLY),
    ("BEGIN", "BEGIN " + READ_ONLY),
    # unicode: look-alike letters are no keyword; a non-breaking space or line separator is a space
    ("ＤＲＯＰ TABLE vitals_clean", "found: ＤＲＯＰ"),
    ("DR\u041eP TABLE vitals_clean", "found: DR\u041eP"),
    ("DROP\u00a0TABLE vitals_clean", "DROP TABLE " + READ_ONLY),
    ("SELECT 1;\u2028DROP TABLE vitals_clean", "this request holds 2 statements"),
    # case
    ("dRoP tAbLe vitals_clean", "DROP TABLE " + READ_ONLY),
    ("CoPy (select 1) tO '/tmp/leak.parquet'", "COPY (writing files) " + READ_ONLY),
    # a query around a write
    ("WITH x AS (SELECT 1) INSERT INTO vitals_raw SELECT * FROM vitals_raw", "INSERT INTO (inside a query) " + READ_ONLY),
    ("WITH x AS (DELETE FROM vitals_raw RETURNING *) SELECT * FROM x", "DELETE FROM (inside a query) " + READ_ONLY),
    ("WITH x AS (SELECT 1) UPDATE vitals_raw SET heart_rate = 1", "UPDATE vitals_raw (inside a query) " + READ_ONLY),
]

# What a reader may not read, however it names or wraps the table.
ADMIN_ONLY = [
    "SELECT * FROM audit_log",
    "SELECT * FROM datafusion.public.audit_log",
    'SELECT * FROM "audit_log"',
    "WITH a AS (SELECT * FROM audit_log) SELECT * FROM a",
    "SELECT count(*) FROM vitals_clean WHERE patient_id IN (SELECT user_name FROM audit_log)",
    "SELECT count(*) FROM vitals_clean UNION ALL SELECT count(*) FROM audit_log",
]


def assert_refused(client, options, sql: str, needle: str) -> None:
    """`sql` is refused as a query and as a prepared statement, as a client error whose message says `needle`."""
    for door, send in [
        ("query", lambda: client.get_flight_info(statement_query(sql), options)),
        ("prepared statement", lambda: prepare(client, options, sql)),
    ]:
        with pytest.raises(Exception) as err:
            send()
        assert isinstance(err.value, REFUSED), f"{door} {sql!r}: {type(err.value).__name__}: {err.value}"
        assert needle in str(err.value), f"{door} {sql!r}: {err.value}"


def test_there_are_more_than_40_forbidden_statements():
    assert len(FORBIDDEN) + len(ADMIN_ONLY) > 40 and len({sql for sql, _ in FORBIDDEN}) == len(FORBIDDEN)


@pytest.mark.parametrize("sql,needle", FORBIDDEN, ids=[sql for sql, _ in FORBIDDEN])
def test_forbidden_statements_are_refused_by_name_and_the_server_keeps_answering(server, clients, sql, needle):
    assert_refused(*clients["admin"], sql, needle)
    assert not Path("/tmp/leak.parquet").exists()
    assert_serving(server)


@pytest.mark.parametrize("sql", ADMIN_ONLY)
def test_a_reader_cannot_read_the_audit_log_however_it_names_it(server, clients, sql):
    assert_refused(*clients["grafana"], sql, "audit_log is readable by the admin role only")
    # The admin is not refused, so the refusal is the role's. (A query joining audit_log with another table
    # does not plan even for the admin: audit_log is read on a context of its own.)
    try:
        assert answer(*clients["admin"], sql).num_rows >= 1
    except pa.ArrowInvalid as error:
        assert "vitals_clean' not found" in str(error), error
    assert_serving(server)


def test_a_reader_finds_no_audit_log_in_information_schema(server, clients):
    for listing in ["information_schema.tables", "information_schema.columns", "information_schema.views"]:
        sql = f"SELECT DISTINCT table_name FROM {listing}"
        assert "audit_log" not in answer(*clients["grafana"], sql).column(0).to_pylist(), listing
        assert "audit_log" in answer(*clients["admin"], sql).column(0).to_pylist(), listing
    assert_serving(server)


# --- Oversized and deeply nested SQL -------------------------------------------------------------

# Each of these aborted the whole process with a stack overflow before the front door measured queries.
DEEP_QUERIES = {
    "20,000-term sum": "SELECT " + "+".join(["1"] * 20_000),
    "200,000-term sum": "SELECT " + "+".join(["1"] * 200_000),
    "OR chain of 20,000 comparisons": "SELECT count(*) FROM vitals_clean WHERE "
    + " OR ".join(f"heart_rate = {i}" for i in range(20_000)),
    "50,000-term concatenation": "SELECT " + "||".join(["'a'"] * 50_000),
    "UNION of 5,000 queries": " UNION ALL ".join(["SELECT 1"] * 5_000),
    "JOIN of 2,000 tables": "SELECT 1 FROM vitals_clean " + " ".join(f"JOIN vitals_clean t{i} ON true" for i in range(2_000)),
}


def test_oversized_and_deep_queries_are_refused_naming_the_setting(server, clients):
    client, options = clients["admin"]
    oversized = "SELECT '" + "a" * (1 << 20) + "' AS big"
    nested = {
        "40 brackets": "SELECT " + "(" * 40 + "1" + ")" * 40,
        "100,000 brackets": "SELECT " + "(" * 100_000 + "1" + ")" * 100_000,
        "20,000 nested subqueries": "SELECT * FROM " + "(SELECT * FROM " * 20_000 + "vitals_clean",
    }
    cases = [(oversized, "flight_sql.max_sql_bytes")]
    cases += [(sql, "flight_sql.max_nesting_depth") for sql in nested.values()]
    cases += [(sql, "flight_sql.max_expression_terms") for sql in DEEP_QUERIES.values()]
    for sql, setting in cases:
        # INVALID_ARGUMENT (pa.ArrowInvalid), as a query and as a prepared statement.
        with pytest.raises(pa.ArrowInvalid, match=re.escape(setting)):
            client.get_flight_info(statement_query(sql), options)
        with pytest.raises(pa.ArrowInvalid, match=re.escape(setting)):
            prepare(client, options, sql)
    # Just within the limits: planned and answered (1000 operators on the path, 32 brackets).
    assert answer(client, options, "SELECT " + "+".join(["1"] * 1001) + " AS n").column("n")[0].as_py() == 1001
    assert answer(client, options, "SELECT " + "(" * 32 + "7" + ")" * 32 + " AS n").column("n")[0].as_py() == 7
    assert_serving(server)


# --- Sign-in: password guessing, tokens ----------------------------------------------------------


def call(server: Pipeline, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         source: str = "127.0.0.1") -> tuple[int, bytes, str]:
    """One raw HTTP request to the scheduler from the loopback address `source` (the sign-in backoff counts per
    client address): status, body and Content-Type."""
    host, port = server.addrs["http"].rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        conn.close()


def metrics(server: Pipeline) -> dict[str, float]:
    """The scheduler's /metrics, unlabelled samples by name."""
    _, text, _ = call(server, "GET", "/metrics")
    samples = (line.rsplit(" ", 1) for line in text.decode().splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples if "{" not in name}


def post_from(server: Pipeline, source: str, headers: dict[str, str]) -> tuple[int, dict]:
    """POST /predict_batch of one record from `source` with `headers`: status and JSON answer."""
    status, body, _ = call(server, "POST", "/predict_batch", json.dumps([RECORD]).encode(),
                           {"Content-Type": "application/json", **headers}, source)
    return status, json.loads(body)


COUNTERS = ["vitalflow_password_hashes_total", "vitalflow_sign_in_failures_total", "vitalflow_sign_in_backoff_refusals_total"]


def counted(server: Pipeline, before: dict[str, float]) -> dict[str, int]:
    """How much each sign-in counter grew since `before`."""
    now = metrics(server)
    return {name: int(now[name] - before[name]) for name in COUNTERS}


def test_an_unknown_name_costs_the_same_password_hash_as_a_wrong_password(server):
    """N unknown names and N wrong passwords for a known name, each from an address of its own: fewer than the
    backoff's five free failures per name, so none is refused unchecked and each costs exactly one hash."""
    n = 5
    nurse_password = FLIGHT_SQL_USERS["nurse"][0]
    refusals = {}
    for g, (group, credentials) in enumerate([
        ("unknown names", [(f"intruder-{i}", nurse_password) for i in range(n)]),
        ("wrong passwords", [("nurse", f"guess-{i}") for i in range(n)]),
    ]):
        before = metrics(server)
        for i, (user, password) in enumerate(credentials):
            status, answer_ = post_from(server, f"127.0.{10 + g}.{i + 1}", basic(user, password))
            assert status == 401, answer_
            refusals.setdefault(group, set()).add(answer_["detail"][0]["msg"])
        cost = counted(server, before)
        assert cost == {COUNTERS[0]: n, COUNTERS[1]: n, COUNTERS[2]: 0}, f"{group}: {cost}"
    # Nothing in the answer tells an unknown name from a wrong password.
    assert refusals["unknown names"] == refusals["wrong passwords"] == {"unauthenticated: wrong user name or password"}, refusals
    # The right password is hashed once; then it is remembered, and a token costs nothing.
    before = metrics(server)
    for _ in range(3):
        assert post_from(server, "127.0.13.1", basic("nurse", nurse_password))[0] == 200
    assert post_from(server, "127.0.13.1", {"Authorization": f"Bearer {FLIGHT_SQL_TOKEN[1]}"})[0] == 200
    assert counted(server, before) == {COUNTERS[0]: 1, COUNTERS[1]: 0, COUNTERS[2]: 0}
    assert_serving(server)


def test_200_wrong_passwords_make_the_name_wait_and_the_right_one_works_after_the_wait(server):
    """After five free failures each attempt waits, refused unchecked: every one of the 200 is either hashed
    and failed or refused without a hash. A token keeps working meanwhile; after the wait the password does."""
    attacker = "127.0.20.1"
    before = metrics(server)
    waited = 0
    for i in range(200):
        status, refusal = post_from(server, attacker, basic("grafana", f"guess-{i}"))
        assert status == 401, refusal
        waited += "too many failed sign-ins" in refusal["detail"][0]["msg"]
    cost = counted(server, before)
    assert waited >= 190 and cost[COUNTERS[2]] == waited, (waited, cost)
    assert cost[COUNTERS[1]] + cost[COUNTERS[2]] == 200 and cost[COUNTERS[0]] == cost[COUNTERS[1]], cost

    status, refusal = post_from(server, attacker, basic("grafana", FLIGHT_SQL_USERS["grafana"][0]))
    assert status == 401, refusal
    wait = re.search(r"try again in (\d+) s", refusal["detail"][0]["msg"])
    assert wait and int(wait.group(1)) <= 60, refusal
    assert post_from(server, attacker, {"Authorization": f"Bearer {FLIGHT_SQL_TOKEN[1]}"})[0] == 200
    assert_serving(server)
    time.sleep(int(wait.group(1)) + 0.5)
    status, answer_ = post_from(server, attacker, basic("grafana", FLIGHT_SQL_USERS["grafana"][0]))
    assert status == 200, answer_
    assert_serving(server)


def signed_token(expires: int, user: str, secret: str = TOKEN_SECRET) -> str:
    """A Flight SQL token as the server issues one: `vf1.<payload>.<HMAC-SHA256 hex>`, keyed by SHA-256(secret)."""
    payload = base64.urlsafe_b64encode(f"{expires}:{user}".encode()).decode().rstrip("=")
    key = hashlib.sha256(secret.encode()).digest()
    return f"vf1.{payload}.{hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()}"


def test_forged_expired_and_foreign_tokens_are_refused(server):
    client = flight.FlightClient(f"grpc://{server.flight_sql}")
    http_base = f"http://{server.addrs['http']}"
    later = int(time.time()) + 3600
    genuine = signed_token(later, "grafana")
    tampered = genuine[:-1] + ("0" if genuine[-1] != "0" else "1")
    # The payload of one user with the signature of another.
    other_payload = signed_token(later, "admin").split(".")[1]
    stolen_signature = f"vf1.{other_payload}.{genuine.split('.')[2]}"
    refused = {
        "no credentials": (None, "credentials required"),
        "forged": ("Bearer vf1.forged.0000", "invalid token"),
        "tampered": (f"Bearer {tampered}", "invalid token"),
        "another payload's signature": (f"Bearer {stolen_signature}", "invalid token"),
        "expired": (f"Bearer {signed_token(int(time.time()) - 1, 'grafana')}", "token expired"),
        "another server's": (f"Bearer {signed_token(later, 'grafana', 'another-secret-0123456789abcdef0123')}", "invalid token"),
        "a user that does not exist": (f"Bearer {signed_token(later, 'mallory')}", "token's user no longer exists"),
        "a static token without its scheme": (FLIGHT_SQL_TOKEN[1], "has no scheme"),
        "an unknown scheme": ("Digest username=admin", 'unsupported authorization scheme "Digest"'),
        "garbage Basic": ("Basic !!!not-base64", "not base64"),
    }
    for name, (header, needle) in refused.items():
        headers = [(b"authorization", header.encode())] if header else []
        with pytest.raises(flight.FlightUnauthenticatedError, match=re.escape(needle)) as err:
            client.get_flight_info(statement_query("SELECT 1"), flight.FlightCallOptions(headers=headers))
        assert FLIGHT_SQL_TOKEN[1] not in str(err.value), f"{name}: the token was echoed"
        status, body, _ = http("POST", f"{http_base}/predict_batch", [RECORD], {"Authorization": header} if header else {})
        assert status == 401 and needle in body["detail"][0]["msg"], f"{name}: {status} {body}"
    # The same recipe with the right secret is accepted: the refusals above are the tokens' faults.
    accepted = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {genuine}".encode())])
    assert answer(client, accepted, "SELECT count(*) FROM vitals_clean").column(0)[0].as_py() == READINGS
    # ADBC with a wrong password.
    with pytest.raises(Exception, match="(?i)unauthenticated|password"):
        flightsql.connect(f"grpc://{server.flight_sql}", db_kwargs={"username": "admin", "password": "nope"}).cursor().execute("SELECT 1")
    assert_serving(server)


def test_a_static_token_named_like_a_user_is_refused_at_start(server, tmp_path):
    cluster = server.cluster
    config = write_test_config(tmp_path / "clash.toml")
    # The token takes the admin's name: it would sign in as the admin.
    config.write_text(config.read_text().replace('name = "dashboard"', 'name = "admin"'))
    args = cluster.base_args()
    args[args.index("--config") + 1] = str(config)
    done = subprocess.run(args + ["scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl"],
                          env=cluster.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "flight_sql.auth.tokens[admin] has the name of a user" in done.stdout + done.stderr, done.stderr
    assert_serving(server)


def test_300_forged_or_corrupted_statement_handles_are_refused(server, clients):
    client, options = clients["grafana"]
    sql = "SELECT patient_id, heart_rate FROM vitals_clean WHERE heart_rate > 0"
    ticket = client.get_flight_info(statement_query(sql), options).endpoints[0].ticket.ticket
    any_msg = pb_fields(ticket)
    handle = pb_fields(any_msg[2])[1]
    rng = random.Random(18)
    for i in range(300):
        forged = bytearray(handle)
        at = rng.randrange(len(forged))
        if i % 4 == 0:
            forged[at] ^= rng.randrange(1, 256)
        elif i % 4 == 1:
            del forged[at:]
        elif i % 4 == 2:
            # What the attack did: parameter bytes claiming a huge Arrow buffer.
            forged[at:] = b"\xff\xff\xff\x7f" + rng.randbytes(rng.randrange(1, 64))
        else:
            forged = bytearray(rng.randbytes(len(handle)))
        wrapped = pb(1, any_msg[1]) + pb(2, pb(1, bytes(forged)))
        with pytest.raises(pa.ArrowInvalid, match="statement handle"):
            client.do_get(flight.Ticket(wrapped), options).read_all()
    # The genuine ticket still works.
    assert client.do_get(flight.Ticket(ticket), options).read_all().num_rows == READINGS
    assert_serving(server)


# --- HTTP ----------------------------------------------------------------------------------------


def test_schemathesis_finds_no_5xx_in_what_the_openapi_document_allows(server, tmp_path):
    """schemathesis generates requests from /openapi.json (valid and invalid bodies, every route the document
    lists, the alert routes included), signed in as a clinician, who may act on alerts, so that the actions
    get past the role check to the body and the alert id. The document lists 503 for a process that keeps no
    alerts; this scheduler keeps them (checked first), so no 5xx is expected anywhere."""
    status, answer, _ = send(server, "GET", "/alerts", None, None)
    assert status == 200 and isinstance(answer["alerts"], list), (status, answer)
    operations = json.loads(call(server, "GET", "/openapi.json")[1])["paths"]
    assert {"/alerts", "/alerts/{alert_id}/acknowledge", "/alerts/{alert_id}/dismiss"} <= set(operations), operations
    cli = Path(sys.executable).parent / "schemathesis"
    nurse = signed_token(int(time.time()) + 3600, "nurse")
    result = subprocess.run(
        [str(cli), "run", f"http://{server.addrs['http']}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
         "--max-examples", "60", "--seed", "7", "--header", f"Authorization: Bearer {nurse}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # It reached the alert routes.
    assert "/alerts/{alert_id}/dismiss" in result.stdout, result.stdout[-3000:]
    assert_serving(server)


def send(server: Pipeline, method: str, path: str, body: bytes | None, content_type: str | None) -> tuple[int, dict, str]:
    """One request signed in, with a token of the clinician (who may act on alerts): status, JSON answer (None when
    empty) and Content-Type."""
    headers = {"Authorization": f"Bearer {signed_token(int(time.time()) + 3600, 'nurse')}"}
    if content_type:
        headers["Content-Type"] = content_type
    status, raw, answered_type = call(server, method, path, body, headers)
    return status, json.loads(raw) if raw else None, answered_type


def test_hand_made_bodies_get_a_json_4xx_naming_the_problem(server):
    """A form post (what any web page can send to localhost), a key named twice, a body over the limit, and
    bodies no generator writes: every answer a JSON 4xx, never a 5xx."""
    record = json.dumps([RECORD]).encode()
    twice = json.dumps([RECORD])[:-2].encode() + b', "spo2": 75}]'
    expected = [
        # (what, method, path, body, content type, status, what the refusal names)
        ("text body", "POST", "/predict_batch", record, "text/plain", 415, "application/json"),
        ("form post", "POST", "/predict_batch", record, "application/x-www-form-urlencoded", 415, "application/json"),
        ("no content type", "POST", "/predict_batch", record, None, 415, "application/json"),
        ("a key named twice", "POST", "/predict_batch", twice, "application/json", 422, "appears twice"),
        ("over 100 × 1 KiB", "POST", "/predict_batch", b"[" + b" " * (200 * 1024) + b"]", "application/json", 413, ""),
        ("101 records", "POST", "/predict_batch", json.dumps([RECORD] * 101).encode(), "application/json", 413,
         "at most 100 per request"),
        ("100,000 nested arrays", "POST", "/predict_batch", b"[" * 100_000 + b"]" * 100_000, "application/json", 413, ""),
        ("1,000 nested arrays", "POST", "/predict_batch", b"[" * 1_000 + b"]" * 1_000, "application/json", 422, ""),
        ("not UTF-8", "POST", "/predict_batch", b'[{"heart_rate": "\xff\xfe"}]', "application/json", 422, ""),
        ("empty", "POST", "/predict_batch", b"", "application/json", 422, ""),
        ("null", "POST", "/predict_batch", b"null", "application/json", 422, ""),
        ("a number past f64", "POST", "/predict_batch", json.dumps([{**RECORD, "glucose": 0}]).replace("0}", "1e400}").encode(),
         "application/json", 422, ""),
        ("NaN", "POST", "/predict_batch", json.dumps([RECORD]).replace("104", "NaN").encode(), "application/json", 422, ""),
        ("alert action as a form", "POST", "/alerts/x/acknowledge", b"reason=x", "application/x-www-form-urlencoded", 415,
         "application/json"),
        ("alert action, a key named twice", "POST", "/alerts/x/acknowledge", b'{"reason": "a", "reason": "b"}',
         "application/json", 400, "reason"),
        ("unknown route", "GET", "/../../etc/passwd", None, None, 404, None),
        ("wrong method", "DELETE", "/predict_batch", None, None, 405, None),
    ]
    wrong = []
    for what, method, path, body, content_type, status, needle in expected:
        got, answer_, answered_type = send(server, method, path, body, content_type)
        json_refusal = needle is None or (answered_type == "application/json" and needle in json.dumps(answer_))
        if got >= 500 or got != status or not json_refusal:
            wrong.append(f"{what}: expected {status} naming {needle!r}, got {got} {answered_type} {answer_}")
    assert not wrong, "\n".join(wrong)
    # 100 records pretty-printed are within the limit.
    got, answer_, _ = send(server, "POST", "/predict_batch", json.dumps([RECORD] * 100, indent=8).encode(), "application/json")
    assert got == 200 and len(answer_["predictions"]) == 100, answer_
    # Nothing this module sent to /predict_batch (schemathesis included) was answered with a 5xx.
    _, page, _ = call(server, "GET", "/metrics")
    counted_statuses = re.findall(r'vitalflow_http_predict_batch_responses_total\{status="(\d+)"\}', page.decode())
    assert "401" in counted_statuses and not [s for s in counted_statuses if s.startswith("5")], counted_statuses
    assert_serving(server)
