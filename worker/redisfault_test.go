package worker_test

// Faults at the Redis command level for the real stack: the worker's asynq
// servers, its record store and its notifier all connect through a test
// asynq.RedisConnOpt whose go-redis clients carry a hook that fails chosen
// commands (the notification's enqueue, the record's write, asynq's retry
// write, the claim). The test judges from the sandbox's ledger, asynq's
// Inspector and the store, read over a connection of its own.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/webhook"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// cmdFault fails the Redis commands it matches while it is down.
type cmdFault struct {
	name  string
	match func(args []string) bool

	mu     sync.Mutex
	down   bool
	failed int
	hits   chan struct{} // one signal per failed command (dropped when full)
}

func newCmdFault(name string, match func(args []string) bool) *cmdFault {
	return &cmdFault{name: name, match: match, hits: make(chan struct{}, 1000)}
}

func (f *cmdFault) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// fails answers the error for a command, or nil.
func (f *cmdFault) fails(args []string) error {
	if !f.match(args) {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down {
		return nil
	}
	f.failed++
	select {
	case f.hits <- struct{}{}:
	default:
	}
	return fmt.Errorf("injected (%s): READONLY You can't write against a read only replica", f.name)
}

// wait waits for n more failed commands.
func (f *cmdFault) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-f.hits:
		case <-time.After(30 * time.Second): // a bound on a hang, not a wait for work
			t.Fatalf("%s: %d of %d failures seen", f.name, i, n)
		}
	}
}

// cmdFaults is the set of faults of a stack's connections.
type cmdFaults struct {
	mu   sync.Mutex
	list []*cmdFault
}

func (fs *cmdFaults) add(f *cmdFault) {
	fs.mu.Lock()
	fs.list = append(fs.list, f)
	fs.mu.Unlock()
}

func (fs *cmdFaults) all() []*cmdFault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]*cmdFault(nil), fs.list...)
}

// faultHook fails the commands its faults match.
type faultHook struct{ faults *cmdFaults }

func (h faultHook) check(cmd redis.Cmder) error {
	args := make([]string, len(cmd.Args()))
	for i, a := range cmd.Args() {
		if b, ok := a.([]byte); ok {
			args[i] = string(b)
		} else {
			args[i] = fmt.Sprint(a)
		}
	}
	for _, f := range h.faults.all() {
		if err := f.fails(args); err != nil {
			return err
		}
	}
	return nil
}

func (h faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if err := h.check(cmd); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if err := h.check(cmd); err != nil {
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// faultyConnOpt is an asynq.RedisConnOpt whose clients carry faultHook.
type faultyConnOpt struct {
	url    string
	faults *cmdFaults
}

func (o faultyConnOpt) MakeRedisClient() any {
	opt, err := redis.ParseURL(o.url)
	if err != nil {
		panic(err)
	}
	c := redis.NewClient(opt)
	c.AddHook(faultHook{faults: o.faults})
	return c
}

// script answers whether args are an EVALSHA or EVAL of a script.
func script(args []string) bool {
	return len(args) > 0 && (strings.EqualFold(args[0], "evalsha") || strings.EqualFold(args[0], "eval"))
}

func hasArg(args []string, pred func(string) bool) bool {
	for _, a := range args {
		if pred(a) {
			return true
		}
	}
	return false
}

// rfStack is a real worker (asynq servers, record store, webhook notifier)
// connected through faultyConnOpt, with a sandbox and a window sweeper.
type rfStack struct {
	redis   *redistest.Redis
	queue   string
	faults  cmdFaults
	sb      *rpctest.Server
	client  *asynq.Client // unhooked
	insp    *asynq.Inspector
	recs    *records.Store // unhooked: the test's view
	sweeper *windowsweep.Sweeper
}

func startRFStack(t *testing.T, documented bool) *rfStack {
	t.Helper()
	r := redistest.New(t)
	s := &rfStack{redis: r, queue: r.Queue(t)}
	opt := faultyConnOpt{url: r.URL, faults: &s.faults}
	policy := worker.Policy{BaseDelay: 100 * time.Millisecond, MinDelay: 50 * time.Millisecond}
	s.sb = rpctest.NewServer(rpctest.Config{DocumentedOnly: documented})
	t.Cleanup(s.sb.Close)
	api, err := rpcclient.New(rpcclient.Config{URL: s.sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		RequestTimeout: time.Second, CredentialsBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	hooked := opt.MakeRedisClient().(*redis.Client)
	t.Cleanup(func() { _ = hooked.Close() })
	notifier := webhook.NewNotifier(opt, s.queue+"-notifications", 0, nil)
	t.Cleanup(func() { _ = notifier.Close() })
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: records.New(hooked, s.queue, 0), Logger: log, Policy: policy, Notifier: notifier})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: opt, Queue: s.queue, Concurrency: 2, Logger: log, ShutdownTimeout: 5 * time.Second}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	s.client = asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = s.client.Close() })
	s.insp = asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = s.insp.Close() })
	plain := r.Client()
	t.Cleanup(func() { _ = plain.Close() })
	s.recs = records.New(plain, s.queue, 0)
	s.sweeper, err = windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: s.queue, Policy: policy, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.sweeper.Close() })
	return s
}

