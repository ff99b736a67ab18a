package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	goredis "github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// The test binary doubles as a refundd child process: with
// REFUNDD_TEST_CHILD=1 it runs refundd from its environment and exits.
func TestMain(m *testing.M) {
	if os.Getenv("REFUNDD_TEST_CHILD") == "1" {
		if err := run(context.Background(), nil, os.Getenv, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child refundd:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testutil.RunWaiting(m))
}

// Rule 6: a refundd process killed with SIGKILL in the middle of a call
// loses nothing. The call it left behind still reached 2Checkout (the sandbox
// applies it when the connection drops), the task is re-delivered by asynq's
// recoverer, and the next attempt ends in the truth: already_cancelled,
// confirmed with getOrder.
func TestSIGKILLMidCallTaskFinishesAfterRedelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	initiated := time.Now().Add(-time.Minute)
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "K1", RefundID: "R-K1", InitiatedAt: initiated})
	// The first cancelRefund sits in the sandbox "in flight" until its client goes away.
	_ = f.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "latency", Latency: rpctest.Duration(10 * time.Minute), FirstN: 1})

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "REFUNDD_TEST_CHILD=1")
	for k, v := range f.env {
		child.Env = append(child.Env, k+"="+v)
	}
	child.Env = append(child.Env, "LOG_LEVEL=warn") // the last value wins
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()

	if _, err := f.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "K1", RefundInitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "the child's call to reach the sandbox", func() bool { return f.sb.InFlight() == 1 })
	if err := child.Process.Kill(); err != nil { // SIGKILL, mid-call
		t.Fatal(err)
	}
	_ = child.Wait()
	// The sandbox applies the held call when its connection drops. The
	// kernel's close of the dead process's socket was seen late, or not at
	// all, under the full parallel CI run; closing the server's side as well
	// makes the drop certain.
	f.sb.CloseClientConnections()
	testutil.Eventually(t, 30*time.Second, "the sandbox to apply the abandoned call", func() bool {
		rf, _ := f.sb.Refund("K1")
		return rf.Status == "CANCELED"
	})
	if info, _ := f.enq.Status("K1", initiated); info == nil || info.State != asynq.TaskStateActive {
		t.Fatalf("after the kill the task should still be active (leased to the dead worker): %+v", info)
	}

	// asynq re-delivers a task once its lease is 30s past expiry, checking at
	// server start and every minute. Move the lease into the past rather
	// than wait: the new worker's start-up sweep then recovers it.
	rc := f.redis.Client()
	defer rc.Close()
	leaseKey := "asynq:{" + f.queue + "}:lease"
	if n, err := rc.ZAdd(context.Background(), leaseKey, redisZ(time.Now().Add(-2*time.Minute), tasks.TaskID("K1", initiated))).Result(); err != nil || n != 0 {
		t.Fatalf("lease %s not found (asynq's layout changed?): added %d, %v", leaseKey, n, err)
	}
	f.start(t, map[string]string{"RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "1s"})

	var info *asynq.TaskInfo
	testutil.Eventually(t, 30*time.Second, "the re-delivered task to finish", func() bool {
		info, _ = f.enq.Status("K1", initiated)
		return info != nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived)
	})
	var res tasks.Result
	if err := json.Unmarshal(info.Result, &res); err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("%v %q %s\nchild output:\n%s", info.State, info.LastErr, info.Result, childOut.String())
	}
	if res.Outcome != "already_cancelled" || !res.Confirmed || res.Attempts != 2 || res.RefundID != "R-K1" {
		t.Fatalf("result %+v", res)
	}
}

// Rule 5: with credentials 2Checkout refuses, /readyz says so, and tasks
// keep retrying rather than being archived.
func TestReadinessReportsBadCredentials(t *testing.T) {
	f := newFixture(t)
	addr := testutil.FreeAddr(t)
	f.start(t, map[string]string{"TCO_SECRET_KEY": "WRONG", "OPS_ADDR": addr, "RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "200ms"})

	initiatedB := time.Now()
	if _, err := f.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "B1", RefundInitiatedAt: initiatedB}); err != nil {
		t.Fatal(err)
	}
	var body string
	testutil.Eventually(t, 15*time.Second, "/readyz to report the credentials", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		body = b.String()
		return resp.StatusCode == 503 && strings.Contains(body, "AUTHENTICATION_FAILED")
	})
	if strings.Contains(body, "WRONG") {
		t.Fatalf("readiness shows the secret: %s", body)
	}
	info, err := f.enq.Status("B1", initiatedB)
	if err != nil || info.State == asynq.TaskStateArchived || info.State == asynq.TaskStateCompleted {
		t.Fatalf("task %+v %v", info, err)
	}
}

func redisZ(t time.Time, member string) goredis.Z {
	return goredis.Z{Score: float64(t.Unix()), Member: member}
}
