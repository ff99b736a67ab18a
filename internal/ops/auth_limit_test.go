package ops_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/testutil"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestFailedAttemptsLimitedPerAddress: wrong bearer tokens and basic-auth
// passwords from one address share its bucket (3 here); past it that address
// gets 429 with Retry-After, the right token included, while other
// addresses are served; once the bucket refills the right token works
// again. Each failure is a warn line with the address and never the
// credential, and refundd_ops_refused_total counts them.
func TestFailedAttemptsLimitedPerAddress(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	core, logs := observer.New(zapcore.DebugLevel)
	m := metrics.New(nil)
	lim := ops.NewFailureLimit(ops.FailureLimitConfig{Failures: 3, Refill: 10 * time.Second, Now: clock.Now,
		Logger: zap.New(core), Observer: m})
	d := ops.NewDashboard(ops.DashboardConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, User: "ops", Password: "right-password-1",
		Failures: lim})
	defer d.Close()
	mux := http.NewServeMux()
	d.Register(mux)
	ops.NewAPI(fakeProducer{}, fakeProducer{}, token, nil).Limit(ops.APILimits{Failures: lim, Observer: m}).Register(mux)
	mux.Handle("GET /metrics", m.Handler())
	h := ops.NewGuard(nil).Handler(mux)

	const wrongToken, wrongPassword = "guess-token-000000001", "guess-password-0001"
	call := func(addr, kind, secret string) *httptest.ResponseRecorder {
		path := "/v1/cancellations/A1?refund_initiated_at=2026-11-29T09:00:00Z"
		if kind == "basic" {
			path = "/monitoring/"
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Host, req.RemoteAddr = "localhost", addr
		if kind == "basic" {
			req.SetBasicAuth("ops", secret)
		} else {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const a, b = "203.0.113.5:40001", "198.51.100.7:40002"
	expect := func(step string, rec *httptest.ResponseRecorder, want int) {
		t.Helper()
		if rec.Code != want {
			t.Fatalf("%s: status %d, want %d: %s", step, rec.Code, want, rec.Body)
		}
	}
	expect("a: wrong token 1", call(a, "bearer", wrongToken), 401)
	expect("a: wrong password 2", call(a, "basic", wrongPassword), 401)
	expect("a: wrong token 3", call(a, "bearer", wrongToken), 401)
	for _, kind := range []string{"bearer", "basic"} {
		rec := call(a, kind, wrongToken)
		expect("a: past the limit, "+kind, rec, 429)
		if ra := rec.Header().Get("Retry-After"); ra != "10" {
			t.Fatalf("Retry-After %q, want 10 (one attempt regained per 10s)", ra)
		}
	}
	expect("a: the right token waits too", call(a, "bearer", token), 429)
	expect("a: the right password waits too", call(a, "basic", "right-password-1"), 429)
	expect("b: another address, right token", call(b, "bearer", token), 404) // fakeProducer: no such task
	expect("b: another address, wrong password", call(b, "basic", wrongPassword), 401)
	expect("b: right password", call(b, "basic", "right-password-1"), 200)

	clock.Add(9 * time.Second)
	rec := call(a, "bearer", token)
	expect("a: 9s later, still waiting", rec, 429)
	if ra := rec.Header().Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	clock.Add(time.Second)
	expect("a: refilled, right token", call(a, "bearer", token), 404)
	expect("a: refilled, right password", call(a, "basic", "right-password-1"), 200)
	expect("a: one attempt regained, spent", call(a, "bearer", wrongToken), 401)
	expect("a: and refused again", call(a, "bearer", wrongToken), 429)

	// IPv6: one /64 is one address.
	for _, addr := range []string{"[2001:db8:1:2::1]:5", "[2001:db8:1:2::abcd]:5", "[2001:db8:1:2:ffff::9]:5"} {
		expect("v6 guess", call(addr, "bearer", wrongToken), 401)
	}
	expect("v6: same /64, past the limit", call("[2001:db8:1:2::77]:5", "bearer", token), 429)
	expect("v6: another /64", call("[2001:db8:1:3::1]:5", "bearer", token), 404)

	// The log: a warn line per failure, with the address, never a credential.
	failures := logs.FilterMessageSnippet("authentication failed").AllUntimed()
	if len(failures) != 8 {
		t.Errorf("%d failure lines, want 8", len(failures))
	}
	for _, e := range logs.AllUntimed() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, secret := range []string{wrongToken, wrongPassword, token, "right-password-1"} {
			if strings.Contains(line, secret) {
				t.Fatalf("a log line holds a credential: %s", line)
			}
		}
	}
	if got := failures[0].ContextMap()["address"]; got != "203.0.113.5" || failures[0].Level != zapcore.WarnLevel {
		t.Errorf("first failure logged at %v with address %v, want warn and 203.0.113.5", failures[0].Level, got)
	}

	scrape := httptest.NewRecorder()
	mux.ServeHTTP(scrape, httptest.NewRequest("GET", "/metrics", nil))
	for series, want := range map[string]float64{
		`refundd_ops_refused_total{reason="auth_failed"}`:    8, // a 3+1, b 1, v6 3
		`refundd_ops_refused_total{reason="auth_throttled"}`: 7, // a 4, +1 at 9s, +1 after the refill; v6 1
	} {
		if v, ok := testutil.MetricValue(t, scrape.Body.String(), series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}

// TestParallelGuessesCannotOverrunTheBucket: 200 wrong tokens sent at once
// from one address get exactly as many 401s as the bucket holds (an attempt
// holds its token until judged), the rest 429; requests with no credentials
// at all (a browser's first) spend nothing.
func TestParallelGuessesCannotOverrunTheBucket(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	lim := ops.NewFailureLimit(ops.FailureLimitConfig{Failures: 3, Refill: time.Minute, Now: clock.Now})
	h := ops.Bearer(token, lim, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	call := func(auth string) int {
		req := httptest.NewRequest("GET", "/v1/x", nil)
		req.RemoteAddr = "203.0.113.9:1"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 20 {
		if code := call(""); code != 401 {
			t.Fatalf("no credentials: %d, want 401", code)
		}
	}
	if code := call("Bearer " + token); code != 204 {
		t.Fatalf("no-credential requests spent attempts: the right token got %d", code)
	}
	codes := make(chan int, 200)
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() { codes <- call("Bearer wrong-guess-0000000000") })
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[401] != 3 || count[429] != 197 {
		t.Fatalf("answers %v, want 3×401 and 197×429", count)
	}
}
