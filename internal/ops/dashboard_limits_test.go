package ops_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// redisCommands answers how many commands the test's own Redis has run
// since the last call (INFO commandstats, scripts' commands included; the
// INFO and CONFIG RESETSTAT of the measurement left out).
func redisCommands(t *testing.T, r *redistest.Redis) func() int {
	c := r.Client()
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	reset := func() {
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	reset()
	return func() int {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok || name == "cmdstat_info" || strings.HasPrefix(name, "cmdstat_config") {
				continue
			}
			calls, _, _ := strings.Cut(rest, ",")
			v, _ := strconv.Atoi(calls)
			n += v
		}
		reset()
		return n
	}
}

// TestDashboardPageSizeBounded: a list page larger than MaxPageSize is
// refused before Asynqmon (and Redis) sees it; the Redis commands of one
// GET are measured without the bound, with it, and for a page of the
// largest size allowed.
func TestDashboardPageSizeBounded(t *testing.T) {
	r := redistest.Start(t) // our own server: its command counts are ours
	q := r.Queue(t)
	n := 3000
	if testing.Short() {
		n = 500
	}
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	at := time.Now().Add(-time.Minute)
	for i := range n {
		if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: fmt.Sprintf("PAGE%05d", i), RefundInitiatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, Loopback: true, Queue: q})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	commands := redisCommands(t, r)
	get := func(h http.Handler, size int) (int, int) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", fmt.Sprintf("/monitoring/api/queues/%s/pending_tasks?size=%d&page=1", q, size), nil))
		return rec.Code, commands()
	}
	code, unbounded := get(d.Asynqmon(), n)
	if code != 200 {
		t.Fatalf("Asynqmon alone: %d", code)
	}
	code, refused := get(mux, n)
	if code != 400 || refused != 0 {
		t.Fatalf("size=%d: status %d and %d Redis commands, want 400 and none", n, code, refused)
	}
	code, largest := get(mux, ops.MaxPageSize)
	if code != 200 {
		t.Fatalf("size=%d: status %d", ops.MaxPageSize, code)
	}
	t.Logf("one GET of %d tasks: %d Redis commands without the bound, %d with it (400); a page of %d: %d", n, unbounded, refused, ops.MaxPageSize, largest)
	if largest*n/ops.MaxPageSize > 2*unbounded || largest > unbounded/2 {
		t.Errorf("a page of %d cost %d commands, the unbounded %d cost %d: not what a bounded page should cost", ops.MaxPageSize, largest, n, unbounded)
	}
	for _, size := range []string{"0", "-1", "101", "x", "1e3"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/monitoring/api/queues/"+q+"/archived_tasks?size="+size, nil))
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), "size must be a whole number from 1 to 100") {
			t.Errorf("size=%s: %d %s", size, rec.Code, rec.Body)
		}
	}
}

// TestDashboardMetricsQueuesMustExist: with PrometheusURL set, a metrics
// request naming a queue that does not exist (PromQL spliced into the
// name) is refused and nothing reaches Prometheus; existing names pass.
func TestDashboardMetricsQueuesMustExist(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "PROM1", RefundInitiatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	queried := make(chan string, 16)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queried <- r.URL.Query().Get("query")
		_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
	}))
	defer prom.Close()
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, Loopback: true, PrometheusURL: prom.URL})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	for _, tc := range []struct {
		queues string
		want   int
	}{
		{`x"} or vector(1) or {a="`, 400},
		{q + `,` + q + `|.*`, 400},
		{"no-such-queue", 400},
		{q, 200},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/monitoring/api/metrics?duration_sec=3600&queues="+url.QueryEscape(tc.queues), nil))
		if rec.Code != tc.want {
			t.Errorf("queues=%q: %d %s, want %d", tc.queues, rec.Code, rec.Body, tc.want)
		}
		select {
		case got := <-queried:
			if tc.want != 200 {
				t.Errorf("queues=%q reached Prometheus: %s", tc.queues, got)
			}
			for len(queried) > 0 {
				<-queried
			}
		default:
			if tc.want == 200 {
				t.Errorf("queues=%q: Prometheus was not asked", tc.queues)
			}
		}
	}
}

// TestLoopbackDashboardReadOnly: without DASHBOARD_USER and
// DASHBOARD_PASSWORD the loopback dashboard shows the queue but changes
// nothing (judged by the queue in Redis), and its page says read-only.
func TestLoopbackDashboardReadOnly(t *testing.T) {
	srv, q, insp := dashboardServer(t, ops.DashboardConfig{Loopback: true}, nil)
	pending, err := insp.ListPendingTasks(q)
	if err != nil || len(pending) != 1 {
		t.Fatalf("%d pending, %v", len(pending), err)
	}
	id := pending[0].ID
	base := srv.URL + "/monitoring/api/queues/" + q
	for _, tc := range []struct{ method, path string }{
		{"POST", base + ":pause"},
		{"DELETE", base},
		{"DELETE", base + "/pending_tasks/" + id},
		{"POST", base + "/pending_tasks/" + id + ":archive"},
		{"DELETE", base + "/pending_tasks:delete_all"},
		{"POST", base + "/pending_tasks:archive_all"},
	} {
		req, _ := http.NewRequest(tc.method, tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s %s: %d, want 403", tc.method, tc.path, resp.StatusCode)
		}
	}
	info, err := insp.GetQueueInfo(q)
	if err != nil || info.Paused || info.Pending != 1 || info.Archived != 0 {
		t.Fatalf("the queue changed: %+v %v", info, err)
	}
	resp, err := http.Get(base + "/pending_tasks")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), id) {
		t.Fatalf("reading: %d %.200s", resp.StatusCode, body)
	}
	resp, err = http.Get(srv.URL + "/monitoring/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `FLAG_READ_ONLY="true"`) {
		t.Errorf("the page does not say read-only: %.300s", body)
	}
}
