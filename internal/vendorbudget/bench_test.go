package vendorbudget_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/vendorbudget"
)

// BenchmarkFleetThroughput measures cancellations per second through a
// whole refundd (config, shared budget, asynq, handler, client, sandbox over
// loopback) with the shared rate limit off and on — a limit far above the
// load — in the same run, on one Redis, alternating ten times so that a
// busy machine weighs on both alike. It reports both rates and on/off in
// percent.
//
//	go test ./internal/vendorbudget -run '^$' -bench FleetThroughput -benchtime 1000x
func BenchmarkFleetThroughput(b *testing.B) {
	const rounds = 10
	r := redistest.New(b)
	var took [2]time.Duration
	for round := range rounds {
		for i, limit := range []int{0, 100000} {
			took[i] += drain(b, r, round, limit)
		}
	}
	off, on := float64(rounds*b.N)/took[0].Seconds(), float64(rounds*b.N)/took[1].Seconds()
	b.ReportMetric(off, "off-tasks/s")
	b.ReportMetric(on, "on-tasks/s")
	b.ReportMetric(100*on/off, "on/off-%")
}

// drain times one refundd (concurrency 20) through b.N tasks with
// TCO_RATE_LIMIT=limit.
func drain(b *testing.B, r *redistest.Redis, round, limit int) time.Duration {
	b.StopTimer()
	f := fleettest.Start(b, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(b), Replicas: 1, Manual: true,
		Env: map[string]string{"TCO_RATE_LIMIT": strconv.Itoa(limit), "TCO_RATE_BURST": "100", "WORKER_CONCURRENCY": "20"}})
	f.Add(b, fleettest.Refs(fmt.Sprintf("B%d-%d-", round, limit), b.N)...)
	b.StartTimer()
	start := time.Now()
	stop := f.StartReplicas(b)
	qi := f.WaitDrained(b, b.N, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	if qi.Archived > 0 {
		b.Fatalf("%d archived", qi.Archived)
	}
	return elapsed
}

// BenchmarkGateWait is the cost of asking the shared budget once: with no
// ceiling (the fleet's state, read once per Sync), and with one (the GCRA
// script besides).
func BenchmarkGateWait(b *testing.B) {
	r := redistest.New(b)
	rc := r.Client()
	defer rc.Close()
	for _, rate := range []int{0, 100000} {
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			g, err := vendorbudget.New(vendorbudget.Config{Redis: rc, Key: "bench-" + strconv.Itoa(rate) + "-" + r.Queue(b), Rate: rate, Burst: 100})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if err := g.Wait(ctx, "cancelRefund"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
