// Replays the calls Grafana's FlightSQL datasource makes, with the library it is built on
// (arrow-go's flightsql client), against a running vitalflow Flight SQL endpoint.
//
// clients/tests/test_flight_sql_clients.py starts vitalflow with data and runs `go test ./...` with:
//
//	VITALFLOW_FLIGHT_SQL_URL  grpc://host:port of the endpoint
//	VITALFLOW_USER            a user of flight_sql.auth.users (unset: auth is off, no credentials sent)
//	VITALFLOW_PASSWORD        its password
//	VITALFLOW_EXPECTED_ROWS   rows in vitals_clean
//
// The older VITALFLOW_FLIGHT_SQL_ADDR (host:port), VITALFLOW_FLIGHT_SQL_USER and VITALFLOW_FLIGHT_SQL_PASSWORD
// are still read, with a deprecation line in the log, when the current names are unset.
package grafana_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// deprecatedEnv: the older name still read for each current one.
var deprecatedEnv = map[string]string{
	"VITALFLOW_FLIGHT_SQL_URL": "VITALFLOW_FLIGHT_SQL_ADDR",
	"VITALFLOW_USER":           "VITALFLOW_FLIGHT_SQL_USER",
	"VITALFLOW_PASSWORD":       "VITALFLOW_FLIGHT_SQL_PASSWORD",
}

// optionalEnv is $name (or its deprecated older name), "" when neither is set.
func optionalEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if old, ok := deprecatedEnv[name]; ok && v == "" {
		if v = os.Getenv(old); v != "" {
			t.Logf("%s is deprecated: set %s instead", old, name)
		}
	}
	return v
}

func env(t *testing.T, name string) string {
	t.Helper()
	v := optionalEnv(t, name)
	if v == "" {
		t.Fatalf("%s is not set: run this through clients/tests/test_flight_sql_clients.py (deploy/test.sh)", name)
	}
	return v
}

// address is host:port of $VITALFLOW_FLIGHT_SQL_URL (grpc://host:port; a bare host:port, as the
// deprecated VITALFLOW_FLIGHT_SQL_ADDR held, is taken as it is).
func address(t *testing.T) string {
	t.Helper()
	url := env(t, "VITALFLOW_FLIGHT_SQL_URL")
	for _, scheme := range []string{"grpc://", "grpc+tcp://"} {
		if strings.HasPrefix(url, scheme) {
			return strings.TrimPrefix(url, scheme)
		}
	}
	if strings.Contains(url, "://") {
		t.Fatalf("VITALFLOW_FLIGHT_SQL_URL=%s: these tests speak plain grpc:// only", url)
	}
	return url
}

// authOff: no VITALFLOW_USER, as against `vitalflow up` (flight_sql.auth.required = false).
func authOff(t *testing.T) bool {
	t.Helper()
	return optionalEnv(t, "VITALFLOW_USER") == ""
}

// connect signs in as Grafana does: one Basic handshake (arrow-go encodes it without '=' padding),
// then the returned bearer token on every call; with auth off it sends no credentials, as Grafana's
// datasource does with an empty user.
func connect(t *testing.T) (*flightsql.Client, context.Context) {
	t.Helper()
	client, err := flightsql.NewClient(address(t), nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if authOff(t) {
		return client, ctx
	}
	ctx, err = client.Client.AuthenticateBasicToken(ctx, env(t, "VITALFLOW_USER"), env(t, "VITALFLOW_PASSWORD"))
	if err != nil {
		t.Fatalf("basic handshake: %v", err)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || len(got[0]) < 8 || got[0][:7] != "Bearer " {
		t.Fatalf("handshake gave authorization %q, want one Bearer token", got)
	}
	return client, ctx
}

// fetch reads a FlightInfo the way the datasource does: exactly one endpoint, its ticket on this
// connection, and the streamed schema identical to the announced one.
func fetch(t *testing.T, ctx context.Context, client *flightsql.Client, info *flight.FlightInfo) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	if len(info.Endpoint) != 1 {
		t.Fatalf("%d endpoints, Grafana accepts exactly one", len(info.Endpoint))
	}
	announced, err := flight.DeserializeSchema(info.Schema, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("announced schema: %v", err)
	}
	reader, err := client.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatalf("DoGet: %v", err)
	}
	defer reader.Release()
	if !reader.Schema().Equal(announced) {
		t.Fatalf("streamed schema %v differs from announced %v", reader.Schema(), announced)
	}
	var batches []arrow.RecordBatch
	for reader.Next() {
		rec := reader.RecordBatch()
		rec.Retain()
		batches = append(batches, rec)
	}
	if err := reader.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading: %v", err)
	}
	return reader.Schema(), batches
}

