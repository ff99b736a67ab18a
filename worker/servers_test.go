package worker_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

func TestDequeuersFor(t *testing.T) {
	for _, c := range []struct{ concurrency, want int }{
		{-1, 1}, {0, 1}, {1, 1}, {10, 1}, {200, 1}, {250, 1}, {251, 2}, {500, 2}, {501, 3}, {1000, 4},
	} {
		if got := worker.DequeuersFor(c.concurrency); got != c.want {
			t.Errorf("DequeuersFor(%d) = %d, want %d", c.concurrency, got, c.want)
		}
	}
}

// serversStack runs Servers on a queue of the test's own against a sandbox.
func serversStack(t *testing.T, cfg worker.ServerConfig, faults ...rpctest.FaultRule) (*worker.Servers, *rpctest.Server, *tasks.Enqueuer, *asynq.Inspector, string) {
	t.Helper()
	r := redistest.New(t)
	cfg.Redis, cfg.Queue, cfg.Logger = r.Opt, r.Queue(t), zaptest.NewLogger(t)
	sb := rpctest.NewServer(rpctest.Config{})
	t.Cleanup(sb.Close)
	_ = sb.SetFaults(faults...)
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey})
	if err != nil {
		t.Fatal(err)
	}
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srvs, err := worker.NewServers(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srvs.Start(h); err != nil {
		t.Fatal(err)
	}
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: cfg.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	return srvs, sb, enq, insp, cfg.Queue
}

func enqueueN(t *testing.T, sb *rpctest.Server, enq *tasks.Enqueuer, n int) []string {
	t.Helper()
	refs := make([]string, n)
	for i := range refs {
		refs[i] = fmt.Sprintf("S%03d", i)
		_ = sb.Seed(rpctest.Refund{OrderRef: refs[i]})
		if _, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: refs[i], RefundInitiatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return refs
}

// Two asynq servers share the concurrency (3 + 2): together they run 5
// tasks at once, which neither could alone; Shutdown lets all 5 finish.
func TestServersShareConcurrencyAndFinishOnShutdown(t *testing.T) {
	srvs, sb, enq, insp, q := serversStack(t, worker.ServerConfig{Concurrency: 5, Dequeuers: 2, ShutdownTimeout: 10 * time.Second},
		rpctest.FaultRule{Method: "cancelRefund", Kind: "latency", Latency: rpctest.Duration(time.Second)})
	if srvs.Len() != 2 {
		t.Fatalf("%d servers, want 2", srvs.Len())
	}
	var shares []int
	testutil.Eventually(t, 10*time.Second, "both servers to report", func() bool {
		infos, err := insp.Servers()
		shares = shares[:0]
		for _, si := range infos {
			if _, ok := si.Queues[q]; ok && err == nil {
				shares = append(shares, si.Concurrency)
			}
		}
		return len(shares) == 2
	})
	sort.Ints(shares)
	if shares[0] != 2 || shares[1] != 3 {
		t.Fatalf("concurrency shares %v, want [2 3]", shares)
	}
	refs := enqueueN(t, sb, enq, 5)
	testutil.Eventually(t, 10*time.Second, "5 cancellations in flight at once", func() bool { return sb.InFlight() == 5 })
	srvs.Shutdown()
	for _, ref := range refs {
		if info, err := enq.Status(ref); err != nil || info.State != asynq.TaskStateCompleted {
			t.Errorf("%s after shutdown: %v %v", ref, info.State, err)
		}
	}
}

// Shutdown stops the servers side by side: hung tasks on both go back to
// pending after one ShutdownTimeout, not one per server.
func TestServersShutdownTogether(t *testing.T) {
	const timeout = 2 * time.Second
	srvs, sb, enq, _, _ := serversStack(t, worker.ServerConfig{Concurrency: 2, Dequeuers: 2, ShutdownTimeout: timeout},
		rpctest.FaultRule{Method: "cancelRefund", Kind: "hang"})
	refs := enqueueN(t, sb, enq, 2)
	testutil.Eventually(t, 10*time.Second, "both tasks in flight", func() bool { return sb.InFlight() == 2 })
	start := time.Now()
	srvs.Shutdown()
	if took := time.Since(start); took >= 2*timeout-250*time.Millisecond {
		t.Errorf("Shutdown took %v: the servers stopped one after the other (timeout %v each)", took, timeout)
	}
	for _, ref := range refs {
		if info, err := enq.Status(ref); err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 {
			t.Errorf("%s after shutdown: %v retried %d %v; want pending, no retry counted", ref, info.State, info.Retried, err)
		}
	}
}

func TestNewServersRejectsNegativeDequeuers(t *testing.T) {
	r := redistest.New(t)
	h, _ := worker.NewHandler(worker.HandlerConfig{API: noAPI{}})
	if _, err := worker.NewServers(worker.ServerConfig{Redis: r.Opt, Dequeuers: -1}, h); err == nil {
		t.Fatal("Dequeuers -1 accepted")
	}
	if _, err := worker.NewServers(worker.ServerConfig{Redis: r.Opt, Concurrency: -1}, h); err == nil {
		t.Fatal("Concurrency -1 accepted")
	}
}
