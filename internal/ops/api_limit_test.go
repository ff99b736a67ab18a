package ops_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/tasks"
)

// TestEnqueueRateLimit: the token may enqueue a full batch at once, then
// API_ENQUEUE_RATE per second; past it a request gets 429 with Retry-After
// and enqueues nothing (judged by the queue's size in Redis), and is
// counted in refundd_ops_refused_total.
func TestEnqueueRateLimit(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	clock := &fakeClock{now: time.Now()}
	m := metrics.New(nil)
	mux := http.NewServeMux()
	ops.NewAPI(enq, fakeProducer{}, token, nil).Limit(ops.APILimits{EnqueueRate: 2, Observer: m, Now: clock.Now}).Register(mux)
	h := ops.NewGuard(nil).Handler(mux)

	initiated := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	item := func(ref string) string {
		return fmt.Sprintf(`{"order_ref":%q,"refund_initiated_at":%q}`, ref, initiated)
	}
	batch := func(prefix string, n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = item(fmt.Sprintf("%s%05d", prefix, i))
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	send := func(path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Host = "localhost"
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	queued := func() int {
		t.Helper()
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		return qi.Size
	}
	expect := func(step string, rec *httptest.ResponseRecorder, status int, retryAfter string, size int) {
		t.Helper()
		if rec.Code != status || rec.Header().Get("Retry-After") != retryAfter {
			t.Fatalf("%s: status %d Retry-After %q, want %d %q: %.300s", step, rec.Code, rec.Header().Get("Retry-After"), status, retryAfter, rec.Body)
		}
		if got := queued(); got != size {
			t.Fatalf("%s: %d tasks queued, want %d", step, got, size)
		}
	}

	rec := send("/v1/cancellations:batch", batch("FULL", ops.MaxBatchItems))
	expect("a first full batch", rec, 200, "", ops.MaxBatchItems)
	var out struct{ Results []ops.Item }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Results) != ops.MaxBatchItems || out.Results[0].Status != 202 {
		t.Fatalf("batch answer: %v %d", err, len(out.Results))
	}
	expect("one more at once", send("/v1/cancellations", item("ONE1")), 429, "1", ops.MaxBatchItems)
	clock.Add(500 * time.Millisecond) // one enqueue regained (2/s)
	expect("half a second later", send("/v1/cancellations", item("ONE2")), 202, "", ops.MaxBatchItems+1)
	clock.Add(time.Second) // two regained
	expect("a batch of three with two regained", send("/v1/cancellations:batch", batch("THREE", 3)), 429, "1", ops.MaxBatchItems+1)
	clock.Add(500 * time.Millisecond)
	expect("the batch of three, once there are three", send("/v1/cancellations:batch", batch("THREE", 3)), 200, "", ops.MaxBatchItems+4)

	scrape := httptest.NewRecorder()
	m.Handler().ServeHTTP(scrape, httptest.NewRequest("GET", "/metrics", nil))
	if v, _ := testutil.MetricValue(t, scrape.Body.String(), `refundd_ops_refused_total{reason="enqueue_rate"}`); v != 2 {
		t.Errorf("refundd_ops_refused_total{reason=\"enqueue_rate\"} = %v, want 2", v)
	}
}
