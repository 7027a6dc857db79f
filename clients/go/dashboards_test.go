// Runs every panel of the provisioned Grafana dashboards (clients/grafana/dashboards/*.json) against the
// live server, with the panel's SQL expanded as Grafana and the FlightSQL datasource expand it: template
// variables first (Grafana's frontend, with the datasource's quoting), then the datasource's macros
// (pkg/flightsql/macro.go of influxdata/grafana-flightsql-datasource over grafana-plugin-sdk-go's
// sqlutil.DefaultMacros). Each result must have the columns the panel expects.
package grafana_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

const grafanaDir = "../grafana"

// --- The dashboard files --------------------------------------------------------------------------

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string         `json:"refId"`
	Datasource *datasourceRef `json:"datasource"`
	QueryText  string         `json:"queryText"`
	Format     string         `json:"format"`
}

type transformation struct {
	ID      string `json:"id"`
	Options struct {
		IndexByName map[string]int `json:"indexByName"`
	} `json:"options"`
}

type panel struct {
	ID              int              `json:"id"`
	Type            string           `json:"type"`
	Title           string           `json:"title"`
	Interval        string           `json:"interval"`
	MaxDataPoints   int64            `json:"maxDataPoints"`
	Datasource      *datasourceRef   `json:"datasource"`
	Targets         []target         `json:"targets"`
	Transformations []transformation `json:"transformations"`
}

