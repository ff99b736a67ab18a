package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/config"
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
	f := newFixture(t)
	initiated := time.Now()
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "G1", InitiatedAt: initiated})
	_ = f.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "latency", Latency: rpctest.Duration(700 * time.Millisecond)})
	stop := f.start(t, nil)

	if _, err := f.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "G1", RefundInitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the cancelRefund to sit in the sandbox", func() bool { return f.sb.InFlight() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	info, err := f.enq.Status("G1", initiated)
	if err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("after shutdown: %+v %v", info, err)
	}
}