// fault adds a fault, up.
func (s *rfStack) fault(name string, match func([]string) bool) *cmdFault {
	f := newCmdFault(name, match)
	s.faults.add(f)
	return f
}

// notificationEnqueue matches the enqueue of a notification task.
func (s *rfStack) notificationEnqueue(args []string) bool {
	prefix := "asynq:{" + s.queue + "-notifications}:t:"
	return script(args) && hasArg(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}

// finalRecordWrite matches the write of a final record of the refund.
func (s *rfStack) finalRecordWrite(key string) func([]string) bool {
	return func(args []string) bool {
		return script(args) && hasArg(args, func(a string) bool { return a == key }) && hasArg(args, func(a string) bool {
			r, err := tasks.DecodeResult([]byte(a))
			return err == nil && r.Final()
		})
	}
}

// claim matches the claim of the refund (the first script a delivery runs on its key).
func (s *rfStack) claim(key string) func([]string) bool {
	return func(args []string) bool {
		return script(args) && hasArg(args, func(a string) bool { return a == key }) && len(args) > 4 && args[2] == "2"
	}
}

// asynqRetry matches asynq's write of a retry (the task leaves active for retry).
func (s *rfStack) asynqRetry(args []string) bool {
	active, retry := "asynq:{"+s.queue+"}:active", "asynq:{"+s.queue+"}:retry"
	return script(args) && hasArg(args, func(a string) bool { return a == active }) && hasArg(args, func(a string) bool { return a == retry })
}

// enqueue enqueues the refund's task with maxRetry.
func (s *rfStack) enqueue(t *testing.T, p tasks.CancelRefund, maxRetry int) string {
	t.Helper()
	task, err := tasks.NewTask(p, time.Now(), asynq.Queue(s.queue), asynq.MaxRetry(maxRetry))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	return p.TaskID()
}

// settle waits for the task to finish, sweeping whenever asynq archived it
// with the record saying it is due again (as the fleet's sweeper does
// every WINDOW_SWEEP_INTERVAL).
func (s *rfStack) settle(t *testing.T, p tasks.CancelRefund) *asynq.TaskInfo {
	t.Helper()
	var info *asynq.TaskInfo
	testutil.Eventually(t, 60*time.Second, "the task to finish with its record final and announced", func() bool {
		var err error
		if info, err = s.insp.GetTaskInfo(s.queue, p.TaskID()); err != nil {
			return false
		}
		if info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted {
			return false
		}
		e, ok, err := s.recs.Get(context.Background(), p.OrderRef, p.RefundInitiatedAt)
		if err == nil && ok && e.Done {
			return true
		}
		if info.State == asynq.TaskStateArchived {
			if _, err := s.sweeper.Sweep(context.Background()); err != nil {
				t.Logf("sweep: %v", err)
			}
		}
		return false
	})
	return info
}

// cancels answers the order's cancelRefund calls: all, and applied.
func (s *rfStack) cancels(ref string) (all, applied int) {
	for _, c := range s.sb.Ledger() {
		if c.OrderRef == ref && c.Method == rpcclient.MethodCancelRefund {
			all++
			if c.Outcome == "ok" {
				applied++
			}
		}
	}
	return all, applied
}

// announced answers the notification tasks of the queue, by ID.
func (s *rfStack) announced(t *testing.T) map[string]*tasks.Result {
	t.Helper()
	out := map[string]*tasks.Result{}
	q := s.queue + "-notifications"
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){s.insp.ListPendingTasks, s.insp.ListScheduledTasks,
		s.insp.ListRetryTasks, s.insp.ListArchivedTasks, s.insp.ListCompletedTasks, s.insp.ListActiveTasks} {
		infos, err := list(q)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			t.Fatal(err)
		}
		for _, i := range infos {
			var n struct {
				ID     string          `json:"id"`
				Record json.RawMessage `json:"record"`
			}
			if err := json.Unmarshal(i.Payload, &n); err != nil {
				t.Fatal(err)
			}
			r, err := tasks.DecodeResult(n.Record)
			if err != nil {
				t.Fatal(err)
			}
			out[n.ID] = r
		}
	}
	return out
}