type variable struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Datasource *datasourceRef `json:"datasource"`
	Query      string         `json:"query"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(grafanaDir, "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s/dashboards (%v)", grafanaDir, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// provisionedDatasourceUID reads the uid the datasource provisioning file gives vitalflow's datasource.
func provisionedDatasourceUID(t *testing.T) (string, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning", "datasources", "vitalflow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	uid := regexp.MustCompile(`(?m)^\s+uid:\s*(\S+)`).FindSubmatch(raw)
	typ := regexp.MustCompile(`(?m)^\s+type:\s*(\S+)`).FindSubmatch(raw)
	if uid == nil || typ == nil {
		t.Fatalf("the datasource provisioning file has no uid or type:\n%s", raw)
	}
	return string(uid[1]), string(typ[1])
}

// --- Expansion, as Grafana and the datasource do it -----------------------------------------------

// query is what the datasource's macros see (sqlutil.Query: the time range and the interval).
type macroQuery struct {
	from, to time.Time
	interval time.Duration
}

type macroFunc func(q macroQuery, args []string) (string, error)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func oneArg(name string, f func(q macroQuery, column string) string) macroFunc {
	return func(q macroQuery, args []string) (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("$__%s: expected 1 argument, received %d", name, len(args))
		}
		return f(q, args[0]), nil
	}
}

func timeGroup(alias bool) macroFunc {
	return func(q macroQuery, args []string) (string, error) {
		if len(args) != 2 {
			return "", fmt.Errorf("$__timeGroup: expected 2 arguments, received %d", len(args))
		}
		parts := []string{"minute", "hour", "day", "month", "year"}
		start := -1
		for i, p := range parts {
			if p == args[1] {
				start = i
			}
		}
		if start < 0 {
			return "", nil
		}
		var out []string
		for _, p := range parts[start:] {
			s := fmt.Sprintf("datepart('%s', %s)", p, args[0])
			if alias {
				s += fmt.Sprintf(" as %s_%s", args[0], p)
			}
			out = append(out, s)
		}
		return strings.Join(out, ","), nil
	}
}

func dateBin(suffix string) macroFunc {
	return oneArg("dateBin", func(q macroQuery, column string) string {
		s := fmt.Sprintf("date_bin(interval '%d second', %s, timestamp '1970-01-01T00:00:00Z')", int64(q.interval.Seconds()), column)
		if suffix != "" {
			s += fmt.Sprintf(" as %s%s", column, suffix)
		}
		return s
	})
}

// The datasource's macros over the SDK's defaults (its own win on a name clash).
var macros = map[string]macroFunc{
	// sqlutil.DefaultMacros
	"interval_ms": func(q macroQuery, _ []string) (string, error) { return fmt.Sprint(q.interval.Milliseconds()), nil },
	"timeFilter": oneArg("timeFilter", func(q macroQuery, c string) string {
		return fmt.Sprintf("%s >= '%s' AND %s <= '%s'", c, rfc3339(q.from), c, rfc3339(q.to))
	}),
	"table":  func(macroQuery, []string) (string, error) { return "", nil },
	"column": func(macroQuery, []string) (string, error) { return "", nil },
	// pkg/flightsql/macro.go
	"dateBin":      dateBin(""),
	"dateBinAlias": dateBin("_binned"),
	"interval": func(q macroQuery, _ []string) (string, error) {
		return fmt.Sprintf("interval '%d second'", int64(q.interval.Seconds())), nil
	},
	"timeGroup":      timeGroup(false),
	"timeGroupAlias": timeGroup(true),
	"timeRangeFrom":  oneArg("timeRangeFrom", func(q macroQuery, c string) string { return fmt.Sprintf("%s >= '%s'", c, rfc3339(q.from)) }),
	"timeRangeTo":    oneArg("timeRangeTo", func(q macroQuery, c string) string { return fmt.Sprintf("%s <= '%s'", c, rfc3339(q.to)) }),
	"timeRange": oneArg("timeRange", func(q macroQuery, c string) string {
		return fmt.Sprintf("%s >= '%s' AND %s <= '%s'", c, rfc3339(q.from), c, rfc3339(q.to))
	}),
	"timeFrom": func(q macroQuery, _ []string) (string, error) {
		return fmt.Sprintf("cast('%s' as timestamp)", rfc3339(q.from)), nil
	},
	"timeTo": func(q macroQuery, _ []string) (string, error) {
		return fmt.Sprintf("cast('%s' as timestamp)", rfc3339(q.to)), nil
	},
}

// macroArgs reads a bracketed, comma-separated argument list at the start of s (nested brackets kept),
// as sqlutil does; length 0 when there is none, -1 when the bracket is not closed.
func macroArgs(s string) ([]string, int) {
	if !strings.HasPrefix(s, "(") {
		return nil, 0
	}
	var args []string
	depth, arg := 0, []rune{}
	for i, r := range s {
		switch r {
		case '(':
			depth++
			if depth == 1 {
				continue
			}
		case ')':
			depth--
			if depth == 0 {
				return append(args, strings.TrimSpace(string(arg))), i + 1
			}
		case ',':
			if depth == 1 {
				args = append(args, strings.TrimSpace(string(arg)))
				arg = arg[:0]
				continue
			}
		}
		arg = append(arg, r)
	}
	return nil, -1
}

// expandMacros is sqlutil.Interpolate: longer names first, so $__timeRangeFrom is not taken for $__timeRange.
func expandMacros(sql string, q macroQuery) (string, error) {
	names := make([]string, 0, len(macros))
	for name := range macros {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, name := range names {
		re := regexp.MustCompile(`\$__` + name + `\b`)
		for _, loc := range re.FindAllStringIndex(sql, -1) {
			args, n := macroArgs(sql[loc[1]:])
			if n < 0 {
				return "", fmt.Errorf("$__%s: missing close bracket", name)
			}
			full := sql[loc[0] : loc[1]+n]
			out, err := macros[name](q, args)
			if err != nil {
				return "", err
			}
			sql = strings.ReplaceAll(sql, full, out)
		}
	}
	return sql, nil
}

// expandVariables is Grafana's template replacement with the datasource's interpolateVariable: a
// single-valued text variable goes in with its quotes doubled (the panel's SQL supplies the quotes).
func expandVariables(sql string, values map[string]string) string {
	for name, value := range values {
		v := strings.ReplaceAll(value, "'", "''")
		sql = strings.ReplaceAll(sql, "${"+name+"}", v)
		sql = regexp.MustCompile(`\$`+regexp.QuoteMeta(name)+`\b`).ReplaceAllLiteralString(sql, v)
	}
	return sql
}

// The datasource's own test cases (pkg/flightsql/macro_test.go), for this replay of its macros.
func TestMacroExpansionMatchesTheDatasource(t *testing.T) {
	from, _ := time.Parse(time.RFC3339, "2023-01-01T00:00:00Z")
	q := macroQuery{from: from, to: from.Add(10 * time.Minute), interval: 10 * time.Second}
	cases := [][2]string{
		{`select * from x`, `select * from x`},
		{`select date_bin($__interval, time, timestamp '1970-01-01T00:00:00Z')`, `select date_bin(interval '10 second', time, timestamp '1970-01-01T00:00:00Z')`},
		{`select $__dateBin(time)`, `select date_bin(interval '10 second', time, timestamp '1970-01-01T00:00:00Z')`},
		{`select $__dateBinAlias(time)`, `select date_bin(interval '10 second', time, timestamp '1970-01-01T00:00:00Z') as time_binned`},
		{`select * from x where $__timeFilter(time)`, `select * from x where time >= '2023-01-01T00:00:00Z' AND time <= '2023-01-01T00:10:00Z'`},
		{`select * from x where $__timeRangeFrom(time)`, `select * from x where time >= '2023-01-01T00:00:00Z'`},
		{`select * from x where $__timeRangeTo(time)`, `select * from x where time <= '2023-01-01T00:10:00Z'`},
		{`select * from x where $__timeRange(time)`, `select * from x where time >= '2023-01-01T00:00:00Z' AND time <= '2023-01-01T00:10:00Z'`},
		{`select * from x where time >= $__timeFrom`, `select * from x where time >= cast('2023-01-01T00:00:00Z' as timestamp)`},
		{`select * from x where time < $__timeTo`, `select * from x where time < cast('2023-01-01T00:10:00Z' as timestamp)`},
		{`select $__timeGroup(t, hour)`, `select datepart('hour', t),datepart('day', t),datepart('month', t),datepart('year', t)`},
	}
	for _, c := range cases {
		got, err := expandMacros(c[0], q)
		if err != nil || got != c[1] {
			t.Errorf("%s\n expanded to %q (%v)\n want       %q", c[0], got, err, c[1])
		}
	}
	if got := expandVariables("WHERE patient_id = '$patient' OR p = '${patient}' OR x = $patients", map[string]string{"patient": "O'Brien"}); got != "WHERE patient_id = 'O''Brien' OR p = 'O''Brien' OR x = $patients" {
		t.Errorf("variables expanded to %q", got)
	}
}

// The datasource (v1.1.1) drops the SQL after a macro written without brackets in most calls (the
// upper bound of a range vanished 19 times in 20): every dashboard writes $__timeFrom() and $__timeTo().
func TestDashboardMacrosWithoutArgumentsHaveBrackets(t *testing.T) {
	bare := regexp.MustCompile(`\$__(timeFrom|timeTo)\b`)
	for name, d := range loadDashboards(t) {
		var sqls []string
		for _, v := range d.Templating.List {
			sqls = append(sqls, v.Query)
		}
		for _, p := range d.Panels {
			for _, target := range p.Targets {
				sqls = append(sqls, target.QueryText)
			}
		}
		for _, sql := range sqls {
			for _, loc := range bare.FindAllStringIndex(sql, -1) {
				if !strings.HasPrefix(sql[loc[1]:], "()") {
					t.Errorf("%s: %s without () in %q", name, sql[loc[0]:loc[1]], sql)
				}
			}
		}
	}
}

// --- Checks against the live server ---------------------------------------------------------------

func isNumeric(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64, arrow.DECIMAL128, arrow.DECIMAL256:
		return true
	}
	return false
}

func isNanosecondTimestamp(dt arrow.DataType) bool {
	ts, ok := dt.(*arrow.TimestampType)
	return ok && ts.Unit == arrow.Nanosecond
}

func rows(batches []arrow.RecordBatch) int64 {
	var n int64
	for _, b := range batches {
		n += b.NumRows()
	}
	return n
}

// panelInterval is Grafana's $__interval for a panel: the range over its data points (Grafana's default
// of about 1000 for a full-width panel), never below the panel's minimum interval.
func panelInterval(t *testing.T, p panel, from, to time.Time) time.Duration {
	points := p.MaxDataPoints
	if points == 0 {
		points = 1000
	}
	interval := to.Sub(from) / time.Duration(points)
	if p.Interval != "" {
		min, err := time.ParseDuration(p.Interval)
		if err != nil {
			t.Fatalf("panel %q: interval %q: %v", p.Title, p.Interval, err)
		}
		if interval < min {
			interval = min
		}
	}
	return interval.Round(time.Second)
}

func TestDashboardPanelsRunWithTheColumnsTheyExpect(t *testing.T) {
	client, ctx := connect(t)
	uid, dsType := provisionedDatasourceUID(t)
	_, bounds := query(t, ctx, client, "SELECT min(event_time), max(event_time) FROM vitals_clean")
	lo := bounds[0].Column(0).(*array.Timestamp).Value(0).ToTime(arrow.Nanosecond).UTC()
	hi := bounds[0].Column(1).(*array.Timestamp).Value(0).ToTime(arrow.Nanosecond).UTC()
	// A dashboard range around all the data, in whole seconds as Grafana sends it.
	from, to := lo.Truncate(time.Second), hi.Truncate(time.Second).Add(time.Second)

	dashboards := loadDashboards(t)
	want := []string{"ward.json", "patient.json"}
	for _, name := range want {
		if _, ok := dashboards[name]; !ok {
			t.Fatalf("dashboard %s is missing (have %v)", name, dashboards)
		}
	}
	checkDatasource := func(where string, ref *datasourceRef) {
		if ref == nil || ref.UID != uid || ref.Type != dsType {
			t.Errorf("%s: datasource %+v, want the provisioned %s (%s)", where, ref, uid, dsType)
		}
	}
	for name, d := range dashboards {
		// Variables first: each query variable's SQL runs as the datasource's metricFindQuery (format
		// table, first column the values); the panels then run with its first value.
		values := map[string]string{}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			checkDatasource(fmt.Sprintf("%s: variable %s", name, v.Name), v.Datasource)
			sql, err := expandMacros(v.Query, macroQuery{from: from, to: to, interval: time.Minute})
			if err != nil {
				t.Fatalf("%s: variable %s: %v", name, v.Name, err)
			}
			schema, batches := query(t, ctx, client, sql)
			if schema.Field(0).Type != arrow.BinaryTypes.String || rows(batches) == 0 {
				t.Fatalf("%s: variable %s: %s gave %v with %d rows, want text values", name, v.Name, sql, schema, rows(batches))
			}
			values[v.Name] = batches[0].Column(0).(*array.String).Value(0)
		}
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %q", name, p.Title)
			checkDatasource(where, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s has no query", where)
			}
			for _, tg := range p.Targets {
				checkDatasource(where, tg.Datasource)
				q := macroQuery{from: from, to: to, interval: panelInterval(t, p, from, to)}
				sql, err := expandMacros(expandVariables(tg.QueryText, values), q)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if strings.Contains(sql, "$") {
					t.Errorf("%s: something is left unexpanded in\n%s", where, sql)
					continue
				}
				t.Logf("%s:\n%s", where, sql)
				schema, batches := query(t, ctx, client, sql)
				if rows(batches) == 0 {
					t.Errorf("%s: no rows over all the data:\n%s", where, sql)
				}
				checkPanelColumns(t, where, p, tg, schema, batches, from.Add(-q.interval), to)
			}
		}
	}
}

func checkPanelColumns(t *testing.T, where string, p panel, tg target, schema *arrow.Schema, batches []arrow.RecordBatch, from, to time.Time) {
	t.Helper()
	for _, f := range schema.Fields() {
		if _, ok := f.Type.(*arrow.TimestampType); ok && !isNanosecondTimestamp(f.Type) {
			t.Errorf("%s: column %s is %v, want nanosecond timestamps", where, f.Name, f.Type)
		}
	}
	switch {
	case tg.Format == "time_series":
		// A time series frame: `time` first, ascending within the range, then numbers only (a text column
		// would split the series by label).
		if f := schema.Field(0); f.Name != "time" || !isNanosecondTimestamp(f.Type) {
			t.Errorf("%s: first column %v, want a nanosecond timestamp named time", where, f)
			return
		}
		for _, f := range schema.Fields()[1:] {
			if !isNumeric(f.Type) {
				t.Errorf("%s: column %s is %v, want a number", where, f.Name, f.Type)
			}
		}
		var last time.Time
		for _, b := range batches {
			col := b.Column(0).(*array.Timestamp)
			for i := 0; i < col.Len(); i++ {
				ts := col.Value(i).ToTime(arrow.Nanosecond)
				if ts.Before(last) || ts.Before(from) || ts.After(to) {
					t.Errorf("%s: time %v out of order or outside %v..%v", where, ts, from, to)
					return
				}
				last = ts
			}
		}
	case p.Type == "stat":
		for _, f := range schema.Fields() {
			if !isNumeric(f.Type) {
				t.Errorf("%s: column %s is %v, a stat panel shows numbers", where, f.Name, f.Type)
			}
		}
	case p.Type == "table":
		// The organize transformation names every column in display order: the query must return exactly those.
		var order map[string]int
		for _, tr := range p.Transformations {
			if tr.ID == "organize" {
				order = tr.Options.IndexByName
			}
		}
		if order == nil {
			t.Errorf("%s: a table panel without an organize transformation", where)
			return
		}
		wantCols := make([]string, len(order))
		for col, i := range order {
			if i < 0 || i >= len(order) {
				t.Fatalf("%s: indexByName %v", where, order)
			}
			wantCols[i] = col
		}
		var got []string
		for _, f := range schema.Fields() {
			got = append(got, f.Name)
		}
		if strings.Join(got, ",") != strings.Join(wantCols, ",") {
			t.Errorf("%s: columns %v, the panel shows %v", where, got, wantCols)
		}
	default:
		t.Errorf("%s: panel type %s with format %q is not checked here", where, p.Type, tg.Format)
	}
}

// patientLatestTimeSeries is how docs/clients.md tells a Grafana user to chart patient_latest in the
// datasource's default time-series format: `SELECT *` gives the plugin many timestamps (event_time and
// each `<vital>_measured_at`) and text columns, and plugin v1.1.1 answers "no time column found";
// event_time named `time`, first, then numbers only, is a frame it plots.
const patientLatestTimeSeries = "SELECT event_time AS time, heart_rate, spo2, temperature, news2_score, probability_high " +
	"FROM patient_latest ORDER BY time"

func TestPatientLatestChartsAsATimeSeriesInTheDocumentedForm(t *testing.T) {
	client, ctx := connect(t)
	schema, batches := query(t, ctx, client, patientLatestTimeSeries)
	// Any range around the data: the query filters nothing.
	from, to := time.Unix(0, 0), time.Now().Add(time.Hour)
	p := panel{Type: "timeseries", Title: "patient_latest"}
	checkPanelColumns(t, "patient_latest as a time series", p, target{Format: "time_series"}, schema, batches, from, to)
	_, patients := query(t, ctx, client, "SELECT count(*) FROM patient_latest")
	if got, want := rows(batches), patients[0].Column(0).(*array.Int64).Value(0); got != want || got == 0 {
		t.Errorf("%d points, want one per patient (%d)", got, want)
	}
}

// The time series form docs/clients.md gives for each table: the plugin (pkg/flightsql/arrow.go of
// v1.1.1) needs a column named `time` and, with text columns among the others (a long frame it makes
// wide), the rows in ascending time. audit_log is read by admins only.
var tableTimeSeries = []struct{ table, sql string }{
	{"vitals_clean", "SELECT event_time AS time, * FROM vitals_clean ORDER BY time"},
	{"patient_latest", "SELECT event_time AS time, * FROM patient_latest ORDER BY time"},
	{"risk_alerts", "SELECT event_time AS time, * FROM risk_alerts ORDER BY time"},
	{"etl_progress", "SELECT checked_at AS time, * FROM etl_progress"},
}

func TestEveryTableChartsAsATimeSeriesInTheDocumentedForm(t *testing.T) {
	client, ctx := connect(t)
	expected, err := strconv.ParseInt(env(t, "VITALFLOW_EXPECTED_ROWS"), 10, 64)
	if err != nil {
		t.Fatalf("VITALFLOW_EXPECTED_ROWS: %v", err)
	}
	for _, tc := range tableTimeSeries {
		schema, batches := query(t, ctx, client, tc.sql)
		idx := schema.FieldIndices("time")
		if len(idx) != 1 || !isNanosecondTimestamp(schema.Field(idx[0]).Type) {
			t.Errorf("%s: no single nanosecond timestamp named time in %v", tc.table, schema)
			continue
		}
		var last time.Time
		for _, b := range batches {
			col := b.Column(idx[0]).(*array.Timestamp)
			for i := 0; i < col.Len(); i++ {
				if ts := col.Value(i).ToTime(arrow.Nanosecond); !ts.Before(last) {
					last = ts
				} else {
					t.Errorf("%s: time %v after %v: not ascending", tc.table, ts, last)
				}
			}
		}
		if n := rows(batches); n == 0 || (tc.table == "vitals_clean" && n != expected) {
			t.Errorf("%s: %d rows (vitals_clean must have VITALFLOW_EXPECTED_ROWS=%d)", tc.table, n, expected)
		}
	}
	// An age in seconds, as the docs say to chart one (the plugin leaves interval columns empty).
	schema, batches := query(t, ctx, client,
		"SELECT event_time AS time, date_part('epoch', now() - event_time) AS age_seconds FROM patient_latest ORDER BY time")
	if f := schema.Field(1); f.Type.ID() != arrow.FLOAT64 {
		t.Fatalf("age_seconds is %v, want float64 seconds", f.Type)
	}
	if rows(batches) == 0 {
		t.Fatal("no age_seconds rows")
	}
	for _, b := range batches {
		for _, age := range b.Column(1).(*array.Float64).Float64Values() {
			if age < 0 || age > 86400 {
				t.Errorf("age_seconds %v: not the seconds since a reading of the test's run", age)
			}
		}
	}
}
