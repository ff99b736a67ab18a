package ops_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// TestDashboardInBrowser loads the embedded Asynqmon in headless Chromium
// with credentials and checks the page shows the cancellation queue. It runs
// when chromium is on PATH (CI installs it and requires it).
func TestDashboardInBrowser(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not on PATH; CI must install it (apt-get install chromium)")
		}
		t.Skip("chromium not on PATH (apt-get install chromium)")
	}
	r := redistest.New(t)
	q := r.Queue(t)
	enq, _ := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	defer enq.Close()
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "BROWSER1", RefundInitiatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, User: "ops", Password: "browser-pass-1"})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	page := strings.Replace(srv.URL, "http://", "http://ops:browser-pass-1@", 1) + "/monitoring/queues/" + q + "?status=pending"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", page)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	for _, want := range []string{q, "refund:cancel:BROWSER1", "order BROWSER1 · window closes"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dashboard page does not show %q (%d bytes of DOM)", want, len(dom))
		}
	}

	// Without credentials the browser gets no dashboard (headless Chromium
	// dumps an empty page on the 401 challenge; TestDashboardAuth checks the 401).
	cmd = exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+"/monitoring/")
	out, _ = cmd.Output()
	if strings.Contains(string(out), "BROWSER1") || strings.Contains(string(out), q) {
		t.Errorf("unauthenticated page: %.300s", out)
	}
}
