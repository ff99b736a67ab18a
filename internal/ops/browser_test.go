package ops_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
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
	if testing.Short() {
		t.Skip("a browser test; not with -short")
	}
	chromium := findChromium(t)
	r := redistest.New(t)
	q := r.Queue(t)
	enq, _ := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	defer enq.Close()
	initiated := time.Now().UTC().Truncate(time.Second)
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "BROWSER1", RefundInitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, User: "ops", Password: "browser-pass-1", Orders: lookup(t, r, q)})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	srv := serve(t, ops.ServerConfig{Handler: mux}) // behind the guard, as refundd serves it
	authed := strings.Replace(srv.URL, "http://", "http://ops:browser-pass-1@", 1)

	page := authed + "/monitoring/queues/" + q + "?status=pending"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := dumpDOM(ctx, t, chromium, page)
	for _, want := range []string{q, "refund:cancel:BROWSER1", "BROWSER1 · closes "} {
		if !strings.Contains(dom, want) {
			t.Errorf("the dashboard page does not show %q (%d bytes of DOM)", want, len(dom))
		}
	}

	// From an order to its tasks: the orders page lists BROWSER1's
	// cancellation and links to its task's Asynqmon page, which shows it.
	id := tasks.TaskID("BROWSER1", initiated)
	dom = dumpDOM(ctx, t, chromium, authed+ops.OrdersPath+"?ref=BROWSER1")
	link := ops.DashboardPath + "/queues/" + q + "/tasks/" + url.QueryEscape(id)
	if !strings.Contains(dom, `class="cancellation"`) || !strings.Contains(dom, `href="`+link+`"`) {
		t.Errorf("the orders page does not link BROWSER1's task %s: %.600s", link, dom)
	}
	dom = dumpDOM(ctx, t, chromium, authed+link)
	if !strings.Contains(dom, id) {
		t.Errorf("the task page %s does not show the task (%d bytes of DOM)", link, len(dom))
	}

	// Without credentials the browser gets no dashboard (headless Chromium
	// dumps an empty page on the 401 challenge; TestDashboardAuth checks the 401).
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+"/monitoring/")
	out, _ := cmd.Output()
	if strings.Contains(string(out), "BROWSER1") || strings.Contains(string(out), q) {
		t.Errorf("unauthenticated page: %.300s", out)
	}
}

// findChromium answers the browser's path, skipping the test outside CI
// when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not on PATH; CI must install it (apt-get install chromium)")
	}
	t.Skip("chromium not on PATH (apt-get install chromium)")
	return ""
}

// dumpDOM loads page in headless Chromium (with flags added), lets its
// scripts run, and answers the resulting DOM.
func dumpDOM(ctx context.Context, t *testing.T, chromium, page string, flags ...string) string {
	t.Helper()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=10000"}, flags...)
	cmd := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", page)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v", page, err)
	}
	return string(out)
}

// TestCrossOriginInBrowser: a page on another origin makes the browser
// POST the dashboard's pause; the guard refuses it and the queue keeps
// running. The same request from the ops server's own page pauses the
// queue, as the dashboard's buttons do. The operator's browser holds the
// dashboard's credentials (the handler outside the guard adds them to every
// request, as a browser does once an operator has logged in): the page on
// another origin would ride on them.
func TestCrossOriginInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser test; not with -short")
	}
	chromium := findChromium(t)
	// What reached the ops server, outside its guard; and a page of its own.
	type seen struct{ method, path, site string }
	arrived := make(chan seen, 16)
	srv, q, insp := dashboardServer(t, ops.DashboardConfig{Loopback: true, User: "ops", Password: "browser-pass-1"}, func(guarded http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/same-origin-page" {
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, fetchPage(r.URL.Query().Get("target")))
				return
			}
			if r.Method == "POST" {
				arrived <- seen{r.Method, r.URL.Path, r.Header.Get("Sec-Fetch-Site")}
			}
			r.SetBasicAuth("ops", "browser-pass-1") // the operator's cached credentials
			guarded.ServeHTTP(w, r)
		})
	})
	pauseURL := srv.URL + "/monitoring/api/queues/" + q + ":pause"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, fetchPage(pauseURL))
	}))
	defer evil.Close()
	// localhost vs 127.0.0.1: another site, as attacker.example would be.
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom := dumpDOM(ctx, t, chromium, evilURL)
	select {
	case s := <-arrived:
		if s.site != "cross-site" {
			t.Errorf("the browser sent Sec-Fetch-Site %q", s.site)
		}
	default:
		t.Fatalf("the cross-origin POST never reached the ops server; page: %.300s", dom)
	}
	if paused(t, insp, q) {
		t.Fatal("a page on another origin paused the queue")
	}

	dom = dumpDOM(ctx, t, chromium, srv.URL+"/same-origin-page?target="+url.QueryEscape(pauseURL))
	if !strings.Contains(dom, "answered basic 204") {
		t.Errorf("same-origin page: %.300s", dom)
	}
	if !paused(t, insp, q) {
		t.Fatal("the ops server's own page could not pause the queue")
	}
}

// fetchPage is an HTML page whose script POSTs to target and shows how the
// fetch ended.
func fetchPage(target string) string {
	return `<!doctype html><html><body><p id="r">waiting</p><script>
fetch(` + strconv.Quote(target) + `, {method: "POST", mode: "no-cors", credentials: "include"})
  .then(r => { document.getElementById("r").textContent = "answered " + r.type + " " + r.status; })
  .catch(e => { document.getElementById("r").textContent = "failed " + e; });
</script></body></html>`
}
