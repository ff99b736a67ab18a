package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With LOG_FORMAT=json every line refundd writes is JSON, also through a
// Redis outage, when go-redis and asynq's metrics collector have things to
// say of their own.
func TestJSONLogsThroughRedisOutage(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t) // a Redis this test stops
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: "M", SecretKey: "S"})
	defer sb.Close()
	addr := testutil.FreeAddr(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "REFUNDD_TEST_CHILD=1", "REDIS_URL="+r.URL, "TCO_API_URL="+sb.RPCURL, "TCO_MERCHANT_CODE=M",
		"TCO_SECRET_KEY=S", "OPS_ADDR="+addr, "LOG_FORMAT=json", "LOG_LEVEL=info")
	var stdout, stderr lockedBuffer
	child.Stdout, child.Stderr = &stdout, &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testutil.Eventually(t, 20*time.Second, "refundd to be ready", func() bool { return get("/readyz") == 200 })

	r.Stop()
	testutil.Eventually(t, 30*time.Second, "go-redis and the metrics collector to log the outage", func() bool {
		get("/metrics") // the collector runs on each scrape
		s := stderr.String()
		return strings.Contains(s, "failed to dial") && strings.Contains(s, "Failed to collect metrics data")
	})
	_ = child.Process.Signal(syscall.SIGTERM)
	_ = child.Wait()

	out := stdout.String() + stderr.String()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("not a JSON line: %q", line)
		}
	}
}
