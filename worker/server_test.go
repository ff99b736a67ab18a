package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

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
		{"negative fetchers", worker.ServerConfig{Redis: opt, Fetchers: -2}, noopHandler{}, "worker: ServerConfig.Fetchers -2: must not be negative"},
		{"more fetchers than workers", worker.ServerConfig{Redis: opt, Concurrency: 3, Fetchers: 4}, noopHandler{},
			"worker: ServerConfig.Fetchers 4: must not exceed Concurrency 3 (each needs a worker)"},
		{"as many fetchers as workers", worker.ServerConfig{Redis: opt, Concurrency: 3, Fetchers: 3}, noopHandler{}, ""},
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

// The asynq servers of a Server, as asynq's Inspector sees them: their
// workers add up to Concurrency, split as evenly as can be.
func TestFetchersShareConcurrency(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	for _, tc := range []struct {
		concurrency, fetchers int
		want                  []int // each server's workers, sorted
	}{
		{10, 0, []int{10}},   // the default: one
		{200, 0, []int{200}}, // one, however many workers
		{25, 2, []int{12, 13}},
		{5, 3, []int{1, 2, 2}}, // set: every server has a worker, as even as can be
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.concurrency, tc.fetchers), func(t *testing.T) {
			t.Parallel()
			q := r.Queue(t)
			srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: tc.concurrency, Fetchers: tc.fetchers,
				Logger: zaptest.NewLogger(t)}, noopHandler{})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			var got []int
			testutil.Eventually(t, 10*time.Second, "every server's heartbeat", func() bool {
				got = serversOf(t, insp, q)
				return len(got) == len(tc.want)
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("servers' workers %v, want %v", got, tc.want)
			}
			srv.Shutdown()
			testutil.Eventually(t, 10*time.Second, "the servers gone from Redis", func() bool { return len(serversOf(t, insp, q)) == 0 })
		})
	}
}

// serversOf answers the workers of each live asynq server of queue q, sorted.
func serversOf(t *testing.T, insp *asynq.Inspector, q string) []int {
	t.Helper()
	var out []int
	for _, s := range queueServers(t, insp, q) {
		out = append(out, s.Concurrency)
	}
	slices.Sort(out)
	return out
}

// queueServers answers the live asynq servers of queue q.
func queueServers(t *testing.T, insp *asynq.Inspector, q string) []*asynq.ServerInfo {
	t.Helper()
	infos, err := insp.Servers()
	if err != nil {
		t.Fatal(err)
	}
	var out []*asynq.ServerInfo
	for _, s := range infos {
		if _, ok := s.Queues[q]; ok {
			out = append(out, s)
		}
	}
	return out
}

// blockingHandler holds every task until its context ends or release is
// closed, counting the tasks it holds at once.
type blockingHandler struct {
	noopHandler
	mu      sync.Mutex
	running int
	most    int
	seen    map[string]int // runs per task ID
	arrived chan struct{}
	release chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{seen: map[string]int{}, arrived: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (h *blockingHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	id, _ := asynq.GetTaskID(ctx)
	h.mu.Lock()
	h.running++
	h.most = max(h.most, h.running)
	h.seen[id]++
	h.mu.Unlock()
	h.arrived <- struct{}{}
	defer func() {
		h.mu.Lock()
		h.running--
		h.mu.Unlock()
	}()
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Every worker of every server takes a task, never more than Concurrency
// at once, each task once; Shutdown stops all servers together (one
// ShutdownTimeout, not one per server) and hands their unfinished tasks
// back to pending with no retry counted.
func TestFetchersRunEachTaskOnceAndShutDownTogether(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })
	const concurrency, tasks, shutdownTimeout = 6, 30, 2 * time.Second
	// start enqueues n tasks into a new queue and starts three servers of
	// concurrency workers on it; it returns once every worker holds a task.
	start := func(prefix string, n int) (string, *worker.Server, *blockingHandler) {
		q := r.Queue(t)
		for i := range n {
			if _, err := client.Enqueue(asynq.NewTask("test", nil), asynq.Queue(q), asynq.TaskID(fmt.Sprintf("%s%02d", prefix, i)),
				asynq.MaxRetry(5), asynq.Retention(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		h := newBlockingHandler()
		srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: concurrency, Fetchers: 3,
			ShutdownTimeout: shutdownTimeout, TaskCheckInterval: 10 * time.Millisecond, Logger: zaptest.NewLogger(t)}, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown) // if the test ends first (a second Shutdown does nothing)
		for range concurrency { // all six workers, of all three servers, hold a task
			select {
			case <-h.arrived:
			case <-time.After(10 * time.Second):
				t.Fatalf("only some workers took a task")
			}
		}
		return q, srv, h
	}

	q, _, h := start("T", tasks)
	// Let every task finish: the held six, then the rest as they come.
	close(h.release)
	testutil.Eventually(t, 20*time.Second, "every task run", func() bool {
		qi, err := insp.GetQueueInfo(q)
		return err == nil && qi.Completed == tasks
	})
	h.mu.Lock()
	for id, n := range h.seen {
		if n != 1 {
			t.Errorf("task %s ran %d times", id, n)
		}
	}
	if len(h.seen) != tasks || h.most > concurrency {
		t.Errorf("%d tasks ran, at most %d at once; want %d, at most %d", len(h.seen), h.most, tasks, concurrency)
	}
	h.mu.Unlock()

	// Shutdown with a task held on every worker.
	q2, srv2, _ := start("S", concurrency)
	began := time.Now()
	srv2.Shutdown()
	// One after the other, three servers would take three timeouts.
	if took := time.Since(began); took > 2*shutdownTimeout {
		t.Errorf("Shutdown took %v: the servers did not stop together (ShutdownTimeout %v each)", took, shutdownTimeout)
	}
	qi, err := insp.GetQueueInfo(q2)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Pending != concurrency || qi.Active+qi.Retry+qi.Archived != 0 {
		t.Errorf("after Shutdown: %d pending, %d active, %d retry, %d archived; want all %d pending", qi.Pending, qi.Active, qi.Retry, qi.Archived, concurrency)
	}
	for i := range concurrency {
		info, err := insp.GetTaskInfo(q2, fmt.Sprintf("S%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if info.Retried != 0 {
			t.Errorf("task %s: retried %d, want no retry counted", info.ID, info.Retried)
		}
	}
}
