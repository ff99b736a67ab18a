package main

import (
	"bytes"
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// fixture is what a refundd of the test's own runs against: a queue of the
// test's own in Redis, a sandbox 2Checkout, and an Enqueuer for that queue.
type fixture struct {
	redis *redistest.Redis
	queue string
	sb    *rpctest.Server
	enq   *tasks.Enqueuer
	// env is refundd's environment for them; start adds to it.
	env map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := redistest.New(t)
	q := r.Queue(t)
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: "M", SecretKey: "S"})
	t.Cleanup(sb.Close)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	return &fixture{redis: r, queue: q, sb: sb, enq: enq, env: map[string]string{
		"REDIS_URL": r.URL, "TCO_API_URL": sb.RPCURL, "TCO_MERCHANT_CODE": "M", "TCO_SECRET_KEY": "S",
		"REFUND_QUEUE": q, "OPS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "error", "WORKER_POLL_INTERVAL": "50ms",
	}}
}

// start runs refundd in-process with f.env plus extra until stop is called
// or the test ends. stop answers run's error, failing the test if run takes
// more than 20s to return.
func (f *fixture) start(t *testing.T, extra map[string]string) (stop func() error) {
	t.Helper()
	env := maps.Clone(f.env)
	maps.Copy(env, extra)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &bytes.Buffer{}) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Error("refundd did not return within 20s of shutdown")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
