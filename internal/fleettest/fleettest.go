// Package fleettest runs several refundd replicas in one test process —
// each a full daemon (configuration, shared 2Checkout budget, asynq server,
// ops server) — against one Redis and one sandbox 2Checkout, and reads what
// they did from independent evidence: the sandbox's ledger and asynq's
// Inspector.
package fleettest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/internal/deadlinefirst"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// Options configures a Fleet.
type Options struct {
	// RedisURL is every replica's REDIS_URL. Required.
	RedisURL string
	// Queue is the queue of the test's own. Required.
	Queue string
	// Replicas is how many refundd run. Default 3.
	Replicas int
	// Env is added to every replica's environment (e.g. TCO_RATE_LIMIT).
	Env map[string]string
	// Logger receives the replicas' logs. Default zap.NewNop().
	Logger *zap.Logger
	// Manual: the replicas start only when StartReplicas is called
	// (benchmarks enqueue first).
	Manual bool
	// DocumentedOnly starts the sandbox speaking only what 2Checkout
	// documents (no error names, no refund status in getOrder).
	DocumentedOnly bool
	// MerchantCode is the replicas' 2Checkout account; fleets that run at
	// the same time on one Redis need their own (the shared budget is per
	// account). Default "FLEET".
	MerchantCode string
}

// Fleet is the replicas, their sandbox, and a producer and an inspector on
// their queue.
type Fleet struct {
	SB    *rpctest.Server
	Queue string
	Enq   *tasks.Enqueuer
	Insp  *asynq.Inspector
	opts  Options
	env   map[string]string

	mu        sync.Mutex
	ops       []string             // the replicas' ops server base URLs, as they listen
	initiated map[string]time.Time // each added order's refund initiation: its task's identity
}

// Ops answers the base URLs (http://host:port) of the replicas' ops servers
// listening so far.
func (f *Fleet) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Start starts the fleet; it stops when the test ends.
func Start(t testing.TB, o Options) *Fleet {
	t.Helper()
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.MerchantCode == "" {
		o.MerchantCode = "FLEET"
	}
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: o.MerchantCode, SecretKey: "fleet-secret", DocumentedOnly: o.DocumentedOnly})
	t.Cleanup(sb.Close)
	env := map[string]string{
		"REDIS_URL": o.RedisURL, "TCO_API_URL": sb.RPCURL, "TCO_MERCHANT_CODE": o.MerchantCode, "TCO_SECRET_KEY": "fleet-secret",
		"REFUND_QUEUE": o.Queue, "OPS_ADDR": "127.0.0.1:0", "WORKER_CONCURRENCY": "5", "WORKER_POLL_INTERVAL": "50ms", "SHUTDOWN_TIMEOUT": "3s",
		"RETRY_BASE_DELAY": "200ms", "RETRY_MAX_DELAY": "2s", "RETRY_AFTER_MAX": "10s", "TCO_REQUEST_TIMEOUT": "5s",
	}
	maps.Copy(env, o.Env)
	// The replicas' way to Redis (REDIS_URL and its TLS files, in o.Env).
	opt, err := redisconn.Open(redisconn.FromEnv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: opt, Queue: o.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	t.Cleanup(func() { // what the replicas shared beside the queue
		rc := redisconn.NewClient(opt)
		defer rc.Close()
		rc.Del(context.Background(), append(deadlinefirst.Keys(o.Queue), windowsweep.Keys(o.Queue)...)...)
	})
	f := &Fleet{SB: sb, Queue: o.Queue, Enq: enq, Insp: insp, opts: o, env: env}
	if !o.Manual {
		f.StartReplicas(t)
	}
	return f
}

