package ops_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// The dashboard's orders page answers what the API's order lookup does, as
// HTML behind the dashboard's credentials: 200 with a row per refund (newest
// first), 404 for an order nobody asked about, 400 for a malformed one.
func TestOrdersPage(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	now := time.Now().UTC().Truncate(time.Second)
	for _, at := range []time.Time{now.Add(-20 * time.Minute), now.Add(-5 * time.Minute)} {
		if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "PAGE1", RefundInitiatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, User: "ops", Password: "orders-pass-1", Orders: lookup(t, r, q)})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	srv := serve(t, ops.ServerConfig{Handler: mux})
	get := func(path, user string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, "orders-pass-1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(ops.OrdersPath+"?ref=PAGE1", "ops")
	newer, older := strings.Index(body, now.Add(-5*time.Minute).Format(time.RFC3339)), strings.Index(body, now.Add(-20*time.Minute).Format(time.RFC3339))
	if code != 200 || strings.Count(body, `class="cancellation"`) != 2 || newer < 0 || older < newer {
		t.Fatalf("%d: want two rows, newest first: %s", code, body)
	}
	if code, _ := get(ops.OrdersPath+"?ref=NOBODY", "ops"); code != 404 {
		t.Fatalf("unknown order: %d", code)
	}
	if code, _ := get(ops.OrdersPath+"?ref=bad%20ref", "ops"); code != 400 {
		t.Fatalf("malformed order: %d", code)
	}
	if code, body := get(ops.OrdersPath+"?ref=PAGE1", ""); code != 401 || strings.Contains(body, "PAGE1") {
		t.Fatalf("without credentials: %d", code)
	}
}
