package ops_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/ops"
)

// tableWidth is about what Asynqmon's 400 px payload and result boxes show
// before their scroll bar.
const tableWidth = 40

func TestFormatPayload(t *testing.T) {
	now := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		now     time.Time
		typ     string
		payload string
		want    string // the whole string, or its prefix with wantPrefix
		prefix  bool
	}{
		{name: "today: time of day", now: now, typ: "refund:cancel",
			payload: `{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"dup","requested_by":"support"}`,
			want:    "73152889 · closes 12:00:00Z · window closes 2026-11-25T12:00:00Z · refund initiated 2026-11-25T10:00:00Z · reason: dup · by support"},
		{name: "last second of the day", now: time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC), typ: "refund:cancel",
			payload: `{"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"}`,
			want:    "A1 · closes 12:00:00Z · window closes 2026-11-25T12:00:00Z · refund initiated 2026-11-25T10:00:00Z"},
		{name: "next day: with its date", now: now.Add(24 * time.Hour), typ: "refund:cancel",
			payload: `{"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"}`,
			want:    "A1 · closes 2026-11-25 12:00:00Z · ", prefix: true},
		{name: "closes tomorrow", now: now, typ: "refund:cancel",
			payload: `{"order_ref":"A1","refund_initiated_at":"2026-11-25T23:00:00+01:00"}`,
			want:    "A1 · closes 2026-11-26 00:00:00Z · ", prefix: true},
		{name: "junk", now: now, typ: "refund:cancel", payload: `junk`, want: "INVALID PAYLOAD", prefix: true},
		{name: "other type", now: now, typ: "other", payload: `x`, want: "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ops.FormatPayloadAt(tc.now, tc.typ, []byte(tc.payload))
			if tc.prefix && !strings.HasPrefix(got, tc.want) || !tc.prefix && got != tc.want {
				t.Fatalf("got  %q\nwant %q (prefix %v)", got, tc.want, tc.prefix)
			}
		})
	}
}

// A payload that would spoof the dashboard's line is shown quoted.
func TestFormatPayloadSpoof(t *testing.T) {
	spoof := ops.FormatPayload("refund:cancel", []byte("{\"order_ref\":\"A1\",\"refund_initiated_at\":\"2026-11-25T10:00:00Z\",\"reason\":\"x\u202e\\nY\"}"))
	if !strings.HasPrefix(spoof, "INVALID PAYLOAD (reason: must not contain control characters") || strings.ContainsAny(spoof, "\u202e\n") {
		t.Fatalf("spoofing payload shown as %q", spoof)
	}
}

