package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/worker"
)

// countingOpt counts the Redis clients made from it.
type countingOpt struct {
	asynq.RedisClientOpt
	made atomic.Int32
}

func (o *countingOpt) MakeRedisClient() any {
	o.made.Add(1)
	return o.RedisClientOpt.MakeRedisClient()
}

func TestNewServerValidates(t *testing.T) {
	opt := &countingOpt{RedisClientOpt: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}}
	for _, tc := range []struct {
		name string
		cfg  worker.ServerConfig
		h    worker.TaskHandler
		want string // "" for no error
	}{
		{"defaults", worker.ServerConfig{Redis: opt}, noopHandler{}, ""},
		{"no redis", worker.ServerConfig{}, noopHandler{}, "Redis is required"},
		{"no handler", worker.ServerConfig{Redis: opt}, nil, "Handler is required"},
		{"negative concurrency", worker.ServerConfig{Redis: opt, Concurrency: -1}, noopHandler{}, "worker: ServerConfig.Concurrency -1: must not be negative"},
		{"negative shutdown timeout", worker.ServerConfig{Redis: opt, ShutdownTimeout: -time.Second}, noopHandler{}, "worker: ServerConfig.ShutdownTimeout -1s: must not be negative"},
		{"negative check interval", worker.ServerConfig{Redis: opt, DelayedTaskCheckInterval: -1}, noopHandler{}, "DelayedTaskCheckInterval -1ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := worker.NewServer(tc.cfg, tc.h)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				srv.Shutdown() // never started: nothing to do, no panic
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A Server connects when it starts: one built and shut down without
	// starting made no Redis client, so it has none to leak.
	if n := opt.made.Load(); n != 0 {
		t.Fatalf("NewServer made %d Redis clients before Start", n)
	}
}

func TestPrefetch(t *testing.T) {
	for _, tc := range []struct{ concurrency, want int }{
		{1, 1}, {10, 1}, {20, 1}, {21, 2}, {40, 2}, {200, 10}, {201, 11},
	} {
		if got := worker.Prefetch(tc.concurrency); got != tc.want {
			t.Errorf("Prefetch(%d) = %d, want %d", tc.concurrency, got, tc.want)
		}
	}
}

// blockingHandler holds every attempt until release is closed, and counts
// the attempts running at once.
type blockingHandler struct {
	noopHandler
	started chan string
	release chan struct{}
	running atomic.Int32
	most    atomic.Int32
	calls   atomic.Int32
}

func (h *blockingHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	n := h.running.Add(1)
	defer h.running.Add(-1)
	h.calls.Add(1)
	for {
		m := h.most.Load()
		if n <= m || h.most.CompareAndSwap(m, n) {
			break
		}
	}
	id, _ := asynq.GetTaskID(ctx)
	h.started <- id
	<-h.release
	return nil
}

// TestSlots: asynq holds Concurrency+Prefetch tasks (its Inspector shows
// them active), but only Concurrency attempts run; on Shutdown the one
// waiting for a slot goes back as a retry due now, with nothing run and no
// retry counted, while the running ones finish.
func TestSlots(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })
	h := &blockingHandler{started: make(chan string, 10), release: make(chan struct{})}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 2, ShutdownTimeout: 10 * time.Second}, h)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := client.Enqueue(asynq.NewTask("slots", nil), asynq.Queue(q), asynq.TaskID(fmt.Sprintf("T%d", i)), asynq.MaxRetry(5), asynq.Retention(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	testutil.Eventually(t, 10*time.Second, "3 active tasks (2 slots + 1 prefetched)", func() bool {
		qi, err := insp.GetQueueInfo(q)
		return err == nil && qi.Active == 3 && qi.Pending == 1
	})
	for range 2 {
		<-h.started
	}
	if n := h.calls.Load(); n != 2 {
		t.Fatalf("%d attempts started with 2 slots", n)
	}
	stopped := make(chan struct{})
	go func() { srv.Shutdown(); close(stopped) }()
	testutil.Eventually(t, 10*time.Second, "the prefetched task handed back", func() bool {
		ts, err := insp.ListRetryTasks(q)
		return err == nil && len(ts) == 1
	})
	close(h.release)
	<-stopped
	ts, err := insp.ListRetryTasks(q)
	if err != nil || len(ts) != 1 {
		t.Fatalf("retry tasks %v, %v; want the one handed back", ts, err)
	}
	back := ts[0]
	if back.Retried != 0 || !strings.Contains(back.LastErr, "stopped before this attempt began") || back.NextProcessAt.After(time.Now()) {
		t.Errorf("handed back: retried %d, next %v, last error %q; want 0 retries, due now, the stop named", back.Retried, back.NextProcessAt, back.LastErr)
	}
	qi, err := insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Completed != 2 || qi.Pending != 1 || qi.Active != 0 {
		t.Errorf("after shutdown: %d completed, %d pending, %d active; want 2, 1, 0", qi.Completed, qi.Pending, qi.Active)
	}
	if n, most := h.calls.Load(), h.most.Load(); n != 2 || most != 2 {
		t.Errorf("%d attempts, at most %d at once; want 2 and 2", n, most)
	}
}
