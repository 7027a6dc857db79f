"""The Flight SQL front door against the clients users run: pyarrow.flight, Python ADBC, polars,
flightsql-dbapi (Superset's driver), arrow-go's flightsql client (Grafana's library, clients/go), the Arrow
Flight SQL JDBC driver (clients/jdbc) and the Node clients from npm (clients/node); authentication, the
limits and the audit log (the read-only policy and the attacks on it: tests/system/test_attack_suite.py).

One cluster (scheduler, executor, ingest over the real Kafka) with a known number of readings serves
every test of this module; tests that need other settings start their own scheduler. The conformance
tests of the pyarrow, ADBC, polars, flightsql-dbapi, Go, JDBC and Node clients run twice (the `door` fixture): with
auth on, signing in, and against a second scheduler over the same tables with auth off, sending no
credentials, as a user of `vitalflow up` does.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import flightsql as flightsql_dbapi
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sqlalchemy

from tests.support.cluster import FLIGHT_SQL_TOKEN, FLIGHT_SQL_USERS, Cluster, query, running_cluster
from tests.support.flight_sql import batches_of, command, pb, prepare, prepared_query, pyarrow_client, statement_query
from tests.support.pipeline import start_pipeline
from tests.support.wait import wait_until

READINGS = 300
ROOT = Path(__file__).resolve().parents[2]


def table_columns(conn) -> dict[str, list[str]]:
    """Table name → column names, from ADBC's get_objects (GetCatalogs, GetDbSchemas, GetTables)."""
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    return {
        t["table_name"]: [c["column_name"] for c in t["table_columns"] or []]
        for catalog in objects
        for schema in catalog["catalog_db_schemas"]
        for t in schema["db_schema_tables"] or []
    }


