package windowsweep_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// stack: real Redis, the sandbox, the worker's server and a sweeper.
type stack struct {
	queue  string
	sb     *rpctest.Server
	client *asynq.Client
	insp   *asynq.Inspector
	sweep  *windowsweep.Sweeper
}

func start(t *testing.T, policy worker.Policy) *stack {
	t.Helper()
	r := redistest.New(t)
	q := r.Queue(t)
	sb := rpctest.NewServer(rpctest.Config{Window: policy.Window})
	t.Cleanup(sb.Close)
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	const poll = 50 * time.Millisecond
	if policy.LastRetryLead == 0 { // the lead this server's poll needs
		policy.LastRetryLead = worker.LeadFor(worker.DefaultDelayedTaskCheckInterval, poll)
	}
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: records.New(rc, q, 0), Policy: policy, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Logger: log, ShutdownTimeout: 2 * time.Second, TaskCheckInterval: poll}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	sw, err := windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: q, Policy: policy, Interval: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close() })
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })
	return &stack{queue: q, sb: sb, client: client, insp: insp, sweep: sw}
}

// runSweeper runs the sweeper until the test ends.
func (s *stack) runSweeper(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.sweep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// rawTask is what a producer using raw asynq enqueues: the documented ID,
// asynq's defaults (MaxRetry 25) unless opts say otherwise.
func (s *stack) rawTask(t *testing.T, ref string, initiated time.Time, opts ...asynq.Option) string {
	t.Helper()
	id := tasks.TaskID(ref, initiated)
	payload := `{"order_ref":"` + ref + `","refund_initiated_at":"` + initiated.UTC().Format(time.RFC3339Nano) + `"}`
	if _, err := s.client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)),
		append([]asynq.Option{asynq.TaskID(id), asynq.Queue(s.queue)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	return id
}

func (s *stack) wait(t *testing.T, id string, within time.Duration, done func(*asynq.TaskInfo) bool) *asynq.TaskInfo {
	t.Helper()
	return testutil.WaitTask(t, s.insp, s.queue, id, within, done)
}

func archived(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateArchived }
func completed(i *asynq.TaskInfo) bool {
	return i.State == asynq.TaskStateCompleted
}

func (s *stack) cancelCalls() (n int) {
	for _, c := range s.sb.Ledger() {
		if c.Method == "cancelRefund" {
			n++
		}
	}
	return n
}

// Case 5: a raw task with an asynq.Deadline already passed never reaches
// the handler by itself (asynq #751); the sweep makes it end archived with
// the window as its reason, without calling 2Checkout.
func TestExpiredDeadlineArchivedForTheWindow(t *testing.T) {
	s := start(t, worker.Policy{})
	s.runSweeper(t)
	initiated := time.Now().Add(-3 * time.Hour)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "D1", InitiatedAt: initiated})
	id := s.rawTask(t, "D1", initiated, asynq.Deadline(time.Now().Add(-time.Minute)))
	info := s.wait(t, id, time.Minute, archived)
	if want := "window closed at " + initiated.Add(2*time.Hour).UTC().Format(time.RFC3339); !strings.HasPrefix(info.LastErr, want) {
		t.Fatalf("last error %q, want prefix %q", info.LastErr, want)
	}
	if !info.Deadline.IsZero() {
		t.Fatalf("deadline %v kept", info.Deadline)
	}
	if n := s.cancelCalls(); n != 0 {
		t.Fatalf("%d cancelRefund calls after the window", n)
	}
}

// An expired deadline on a task whose window is still open: the copy
// without the deadline cancels the refund.
func TestExpiredDeadlineWithTimeLeftIsCancelled(t *testing.T) {
	s := start(t, worker.Policy{})
	s.runSweeper(t)
	initiated := time.Now().Add(-10 * time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "D2", InitiatedAt: initiated})
	id := s.rawTask(t, "D2", initiated, asynq.Deadline(time.Now().Add(-time.Second)), asynq.Retention(time.Hour))
	s.wait(t, id, time.Minute, completed)
	if r, _ := s.sb.Refund("D2"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("sandbox refund %+v", r)
	}
}