func query(t *testing.T, ctx context.Context, client *flightsql.Client, sql string) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	info, err := client.Execute(ctx, sql)
	if err != nil {
		t.Fatalf("Execute(%q): %v", sql, err)
	}
	return fetch(t, ctx, client, info)
}

func TestSelectOne(t *testing.T) {
	client, ctx := connect(t)
	_, batches := query(t, ctx, client, "select 1")
	if len(batches) != 1 || batches[0].NumRows() != 1 || batches[0].Column(0).(*array.Int64).Value(0) != 1 {
		t.Fatalf("select 1 returned %v", batches)
	}
}

// The query a time-series panel sends after Grafana expands $__dateBin, $__timeFilter and
// $__timeGroup over the dashboard's range.
func TestMacroExpandedTimeSeries(t *testing.T) {
	client, ctx := connect(t)
	expected, err := strconv.ParseInt(env(t, "VITALFLOW_EXPECTED_ROWS"), 10, 64)
	if err != nil {
		t.Fatalf("VITALFLOW_EXPECTED_ROWS: %v", err)
	}
	_, bounds := query(t, ctx, client, "SELECT min(event_time), max(event_time) FROM vitals_clean")
	lo := time.Unix(0, bounds[0].Column(0).(*array.Timestamp).Value(0).ToTime(arrow.Nanosecond).UnixNano()).UTC()
	hi := time.Unix(0, bounds[0].Column(1).(*array.Timestamp).Value(0).ToTime(arrow.Nanosecond).UnixNano()).UTC()
	// Grafana formats the range in whole seconds (RFC 3339).
	from, to := lo.Truncate(time.Second).Format(time.RFC3339), hi.Add(time.Second).Format(time.RFC3339)
	sql := fmt.Sprintf(`SELECT date_bin(interval '30 second', event_time, timestamp '1970-01-01T00:00:00Z') AS time,
  count(*) AS readings, avg(heart_rate) AS heart_rate, max(news2_score) AS news2,
  max(datepart('minute', event_time)) AS minute, max(date_part('hour', event_time)) AS hour
FROM vitals_clean
WHERE event_time >= '%s' AND event_time <= '%s'
  AND event_time >= cast('%s' as timestamp) AND event_time <= cast('%s' as timestamp) + interval '1 second'
GROUP BY 1
ORDER BY 1`, from, to, from, to)
	schema, batches := query(t, ctx, client, sql)
	timeField := schema.Field(0)
	ts, ok := timeField.Type.(*arrow.TimestampType)
	if timeField.Name != "time" || !ok || ts.Unit != arrow.Nanosecond {
		t.Fatalf("time column is %v, want a nanosecond timestamp named time", timeField)
	}
	var total int64
	for _, b := range batches {
		counts := b.Column(1).(*array.Int64)
		for i := 0; i < counts.Len(); i++ {
			total += counts.Value(i)
		}
	}
	if total != expected {
		t.Fatalf("time series counted %d readings, vitals_clean holds %d", total, expected)
	}
}

func tableNames(t *testing.T, batches []arrow.RecordBatch) map[string]string {
	names := map[string]string{}
	for _, b := range batches {
		idx := b.Schema().FieldIndices("table_name")[0]
		typ := b.Schema().FieldIndices("table_type")[0]
		for i := 0; i < int(b.NumRows()); i++ {
			names[b.Column(idx).(*array.String).Value(i)] = b.Column(typ).(*array.String).Value(i)
		}
	}
	return names
}

func TestGetTablesWithTableTypes(t *testing.T) {
	client, ctx := connect(t)
	info, err := client.GetTables(ctx, &flightsql.GetTablesOpts{TableTypes: []string{"BASE TABLE", "table"}})
	if err != nil {
		t.Fatalf("GetTables: %v", err)
	}
	_, batches := fetch(t, ctx, client, info)
	names := tableNames(t, batches)
	for _, want := range []string{"vitals_raw", "vitals_clean", "dead_letters"} {
		if names[want] != "BASE TABLE" {
			t.Errorf("GetTables lacks %s as a BASE TABLE: %v", want, names)
		}
	}
	for name, typ := range names {
		if typ != "BASE TABLE" {
			t.Errorf("table_types filter let %s (%s) through", name, typ)
		}
	}
}

