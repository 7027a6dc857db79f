// The rest of the Flight SQL calls arrow-go's client makes (DBeaver-like metadata walks, schemas
// without running a query, cancellation, the documented refusals), against a running vitalflow,
// with the connection and helpers of grafana_test.go.
package grafana_test

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wantStatus fails unless err is a gRPC status with code and a message containing needle.
func wantStatus(t *testing.T, what string, err error, code codes.Code, needle string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), needle) {
		t.Fatalf("%s gave %v, want %v mentioning %q", what, err, code, needle)
	}
}

func stringColumn(t *testing.T, batches []arrow.RecordBatch, name string) []string {
	t.Helper()
	var out []string
	for _, b := range batches {
		col := b.Column(b.Schema().FieldIndices(name)[0]).(*array.String)
		for i := 0; i < col.Len(); i++ {
			out = append(out, col.Value(i))
		}
	}
	return out
}

func TestPrimaryKeysAreTheDocumentedOnes(t *testing.T) {
	client, ctx := connect(t)
	for table, want := range map[string]string{
		"vitals_clean":   "source_topic,source_partition,source_offset",
		"patient_latest": "patient_id",
		"dead_letters":   "stage,source_topic,source_partition,source_offset",
	} {
		info, err := client.GetPrimaryKeys(ctx, flightsql.TableRef{Table: table})
		if err != nil {
			t.Fatalf("GetPrimaryKeys(%s): %v", table, err)
		}
		_, batches := fetch(t, ctx, client, info)
		if got := strings.Join(stringColumn(t, batches, "column_name"), ","); got != want {
			t.Errorf("primary key of %s is %q, want %q", table, got, want)
		}
	}
}

// DBeaver asks for foreign keys whenever a table is opened: empty answers, the spec's columns.
func TestForeignKeyListingsAreEmptyWithTheSpecsSchema(t *testing.T) {
	client, ctx := connect(t)
	clean := flightsql.TableRef{Table: "vitals_clean"}
	calls := map[string]func() (*flight.FlightInfo, error){
		"GetImportedKeys":   func() (*flight.FlightInfo, error) { return client.GetImportedKeys(ctx, clean) },
		"GetExportedKeys":   func() (*flight.FlightInfo, error) { return client.GetExportedKeys(ctx, clean) },
		"GetCrossReference": func() (*flight.FlightInfo, error) { return client.GetCrossReference(ctx, clean, clean) },
	}
	for name, call := range calls {
		info, err := call()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		schema, batches := fetch(t, ctx, client, info)
		if schema.NumFields() != 13 || schema.Field(0).Name != "pk_catalog_name" || schema.Field(12).Name != "delete_rule" {
			t.Errorf("%s schema %v, want the 13 columns of the spec", name, schema)
		}
		for _, b := range batches {
			if b.NumRows() != 0 {
				t.Errorf("%s returned %d rows, vitalflow has no foreign keys", name, b.NumRows())
			}
		}
	}
}

// A query without rows still sends one (empty) batch, not the schema alone.
func TestEmptyResultCarriesOneEmptyBatch(t *testing.T) {
	client, ctx := connect(t)
	schema, batches := query(t, ctx, client, "SELECT patient_id, event_time FROM vitals_clean WHERE heart_rate < 0")
	if len(batches) != 1 || batches[0].NumRows() != 0 || !batches[0].Schema().Equal(schema) {
		t.Fatalf("empty result gave %d batches (%v), want one empty batch", len(batches), batches)
	}
}

// Node's getQuerySchema and pyarrow's get_schema: the schema without running the query.
func TestSchemasOfStatementsAndPreparedStatements(t *testing.T) {
	client, ctx := connect(t)
	result, err := client.GetExecuteSchema(ctx, "SELECT patient_id, news2_score FROM vitals_clean")
	if err != nil {
		t.Fatalf("GetExecuteSchema: %v", err)
	}
	schema, err := flight.DeserializeSchema(result.GetSchema(), memory.DefaultAllocator)
	if err != nil || schema.NumFields() != 2 || schema.Field(1).Name != "news2_score" {
		t.Fatalf("statement schema %v (%v)", schema, err)
	}
	stmt, err := client.Prepare(ctx, "SELECT count(*) AS n FROM vitals_clean WHERE news2_score >= $1")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(ctx)
	prepared, err := stmt.GetSchema(ctx)
	if err != nil {
		t.Fatalf("prepared GetSchema without parameters bound: %v", err)
	}
	if schema, err := flight.DeserializeSchema(prepared.GetSchema(), memory.DefaultAllocator); err != nil || schema.Field(0).Name != "n" {
		t.Fatalf("prepared schema %v (%v)", schema, err)
	}
}

// A client that executes without binding (or ignores the handle DoPut returns) is told which
// parameter has no value, not handed a failed cluster job.
func TestExecutingWithoutBindingNamesTheParameter(t *testing.T) {
	client, ctx := connect(t)
	stmt, err := client.Prepare(ctx, "SELECT count(*) FROM vitals_clean WHERE news2_score >= $1")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(ctx)
	_, err = stmt.Execute(ctx)
	wantStatus(t, "executing without parameters", err, codes.InvalidArgument, "$1")
}

func TestGarbageTicketIsRefusedInWords(t *testing.T) {
	client, ctx := connect(t)
	reader, err := client.DoGet(ctx, &flight.Ticket{Ticket: []byte("\xff\xfenot a ticket")})
	if err == nil {
		for reader.Next() {
		}
		err = reader.Err()
		reader.Release()
	}
	wantStatus(t, "a garbage ticket", err, codes.InvalidArgument, "not a Flight SQL command")
}

func TestCancelAndRefusals(t *testing.T) {
	client, ctx := connect(t)
	info, err := client.Execute(ctx, "SELECT count(*) FROM vitals_clean")
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	cancelled, err := client.CancelFlightInfo(ctx, &flight.CancelFlightInfoRequest{Info: info})
	if err != nil || cancelled.GetStatus() != flight.CancelStatusCancelled {
		t.Fatalf("CancelFlightInfo gave %v (%v), want CANCELLED", cancelled, err)
	}
	_, err = client.BeginTransaction(ctx)
	wantStatus(t, "BeginTransaction", err, codes.Unimplemented, "transactions")
	_, err = client.ExecuteUpdate(ctx, "DELETE FROM vitals_raw")
	wantStatus(t, "ExecuteUpdate", err, codes.PermissionDenied, "read-only")
	_, err = client.ExecuteSubstrait(ctx, flightsql.SubstraitPlan{Plan: []byte{1}, Version: "0.1"})
	wantStatus(t, "ExecuteSubstrait", err, codes.Unimplemented, "Substrait")
}