// The notification's enqueue fails (a Redis that refuses writes for a
// while): the refund is cancelled once, the record stays cancelled through
// the retries that only announce it, and it is announced once Redis
// recovers — with every MaxRetry (at 0 asynq archives the task at the first
// failure and the sweep runs it) and both sandbox modes.
func TestRedisFaultNotificationEnqueue(t *testing.T) {
	if testing.Short() {
		t.Skip("a real worker through Redis faults, several cases: not with -short")
	}
	for _, c := range []struct {
		maxRetry   int
		documented bool
	}{{tasks.DefaultMaxRetry, false}, {tasks.DefaultMaxRetry, true}, {1, false}, {0, true}} {
		t.Run(fmt.Sprintf("MaxRetry %d documented %v", c.maxRetry, c.documented), func(t *testing.T) {
			s := startRFStack(t, c.documented)
			f := s.fault("notification enqueue", s.notificationEnqueue)
			f.set(true)
			p := tasks.CancelRefund{OrderRef: "RF-N1", RefundInitiatedAt: time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)}
			_ = s.sb.Seed(rpctest.Refund{OrderRef: p.OrderRef, InitiatedAt: p.RefundInitiatedAt})
			s.enqueue(t, p, c.maxRetry)
			f.wait(t, 1)
			if c.maxRetry > 0 {
				f.wait(t, 2) // the retries that only announce fail too
			}
			e, _, err := s.recs.Get(context.Background(), p.OrderRef, p.RefundInitiatedAt)
			if err != nil || e.Record == nil || e.Record.Outcome != tasks.OutcomeCancelled || e.Done {
				t.Fatalf("while the enqueue fails: record %+v done %v (%v); want cancelled, not announced", e.Record, e.Done, err)
			}
			f.set(false)
			info := s.settle(t, p)
			all, applied := s.cancels(p.OrderRef)
			e, _, _ = s.recs.Get(context.Background(), p.OrderRef, p.RefundInitiatedAt)
			got := s.announced(t)
			n := got[worker.DeliveryID(e.Record)]
			if all != 1 || applied != 1 || e.Record.Outcome != tasks.OutcomeCancelled || info.State != asynq.TaskStateCompleted ||
				len(got) != 1 || n == nil || n.Outcome != tasks.OutcomeCancelled {
				t.Fatalf("%d cancelRefund (%d applied), record %s, task %v, announced %v; want 1 (1), cancelled, completed, announced once as cancelled",
					all, applied, e.Record.Outcome, info.State, got)
			}
			if r, _ := s.sb.Refund(p.OrderRef); r.Status != rpctest.StatusCanceled {
				t.Fatalf("sandbox: refund %s", r.Status)
			}
		})
	}
}

