package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// fakeAPI answers cancelRefund per order: a refund ID, or an error.
type fakeAPI map[string]error

func (f fakeAPI) CancelRefund(ctx context.Context, orderRef string, check func(context.Context) error) (string, error) {
	if check != nil {
		if err := check(ctx); err != nil {
			return "", err
		}
	}
	if err := f[orderRef]; err != nil {
		return "", err
	}
	return "RF-1", nil
}

func (fakeAPI) GetOrder(context.Context, string) (*rpcclient.Order, error) {
	return nil, errors.New("fakeAPI: no getOrder")
}

// TestDashboardTablesInBrowser: at 1400×900, the completed and archived
// tables show each cancellation's order, window close and outcome in the
// part of their cells a browser actually draws (not merely somewhere in
// the DOM: Asynqmon clips payload and result boxes at 400 px). The tasks
// are ended by the real worker.Handler, so the records and last errors are
// the ones refundd writes. Set DASHBOARD_SCREENSHOTS=dir to keep PNGs of
// both pages.
// finishedTasks runs the real worker.Handler (against a fake 2Checkout)
// over three cancellations: DONE0001 cancelled (completed), REFU0001
// refused and LATE0001 past its cut-off (archived); plus PEND0001, left
// pending. It answers the Redis, the queue and each order's initiation.
func finishedTasks(t *testing.T) (*redistest.Redis, string, map[string]time.Time) {
	t.Helper()
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()

	now := time.Now().UTC().Truncate(time.Second)
	initiated := map[string]time.Time{
		"DONE0001": now.Add(-10 * time.Minute),             // cancelled
		"REFU0001": now.Add(-20 * time.Minute),             // refused by 2Checkout
		"LATE0001": now.Add(30*time.Second - tasks.Window), // past the cut-off (1 min before the close)
	}
	for ref, at := range initiated {
		if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	rc := r.Client()
	defer rc.Close()
	h, err := worker.NewHandler(worker.HandlerConfig{Memory: records.New(rc, q, 0), API: fakeAPI{
		"REFU0001": &rpcclient.APIError{Method: "cancelRefund", Code: 20002, Name: rpcclient.NameOrderNotFound, Message: "order not found", HTTPStatus: 200},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 3, TaskCheckInterval: 50 * time.Millisecond}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "1 completed and 2 archived tasks", func() bool {
		info, err := insp.GetQueueInfo(q)
		return err == nil && info.Completed == 1 && info.Archived == 2
	})
	srv.Shutdown()
	initiated["PEND0001"] = now.Add(-5 * time.Minute)
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "PEND0001", RefundInitiatedAt: initiated["PEND0001"]}); err != nil {
		t.Fatal(err)
	}
	return r, q, initiated
}

