// The two Flight SQL clients on npm, used as a Node application uses them, against a running vitalflow:
// @lancedb/arrow-flight-sql-client (pure JS, grpc-js: handshake and statement queries only) and
// @lakehouse-rs/flight-sql-client (the Rust arrow-flight client behind N-API: queries, each run as a
// prepared statement, and the catalog listings). Neither lets the caller bind parameters.
//
// Run by clients/tests/test_flight_sql_clients.py, which starts the server and sets
//   VITALFLOW_FLIGHT_SQL_URL  grpc://host:port
//   VITALFLOW_USER, VITALFLOW_PASSWORD  the sign-in; both unset for a server with auth off (`vitalflow up`)
//   VITALFLOW_EXPECTED_ROWS   how many readings vitals_clean holds
//
// package.json overrides @lakehouse-rs/flight-sql-client-freebsd-x64 to 0.0.7: 0.0.10 names it as an
// optional dependency of version 0.0.10, which was never published, and `npm ci` then refuses every lockfile.
// (It is the FreeBSD binary: never installed here.)
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createFlightSqlClient } from "@lakehouse-rs/flight-sql-client";
import { Client } from "@lancedb/arrow-flight-sql-client";
import { tableFromIPC } from "apache-arrow";

function env(name) {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through clients/tests/test_flight_sql_clients.py`);
  return value;
}

const url = new URL(env("VITALFLOW_FLIGHT_SQL_URL").replace(/^grpc(\+tcp)?:/, "http:"));
const host = url.hostname;
const port = Number(url.port);
const user = process.env.VITALFLOW_USER;
const password = process.env.VITALFLOW_PASSWORD;
const authOn = Boolean(user);
const expectedRows = Number(env("VITALFLOW_EXPECTED_ROWS"));

// gRPC status codes the refusals carry.
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;

// What both clients must read alike: the row counts, each patient's latest reading (patient_latest
// against vitals_clean) and timestamps as instants (compared with the server's own epoch arithmetic).
const COUNT_CLEAN = "SELECT count(*) AS n FROM vitals_clean";
const LATEST = "SELECT patient_id, event_time, risk FROM patient_latest ORDER BY patient_id";
const LATEST_FROM_CLEAN =
  "SELECT patient_id, max(event_time) AS event_time FROM vitals_clean GROUP BY patient_id ORDER BY patient_id";
const TIMES =
  "SELECT event_time, CAST(event_time AS BIGINT) AS ns FROM vitals_clean ORDER BY event_time DESC LIMIT 5";
const EMPTY = "SELECT patient_id, event_time FROM vitals_clean WHERE heart_rate < 0";
const WRITE = "DELETE FROM vitals_raw";

// Arrow JS reads Timestamp(ns) as epoch milliseconds.
const millis = (value) => Number(value instanceof Date ? value.getTime() : value);

function checkAnswers({ count, latest, latestFromClean, times, empty }) {
  assert.equal(Number(count[0].n), expectedRows);
  assert.ok(latest.length > 0, "patient_latest is empty");
  assert.deepEqual(
    latest.map((r) => [r.patient_id, millis(r.event_time)]),
    latestFromClean.map((r) => [r.patient_id, millis(r.event_time)]),
    "patient_latest holds each patient's newest reading",
  );
  for (const r of latest) {
    assert.match(r.risk, /^(Low|Medium|High)$/);
    assert.ok(millis(r.event_time) > Date.UTC(2020, 0, 1), `event_time ${r.event_time} is not an instant`);
  }
  assert.equal(times.length, 5);
  for (const r of times) {
    // Whole milliseconds agree; the rest of the nanoseconds is below what a JS number holds.
    assert.equal(Math.floor(millis(r.event_time)), Number(BigInt(r.ns) / 1_000_000n));
  }
  assert.equal(empty.length, 0);
}

function grpcCode(err) {
  return err.code ?? Number(/status: (\w+)/.exec(err.message)?.[1]);
}

describe("@lancedb/arrow-flight-sql-client", () => {
  // The library always signs in with a Basic handshake; a server with auth off accepts any name.
  const connect = (pw = password) => Client.connect({ host: `${host}:${port}`, username: user ?? "", password: pw ?? "", insecure: true });
  const rows = async (client, sql) => (await (await client.query(sql)).collectToObjects()).map((r) => r.toJSON());

  test("queries vitals_clean and patient_latest and reads timestamps", async () => {
    const client = await connect();
    checkAnswers({
      count: await rows(client, COUNT_CLEAN),
      latest: await rows(client, LATEST),
      latestFromClean: await rows(client, LATEST_FROM_CLEAN),
      times: await rows(client, TIMES),
      empty: await rows(client, EMPTY),
    });
    const [batch] = await (await client.query(TIMES)).collectToArrow();
    const field = batch.schema.fields.find((f) => f.name === "event_time");
    assert.equal(String(field.type), "Timestamp<NANOSECOND, UTC>");
  });

  test("a write is refused as read-only", async () => {
    const client = await connect();
    await assert.rejects(rows(client, WRITE), (err) => grpcCode(err) === PERMISSION_DENIED && /read-only/.test(err.message));
  });

  test("a wrong password is refused", { skip: !authOn && "auth is off" }, async () => {
    await assert.rejects(connect("not-the-password"), (err) => grpcCode(err) === UNAUTHENTICATED);
  });
});

describe("@lakehouse-rs/flight-sql-client", () => {
  const connect = (pw = password) =>
    createFlightSqlClient({ host, port, tls: false, headers: [], ...(authOn ? { username: user, password: pw } : {}) });
  const table = async (promise) => tableFromIPC(await promise);
  const rows = async (client, sql) => (await table(client.query(sql))).toArray().map((r) => r.toJSON());

  test("lists catalogs, schemas and tables", async () => {
    const client = await connect();
    const catalogs = (await table(client.getCatalogs())).getChild("catalog_name").toArray();
    assert.ok(catalogs.length >= 1, "no catalog");
    const schemas = (await table(client.getDbSchemas({}))).getChild("db_schema_name").toArray();
    assert.ok(schemas.includes("public"), `schemas ${schemas}`);
    const tables = (await table(client.getTables({ includeSchema: true }))).toArray().map((r) => r.toJSON());
    const byName = Object.fromEntries(tables.map((t) => [t.table_name, t]));
    for (const name of ["vitals_clean", "vitals_raw", "patient_latest", "dead_letters"]) {
      assert.ok(byName[name], `${name} is not listed: ${Object.keys(byName)}`);
      assert.ok(byName[name].table_schema.length > 0, `${name} comes without its schema`);
    }
    const filtered = (await table(client.getTables({ tableNameFilterPattern: "patient%" }))).getChild("table_name").toArray();
    assert.ok(filtered.includes("patient_latest") && !filtered.includes("vitals_clean"), `filtered ${filtered}`);
  });

  test("queries vitals_clean and patient_latest and reads timestamps", async () => {
    const client = await connect();
    checkAnswers({
      count: await rows(client, COUNT_CLEAN),
      latest: await rows(client, LATEST),
      latestFromClean: await rows(client, LATEST_FROM_CLEAN),
      times: await rows(client, TIMES),
      empty: await rows(client, EMPTY),
    });
    const field = (await table(client.query(TIMES))).schema.fields.find((f) => f.name === "event_time");
    assert.equal(String(field.type), "Timestamp<NANOSECOND, UTC>");
  });

  // The library runs every query as a prepared statement and replaces the server's reason with its own
  // words. (A wrong password is not tested: 0.0.10 panics in its handshake and the promise never settles.)
  test("a write is refused", async () => {
    const client = await connect();
    await assert.rejects(client.query(WRITE), /failed to prepare statement/);
    assert.equal((await rows(client, COUNT_CLEAN))[0].n, BigInt(expectedRows), "the server still answers");
  });
});
