package ops_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// serve runs cfg's server (ops.NewServer, as refundd runs it) on a loopback
// port until the test ends. outer, if given, wraps the server's handler
// (guard included), to watch what arrives.
func serve(t *testing.T, cfg ops.ServerConfig, outer ...func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = ops.NewServer(cfg)
	for _, o := range outer {
		srv.Config.Handler = o(srv.Config.Handler)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// dashboardServer serves the dashboard and the API the way refundd does,
// with a queue holding one task.
func dashboardServer(t *testing.T, dcfg ops.DashboardConfig, outer func(http.Handler) http.Handler, allowed ...string) (srv *httptest.Server, queue string, insp *asynq.Inspector) {
	t.Helper()
	r := redistest.New(t)
	q := r.Queue(t)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "G1", RefundInitiatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	dcfg.Redis = r.Opt
	d := ops.NewDashboard(dcfg)
	t.Cleanup(func() { _ = d.Close() })
	mux := http.NewServeMux()
	d.Register(mux)
	ops.NewAPI(enq, lookup(t, r, q), token, nil).Register(mux)
	ops.NewHealth(ops.Checks{}).Register(mux)
	insp = asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	if outer == nil {
		outer = func(h http.Handler) http.Handler { return h }
	}
	return serve(t, ops.ServerConfig{Handler: mux, AllowedHosts: allowed}, outer), q, insp
}

func paused(t *testing.T, insp *asynq.Inspector, q string) bool {
	t.Helper()
	info, err := insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	return info.Paused
}

// TestGuard: no request from another origin or another host name changes
// anything; the dashboard's own pages and non-browser clients still work.
// Judged by the queue's state in Redis, not only by status codes.
func TestGuard(t *testing.T) {
	for _, mode := range []struct {
		name string
		cfg  ops.DashboardConfig
	}{
		{"basic auth", ops.DashboardConfig{User: "ops", Password: "pw-0123456789"}},
		{"basic auth on loopback", ops.DashboardConfig{User: "ops", Password: "pw-0123456789", Loopback: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv, q, insp := dashboardServer(t, mode.cfg, nil, "ops.example.com")
			port := srv.Listener.Addr().(*net.TCPAddr).Port
			pause := "/monitoring/api/queues/" + q + ":pause"
			resume := "/monitoring/api/queues/" + q + ":resume"
			cases := []struct {
				name, method, path, host string
				headers                  map[string]string
				want                     int
				wantPaused               bool
			}{
				{"cross-site pause", "POST", pause, "", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403, false},
				{"same-site other port", "POST", pause, "", map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}, 403, false},
				{"old browser, foreign Origin", "POST", pause, "", map[string]string{"Origin": "https://evil.example"}, 403, false},
				{"rebinding host pauses", "POST", pause, fmt.Sprintf("rebind.attacker.example:%d", port), nil, 403, false},
				{"rebinding host reads", "GET", "/monitoring/api/queues", fmt.Sprintf("rebind.attacker.example:%d", port), nil, 403, false},
				{"rebinding host on the API", "GET", "/v1/cancellations/G1", "rebind.attacker.example", nil, 403, false},
				{"same-origin pause", "POST", pause, "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, 204, true},
				{"same-origin resume", "POST", resume, "", map[string]string{"Sec-Fetch-Site": "same-origin"}, 204, false},
				{"old browser, own Origin", "POST", pause, "", map[string]string{"Origin": srv.URL}, 204, true},
				{"curl resume", "POST", resume, "", nil, 204, false},
				{"allowed name", "GET", "/monitoring/api/queues", fmt.Sprintf("OPS.example.com:%d", port), nil, 200, false},
				{"localhost", "GET", "/monitoring/api/queues", fmt.Sprintf("localhost:%d", port), nil, 200, false},
				{"IP address", "GET", "/healthz", "10.1.2.3:8080", nil, 200, false},
				{"IPv6 loopback", "GET", "/healthz", fmt.Sprintf("[::1]:%d", port), nil, 200, false},
				{"cross-site read is only a read", "GET", "/monitoring/api/queues", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200, false},
			}
			for _, tc := range cases {
				req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
				if tc.host != "" {
					req.Host = tc.host
				}
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				if mode.cfg.User != "" {
					req.SetBasicAuth(mode.cfg.User, mode.cfg.Password)
				}
				if strings.HasPrefix(tc.path, "/v1/") {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.want, body)
				}
				if got := paused(t, insp, q); got != tc.wantPaused {
					t.Fatalf("%s: queue paused=%v, want %v", tc.name, got, tc.wantPaused)
				}
			}
		})
	}
}

func TestGuardHostAllowed(t *testing.T) {
	g := ops.NewGuard([]string{"Refundd.Internal"})
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "localhost.:80": true, "127.0.0.1:8080": true, "[::1]:8080": true, "::1": true,
		"10.0.0.7:8080": true, "refundd.internal": true, "refundd.internal:9000": true,
		"": false, "evil.example": false, "localhost.evil.example": false, "refundd.internal.evil.example": false,
		"127.0.0.1.nip.io": false, "xlocalhost": false,
	} {
		if got := g.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestSlowClient: a client announcing a large body and sending it a byte at
// a time cannot hold a connection: refused before its body is read when not
// authenticated, cut off at the read timeout when it is; meanwhile the
// server serves others.
func TestSlowClient(t *testing.T) {
	const readTimeout = time.Second
	mux := http.NewServeMux()
	ops.NewAPI(fakeProducer{}, fakeProducer{}, token, nil).Register(mux)
	ops.NewHealth(ops.Checks{}).Register(mux)
	srv := serve(t, ops.ServerConfig{Handler: mux, ReadTimeout: readTimeout})

	bearer := "Authorization: Bearer " + token + "\r\n"
	for _, tc := range []struct {
		name, auth string
		length     int
		want       string // the status line's code, "" for any or none
		within     time.Duration
	}{
		{"unauthenticated", "", 100000, "401", readTimeout / 2},
		{"authenticated, announced too large", bearer, 100000, "413", readTimeout / 2},
		{"authenticated, slow within the limit", bearer, 8000, "", readTimeout + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "POST /v1/cancellations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n{", tc.auth, tc.length)
			// The slow client: one byte per tick until the server hangs up.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := conn.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
			// Others are served meanwhile.
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(srv.URL + "/healthz")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz while a slow client holds a connection: %v %v", resp, err)
			}
			resp.Body.Close()
			// The server answers (or not) and closes the connection within the bound.
			_ = conn.SetReadDeadline(start.Add(tc.within + time.Second))
			br := bufio.NewReader(conn)
			status, _ := br.ReadString('\n')
			if tc.want != "" && !strings.Contains(status, " "+tc.want+" ") {
				t.Fatalf("status line %q, want %s", status, tc.want)
			}
			// EOF or a reset: the server hung up. The deadline: it did not.
			if _, err = io.Copy(io.Discard, br); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still open after %v", time.Since(start))
			}
			if took := time.Since(start); took > tc.within {
				t.Fatalf("connection closed after %v, bound %v", took, tc.within)
			}
		})
	}
}

// TestHeaderSize: headers over the bound get 431.
func TestHeaderSize(t *testing.T) {
	mux := http.NewServeMux()
	ops.NewHealth(ops.Checks{}).Register(mux)
	srv := serve(t, ops.ServerConfig{Handler: mux})
	req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("x", ops.DefaultMaxHeaderBytes+8<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