def scalar(conn, sql: str, parameters=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetch_arrow_table().column(0)[0].as_py()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A cluster whose vitals_clean holds exactly READINGS rows; yields (cluster, flight_sql address)."""
    with running_cluster(tmp_path_factory.mktemp("served")) as cluster:
        yield cluster, start_pipeline(cluster, READINGS, patients=30, seed=7).flight_sql


@dataclass
class Door:
    """A Flight SQL front door and how its clients connect: signed in as one of FLIGHT_SQL_USERS when
    auth is on, with no credentials at all when it is off."""

    cluster: Cluster
    addr: str
    auth: bool

    def who(self, user: str) -> str:
        """The user name the audit log records for `user` (auth off: everyone is `local`)."""
        return user if self.auth else "local"

    def connect(self, user: str = "admin"):
        """An ADBC connection."""
        if self.auth:
            return self.cluster.connect(self.addr, user)
        return flightsql.connect(f"grpc://{self.addr}", autocommit=True)

    def pyarrow(self, user: str = "admin") -> tuple[flight.FlightClient, flight.FlightCallOptions]:
        if self.auth:
            return pyarrow_client(self.addr, user)
        return flight.FlightClient(f"grpc://{self.addr}"), flight.FlightCallOptions()

    def client_env(self, user: str = "grafana") -> dict[str, str]:
        """The environment of the Go, JDBC and Node suites (no VITALFLOW_USER: auth is off)."""
        env = dict(os.environ, VITALFLOW_FLIGHT_SQL_URL=f"grpc://{self.addr}", VITALFLOW_EXPECTED_ROWS=str(READINGS))
        for name in ("VITALFLOW_USER", "VITALFLOW_PASSWORD", "VITALFLOW_TOKEN"):
            env.pop(name, None)
        if self.auth:
            env.update(VITALFLOW_USER=user, VITALFLOW_PASSWORD=FLIGHT_SQL_USERS[user][0])
        return env


@pytest.fixture(scope="module", params=["auth-on", "auth-off"])
def door(request, served) -> Door:
    """The served cluster's front door (auth on), then a second scheduler and executor over the same tables
    with `flight_sql.auth.required = false` (loopback only, as `vitalflow up` runs)."""
    cluster, addr = served
    if request.param == "auth-on":
        return Door(cluster, addr, auth=True)
    env = {"VITALFLOW__FLIGHT_SQL__AUTH__REQUIRED": "false"}
    addrs = cluster.start_scheduler("open-scheduler", "--no-etl", executors=["open-executor"], env=env)
    return Door(cluster, addrs["flight_sql"], auth=False)


# --- pyarrow.flight: the raw Flight SQL protocol --------------------------------------------------


def fetch_command(client, options, cmd: bytes):
    info = client.get_flight_info(flight.FlightDescriptor.for_command(cmd), options)
    return info, batches_of(client.do_get(info.endpoints[0].ticket, options))


def cancel_flight_info(client, options, info: flight.FlightInfo) -> bytes:
    """The CancelFlightInfoResult of a CancelFlightInfo action (b"\x08\x01": CANCELLED)."""
    results = list(client.do_action(flight.Action("CancelFlightInfo", pb(1, info.serialize())), options))
    return results[0].body.to_pybytes()


def test_pyarrow_flight_streams_under_the_announced_schema_with_one_endpoint(door):
    client, options = door.pyarrow()
    for sql, rows in [
        ("SELECT patient_id, event_time, heart_rate, risk FROM vitals_clean", READINGS),
        # Aggregates are where DataFusion's plan and the executors disagree on nullability.
        ("SELECT risk, count(*) AS n, avg(heart_rate) AS hr FROM vitals_clean GROUP BY risk", None),
        # Zero rows still carry the schema.
        ("SELECT patient_id, event_time FROM vitals_clean WHERE heart_rate < 0", 0),
    ]:
        info = client.get_flight_info(statement_query(sql), options)
        assert len(info.endpoints) == 1, sql
        assert not info.endpoints[0].locations, "the ticket must be served by this server"
        batches = batches_of(client.do_get(info.endpoints[0].ticket, options))
        table = pa.Table.from_batches(batches, schema=info.schema)
        assert all(b.schema == info.schema for b in batches), f"{sql}: streamed {batches} announced {info.schema}"
        # GetSchema answers the same schema without running the query.
        assert client.get_schema(statement_query(sql), options).schema == info.schema, sql
        if rows is not None:
            assert table.num_rows == rows, sql
        if rows == 0:
            # One empty batch, not the schema alone.
            assert [b.num_rows for b in batches] == [0], sql
    types = client.get_flight_info(statement_query("SELECT patient_id, event_time, risk FROM vitals_clean"), options).schema
    assert types.field("patient_id").type == pa.string()
    assert types.field("risk").type == pa.string()
    assert types.field("event_time").type == pa.timestamp("ns", tz="UTC")


FOREIGN_KEY_COLUMNS = [
    "pk_catalog_name", "pk_db_schema_name", "pk_table_name", "pk_column_name", "fk_catalog_name", "fk_db_schema_name",
    "fk_table_name", "fk_column_name", "key_sequence", "fk_key_name", "pk_key_name", "update_rule", "delete_rule",
]
PRIMARY_KEYS = {
    "vitals_clean": ["source_topic", "source_partition", "source_offset"],
    "vitals_raw": ["source_topic", "source_partition", "source_offset"],
    "dead_letters": ["stage", "source_topic", "source_partition", "source_offset"],
    "patient_latest": ["patient_id"],
    "risk_alerts": ["alert_id"],
    "no_such_table": [],
}


def test_pyarrow_key_listings_answer_with_the_specs_schemas_and_list_flights_is_empty(door):
    client, options = door.pyarrow("grafana")
    clean = pb(3, b"vitals_clean")
    for name, body in [
        ("CommandGetImportedKeys", clean),
        ("CommandGetExportedKeys", clean),
        ("CommandGetCrossReference", pb(3, b"patient_latest") + pb(6, b"vitals_clean")),
    ]:
        info, batches = fetch_command(client, options, command(name, body))
        assert info.schema.names == FOREIGN_KEY_COLUMNS, name
        assert [b.num_rows for b in batches] == [0], f"{name}: one empty batch"
    for table, key in PRIMARY_KEYS.items():
        _, batches = fetch_command(client, options, command("CommandGetPrimaryKeys", pb(3, table.encode())))
        rows = pa.Table.from_batches(batches).to_pylist()
        assert [r["column_name"] for r in rows] == key, table
        assert [r["key_sequence"] for r in rows] == list(range(1, len(key) + 1)), table
    assert list(client.list_flights(options=options)) == []


def test_pyarrow_prepared_statements_type_parameters_and_refuse_missing_values(door):
    client, options = door.pyarrow("grafana")
    # A function's arguments take the function's types; a comparison's the column's.
    _, dataset, parameters = prepare(client, options, "SELECT predict_risk(?, ?, ?, ?, ?, ?) AS risk")
    assert parameters.types == [pa.float64()] * 6, parameters
    assert dataset.names == ["risk"]
    handle, dataset, parameters = prepare(
        client, options, "SELECT count(*) AS n FROM vitals_clean WHERE patient_id = ? AND heart_rate > ?")
    assert parameters.types == [pa.string(), pa.float64()], parameters
    # GetSchema of the prepared statement needs no values; executing it does, and says which.
    assert client.get_schema(prepared_query(handle), options).schema == dataset
    with pytest.raises(pa.ArrowInvalid, match=r"parameters \$1, \$2 have no value") as err:
        client.get_flight_info(prepared_query(handle), options)
    assert "Placeholder" not in str(err.value)


def test_pyarrow_garbage_tickets_cancel_and_refusals_answer_in_words(door):
    client, options = door.pyarrow("grafana")
    for garbage in [b"\xff\xfe not a ticket", b"", pb(1, b"type.googleapis.com/no.Such") + pb(2, b"x")]:
        with pytest.raises(pa.ArrowInvalid, match="not a Flight SQL command") as err:
            client.do_get(flight.Ticket(garbage), options).read_all()
        assert "DecodeError" not in str(err.value)
    # Cancelling a query that is not running has nothing left to stop: CANCELLED.
    info = client.get_flight_info(statement_query("SELECT count(*) FROM vitals_clean"), options)
    assert cancel_flight_info(client, options, info) == b"\x08\x01"
    with pytest.raises(pa.ArrowInvalid, match="CancelFlightInfo"):
        list(client.do_action(flight.Action("CancelFlightInfo", b"\xff\xff"), options))
    # What a read-only server without transactions or Substrait refuses, each with its reason.
    with pytest.raises(pa.ArrowNotImplementedError, match="transactions"):
        list(client.do_action(flight.Action("BeginTransaction", command("ActionBeginTransactionRequest")), options))
    substrait = command("CommandStatementSubstraitPlan", pb(1, pb(1, b"\x01") + pb(2, b"0.1")))
    with pytest.raises(pa.ArrowNotImplementedError, match="Substrait"):
        client.get_flight_info(flight.FlightDescriptor.for_command(substrait), options)
    ingest = flight.FlightDescriptor.for_command(command("CommandStatementIngest", pb(2, b"vitals_raw")))
    rows = pa.table({"patient_id": ["P001"]})
    with pytest.raises(flight.FlightUnauthorizedError, match="bulk ingest"):
        writer, _ = client.do_put(ingest, rows.schema, options)
        writer.write_table(rows)
        writer.close()
    with door.connect() as conn:
        assert scalar(conn, "SELECT count(*) FROM vitals_clean") == READINGS, "server must stay up"
        # Refused calls are audited under the call's name.
        refused = scalar(conn, "SELECT count(*) FROM audit_log WHERE user_name = ? AND outcome = 'refused' AND sql IN "
                         "('Flight SQL action BeginTransaction', 'Flight SQL DoPut CommandStatementIngest')",
                         (door.who("grafana"),))
        assert refused >= 2, refused


# --- Python ADBC ----------------------------------------------------------------------------------


def test_adbc_execute_fetch_parameters_and_metadata(door):
    with door.connect("grafana") as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT patient_id FROM vitals_clean ORDER BY event_time LIMIT 1")
            patient = cur.fetchone()[0]
        inline = scalar(conn, f"SELECT count(*) FROM vitals_clean WHERE patient_id = '{patient}' AND heart_rate > 60")
        bound = scalar(conn, "SELECT count(*) FROM vitals_clean WHERE patient_id = ? AND heart_rate > ?", (patient, 60))
        assert bound == inline and bound > 0
        # The same prepared statement, executed again with other values.
        with conn.cursor() as cur:
            counts = []
            for hr in (0, 1000):
                cur.execute("SELECT count(*) FROM vitals_clean WHERE heart_rate > ?", (hr,))
                counts.append(cur.fetch_arrow_table().column(0)[0].as_py())
        assert counts == [scalar(conn, "SELECT count(heart_rate) FROM vitals_clean"), 0]

        tables = table_columns(conn)
        assert {"vitals_raw", "vitals_clean", "dead_letters"} <= set(tables), tables.keys()
        assert {"patient_id", "event_time", "risk", "news2_score"} <= set(tables["vitals_clean"])

        schema = conn.adbc_get_table_schema("vitals_clean")
        assert schema.field("event_time").type == pa.timestamp("ns", tz="UTC")
        assert schema.field("risk").type == pa.string()
        # The table schema is the schema a query of the table streams.
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM vitals_clean LIMIT 0")
            assert cur.fetch_arrow_table().schema == schema
        assert set(conn.adbc_get_table_types()) >= {"BASE TABLE"}


def test_information_schema_lists_tables_columns_and_views_as_power_bi_reads_them(door):
    with door.connect("grafana") as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name, table_type FROM information_schema.tables "
                        "WHERE table_schema = 'public' ORDER BY table_name")
            tables = {r["table_name"]: r["table_type"] for r in cur.fetch_arrow_table().to_pylist()}
            assert {"vitals_raw", "vitals_clean", "dead_letters", "patient_latest"} <= set(tables), tables
            assert tables["vitals_clean"] == "BASE TABLE"
            cur.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                        "WHERE table_name = ? ORDER BY ordinal_position", ("vitals_clean",))
            columns = {r["column_name"]: r["data_type"] for r in cur.fetch_arrow_table().to_pylist()}
            assert list(columns)[:2] == ["patient_id", "event_time"], columns
            assert columns["event_time"].startswith("Timestamp"), columns
            # The view listing answers, consistent with the table listing.
            cur.execute("SELECT table_schema, table_name, definition FROM information_schema.views")
            views = cur.fetch_arrow_table().to_pylist()
            assert {v["table_name"] for v in views if v["table_schema"] == "public"} <= set(tables), views


def test_adbc_static_token(served):
    cluster, addr = served
    name, token = FLIGHT_SQL_TOKEN
    conn = flightsql.connect(
        f"grpc://{addr}", db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}, autocommit=True
    )
    with conn:
        assert scalar(conn, "SELECT count(*) FROM vitals_clean") == READINGS


# --- polars and flightsql-dbapi (Superset's driver) -----------------------------------------------


def test_polars_reads_query_results_through_an_adbc_connection(door):
    with door.connect("grafana") as conn:
        expected = query(conn, "SELECT patient_id, event_time, heart_rate FROM vitals_clean ORDER BY event_time, patient_id")
        df = pl.read_database("SELECT patient_id, event_time, heart_rate FROM vitals_clean ORDER BY event_time, patient_id",
                              connection=conn)
        assert df.schema == {"patient_id": pl.String, "event_time": pl.Datetime("ns", "UTC"), "heart_rate": pl.Float64}
        assert df.to_arrow().to_pylist() == expected.to_pylist()
        patient = df["patient_id"][0]
        bound = pl.read_database("SELECT count(*) AS n FROM vitals_clean WHERE patient_id = ?", connection=conn,
                                 execute_options={"parameters": [patient]})
        assert bound["n"][0] == df.filter(pl.col("patient_id") == patient).height > 0
        latest = pl.read_database("SELECT patient_id, event_time FROM patient_latest", connection=conn)
        assert latest.sort("patient_id").to_dicts() == (
            df.group_by("patient_id").agg(pl.col("event_time").max()).sort("patient_id").to_dicts())


def dbapi_client(door: Door, user: str = "grafana") -> flightsql_dbapi.FlightSQLClient:
    host, port = door.addr.rsplit(":", 1)
    credentials = {"user": user, "password": FLIGHT_SQL_USERS[user][0]} if door.auth else {}
    return flightsql_dbapi.FlightSQLClient(host=host, port=int(port), insecure=True, **credentials)


def test_flightsql_dbapi_cursor_and_sqlalchemy_as_superset_uses_them(door):
    with door.connect("grafana") as conn:
        latest = query(conn, "SELECT patient_id, event_time FROM patient_latest ORDER BY patient_id").to_pylist()
        patient = latest[0]["patient_id"]
        readings = scalar(conn, "SELECT count(*) FROM vitals_clean WHERE patient_id = ?", (patient,))
    with flightsql_dbapi.connect(dbapi_client(door)) as db:
        cur = db.cursor()
        cur.execute("SELECT count(*) FROM vitals_clean")
        assert cur.fetchall() == [[READINGS]]
        cur.execute("SELECT patient_id, event_time FROM patient_latest ORDER BY patient_id")
        assert [name for name, _ in cur.description] == ["patient_id", "event_time"]
        assert [(p, t.to_pydatetime()) for p, t in cur.fetchall()] == [(r["patient_id"], r["event_time"]) for r in latest]
        # Superset's table browser.
        assert {"vitals_clean", "patient_latest"} <= set(db.flightsql_get_table_names())
        columns = {c["name"]: c["type"] for c in db.flightsql_get_columns("vitals_clean")}
        assert columns["event_time"] == sqlalchemy.TIMESTAMP and columns["patient_id"] == sqlalchemy.TEXT
        # The driver ignores the handle DoPut returns (the spec says to use it), so a query with parameters
        # reaches the server without values: refused by name, as docs/clients.md says.
        with pytest.raises(pa.ArrowInvalid, match=r"parameter \$1 has no value"):
            cur.execute("SELECT count(*) FROM vitals_clean WHERE patient_id = ?", [patient])
    # Through SQLAlchemy, as Superset connects (`datafusion://`) and builds a chart's query: the dialect
    # writes values into the SQL. (Values given only at execution, as to `text(...)`, it writes as NULL.)
    host, port = door.addr.rsplit(":", 1)
    user = f"grafana:{FLIGHT_SQL_USERS['grafana'][0]}@" if door.auth else ""
    engine = sqlalchemy.create_engine(f"datafusion://{user}{host}:{port}?insecure=true")
    clean = sqlalchemy.table("vitals_clean", sqlalchemy.column("patient_id"))
    try:
        with engine.connect() as sa:
            chart = sqlalchemy.select(sqlalchemy.func.count()).select_from(clean).where(clean.c.patient_id == patient)
            assert sa.execute(chart).scalar() == readings > 0
        assert "patient_latest" in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


# --- Audit ----------------------------------------------------------------------------------------


def test_audit_log_records_who_what_and_rows_and_only_admins_read_it(served):
    cluster, addr = served
    marker = f"audit-marker-{time.monotonic_ns()}"
    with cluster.connect(addr, "grafana") as conn:
        assert scalar(conn, f"SELECT count(*) AS \"{marker}\" FROM vitals_clean") == READINGS
        with pytest.raises(Exception, match="admin"):
            scalar(conn, "SELECT count(*) FROM audit_log")
    with cluster.connect(addr, "admin") as conn:
        rows = []

        def audited() -> bool:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT user_name, outcome, rows_returned FROM audit_log WHERE sql LIKE ? ORDER BY time",
                    (f"%{marker}%",),
                )
                rows[:] = cur.fetch_arrow_table().to_pylist()
            return any(r["outcome"] == "ok" for r in rows)

        wait_until(audited, 10, lambda: f"the query in audit_log: {rows}", interval=0.2)
        ok = [r for r in rows if r["outcome"] == "ok"]
        assert ok and ok[-1]["user_name"] == "grafana" and ok[-1]["rows_returned"] == 1, rows
        refused = scalar(conn, "SELECT count(*) FROM audit_log WHERE user_name = 'grafana' AND outcome = 'refused'")
        assert refused >= 1


# --- Limits ---------------------------------------------------------------------------------------


def test_query_time_memory_and_result_size_limits_fail_clearly_and_the_server_stays_up(served, tmp_path):
    cluster, _ = served
    limited = Cluster(cluster.binary, cluster.kafka, tmp_path)
    limited.data = cluster.data
    try:
        env = {"VITALFLOW__FLIGHT_SQL__QUERY_TIMEOUT_SECONDS": "20", "VITALFLOW__FLIGHT_SQL__MAX_RESULT_MB": "1"}
        addrs = limited.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl", env=env)
        port = addrs["scheduler"].rsplit(":", 1)[1]
        executor_env = {"VITALFLOW__EXECUTOR__MEMORY_LIMIT_MB": "64"}
        limited.start_service("executor", "executor", "--scheduler", f"127.0.0.1:{port}", "--flight-port", "0",
                              env=executor_env)
        with limited.connect(addrs["flight_sql"]) as conn:
            # 90 000 rows of every column: megabytes.
            with pytest.raises(Exception, match="exceeds 1 MiB"):
                with conn.cursor() as cur:
                    cur.execute("SELECT a.*, b.patient_id AS other FROM vitals_clean a, vitals_clean b")
                    cur.fetch_arrow_table()
            # One list of 27 million 200-byte strings: an aggregate without groups cannot spill, so it
            # reaches 64 MiB per task after a few hundred thousand rows.
            with pytest.raises(Exception, match="memory_limit_mb"):
                scalar(conn, "SELECT cardinality(array_agg(repeat(a.patient_id || b.patient_id || c.patient_id, 15))) "
                       "FROM vitals_clean a, vitals_clean b, vitals_clean c")
            # 27 million regular-expression matches of 300-character strings in little memory: far more than
            # twenty seconds of work however the table's files are cut into tasks.
            with pytest.raises(Exception, match="time limit of 20 s"):
                scalar(conn, "SELECT count(*) FROM vitals_clean a, vitals_clean b, vitals_clean c "
                       "WHERE regexp_like(repeat(a.patient_id || b.patient_id || c.patient_id, 20), '^(P0+1)+x$')")
            # A cancel request ends a running query's stream at once. (The executor is still busy with the
            # timed-out join, so this query waits in the queue: it would not end by itself.)
            client, options = pyarrow_client(addrs["flight_sql"])
            slow = statement_query("SELECT count(*) FROM vitals_clean a, vitals_clean b, vitals_clean c "
                                   "WHERE a.heart_rate + b.heart_rate > c.heart_rate")
            info = client.get_flight_info(slow, options)
            reader = client.do_get(info.endpoints[0].ticket, options)
            assert reader.schema == info.schema  # the stream is open
            started = time.monotonic()
            assert cancel_flight_info(client, options, info) == b"\x08\x01"
            # (read_chunk: read_all turns a CANCELLED status into a KeyboardInterrupt of the test itself.)
            with pytest.raises(flight.FlightCancelledError, match="cancel request"):
                batches_of(reader)
            assert time.monotonic() - started < 10
            # The front door stays up and answers. (Its cancel of the timed-out job reaches the task only at
            # the task's next await point; this join's single probe batch has none for a minute.)
            assert conn.adbc_get_table_schema("vitals_clean").field("risk").type == pa.string()
        with limited.connect(addrs["flight_sql"], "grafana") as conn:
            assert "vitals_clean" in table_columns(conn)
        # The result-size and timed-out queries were abandoned: their jobs are cancelled by name.
        scheduler_log = next(c for c in limited.children if c.name == "scheduler").log_path.read_text(errors="replace")
        cancels = [line for line in scheduler_log.splitlines() if "Cancelled an abandoned job" in line]
        assert any("flight-sql/admin/2" in line for line in cancels), cancels
    except BaseException:
        print(limited.logs())
        raise
    finally:
        limited.stop_all()


# --- Go (Grafana's library) and JDBC --------------------------------------------------------------


def run_client_suite(command: list[str], cwd: Path, door: Door, timeout: float = 600) -> None:
    done = subprocess.run(command, cwd=cwd, env=door.client_env(), capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-8000:], done.stderr[-8000:])
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"


def test_grafana_calls_through_arrow_go_flightsql(door):
    go = shutil.which("go")
    assert go, "go is not installed: deploy/test.sh needs Go for the Grafana client test"
    run_client_suite([go, "test", "-count=1", "-v", "./..."], ROOT / "clients" / "go", door)


def test_jdbc_driver_connects_lists_tables_and_runs_a_prepared_query(door):
    mvn = shutil.which("mvn")
    assert mvn, "mvn is not installed: deploy/test.sh needs Maven for the JDBC test"
    run_client_suite([mvn, "-q", "-B", "test"], ROOT / "clients" / "jdbc", door)


def test_node_clients_from_npm(door):
    node = shutil.which("node")
    assert node, "node is not installed: deploy/test.sh needs Node.js for the Node client suite"
    assert (ROOT / "clients" / "node" / "node_modules").is_dir(), "run `npm ci` in clients/node (deploy/test.sh does)"
    run_client_suite([node, "--test", "--test-reporter=spec"], ROOT / "clients" / "node", door)


# --- 64 concurrent clients while ingest runs (a benchmark: figures printed, zero errors asserted) --


def test_64_concurrent_clients_for_60_seconds_while_ingest_runs(served):
    cluster, addr = served
    seconds = float(os.environ.get("VITALFLOW_CONCURRENCY_SECONDS", "60"))
    sim = cluster.start("simulate-live", "simulate", "--count", "100000000", "--rate", "200", "--patients", "30", "--seed", "8")
    queries = [
        "SELECT count(*) FROM vitals_clean",
        "SELECT risk, count(*) AS n FROM vitals_clean GROUP BY risk",
        "SELECT patient_id, max(news2_score) AS news2 FROM vitals_clean GROUP BY patient_id ORDER BY news2 DESC LIMIT 5",
        "SELECT date_bin(interval '10 second', event_time, timestamp '1970-01-01T00:00:00Z') AS time, avg(heart_rate) AS hr "
        "FROM vitals_clean GROUP BY 1 ORDER BY 1",
    ]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        try:
            with cluster.connect(addr, "grafana") as conn:
                n = 0
                while time.monotonic() < stop_at:
                    sql = queries[(i + n) % len(queries)]
                    started = time.perf_counter()
                    with conn.cursor() as cur:
                        cur.execute(sql)
                        cur.fetch_arrow_table()
                    with lock:
                        latencies.append(time.perf_counter() - started)
                    n += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            with lock:
                errors.append(f"client {i}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    sim.stop()
    assert not errors, f"{len(errors)} errors, e.g. {errors[:3]}"
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"\nflight sql concurrency: 64 clients, {seconds:.0f} s, ingest at 200 readings/s: "
        f"{len(latencies)} queries ({len(latencies) / seconds:.1f}/s), p50 {p50:.1f} ms, p99 {p99:.1f} ms, 0 errors"
    )


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_with_configured_certificate_and_key(tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    with running_cluster(tmp_path) as cluster:
        env = {"VITALFLOW__FLIGHT_SQL__TLS_CERT_PATH": str(cert), "VITALFLOW__FLIGHT_SQL__TLS_KEY_PATH": str(key)}
        addrs = cluster.start_service("scheduler", "scheduler", "--port", "0", "--flight-sql-port", "0", "--no-etl", env=env)
        port = addrs["flight_sql"].rsplit(":", 1)[1]
        client = flight.FlightClient(f"grpc+tls://localhost:{port}", tls_root_certs=cert.read_bytes())
        header = client.authenticate_basic_token("admin", FLIGHT_SQL_USERS["admin"][0])
        info = client.get_flight_info(statement_query("SELECT 1 AS one"), flight.FlightCallOptions(headers=[header]))
        assert info.schema.names == ["one"]
        plain = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        with pytest.raises(flight.FlightError):
            plain.authenticate_basic_token("admin", FLIGHT_SQL_USERS["admin"][0])
