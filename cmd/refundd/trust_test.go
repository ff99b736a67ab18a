package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/testutil"
)

// TestTrustLimitsWired: refundd's environment reaches the ops server's
// limits — OPS_AUTH_FAILURES (the dashboard and the API share one bucket
// per address), API_ENQUEUE_RATE, the read-only dashboard without
// credentials on loopback — and /readyz carries the clock check.
func TestTrustLimitsWired(t *testing.T) {
	f := newFixture(t)
	addr := testutil.FreeAddr(t)
	const tok = "trust-token-0123456789"
	f.start(t, map[string]string{"OPS_ADDR": addr, "API_TOKEN": tok, "OPS_AUTH_FAILURES": "2", "OPS_AUTH_FAILURE_REFILL": "1h",
		"API_ENQUEUE_RATE": "1"})
	base := "http://" + addr
	testutil.Eventually(t, 20*time.Second, "refundd to be ready, its clock measured against Redis", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Checks map[string]struct {
				OK bool `json:"ok"`
			} `json:"checks"`
		}
		return json.NewDecoder(resp.Body).Decode(&body) == nil && resp.StatusCode == 200 && body.Checks["clock"].OK
	})
	do := func(method, path, auth, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("POST", "/monitoring/api/queues/"+f.queue+":pause", "", ""); code != 403 {
		t.Errorf("a change to the dashboard without credentials: %d, want 403", code)
	}
	payload := func(ref string) string {
		return fmt.Sprintf(`{"order_ref":%q,"refund_initiated_at":%q}`, ref, time.Now().UTC().Format(time.RFC3339))
	}
	// API_ENQUEUE_RATE=1: a first batch of up to 1,000 at once, then one a
	// second: a second batch of 1,000 right after is refused whole.
	items := make([]string, 1000)
	for i := range items {
		items[i] = payload(fmt.Sprintf("TW%04d", i))
	}
	if code := do("POST", "/v1/cancellations:batch", "Bearer "+tok, "["+strings.Join(items, ",")+"]"); code != 200 {
		t.Fatalf("first batch: %d", code)
	}
	for i := range items {
		items[i] = payload(fmt.Sprintf("TX%04d", i))
	}
	if code := do("POST", "/v1/cancellations:batch", "Bearer "+tok, "["+strings.Join(items, ",")+"]"); code != 429 {
		t.Errorf("a second batch past API_ENQUEUE_RATE: %d, want 429", code)
	}
	for i, want := range []int{401, 401, 429} {
		if code := do("GET", "/v1/cancellations/X1", "Bearer wrong-token-000000000", ""); code != want {
			t.Errorf("wrong token %d: %d, want %d", i+1, code, want)
		}
	}
	if code := do("GET", "/v1/cancellations/X1", "Bearer "+tok, ""); code != 429 {
		t.Errorf("the right token from a throttled address: %d, want 429", code)
	}
	m := testutil.Metrics(t, base)
	for series, want := range map[string]float64{
		`refundd_ops_refused_total{reason="auth_failed"}`:    2,
		`refundd_ops_refused_total{reason="auth_throttled"}`: 2,
		`refundd_ops_refused_total{reason="enqueue_rate"}`:   1,
	} {
		if v, ok := testutil.MetricValue(t, m, series); !ok || v != want {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}
	if _, ok := testutil.MetricValue(t, m, "refundd_clock_skew_seconds"); !ok {
		t.Error("refundd_clock_skew_seconds missing")
	}
}