// TestDashboardShowsOutcome: Asynqmon's task lists carry, in each
// cancellation's payload text, the outcome of its result record as a
// second line — for completed and archived tasks (whose lists have no
// result) — and nothing for a task with no record yet.
func TestDashboardShowsOutcome(t *testing.T) {
	r, q, initiated := finishedTasks(t)
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, Loopback: true, Queue: q})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	web := serve(t, ops.ServerConfig{Handler: mux})
	closes := func(ref string) string { return initiated[ref].Add(tasks.Window).Format("15:04:05Z") }
	for _, tc := range []struct {
		list  string
		lines map[string][]string // order ref: the payload text's lines' starts
	}{
		{"completed_tasks", map[string][]string{"DONE0001": {"DONE0001 · closes ", "cancelled · RF-1 · 1 try · "}}},
		{"archived_tasks", map[string][]string{
			"REFU0001": {"REFU0001 · closes ", "refused · 1 try · outcome refused · 2Checkout 20002 ORDER_NOT_FOUND · "},
			"LATE0001": {"LATE0001 · closes ", "window closed · 1 try · "},
		}},
		{"pending_tasks", map[string][]string{"PEND0001": {"PEND0001 · closes "}}},
	} {
		resp, err := http.Get(web.URL + "/monitoring/api/queues/" + q + "/" + tc.list)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Tasks []struct {
				ID      string `json:"id"`
				Payload string `json:"payload"`
			} `json:"tasks"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || len(body.Tasks) != len(tc.lines) {
			t.Fatalf("%s: %d tasks, %v", tc.list, len(body.Tasks), err)
		}
		for _, task := range body.Tasks {
			ref := strings.Split(task.ID, ":")[2]
			want := tc.lines[ref]
			got := strings.Split(task.Payload, "\n")
			if len(got) != len(want) {
				t.Errorf("%s %s: %d lines, want %d: %q", tc.list, ref, len(got), len(want), task.Payload)
				continue
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("%s %s: line %d is %q, want it to start %q", tc.list, ref, i+1, got[i], want[i])
				}
			}
			// "closes 15:04:05Z", or with its date near midnight.
			if f := strings.Split(got[0], " · "); len(f) < 2 || !strings.HasSuffix(f[1], closes(ref)) {
				t.Errorf("%s %s: %q does not show the close %s", tc.list, ref, got[0], closes(ref))
			}
		}
	}
}

func TestDashboardTablesInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser test; not with -short")
	}
	chromium := findChromium(t)
	r, q, initiated := finishedTasks(t)

	// The dashboard, open on loopback, and a page of the same origin that
	// frames a dashboard page and reports what of each table cell is drawn.
	d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, Loopback: true, Queue: q})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	web := serve(t, ops.ServerConfig{Handler: mux}, func(guarded http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/visible" {
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, visiblePage)
				return
			}
			guarded.ServeHTTP(w, r)
		})
	})

	closes := func(ref string) string { return initiated[ref].Add(tasks.Window).Format("15:04:05Z") }
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, tc := range []struct {
		status string
		rows   map[string][]string // order ref: what its row must draw
	}{
		{"completed", map[string][]string{
			"DONE0001": {"DONE0001 · closes ", closes("DONE0001"), "cancelled · RF-1 · 1 try"},
		}},
		{"archived", map[string][]string{
			"REFU0001": {"REFU0001 · closes ", closes("REFU0001"), "refused · 1 try"},
			"LATE0001": {"LATE0001 · closes ", closes("LATE0001"), "window closed · 1 try"},
		}},
	} {
		t.Run(tc.status, func(t *testing.T) {
			page := web.URL + "/monitoring/queues/" + q + "?status=" + tc.status
			drawn := drawnRows(ctx, t, chromium, web.URL+"/visible?rows="+strconv.Itoa(len(tc.rows))+"&src="+url.QueryEscape(page))
			for ref, wants := range tc.rows {
				row := ""
				for _, r := range drawn {
					if strings.Contains(r, ref) {
						row = r
					}
				}
				if row == "" {
					t.Errorf("no row draws order %s; rows drawn: %q", ref, drawn)
					continue
				}
				for _, want := range wants {
					if !strings.Contains(row, want) {
						t.Errorf("the row of %s draws %q, without %q", ref, row, want)
					}
				}
			}
			if dir := os.Getenv("DASHBOARD_SCREENSHOTS"); dir != "" {
				screenshot(ctx, t, chromium, page, filepath.Join(dir, "dashboard-"+tc.status+".png"))
				for ref := range tc.rows {
					id := tasks.TaskID(ref, initiated[ref])
					screenshot(ctx, t, chromium, web.URL+"/monitoring/queues/"+q+"/tasks/"+url.PathEscape(id), filepath.Join(dir, "task-"+ref+".png"))
				}
			}
		})
	}
}

// drawnRows loads page (the /visible page) at 1400×900 and answers, per
// task row, the text its cells draw, cells separated by " | ".
func drawnRows(ctx context.Context, t *testing.T, chromium, page string) []string {
	t.Helper()
	dom := dumpDOM(ctx, t, chromium, page, "--window-size=1400,900")
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the page reported nothing: %.500s", dom)
	}
	var out struct {
		Error string     `json:"error"`
		Rows  [][]string `json:"rows"`
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &out); err != nil {
		t.Fatalf("report %q: %v", m[1], err)
	}
	if out.Error != "" {
		t.Fatalf("the page: %s", out.Error)
	}
	rows := make([]string, len(out.Rows))
	for i, cells := range out.Rows {
		rows[i] = strings.Join(cells, " | ")
	}
	return rows
}

// screenshot saves page as drawn at 1400×900.
func screenshot(ctx context.Context, t *testing.T, chromium, page, file string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--hide-scrollbars=false",
		"--window-size=1400,900", "--screenshot="+file, page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("screenshot %s: %v: %s", page, err, out)
	}
	t.Logf("screenshot: %s", file)
}

// visiblePage frames the dashboard page ?src= at 1400×900, waits for ?rows=
// task rows, and writes into <pre id="out"> each row's cells as drawn: the
// characters whose box lies inside every box that clips them (scroll and
// overflow boxes, the frame's viewport).
const visiblePage = `<!doctype html><html><head><style>body{margin:0}iframe{border:0;width:1400px;height:900px}</style></head>
<body><iframe id="f"></iframe><pre id="out"></pre><script>
const q = new URLSearchParams(location.search);
const want = Number(q.get("rows"));
const f = document.getElementById("f");
f.src = q.get("src");
function clipBox(el, win) {
  let box = {l: 0, t: 0, r: win.innerWidth, b: win.innerHeight};
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const s = win.getComputedStyle(e);
    if (s.overflowX === "visible" && s.overflowY === "visible") continue;
    const r = e.getBoundingClientRect();
    const l = r.left + e.clientLeft, t = r.top + e.clientTop;
    box = {l: Math.max(box.l, l), t: Math.max(box.t, t), r: Math.min(box.r, l + e.clientWidth), b: Math.min(box.b, t + e.clientHeight)};
  }
  return box;
}
function drawn(cell, doc, win) {
  let s = "";
  const walk = doc.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const box = clipBox(n.parentElement, win);
    const range = doc.createRange();
    for (let i = 0; i < n.data.length; i++) {
      range.setStart(n, i); range.setEnd(n, i + 1);
      const r = range.getBoundingClientRect();
      if (n.data[i] === "\n") s += " ";
      else if (r.width > 0 && r.left >= box.l - 0.5 && r.right <= box.r + 0.5 && r.top >= box.t - 0.5 && r.bottom <= box.b + 0.5) s += n.data[i];
    }
  }
  return s.replace(/\s+/g, " ").trim();
}
let tries = 0;
function check() {
  tries++;
  let rows = [];
  try {
    const doc = f.contentDocument, win = f.contentWindow;
    rows = Array.from(doc.querySelectorAll("tbody tr")).filter(tr => tr.textContent.includes("refund:cancel") && tr.querySelector("pre") && tr.querySelector("pre").textContent);
    if (rows.length >= want) {
      document.getElementById("out").textContent = JSON.stringify({rows: rows.map(tr => Array.from(tr.querySelectorAll("td,th")).map(c => drawn(c, doc, win)))});
      return;
    }
  } catch (e) {
    document.getElementById("out").textContent = JSON.stringify({error: String(e)});
    return;
  }
  if (tries > 80) {
    document.getElementById("out").textContent = JSON.stringify({error: "only " + rows.length + " task rows after 8 s"});
    return;
  }
  setTimeout(check, 100);
}
f.onload = () => setTimeout(check, 100);
</script></body></html>`

// BenchmarkDashboardList: one page of 100 completed cancellations from
// Asynqmon's API, with the outcome line (one Redis read per task) and
// without (no Queue).
func BenchmarkDashboardList(b *testing.B) {
	r := redistest.New(b)
	q := r.Queue(b)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		b.Fatal(err)
	}
	defer enq.Close()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	start := time.Now().Add(-time.Hour)
	for i := range 100 {
		if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "B" + strconv.Itoa(1000+i), RefundInitiatedAt: start}); err != nil {
			b.Fatal(err)
		}
	}
	rc := r.Client()
	defer rc.Close()
	h, _ := worker.NewHandler(worker.HandlerConfig{Memory: records.New(rc, q, 0), API: fakeAPI{}})
	srv, _ := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 10}, h)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	testutil.Eventually(b, 60*time.Second, "100 completed tasks", func() bool {
		info, err := insp.GetQueueInfo(q)
		return err == nil && info.Completed == 100
	})
	srv.Shutdown()
	for _, mode := range []struct {
		name  string
		queue string
	}{{"plain", ""}, {"outcome", q}} {
		b.Run(mode.name, func(b *testing.B) {
			d := ops.NewDashboard(ops.DashboardConfig{Redis: r.Opt, Loopback: true, Queue: mode.queue})
			defer d.Close()
			mux := http.NewServeMux()
			d.Register(mux)
			web := httptest.NewServer(mux)
			defer web.Close()
			for b.Loop() {
				resp, err := http.Get(web.URL + "/monitoring/api/queues/" + q + "/completed_tasks?size=100")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
