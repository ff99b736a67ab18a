package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// A non-Go producer enqueues over HTTP and follows the cancellation; the
// metrics move with it.
func TestOpsEndToEnd(t *testing.T) {
	f := newFixture(t)
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "H1", RefundID: "R-H1"})
	addr := testutil.FreeAddr(t)
	const tok = "e2e-token-0123456789"
	f.start(t, map[string]string{"OPS_ADDR": addr, "API_TOKEN": tok, "DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "dashboard-pass-1"})
	base := "http://" + addr
	testutil.Eventually(t, 10*time.Second, "the ops server", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	before := testutil.Metrics(t, base)
	// Present at zero before any work, so dashboards and alerts see them.
	for _, name := range []string{`refundd_cancellations_total{outcome="window_closed"} 0`, `refundd_window_slack_seconds_count 0`, "go_goroutines"} {
		if !strings.Contains(before, name) {
			t.Errorf("%s missing before any work", name)
		}
	}

	initiated := time.Now().UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"order_ref":"H1","refund_initiated_at":%q}`, initiated)
	req, _ := http.NewRequest("POST", base+"/v1/cancellations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("enqueue over HTTP: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	var last string
	testutil.Eventually(t, 15*time.Second, "the cancellation to complete", func() bool {
		req, _ := http.NewRequest("GET", base+"/v1/cancellations/H1?refund_initiated_at="+initiated, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return strings.Contains(last, `"state": "completed"`) && strings.Contains(last, `"outcome": "cancelled"`)
	})

	after := testutil.Metrics(t, base)
	for _, m := range []struct {
		series string
		min    float64
	}{
		{`refundd_cancellations_total{outcome="cancelled"}`, 1},
		{`refundd_rpc_requests_total{method="cancelRefund",result="ok"}`, 1},
		{`refundd_rpc_requests_total{method="login",result="ok"}`, 1},
		{`refundd_logins_total{result="ok"}`, 1},
		{`refundd_rpc_request_duration_seconds_count{method="cancelRefund"}`, 1},
		{`refundd_window_slack_seconds_count`, 1},
		{`asynq_tasks_enqueued_total{queue="` + f.queue + `",state="completed"}`, 1},
	} {
		if got := value(after, m.series); got < m.min || value(before, m.series) >= got {
			t.Errorf("%s: before %v, after %v", m.series, value(before, m.series), got)
		}
	}
	for _, secret := range []string{"dashboard-pass-1", tok, `"S"`} {
		if strings.Contains(after, secret) {
			t.Errorf("metrics show a secret")
		}
	}
}

// value answers a series' value in a scrape, or -1 if absent.
func value(scrape, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