// As the datasource's column picker: GetTables for one table with include_schema, the schema read
// back from the table_schema column.
func TestGetTablesIncludeSchemaForOneTable(t *testing.T) {
	client, ctx := connect(t)
	table := "vitals_clean"
	info, err := client.GetTables(ctx, &flightsql.GetTablesOpts{TableNameFilterPattern: &table, IncludeSchema: true})
	if err != nil {
		t.Fatalf("GetTables: %v", err)
	}
	_, batches := fetch(t, ctx, client, info)
	if len(batches) != 1 || batches[0].NumRows() != 1 {
		t.Fatalf("GetTables for %s returned %v", table, batches)
	}
	rec := batches[0]
	col := rec.Column(rec.Schema().FieldIndices("table_schema")[0])
	serialized := array.NewStringData(col.Data()).Value(0)
	schema, err := flight.DeserializeSchema([]byte(serialized), memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("table_schema: %v", err)
	}
	fields := map[string]arrow.DataType{}
	for _, f := range schema.Fields() {
		fields[f.Name] = f.Type
	}
	if ts, ok := fields["event_time"].(*arrow.TimestampType); !ok || ts.Unit != arrow.Nanosecond {
		t.Errorf("event_time is %v, want a nanosecond timestamp", fields["event_time"])
	}
	if fields["risk"] != arrow.BinaryTypes.String || fields["patient_id"] != arrow.BinaryTypes.String {
		t.Errorf("risk %v, patient_id %v: want Utf8", fields["risk"], fields["patient_id"])
	}
}

func TestGetSqlInfoEmptyListReturnsEverything(t *testing.T) {
	client, ctx := connect(t)
	info, err := client.GetSqlInfo(ctx, []flightsql.SqlInfo{})
	if err != nil {
		t.Fatalf("GetSqlInfo: %v", err)
	}
	_, batches := fetch(t, ctx, client, info)
	seen := map[uint32]bool{}
	for _, b := range batches {
		names := b.Column(0).(*array.Uint32)
		for i := 0; i < names.Len(); i++ {
			seen[names.Value(i)] = true
		}
	}
	for _, want := range []flightsql.SqlInfo{flightsql.SqlInfoFlightSqlServerName, flightsql.SqlInfoFlightSqlServerReadOnly, flightsql.SqlInfoKeywords, flightsql.SqlInfoNumericFunctions} {
		if !seen[uint32(want)] {
			t.Errorf("GetSqlInfo([]) lacks %v (got %d infos)", want, len(seen))
		}
	}
}

func TestPreparedStatementWithParameter(t *testing.T) {
	client, ctx := connect(t)
	stmt, err := client.Prepare(ctx, "SELECT count(*) AS n FROM vitals_clean WHERE news2_score >= $1")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(ctx)
	if stmt.DatasetSchema() == nil || stmt.DatasetSchema().NumFields() != 1 {
		t.Fatalf("dataset schema %v", stmt.DatasetSchema())
	}
	_, all := query(t, ctx, client, "SELECT count(*) FROM vitals_clean WHERE news2_score >= 0")
	builder := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema([]arrow.Field{{Name: "$1", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil))
	builder.Field(0).(*array.Int64Builder).Append(0)
	params := builder.NewRecordBatch()
	stmt.SetParameters(params)
	info, err := stmt.Execute(ctx)
	if err != nil {
		t.Fatalf("Execute prepared: %v", err)
	}
	_, got := fetch(t, ctx, client, info)
	if got[0].Column(0).(*array.Int64).Value(0) != all[0].Column(0).(*array.Int64).Value(0) {
		t.Fatalf("bound query counted %v, inline %v", got[0].Column(0), all[0].Column(0))
	}
}

func TestWrongTokenIsRefused(t *testing.T) {
	if authOff(t) {
		t.Skip("auth is off: there is no credential to refuse")
	}
	client, err := flightsql.NewClient(address(t), nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer not-a-token")
	_, err = client.Execute(ctx, "select 1")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong token gave %v, want Unauthenticated", err)
	}
	if _, err := client.Client.AuthenticateBasicToken(context.Background(), env(t, "VITALFLOW_USER"), "wrong"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong password gave %v, want Unauthenticated", err)
	}
}
