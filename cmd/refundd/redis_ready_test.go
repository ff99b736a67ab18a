package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
)

// /readyz and refundd_ready tell the truth about Redis: a Redis that answers
// PING but refuses writes — out of memory under noeviction, a read-only
// replica after a failover — makes the replica unready, with the reason.
// The test's own redis-server: it changes maxmemory and replication.
func TestReadinessNeedsRedisWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := redistest.Start(t)
	addr := testutil.FreeAddr(t)
	f.start(t, map[string]string{"REDIS_URL": r.URL, "OPS_ADDR": addr})
	base := "http://" + addr
	rc := r.Client()
	defer rc.Close()
	ctx := context.Background()

	waitReady := func(what string, ready bool, reason string) {
		t.Helper()
		var body string
		testutil.Eventually(t, 20*time.Second, what, func() bool {
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			return (resp.StatusCode == 200) == ready && strings.Contains(body, reason)
		})
		want := map[bool]float64{true: 1, false: 0}[ready]
		if v, ok := testutil.MetricValue(t, testutil.Metrics(t, base), "refundd_ready"); !ok || v != want {
			t.Fatalf("%s: refundd_ready %v, want %v (/readyz %s)", what, v, want, body)
		}
	}
	waitReady("ready", true, `"ready": true`)

	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	waitReady("unready under OOM", false, "out of memory")
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitReady("ready again", true, `"ready": true`)

	primary := redistest.Start(t)
	if err := rc.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(primary.Port())).Err(); err != nil {
		t.Fatal(err)
	}
	waitReady("unready on a read-only replica", false, "read-only replica")
}
