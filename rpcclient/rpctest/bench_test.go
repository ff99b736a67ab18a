package rpctest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// BenchmarkCancelRefund measures successful cancelRefund calls per second
// over loopback HTTP through the real client, faults off. Target: ≥ 15,000/s
// on a 2-core machine, so the sandbox is never the bottleneck of the worker's
// benchmarks.
//
//	go test ./rpcclient/rpctest -run '^$' -bench CancelRefund -benchtime 100000x
func BenchmarkCancelRefund(b *testing.B) {
	srv := rpctest.NewServer(rpctest.Config{})
	defer srv.Close()
	refs := make([]rpctest.Refund, b.N)
	for i := range refs {
		refs[i] = rpctest.Refund{OrderRef: fmt.Sprintf("B%08d", i)}
	}
	if err := srv.Seed(refs...); err != nil {
		b.Fatal(err)
	}
	c, err := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.GetOrder(ctx, refs[0].OrderRef); err != nil { // log in outside the timer
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := c.CancelRefund(ctx, refs[i].OrderRef, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}
