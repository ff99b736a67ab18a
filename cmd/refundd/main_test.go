package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Vars {
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("--help misses %s", v.Name)
		}
	}
	if !strings.Contains(out.String(), "refundd demo") {
		t.Error("--help misses the demo")
	}
}

func TestBadConfigFailsAtStart(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "TCO_SECRET_KEY": "sekrit-value"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || err.Error() != "TCO_MERCHANT_CODE is required" {
		t.Fatalf("err %v", err)
	}
	if err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("unknown argument accepted")
	}
}

// SIGTERM (here: the context ending) while a task is in flight: the task
// finishes, nothing is lost, and run returns cleanly.
func TestGracefulShutdownFinishesInFlightTask(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: "M", SecretKey: "S"})
	defer sb.Close()
	_ = sb.Seed(rpctest.Refund{OrderRef: "G1"})
	_ = sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "latency", Latency: rpctest.Duration(700 * time.Millisecond)})
	env := map[string]string{"REDIS_URL": r.URL, "TCO_API_URL": sb.RPCURL, "TCO_MERCHANT_CODE": "M", "TCO_SECRET_KEY": "S",
		"REFUND_QUEUE": q, "OPS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "error"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, &bytes.Buffer{}) }()

	enq, _ := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	defer enq.Close()
	if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "G1", RefundInitiatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the cancelRefund to sit in the sandbox", func() bool { return sb.InFlight() == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	info, err := enq.Status("G1")
	if err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("after shutdown: %+v %v", info, err)
	}
}