// A task scheduled past its cut-off is run by the sweep and archived for
// the window at once, not when its producer scheduled it.
func TestScheduledPastCutoffArchived(t *testing.T) {
	s := start(t, worker.Policy{})
	s.runSweeper(t)
	initiated := time.Now().Add(-119*time.Minute - 30*time.Second) // cut-off passed 30s ago
	id := s.rawTask(t, "S1", initiated, asynq.ProcessIn(time.Hour))
	info := s.wait(t, id, time.Minute, archived)
	if !strings.HasPrefix(info.LastErr, "window closed at") || s.cancelCalls() != 0 {
		t.Fatalf("%q, %d calls", info.LastErr, s.cancelCalls())
	}
}

// A task archived by asynq's counter while its window is open (MaxRetry 0:
// the first failure archives it) is run again, and completes; once the
// window is closed, one archived by the counter ends with the window.
func TestArchivedByTheCounterIsRunAgain(t *testing.T) {
	t.Parallel()
	s := start(t, worker.Policy{BaseDelay: 100 * time.Millisecond, MinDelay: 50 * time.Millisecond})
	initiated := time.Now().Add(-10 * time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "C1", InitiatedAt: initiated})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503, FirstN: 1})
	id := s.rawTask(t, "C1", initiated, asynq.MaxRetry(0), asynq.Retention(time.Hour))
	info := s.wait(t, id, 20*time.Second, archived) // the counter's doing, not the handler's
	if !strings.Contains(info.LastErr, "HTTP 503") {
		t.Fatalf("%q", info.LastErr)
	}
	s.runSweeper(t)
	s.wait(t, id, time.Minute, completed)
	if r, _ := s.sb.Refund("C1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("sandbox refund %+v", r)
	}
}

// The operator's word stands: a task an operator archived from the
// dashboard while it waited to retry (MaxRetry 0 too, where asynq's
// counter would have archived it at its next failure) is never run by the
// sweep, however long it sits there with its window open.
func TestOperatorArchiveStands(t *testing.T) {
	t.Parallel()
	s := start(t, worker.Policy{BaseDelay: 10 * time.Second, MinDelay: 10 * time.Second})
	initiated := time.Now().Add(-10 * time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "O1", InitiatedAt: initiated})
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "O2", InitiatedAt: initiated})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503, FirstN: 1})
	id := s.rawTask(t, "O1", initiated, asynq.MaxRetry(3))
	s.wait(t, id, 20*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateRetry })
	if err := s.insp.ArchiveTask(s.queue, id); err != nil {
		t.Fatal(err)
	}
	// A MaxRetry 0 task asynq's counter archived (parked) beside it: the
	// sweep runs that one, which shows the sweep did run.
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503, FirstN: 1})
	parked := s.rawTask(t, "O2", initiated, asynq.MaxRetry(0), asynq.Retention(time.Hour))
	s.wait(t, parked, 20*time.Second, archived)
	calls := s.cancelCalls()
	testutil.Eventually(t, time.Minute, "the sweep runs the parked task when due", func() bool {
		if _, err := s.sweep.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		info, err := s.insp.GetTaskInfo(s.queue, parked)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	if info, err := s.insp.GetTaskInfo(s.queue, id); err != nil || info.State != asynq.TaskStateArchived {
		t.Fatalf("operator-archived task: %+v %v", info, err)
	}
	if r, _ := s.sb.Refund("O1"); r.Status == rpctest.StatusCanceled || s.cancelCalls() != calls+1 {
		t.Fatalf("operator-archived refund %+v; cancelRefund calls %d → %d (want one: the parked task's)", r, calls, s.cancelCalls())
	}
}

// The same with a window that closes while the task sits archived by the
// counter: it ends archived with the window as its reason, and the attempt
// that may have reached 2Checkout (a 502) is settled with getOrder.
func TestArchivedByTheCounterAfterTheWindow(t *testing.T) {
	t.Parallel()
	policy := worker.Policy{Window: 4 * time.Second, SafetyMargin: time.Second, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second,
		MinDelay: 50 * time.Millisecond, RequestTimeout: time.Second}
	s := start(t, policy)
	initiated := time.Now()
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "C2", InitiatedAt: initiated})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 502})
	id := s.rawTask(t, "C2", initiated, asynq.MaxRetry(0))
	s.wait(t, id, 20*time.Second, archived)
	cutoff := initiated.Add(policy.Window - policy.SafetyMargin)
	testutil.Eventually(t, 10*time.Second, "the cut-off", func() bool { return time.Now().After(cutoff) })
	calls := s.cancelCalls()
	s.runSweeper(t)
	info := s.wait(t, id, time.Minute, func(i *asynq.TaskInfo) bool { return archived(i) && strings.HasPrefix(i.LastErr, "window closed at") })
	if !strings.Contains(info.LastErr, "getOrder confirms the refund is PENDING, not cancelled") || s.cancelCalls() != calls {
		t.Fatalf("%q; cancelRefund calls %d → %d", info.LastErr, calls, s.cancelCalls())
	}
}

