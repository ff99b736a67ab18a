package ops_test

import (
	"github.com/hibiken/asynq"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/tasks"
)

const token = "test-token-0123456789"

type apiFixture struct {
	srv   *httptest.Server
	queue string
	redis *redistest.Redis
}

func newAPI(t *testing.T, tok string) *apiFixture {
	t.Helper()
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	mux := http.NewServeMux()
	ops.NewAPI(enq, lookup(t, r, q), tok, nil).Register(mux)
	srv := serve(t, ops.ServerConfig{Handler: mux})
	return &apiFixture{srv: srv, queue: q, redis: r}
}

func (f *apiFixture) do(t *testing.T, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object", method, path, b)
	}
	return resp.StatusCode, out
}

func payload(ref string, initiated time.Time) string {
	return fmt.Sprintf(`{"order_ref":%q,"refund_initiated_at":%q,"reason":"api test"}`, ref, initiated.UTC().Format(time.RFC3339))
}

func TestProducerAPI(t *testing.T) {
	f := newAPI(t, token)
	bearer := "Bearer " + token
	now := time.Now()
	id := tasks.TaskID("A1", now)
	refund := "refund_initiated_at=" + url.QueryEscape(now.UTC().Format(time.RFC3339))
	cases := []struct {
		name, method, path, auth, body string
		want                           int
		check                          func(t *testing.T, out map[string]any)
	}{
		{"no token", "POST", "/v1/cancellations", "", payload("A1", now), 401, nil},
		{"wrong token", "POST", "/v1/cancellations", "Bearer nope", payload("A1", now), 401, nil},
		{"basic instead of bearer", "GET", "/v1/cancellations/A1", "Basic " + token, "", 401, nil},
		{"created", "POST", "/v1/cancellations", bearer, payload("A1", now), 202, func(t *testing.T, out map[string]any) {
			if out["task_id"] != id || out["queue"] != f.queue || out["state"] != "pending" ||
				out["window_closes_at"] != now.Add(2*time.Hour).UTC().Format(time.RFC3339) {
				t.Fatalf("%v", out)
			}
		}},
		{"duplicate", "POST", "/v1/cancellations", bearer, payload("A1", now), 409, func(t *testing.T, out map[string]any) {
			if out["state"] != "pending" || out["task_id"] != id || out["order_ref"] != "A1" ||
				out["refund_initiated_at"] != now.UTC().Format(time.RFC3339) || !strings.Contains(out["error"].(string), "refund initiated at") {
				t.Fatalf("%v", out)
			}
		}},
		{"window closed", "POST", "/v1/cancellations", bearer, payload("A2", now.Add(-3*time.Hour)), 422, nil},
		{"bad fields", "POST", "/v1/cancellations", bearer, `{"order_ref":"bad ref","refund_initiated_at":"2026-13-01"}`, 400, func(t *testing.T, out map[string]any) {
			if fields, _ := out["fields"].([]any); len(fields) == 0 {
				t.Fatalf("no field errors: %v", out)
			}
		}},
		{"missing fields", "POST", "/v1/cancellations", bearer, `{}`, 400, func(t *testing.T, out map[string]any) {
			if fields, _ := out["fields"].([]any); len(fields) != 2 {
				t.Fatalf("want two field errors: %v", out)
			}
		}},
		{"unknown field", "POST", "/v1/cancellations", bearer, `{"order_ref":"A3","refund_initiated_at":"2026-11-25T10:00:00Z","amount":5}`, 400, nil},
		{"empty body", "POST", "/v1/cancellations", bearer, ``, 400, nil},
		{"not json", "POST", "/v1/cancellations", bearer, `<xml/>`, 400, nil},
		{"too large", "POST", "/v1/cancellations", bearer, `{"reason":"` + strings.Repeat("x", 20<<10) + `"}`, 413, nil},
		{"get", "GET", "/v1/cancellations/A1?" + refund, bearer, "", 200, func(t *testing.T, out map[string]any) {
			if out["state"] != "pending" || out["order_ref"] != "A1" || out["task_id"] != id || out["window_closes_at"] == nil {
				t.Fatalf("%v", out)
			}
		}},
		{"get unknown", "GET", "/v1/cancellations/NOPE?" + refund, bearer, "", 404, nil},
		{"get another refund of the order", "GET", "/v1/cancellations/A1?refund_initiated_at=2026-11-25T10:00:00Z", bearer, "", 404, nil},
		{"get the order", "GET", "/v1/cancellations/A1", bearer, "", 200, func(t *testing.T, out map[string]any) {
			list, _ := out["cancellations"].([]any)
			if out["order_ref"] != "A1" || len(list) != 1 || list[0].(map[string]any)["task_id"] != id {
				t.Fatalf("%v", out)
			}
		}},
		{"get an unknown order", "GET", "/v1/cancellations/NOPE", bearer, "", 404, nil},
		{"get with an empty refund", "GET", "/v1/cancellations/A1?refund_initiated_at=", bearer, "", 400, nil},
		{"get a bad order ref", "GET", "/v1/cancellations/bad%20ref", bearer, "", 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := f.do(t, tc.method, tc.path, tc.auth, tc.body)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %v", code, tc.want, out)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestProducerAPIBatch(t *testing.T) {
	f := newAPI(t, token)
	now := time.Now()
	body := "[" + strings.Join([]string{payload("B1", now), payload("B1", now), `{"order_ref":""}`, payload("B2", now.Add(-3*time.Hour)), payload("B3", now)}, ",") + "]"
	code, out := f.do(t, "POST", "/v1/cancellations:batch", "Bearer "+token, body)
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	results, _ := out["results"].([]any)
	var got []string
	for _, r := range results {
		got = append(got, fmt.Sprint(r.(map[string]any)["status"]))
	}
	if strings.Join(got, ",") != "202,409,400,422,202" {
		t.Fatalf("statuses %v", got)
	}
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"order_ref":"X"},`, 1001), ",") + "]"
	if code, _ := f.do(t, "POST", "/v1/cancellations:batch", "Bearer "+token, many); code != 400 {
		t.Fatalf("1001 items: %d", code)
	}
	if code, _ := f.do(t, "POST", "/v1/cancellations:batch", "Bearer "+token, `{"a":1}`); code != 400 {
		t.Fatalf("object body: %d", code)
	}
}

func TestProducerAPIOffWithoutToken(t *testing.T) {
	f := newAPI(t, "")
	if code, out := f.do(t, "POST", "/v1/cancellations", "Bearer ", payload("A1", time.Now())); code != 503 || !strings.Contains(fmt.Sprint(out["error"]), "API_TOKEN") {
		t.Fatalf("%d %v", code, out)
	}
}

func TestDashboardAuth(t *testing.T) {
	r := redistest.New(t)
	cases := []struct {
		name           string
		cfg            ops.DashboardConfig
		user, password string
		method, path   string
		want           int
	}{
		{"no credentials sent", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}, "", "", "GET", "/monitoring/", 401},
		{"wrong password", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}, "ops", "nope", "GET", "/monitoring/", 401},
		{"right credentials", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}, "ops", "pw-0123456789", "GET", "/monitoring/", 200},
		{"api with credentials", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}, "ops", "pw-0123456789", "GET", "/monitoring/api/queues", 200},
		{"api without", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}, "", "", "GET", "/monitoring/api/queues", 401},
		{"read-only refuses writes", ops.DashboardConfig{User: "ops", Password: "pw-0123456789", ReadOnly: true}, "ops", "pw-0123456789", "DELETE", "/monitoring/api/queues/whatever", 403},
		{"read-only still reads", ops.DashboardConfig{User: "ops", Password: "pw-0123456789", ReadOnly: true}, "ops", "pw-0123456789", "GET", "/monitoring/api/queues", 200},
		{"read-only on loopback without credentials", ops.DashboardConfig{Loopback: true}, "", "", "GET", "/monitoring/", 200},
		{"no writes on loopback without credentials", ops.DashboardConfig{Loopback: true}, "", "", "DELETE", "/monitoring/api/queues/whatever", 403},
		{"refused off loopback without credentials", ops.DashboardConfig{}, "", "", "GET", "/monitoring/", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Redis = r.Opt
			d := ops.NewDashboard(tc.cfg)
			defer d.Close()
			mux := http.NewServeMux()
			d.Register(mux)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.password)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// Readiness follows Redis: false while it is stopped, true when it is back.
func TestReadinessFollowsRedis(t *testing.T) {
	r := redistest.Start(t) // a Redis this test may stop
	rc := r.Client()
	defer rc.Close()
	mux := http.NewServeMux()
	ops.NewHealth(ops.Checks{Redis: func(ctx context.Context) error { return rc.Ping(ctx).Err() }, WorkerRunning: func() bool { return true }}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ready := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := ready(); code != 200 {
		t.Fatalf("up: %d %s", code, body)
	}
	r.Stop()
	if code, body := ready(); code != 503 || !strings.Contains(body, `"redis"`) {
		t.Fatalf("down: %d %s", code, body)
	}
	r.Restart(t)
	testutil.Eventually(t, 10*time.Second, "readiness to come back with Redis", func() bool { code, _ := ready(); return code == 200 })
	resp, _ := http.Get(srv.URL + "/healthz")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

// api/openapi.yaml describes every route the API serves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	for path, method := range map[string]string{"/v1/cancellations": "post", "/v1/cancellations:batch": "post", "/v1/cancellations/{order_ref}": "get"} {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("openapi.yaml lacks %s %s", method, path)
		}
	}
	if len(doc.Paths) != 3 {
		t.Errorf("openapi.yaml has %d paths, the API 3", len(doc.Paths))
	}
}

// lookup answers the Lookup the daemon gives the API, for queue q.
func lookup(t *testing.T, r *redistest.Redis, q string) *taskview.Lookup {
	t.Helper()
	insp := asynq.NewInspector(r.Opt)
	rc := r.Client()
	t.Cleanup(func() { _ = insp.Close(); _ = rc.Close() })
	return taskview.NewLookup(insp, records.New(rc, q, 0), q)
}