// StartReplicas starts the replicas (Start does unless Options.Manual).
// They stop when stop is called or the test ends.
func (f *Fleet) StartReplicas(t testing.TB) (stop func()) {
	t.Helper()
	var stops []func()
	for i := range f.opts.Replicas {
		cfg, err := config.Load(func(k string) string { return f.env[k] })
		if err != nil {
			t.Fatal(err)
		}
		d, err := daemon.New(daemon.Options{Config: cfg, Logger: f.opts.Logger.With(zap.Int("replica", i)),
			OnListen: func(a net.Addr) {
				f.mu.Lock()
				f.ops = append(f.ops, "http://"+a.String())
				f.mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					t.Errorf("replica %d did not stop within 30s", i)
				}
			})
		}
		stops = append(stops, stop)
		t.Cleanup(stop)
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// Refs answers n order references with the given prefix.
func Refs(prefix string, n int) []string {
	refs := make([]string, n)
	for i := range refs {
		refs[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return refs
}

// Add seeds a pending refund for each order in the sandbox, initiated a
// minute ago, and enqueues its cancellation.
func (f *Fleet) Add(t testing.TB, refs ...string) {
	t.Helper()
	f.AddInitiated(t, time.Now().Add(-time.Minute), refs...)
}

// AddInitiated is Add for refunds initiated at initiated (to the second).
func (f *Fleet) AddInitiated(t testing.TB, initiated time.Time, refs ...string) {
	t.Helper()
	initiated = initiated.UTC().Truncate(time.Second)
	seed := make([]rpctest.Refund, len(refs))
	for i, r := range refs {
		seed[i] = rpctest.Refund{OrderRef: r, InitiatedAt: initiated}
	}
	if err := f.SB.Seed(seed...); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if f.initiated == nil {
		f.initiated = map[string]time.Time{}
	}
	for _, r := range refs {
		f.initiated[r] = initiated
	}
	f.mu.Unlock()
	for _, r := range refs {
		if _, err := f.Enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: r, RefundInitiatedAt: initiated}); err != nil {
			t.Fatal(err)
		}
	}
}

// Status answers the task of the cancellation Add enqueued for ref.
func (f *Fleet) Status(ref string) (*asynq.TaskInfo, error) {
	f.mu.Lock()
	initiated := f.initiated[ref]
	f.mu.Unlock()
	return f.Enq.Status(ref, initiated)
}

// WaitFinished waits until every task of refs is completed or archived,
// and answers them by state.
func (f *Fleet) WaitFinished(t testing.TB, within time.Duration, refs ...string) map[asynq.TaskState][]string {
	t.Helper()
	var states map[asynq.TaskState][]string
	testutil.Eventually(t, within, fmt.Sprintf("%d tasks to finish", len(refs)), func() bool {
		states = map[asynq.TaskState][]string{}
		for _, r := range refs {
			info, err := f.Status(r)
			if err != nil {
				return false // a Redis hiccup, or a task lost: keep looking until the deadline
			}
			states[info.State] = append(states[info.State], r)
		}
		return len(states[asynq.TaskStateCompleted])+len(states[asynq.TaskStateArchived]) == len(refs)
	})
	return states
}

// WaitDrained waits until n tasks of the queue are completed or archived
// (one Redis read per poll, for benchmarks).
func (f *Fleet) WaitDrained(t testing.TB, n int, within time.Duration) *asynq.QueueInfo {
	t.Helper()
	var qi *asynq.QueueInfo
	testutil.Eventually(t, within, fmt.Sprintf("%d tasks to finish", n), func() bool {
		var err error
		qi, err = f.Insp.GetQueueInfo(f.Queue)
		return err == nil && qi.Completed+qi.Archived >= n
	})
	return qi
}

// CallTimes answers the arrival times of every call in the sandbox's ledger
// (logins included), sorted.
func (f *Fleet) CallTimes() []time.Time {
	var ts []time.Time
	for _, c := range f.SB.Ledger() {
		ts = append(ts, c.Time)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// MaxInWindow answers the most calls of sorted ts that fall in any window
// [t, t+w), and where that window starts.
func MaxInWindow(ts []time.Time, w time.Duration) (n int, at time.Time) {
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Before(ts[i].Add(w)) {
			j++
		}
		if j-i > n {
			n, at = j-i, ts[i]
		}
	}
	return n, at
}