// The sweep reports the backlog's urgency from the tasks not finished —
// scheduled or pending, whoever produced them — and leaves out finished
// ones and tasks of other types.
func TestSweepReportsBacklogUrgency(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	now := time.Now().UTC().Truncate(time.Second)
	sw, err := windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: q, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	client := asynq.NewClient(r.Opt)
	defer client.Close()
	cutoffIn := func(d time.Duration) time.Time { return now.Add(d - 2*time.Hour + worker.DefaultSafetyMargin) }
	enqueue := func(ref string, initiated time.Time, opts ...asynq.Option) {
		t.Helper()
		payload := `{"order_ref":"` + ref + `","refund_initiated_at":"` + initiated.Format(time.RFC3339) + `"}`
		if _, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)),
			append([]asynq.Option{asynq.TaskID(ref), asynq.Queue(q)}, opts...)...); err != nil {
			t.Fatal(err)
		}
	}
	enqueue("P2M", cutoffIn(2*time.Minute))                                                     // pending, cut-off in 2m: at risk within 5m and 15m
	enqueue("S10M", cutoffIn(10*time.Minute), asynq.ProcessIn(time.Hour))                       // scheduled, in 10m: within 15m
	enqueue("P1H", cutoffIn(time.Hour))                                                         // not at risk
	enqueue("DONE", cutoffIn(-time.Minute), asynq.Retention(time.Hour))                         // finished below: not counted
	if _, err := client.Enqueue(asynq.NewTask("other:type", nil), asynq.Queue(q)); err != nil { // not a cancellation
		t.Fatal(err)
	}
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	if err := insp.ArchiveTask(q, "DONE"); err != nil {
		t.Fatal(err)
	}
	rep, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := windowsweep.Backlog{Tasks: 3, Earliest: now.Add(2 * time.Minute), AtRisk5m: 1, AtRisk15m: 2}
	if rep.Backlog != want {
		t.Fatalf("backlog %+v, want %+v", rep.Backlog, want)
	}
}

// fleetQueue is a queue of the test's own that starts with one
// cancellation, P, pending with its cut-off 2 minutes ahead of now (the
// sweepers' clock); enqueue adds more.
type fleetQueue struct {
	r      *redistest.Redis
	q      string
	now    time.Time
	client *asynq.Client
	insp   *asynq.Inspector
}

func newFleetQueue(t *testing.T) *fleetQueue {
	t.Helper()
	r := redistest.New(t)
	f := &fleetQueue{r: r, q: r.Queue(t), now: time.Now().UTC().Truncate(time.Second), client: asynq.NewClient(r.Opt), insp: asynq.NewInspector(r.Opt)}
	t.Cleanup(func() { _ = f.client.Close(); _ = f.insp.Close() })
	f.enqueue(t, "P", 2*time.Minute)
	return f
}

// enqueue adds a cancellation whose cut-off is cutoffIn from now: pending
// if that is ahead, else scheduled an hour ahead (for the sweep to run).
func (f *fleetQueue) enqueue(t *testing.T, ref string, cutoffIn time.Duration) {
	t.Helper()
	initiated := f.now.Add(cutoffIn - 2*time.Hour + worker.DefaultSafetyMargin)
	payload := `{"order_ref":"` + ref + `","refund_initiated_at":"` + initiated.Format(time.RFC3339) + `"}`
	opts := []asynq.Option{asynq.TaskID(ref), asynq.Queue(f.q)}
	if cutoffIn <= 0 {
		opts = append(opts, asynq.ProcessIn(time.Hour))
	}
	if _, err := f.client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)), opts...); err != nil {
		t.Fatal(err)
	}
}

func (f *fleetQueue) sweeper(t *testing.T, interval time.Duration, pageSize int) *windowsweep.Sweeper {
	t.Helper()
	sw, err := windowsweep.New(windowsweep.Config{Redis: f.r.Opt, Queue: f.q, Interval: interval, PageSize: pageSize, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close() })
	return sw
}

