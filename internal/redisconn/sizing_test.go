package redisconn_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/webhook"
)

// BenchmarkRetainedTaskMemory measures what a finished cancellation keeps
// in Redis (used_memory after, less before, per refund): its completed
// task with its result, kept 7 days (tasks.DefaultRetention), refundd's
// record of the refund (kept OUTCOME_RETENTION, reported apart), and with
// webhooks on, its delivered notification (kept NOTIFY_MAX_AGE). For
// sizing Redis (docs/redis.md):
//
//	go test -run '^$' -bench RetainedTaskMemory -benchtime 1x ./internal/redisconn
func BenchmarkRetainedTaskMemory(b *testing.B) {
	for _, hooks := range []bool{false, true} {
		b.Run(map[bool]string{false: "task", true: "task+webhook"}[hooks], func(b *testing.B) {
			const n = 2000
			r := redistest.Start(b)
			rc := r.Client()
			defer rc.Close()
			env := map[string]string{"WORKER_CONCURRENCY": "20"}
			if hooks {
				hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
				defer hook.Close()
				env["NOTIFY_URL"], env["NOTIFY_SECRET"] = hook.URL, "webhook-secret-0123456789"
			}
			f := fleettest.Start(b, fleettest.Options{RedisURL: r.URL, Queue: "refunds", Replicas: 1, Env: env})
			used := func() float64 {
				info := rc.Info(context.Background(), "memory").Val()
				for _, line := range strings.Split(info, "\r\n") {
					if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
						n, _ := strconv.ParseFloat(v, 64)
						return n
					}
				}
				b.Fatal("no used_memory")
				return 0
			}
			before := used()
			refs := fleettest.Refs("MEM", n)
			f.Add(b, refs...)
			f.WaitFinished(b, 5*time.Minute, refs...)
			if hooks {
				testutil.Eventually(b, 2*time.Minute, "every notification delivered", func() bool {
					qi, err := f.Insp.GetQueueInfo(webhook.QueueFor(f.Queue))
					return err == nil && qi.Completed >= n
				})
			}
			per := (used() - before) / n
			// Of which refundd's own record (kept OUTCOME_RETENTION):
			// MEMORY USAGE of the queue's refundd:{…} keys.
			ctx := context.Background()
			var own int64
			for it := rc.Scan(ctx, 0, "refundd:{"+f.Queue+"}:*", 1000).Iterator(); it.Next(ctx); {
				own += rc.MemoryUsage(ctx, it.Val()).Val()
			}
			b.ReportMetric(per, "bytes/refund")
			b.ReportMetric(float64(own)/n, "record-bytes/refund")
			b.Logf("%d refunds finished: %.0f bytes each in Redis (used_memory), of which %.0f refundd's record (MEMORY USAGE)", n, per, float64(own)/n)
		})
	}
}