// The write of the final record fails (more times than the handler tries
// over a blip): the next delivery finds the record saying a cancelRefund
// was on its way and settles it with getOrder, never a second applied
// cancel, never a falsehood; it is recorded and announced once Redis
// recovers.
func TestRedisFaultRecordWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("a real worker through Redis faults, several cases: not with -short")
	}
	for _, c := range []struct {
		maxRetry   int
		documented bool
	}{{tasks.DefaultMaxRetry, false}, {0, false}, {tasks.DefaultMaxRetry, true}} {
		t.Run(fmt.Sprintf("MaxRetry %d documented %v", c.maxRetry, c.documented), func(t *testing.T) {
			s := startRFStack(t, c.documented)
			p := tasks.CancelRefund{OrderRef: "RF-W1", RefundInitiatedAt: time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)}
			f := s.fault("final record write", s.finalRecordWrite(records.Key(s.queue, p.OrderRef, p.RefundInitiatedAt)))
			f.set(true)
			_ = s.sb.Seed(rpctest.Refund{OrderRef: p.OrderRef, InitiatedAt: p.RefundInitiatedAt})
			s.enqueue(t, p, c.maxRetry)
			f.wait(t, 3) // one delivery's tries
			if c.maxRetry == 0 {
				// asynq archives the task whatever IsFailure says; the
				// record says a delivery ran: the sweep runs it again.
				testutil.WaitTask(t, s.insp, s.queue, p.TaskID(), 30*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateArchived })
				if r, err := s.sweeper.Sweep(context.Background()); err != nil || r.Run != 1 {
					t.Fatalf("sweep: ran %d, %v; want the archived task run", r.Run, err)
				}
			}
			f.wait(t, 3) // and the next's
			f.set(false)
			info := s.settle(t, p)
			all, applied := s.cancels(p.OrderRef)
			e, _, _ := s.recs.Get(context.Background(), p.OrderRef, p.RefundInitiatedAt)
			got := s.announced(t)
			if applied != 1 || len(got) != 1 || got[worker.DeliveryID(e.Record)] == nil || got[worker.DeliveryID(e.Record)].Outcome != e.Record.Outcome {
				t.Fatalf("%d cancelRefund applied, record %s, announced %v; want 1 applied, announced once as recorded", applied, e.Record.Outcome, got)
			}
			switch {
			case !c.documented && (all != 1 || !e.Record.Cancelled() || info.State != asynq.TaskStateCompleted):
				t.Fatalf("%d cancelRefund calls, record %s (%s), task %v; want 1, cancelled or already_cancelled, completed", all, e.Record.Outcome, e.Record.Reason, info.State)
			case c.documented && !e.Record.Cancelled() && e.Record.Outcome != tasks.OutcomeUnknown:
				// getOrder cannot tell there (README, known limits): unknown, never a refusal
				t.Fatalf("record %s (%s); want cancelled, already_cancelled or unknown", e.Record.Outcome, e.Record.Reason)
			}
		})
	}
}

// asynq's own write of a retry fails: the task stays active until asynq's
// recoverer finds its lease expired (about a minute) and retries it; the
// retry cancels the refund, once.
func TestRedisFaultRetryWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("long: waits for asynq's recoverer (lease expiry, about a minute)")
	}
	s := startRFStack(t, false)
	f := s.fault("asynq retry write", s.asynqRetry)
	f.set(true)
	p := tasks.CancelRefund{OrderRef: "RF-R1", RefundInitiatedAt: time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)}
	_ = s.sb.Seed(rpctest.Refund{OrderRef: p.OrderRef, InitiatedAt: p.RefundInitiatedAt})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultStatus, Status: 503, FirstN: 1})
	s.enqueue(t, p, tasks.DefaultMaxRetry)
	f.wait(t, 1)
	f.set(false)
	info := testutil.WaitTask(t, s.insp, s.queue, p.TaskID(), 3*time.Minute, func(i *asynq.TaskInfo) bool {
		return i.State == asynq.TaskStateCompleted || i.State == asynq.TaskStateArchived
	})
	all, applied := s.cancels(p.OrderRef)
	e, _, _ := s.recs.Get(context.Background(), p.OrderRef, p.RefundInitiatedAt)
	if info.State != asynq.TaskStateCompleted || applied != 1 || all != 2 || e.Record.Outcome != tasks.OutcomeCancelled || !e.Done {
		t.Fatalf("task %v, %d cancelRefund (%d applied), record %s done %v; want completed, 2 (1), cancelled and announced",
			info.State, all, applied, e.Record.Outcome, e.Done)
	}
}

// The claim (the delivery's first Redis command) fails at MaxRetry 0:
// asynq archives the task at once, whatever IsFailure says; the sweep must
// run it again.
func TestRedisFaultClaimAtMaxRetryZero(t *testing.T) {
	if testing.Short() {
		t.Skip("a real worker and sweeper through a Redis fault: not with -short")
	}
	s := startRFStack(t, false)
	p := tasks.CancelRefund{OrderRef: "RF-C1", RefundInitiatedAt: time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)}
	f := s.fault("claim", s.claim(records.Key(s.queue, p.OrderRef, p.RefundInitiatedAt)))
	f.set(true)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: p.OrderRef, InitiatedAt: p.RefundInitiatedAt})
	s.enqueue(t, p, 0)
	f.wait(t, 1)
	f.set(false)
	info := s.settle(t, p)
	if all, applied := s.cancels(p.OrderRef); info.State != asynq.TaskStateCompleted || all != 1 || applied != 1 {
		t.Fatalf("task %v, %d cancelRefund (%d applied); want completed, 1 (1)", info.State, all, applied)
	}
}