func (f *fleetQueue) state(t *testing.T, id string) asynq.TaskState {
	t.Helper()
	info, err := f.insp.GetTaskInfo(f.q, id)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// lease is the fleet's sweep lease for the queue (a hash: owner, at).
func (f *fleetQueue) lease() string { return windowsweep.Keys(f.q)[0] }

// backdate makes the lease's last sign of life d older, as if its holder
// had been silent that long.
func (f *fleetQueue) backdate(t *testing.T, d time.Duration) {
	t.Helper()
	rc := f.r.Client()
	defer rc.Close()
	if err := rc.HIncrBy(context.Background(), f.lease(), "at", -d.Milliseconds()).Err(); err != nil {
		t.Fatal(err)
	}
}

func sameBacklog(a, b windowsweep.Report) bool {
	return a.Backlog.Tasks == b.Backlog.Tasks && a.Backlog.Earliest.Equal(b.Backlog.Earliest) &&
		a.Backlog.AtRisk5m == b.Backlog.AtRisk5m && a.Backlog.AtRisk15m == b.Backlog.AtRisk15m && a.SweptAt.Equal(b.SweptAt)
}

// Two replicas sweeping one queue, one with a ten times longer interval
// (a rollout half done): the first to tick sweeps, publishes the backlog,
// and keeps sweeping at its own pace, even early; the other changes nothing
// (the task it would run stays scheduled, as asynq's Inspector shows) and
// reports the published backlog. Once the sweeper has been silent for 0.9
// of the other's interval — not of its own — the other takes over.
func TestOneReplicaSweepsForTheFleet(t *testing.T) {
	f := newFleetQueue(t)
	f.enqueue(t, "S1", -time.Minute)
	a, b := f.sweeper(t, 10*time.Hour, 0), f.sweeper(t, time.Hour, 0)
	ctx := context.Background()

	ra, err := a.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Shared || ra.Run != 1 || ra.Backlog.Tasks != 2 || !ra.Backlog.Earliest.Equal(f.now.Add(-time.Minute)) || ra.Backlog.AtRisk5m != 2 || !ra.SweptAt.Equal(f.now) {
		t.Fatalf("first replica's tick %+v, want a sweep that ran 1 with a backlog of 2, both at risk", ra)
	}
	if st := f.state(t, "S1"); st != asynq.TaskStatePending {
		t.Fatalf("S1 %v after the sweep, want pending", st)
	}

	f.enqueue(t, "S2", -time.Minute)
	rb, err := b.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rb.Shared || rb.Run+rb.Replaced != 0 || !sameBacklog(ra, rb) {
		t.Fatalf("the other replica's tick %+v, want the published backlog %+v and no sweep", rb, ra)
	}
	if st := f.state(t, "S2"); st != asynq.TaskStateScheduled {
		t.Fatalf("S2 %v: swept by a replica without the lease", st)
	}

	// The sweeper's own next tick sweeps however soon it comes.
	f.backdate(t, 50*time.Minute) // < 0.9 h: still too recent for b
	if r, err := b.Tick(ctx); err != nil || !r.Shared {
		t.Fatalf("%+v, %v: b took over after 50 minutes, before 0.9 of its interval", r, err)
	}
	if ra, err = a.Tick(ctx); err != nil || ra.Shared || ra.Run != 1 {
		t.Fatalf("the sweeper's next tick %+v, %v: want a sweep that runs S2", ra, err)
	}

	f.enqueue(t, "S3", -time.Minute)
	f.backdate(t, 55*time.Minute) // ≥ 0.9 h of b's interval, far from 0.9 of a's 10 h
	if rb, err = b.Tick(ctx); err != nil || rb.Shared || rb.Run != 1 || f.state(t, "S3") != asynq.TaskStatePending {
		t.Fatalf("b's tick after 55 silent minutes %+v, %v; S3 %v: want b to sweep", rb, err, f.state(t, "S3"))
	}
	if ra, err = a.Tick(ctx); err != nil || !ra.Shared || !sameBacklog(ra, rb) {
		t.Fatalf("a's tick after b took over %+v, %v: want b's backlog, no sweep", ra, err)
	}
}

// A sweep that fails (here its context ends, as at a shutdown) gives the
// lease up: the next replica to tick sweeps at once.
func TestFailedSweepGivesUpTheLease(t *testing.T) {
	f := newFleetQueue(t)
	f.enqueue(t, "S1", -time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := windowsweep.New(windowsweep.Config{Redis: f.r.Opt, Queue: f.q, Interval: time.Hour,
		Now: func() time.Time { cancel(); return f.now }}) // the sweep's first look at the clock ends it
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Tick(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want the sweep cancelled", err)
	}
	if st := f.state(t, "S1"); st != asynq.TaskStateScheduled {
		t.Fatalf("S1 %v: the cancelled sweep acted", st)
	}
	r, err := f.sweeper(t, time.Hour, 0).Tick(context.Background())
	if err != nil || r.Shared || r.Run != 1 {
		t.Fatalf("%+v, %v: want the next replica to sweep at once", r, err)
	}
}

// setLease writes the lease as a replica named owner would, its last sign
// of life d from Redis's now.
func (f *fleetQueue) setLease(t *testing.T, owner string, d time.Duration) {
	t.Helper()
	rc := f.r.Client()
	defer rc.Close()
	now, err := rc.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.HSet(context.Background(), f.lease(), "owner", owner, "at", now.Add(d).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
}

// A lease whose last sign of life lies in Redis's future (its clock went
// back, as after a failover to a primary whose clock lags) does not hold
// the fleet: the next replica to tick sweeps.
func TestLeaseFromTheFutureIsStale(t *testing.T) {
	f := newFleetQueue(t)
	f.enqueue(t, "S1", -time.Minute)
	f.setLease(t, "a replica gone", 10*time.Minute)
	r, err := f.sweeper(t, time.Hour, 0).Tick(context.Background())
	if err != nil || r.Shared || r.Run != 1 {
		t.Fatalf("%+v, %v: want a sweep", r, err)
	}
}

// leaseCalls is a Redis connection whose clients count the scripts run on
// the lease key.
type leaseCalls struct {
	asynq.RedisClientOpt
	key string
	n   atomic.Int64
}

func (o *leaseCalls) MakeRedisClient() any {
	c := o.RedisClientOpt.MakeRedisClient().(*redis.Client)
	c.AddHook(o)
	return c
}
func (o *leaseCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (o *leaseCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if a := cmd.Args(); len(a) > 3 && (a[0] == "evalsha" || a[0] == "eval") && a[3] == o.key {
			o.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (o *leaseCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A sweep renews the lease at every page it reads (and at its end), so a
// long sweep never looks dead to the other replicas: with pages of one
// task, a sweep of four pending tasks reads nine pages (the four, an empty
// fifth, and one empty page of each other state) and renews at each.
func TestSweepRenewsTheLeaseAsItGoes(t *testing.T) {
	f := newFleetQueue(t)
	for _, ref := range []string{"P2", "P3", "P4"} {
		f.enqueue(t, ref, time.Hour)
	}
	opt, ok := f.r.Opt.(asynq.RedisClientOpt)
	if !ok {
		t.Fatalf("Redis %T: not a plain client", f.r.Opt)
	}
	calls := &leaseCalls{RedisClientOpt: opt, key: f.lease()}
	sw, err := windowsweep.New(windowsweep.Config{Redis: calls, Queue: f.q, Interval: time.Hour, PageSize: 1, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if _, err := sw.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := calls.n.Load(); n < 1+9+1 {
		t.Fatalf("%d lease scripts, want one to take it, one a page (9) and one at the end", n)
	}
}

// Run gives the lease up when its context ends (a rolling restart), so the
// next replica to tick sweeps at once rather than after 0.9 of its interval.
func TestRunGivesTheLeaseUpWhenItEnds(t *testing.T) {
	f := newFleetQueue(t)
	rc := f.r.Client()
	defer rc.Close()
	sw := f.sweeper(t, time.Hour, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sw.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, "the lease taken", func() bool { return rc.Exists(context.Background(), f.lease()).Val() == 1 })
	cancel()
	<-done
	if n := rc.Exists(context.Background(), f.lease()).Val(); n != 0 {
		t.Fatal("the lease outlived Run")
	}
}

// A replica whose peer holds the lease but has published nothing (the
// fleet's first sweep is under way) reports nothing, with ErrNotPublished,
// and sweeps nothing.
func TestTickBeforeAnyBacklogIsPublished(t *testing.T) {
	f := newFleetQueue(t)
	f.enqueue(t, "S1", -time.Minute)
	f.setLease(t, "another replica", 0)
	r, err := f.sweeper(t, time.Hour, 0).Tick(context.Background())
	if !errors.Is(err, windowsweep.ErrNotPublished) || !r.Shared || r.Backlog.Tasks != 0 {
		t.Fatalf("%+v, %v; want ErrNotPublished", r, err)
	}
	if st := f.state(t, "S1"); st != asynq.TaskStateScheduled {
		t.Fatalf("S1 %v: swept under another replica's lease", st)
	}
}

// A sweep reads a page at a time but acts only once a state is listed
// whole: running a scheduled task moves it out of the scheduled set, and
// acting page by page would make the next page skip tasks.
func TestSweepActsOnEveryPage(t *testing.T) {
	f := newFleetQueue(t)
	for _, ref := range []string{"S1", "S2", "S3", "S4", "S5"} {
		f.enqueue(t, ref, -time.Minute)
	}
	f.enqueue(t, "P2", time.Hour)
	r, err := f.sweeper(t, time.Hour, 2).Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Run != 5 || r.Backlog.Tasks != 7 || r.Backlog.AtRisk5m != 6 {
		t.Fatalf("%+v: want 5 run, a backlog of 7 (6 at risk)", r)
	}
	for _, ref := range []string{"S1", "S2", "S3", "S4", "S5"} {
		if st := f.state(t, ref); st != asynq.TaskStatePending {
			t.Fatalf("%s %v, want pending", ref, st)
		}
	}
}

// Three refundd replicas on one queue: the fleet's sweep archives a task
// scheduled past its cut-off (asynq's Inspector shows it), and every
// replica's metrics report a recent sweep — the two that do not sweep
// report the one that does.
func TestFleetReportsTheSweep(t *testing.T) {
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t), MerchantCode: "SWEEPFLEET",
		Env: map[string]string{"WINDOW_SWEEP_INTERVAL": "200ms"}})
	client := asynq.NewClient(r.Opt)
	defer client.Close()
	initiated := time.Now().Add(-3 * time.Hour)
	id := tasks.TaskID("SWEPT1", initiated)
	payload := `{"order_ref":"SWEPT1","refund_initiated_at":"` + initiated.UTC().Format(time.RFC3339Nano) + `"}`
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)), asynq.TaskID(id), asynq.Queue(f.Queue), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	info := testutil.WaitTask(t, f.Insp, f.Queue, id, 30*time.Second, archived)
	if !strings.HasPrefix(info.LastErr, "window closed at") {
		t.Fatalf("last error %q", info.LastErr)
	}
	testutil.Eventually(t, 20*time.Second, "every replica reporting a sweep of the last 5s", func() bool {
		ops := f.Ops()
		if len(ops) != 3 {
			return false
		}
		for _, base := range ops {
			v, ok := testutil.MetricValue(t, testutil.Metrics(t, base), "refundd_window_sweep_timestamp_seconds")
			if !ok || time.Since(time.UnixMilli(int64(v*1000))) > 5*time.Second {
				return false
			}
		}
		return true
	})
}

// A task that changes between the listing and the act is read again and
// judged as it is now: here a pending task whose asynq deadline expired is
// listed, and before its act another sweeper replaces it and an operator
// archives the copy. The sweep leaves the archived copy alone; acting on
// what it listed would delete it and enqueue the task once more.
func TestActOnTheTaskAsItIsNow(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	client := asynq.NewClient(r.Opt)
	defer client.Close()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	now := time.Now()
	initiated := now.Add(-10 * time.Minute)
	payload := []byte(`{"order_ref":"D1","refund_initiated_at":"` + initiated.UTC().Format(time.RFC3339) + `"}`)
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, payload), asynq.TaskID("D1"), asynq.Queue(q), asynq.Deadline(now.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	calls := 0
	sw, err := windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: q, Now: func() time.Time {
		// The clock is read for the active page, the pending page, then
		// for D1 as listed: the change comes after that, before the act.
		if calls++; calls == 3 {
			if err := errors.Join(insp.DeleteTask(q, "D1"), func() error {
				_, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, payload), asynq.TaskID("D1"), asynq.Queue(q))
				return err
			}(), insp.ArchiveTask(q, "D1")); err != nil {
				t.Error(err)
			}
		}
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	rep, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info, err := insp.GetTaskInfo(q, "D1")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replaced != 0 || info.State != asynq.TaskStateArchived || !info.Deadline.IsZero() {
		t.Fatalf("replaced %d; D1 %v with deadline %v: want the archived copy left alone", rep.Replaced, info.State, info.Deadline)
	}
}