func TestFormatResult(t *testing.T) {
	now := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, result string
		short        string // what the table shows: the string's start
		detail       []string
	}{
		{name: "cancelled", result: `{"outcome":"cancelled","order_ref":"A1","refund_id":"RF-1","attempts":1,"finished_at":"2026-11-25T10:05:00Z","window_closes_at":"2026-11-25T12:00:00Z"}`,
			short: "cancelled · RF-1 · 1 try · ", detail: []string{"outcome cancelled", "finished 2026-11-25T10:05:00Z", "window closes 2026-11-25T12:00:00Z"}},
		{name: "already cancelled", result: `{"outcome":"already_cancelled","refund_id":"R1","attempts":2,"confirmed":true}`,
			short: "already cancelled · R1 · 2 tries · ", detail: []string{"confirmed with getOrder"}},
		{name: "window closed", result: `{"outcome":"window_closed","refund_id":"","attempts":3,"vendor_code":503,"vendor_error":"SERVICE_UNAVAILABLE","reason":"window closed at 2026-11-25T12:00:00Z"}`,
			short: "window closed · 3 tries · ", detail: []string{"2Checkout 503 SERVICE_UNAVAILABLE", "reason: window closed at 2026-11-25T12:00:00Z"}},
		{name: "refused", result: `{"outcome":"refused","refund_id":"","attempts":1,"vendor_code":400,"vendor_error":"INVALID_REFUND"}`,
			short: "refused · 1 try · ", detail: []string{"2Checkout 400 INVALID_REFUND"}},
		{name: "unknown", result: `{"outcome":"unknown","refund_id":"","attempts":2,"maybe_applied":"attempt 1 timed out"}`,
			short: "unknown — check order · 2 tries · ", detail: []string{"may have applied: attempt 1 timed out"}},
		{name: "invalid", result: `{"outcome":"invalid","refund_id":"","attempts":1,"reason":"invalid payload: order_ref: required"}`,
			short: "invalid · 1 try · ", detail: []string{"reason: invalid payload: order_ref: required"}},
		{name: "superseded", result: `{"outcome":"superseded","refund_id":"","attempts":1}`, short: "superseded · 1 try · "},
		{name: "retrying", result: `{"outcome":"retry","refund_id":"","attempts":1,"next_attempt_at":"2026-11-25T11:00:30Z"}`,
			short: "retrying · 1 try · next 11:00:30Z · "},
		{name: "held for its turn", result: `{"outcome":"held","refund_id":"","attempts":0,"next_attempt_at":"2026-11-25T11:01:00Z","reason":"held: waiting its turn behind 3 refund(s)"}`,
			short: "held · 0 tries · next 11:01:00Z · ", detail: []string{"reason: held: waiting its turn behind 3 refund(s)"}},
		{name: "hostile fields quoted", result: "{\"outcome\":\"x\\u202ey\",\"refund_id\":\"R\\n1\",\"attempts\":1,\"reason\":\"a\\u0007b\"}",
			short: `"x\u202ey" · "R\n1" · 1 try · `, detail: []string{`reason: "a\ab"`}},
		{name: "junk", result: `{"outcome":`, short: "INVALID RESULT (result record: "},
		{name: "no outcome", result: `{"refund_id":"R1"}`, short: "INVALID RESULT (result record: no outcome): "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ops.FormatResultAt(now, "refund:cancel", []byte(tc.result))
			if !strings.HasPrefix(got, tc.short) {
				t.Fatalf("got  %q\nwant it to start %q", got, tc.short)
			}
			if len([]rune(tc.short)) > tableWidth && !strings.HasPrefix(tc.name, "hostile") && !strings.HasPrefix(tc.short, "INVALID") {
				t.Errorf("the table part %q is over %d characters", tc.short, tableWidth)
			}
			for _, d := range tc.detail {
				if !strings.Contains(got, " · "+d) {
					t.Errorf("%q lacks detail %q", got, d)
				}
			}
			if strings.ContainsAny(got, "\n\a\u202e") {
				t.Errorf("%q holds a control character", got)
			}
		})
	}
	if got := ops.FormatResult("refund:cancel", nil); got != "" {
		t.Errorf("no record: %q", got)
	}
	if got := ops.FormatResult("other", []byte("x")); got != "x" {
		t.Errorf("other type: %q", got)
	}
}

// PrometheusURL reaches Asynqmon: its page names it (the Metrics page
// draws charts only then) and its metrics API queries that Prometheus.
func TestDashboardPrometheus(t *testing.T) {
	queried := make(chan string, 32)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queried <- r.URL.Path + "?" + r.URL.Query().Get("query")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
	}))
	defer prom.Close()
	get := func(srv *httptest.Server, path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct{ url, page string }{
		{"", `FLAG_PROMETHEUS_SERVER_ADDRESS=""`},
		{prom.URL, `FLAG_PROMETHEUS_SERVER_ADDRESS="` + prom.URL + `"`},
	} {
		d := ops.NewDashboard(ops.DashboardConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Loopback: true, PrometheusURL: tc.url})
		defer d.Close()
		mux := http.NewServeMux()
		d.Register(mux)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		// html/template writes the URL as a JavaScript string: "/" as "\/".
		if code, body := get(srv, "/monitoring/"); code != 200 || !strings.Contains(strings.ReplaceAll(body, `\/`, "/"), tc.page) {
			t.Errorf("PrometheusURL %q: the page (%d) does not hold %s", tc.url, code, tc.page)
		}
	}
	d := ops.NewDashboard(ops.DashboardConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Loopback: true, PrometheusURL: prom.URL})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if code, body := get(srv, "/monitoring/api/metrics?duration_sec=3600"); code != 200 {
		t.Fatalf("metrics API: %d %s", code, body)
	}
	select {
	case q := <-queried:
		if !strings.HasPrefix(q, "/api/v1/query_range?") || !strings.Contains(q, "asynq_") {
			t.Errorf("Prometheus was asked %q", q)
		}
	default:
		t.Fatal("the dashboard's metrics API did not query PrometheusURL")
	}
}
