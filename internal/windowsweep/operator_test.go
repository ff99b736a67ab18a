package windowsweep_test

// An operator's Archive meeting deadline-first holds, the wake, a
// shutdown's requeue and the window sweep; and the held MaxRetry 0 tasks
// the backlog counts. (Found by a hostile review: each failed before its
// fix.)

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// holdOnce holds each task's first attempt (a backlog ahead of it), due
// again at once, and grants every later one.
type holdOnce struct{ n atomic.Int32 }

func (h *holdOnce) Take(context.Context, string, time.Time) (worker.Turn, error) {
	if h.n.Add(1) == 1 {
		return worker.Turn{HeldUntil: time.Now(), Ahead: 5}, nil
	}
	return worker.Turn{Release: func() {}}, nil
}

// rig is a queue of the test's own, the real handler (turns playing
// deadline-first dispatch, if set) against a sandbox, a sweep that runs
// only when told, and worker servers started on demand.
type rig struct {
	q      string
	sb     *rpctest.Server
	insp   *asynq.Inspector
	store  *records.Store
	sw     *windowsweep.Sweeper
	client *asynq.Client
	h      *worker.Handler
	start  func() *worker.Server // a worker server, started
}

func newRig(t *testing.T, turns worker.Turns, requestTimeout, shutdownTimeout time.Duration) *rig {
	t.Helper()
	r := redistest.New(t)
	g := &rig{q: r.Queue(t), sb: rpctest.NewServer(rpctest.Config{}), insp: asynq.NewInspector(r.Opt), client: asynq.NewClient(r.Opt)}
	t.Cleanup(g.sb.Close)
	t.Cleanup(func() { _ = g.insp.Close() })
	t.Cleanup(func() { _ = g.client.Close() })
	api, err := rpcclient.New(rpcclient.Config{URL: g.sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, RequestTimeout: requestTimeout})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	g.store = records.New(rc, g.q, 0)
	if g.h, err = worker.NewHandler(worker.HandlerConfig{API: api, Memory: g.store, Logger: log, Turns: turns}); err != nil {
		t.Fatal(err)
	}
	g.start = func() *worker.Server {
		srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: g.q, Logger: log, ShutdownTimeout: shutdownTimeout, TaskCheckInterval: 50 * time.Millisecond}, g.h)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	if g.sw, err = windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: g.q, Interval: time.Hour, Logger: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.sw.Close() })
	return g
}

// enqueue enqueues ref's cancellation as a raw producer would, with opts.
func (g *rig) enqueue(t *testing.T, ref string, initiated time.Time, opts ...asynq.Option) string {
	t.Helper()
	id := tasks.TaskID(ref, initiated)
	payload := `{"order_ref":"` + ref + `","refund_initiated_at":"` + initiated.Format(time.RFC3339) + `"}`
	if _, err := g.client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)), append([]asynq.Option{asynq.TaskID(id), asynq.Queue(g.q)}, opts...)...); err != nil {
		t.Fatal(err)
	}
	return id
}

// The operator's word stands for a MaxRetry 0 task that a hold parked. A
// raw producer's MaxRetry 0 task is held by deadline-first dispatch:
// asynq's counter archives it (the record: held, delivery "parked"). The
// wake (records.Mover, as deadlinefirst does) moves it back to pending,
// and its record says so ("queued"); before a worker takes it (every
// worker busy), the operator archives it from the dashboard, to stop the
// cancellation. The sweep leaves it archived: no cancel is sent. (Before
// the record said "queued", the sweep read "parked" and ran it.)
func TestOperatorArchiveOfAWokenParkedTaskStands(t *testing.T) {
	g := newRig(t, &holdOnce{}, time.Second, 2*time.Second)
	q, sb, insp, store, sw := g.q, g.sb, g.insp, g.store, g.sw
	initiated := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	_ = sb.Seed(rpctest.Refund{OrderRef: "OPH1", InitiatedAt: initiated, RefundID: "RF-OPH1"})
	id := g.enqueue(t, "OPH1", initiated, asynq.MaxRetry(0))
	srv := g.start()
	s := &stack{queue: q, sb: sb, insp: insp}
	s.wait(t, id, 20*time.Second, archived) // held: asynq's counter archived it
	srv.Shutdown()                          // every worker busy elsewhere, from here
	if e, _, _ := store.Get(context.Background(), "OPH1", initiated); e.Record == nil || e.Record.Outcome != tasks.OutcomeHeld || e.Delivery != worker.DeliveryParked {
		t.Fatalf("set-up: record %+v delivery %q; want held, parked", e.Record, e.Delivery)
	}
	// The wake moves it to pending (deadlinefirst's Runner).
	info, err := insp.GetTaskInfo(q, id)
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := (records.Mover{Inspector: insp, Store: store}).Run(context.Background(), info, tasks.CancelRefund{OrderRef: "OPH1", RefundInitiatedAt: initiated}); err != nil || !moved {
		t.Fatalf("wake: moved %v %v", moved, err)
	}
	// The operator archives it before any worker took it.
	if err := insp.ArchiveTask(q, id); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv = g.start()
	t.Cleanup(srv.Shutdown)
	// Let the worker run whatever the sweep handed back: a sweep's move is
	// visible in asynq's state at once.
	info, err = insp.GetTaskInfo(q, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateArchived {
		// Evidence from the sandbox: the worker cancels the refund.
		testutil.Eventually(t, 20*time.Second, "the worker to run the handed-back task", func() bool {
			rf, _ := sb.Refund("OPH1")
			return rf.Status == rpctest.StatusCanceled
		})
		rf, _ := sb.Refund("OPH1")
		t.Fatalf("the sweep ran the task the operator archived (state after the sweep: %v); the refund is now %s, cancelRefund calls %d",
			info.State, rf.Status, s.cancelCalls())
	}
}

// holdID holds every attempt of one task (a backlog ahead of it) and
// grants the others.
type holdID struct{ id string }

func (h holdID) Take(_ context.Context, id string, _ time.Time) (worker.Turn, error) {
	if id == h.id {
		return worker.Turn{HeldUntil: time.Now().Add(time.Minute), Ahead: 5}, nil
	}
	return worker.Turn{Release: func() {}}, nil
}

// An operator's Archive after a shutdown: a rolling restart's ShutdownTimeout ends while
// a delivery waits on 2Checkout, and asynq puts the task back to pending
// (no error: its last error stays empty). The record says "running". A
// backlog keeps the pending task waiting; the operator archives it (to
// stop it). asynq never archives a task without an error, so the sweep
// takes an archived task with none for an operator's, whatever its record
// says ("running" here), and leaves it archived.
func TestOperatorArchiveAfterAShutdownRequeueStands(t *testing.T) {
	g := newRig(t, nil, 20*time.Second, 200*time.Millisecond)
	q, sb, insp, store, sw := g.q, g.sb, g.insp, g.store, g.sw
	initiated := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	_ = sb.Seed(rpctest.Refund{OrderRef: "SHD1", InitiatedAt: initiated, RefundID: "RF-SHD1"})
	_ = sb.SetFaults(rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultHang, FirstN: 1}) // nothing applied
	id := g.enqueue(t, "SHD1", initiated)
	srv := g.start()
	testutil.Eventually(t, 20*time.Second, "the cancelRefund in flight", func() bool { return sb.InFlight() > 0 })
	srv.Shutdown() // ShutdownTimeout ends: back to pending
	info, err := insp.GetTaskInfo(q, id)
	if err != nil || info.State != asynq.TaskStatePending || info.LastErr != "" {
		t.Fatalf("set-up: %+v %v; want pending with no error", info, err)
	}
	if e, _, _ := store.Get(context.Background(), "SHD1", initiated); e.Delivery != worker.DeliveryRunning {
		t.Fatalf("set-up: delivery %q", e.Delivery)
	}
	if err := insp.ArchiveTask(q, id); err != nil { // the operator
		t.Fatal(err)
	}
	applied := func() int {
		n := 0
		for _, c := range sb.Ledger() {
			if c.Method == rpcclient.MethodCancelRefund && c.Outcome == "ok" {
				n++
			}
		}
		return n
	}
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err = insp.GetTaskInfo(q, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateArchived {
		srv = g.start()
		t.Cleanup(srv.Shutdown)
		testutil.Eventually(t, 20*time.Second, "the worker to run the handed-back task", func() bool { return applied() > 0 })
		rf, _ := sb.Refund("SHD1")
		t.Fatalf("the sweep ran the task the operator archived (state after the sweep: %v, its last error %q); the refund is now %s", info.State, info.LastErr, rf.Status)
	}
}

// The backlog the sweep counts (refundd_backlog_tasks, _at_risk, the
// earliest cut-off; the alerts read them) skips archived tasks, except a
// held MaxRetry 0 task: asynq's counter archives its hold, and it is the
// very backlog deadline-first orders.
func TestHeldMaxRetryZeroTaskCountsInTheBacklog(t *testing.T) {
	initiated := time.Now().Add(-115 * time.Minute).UTC().Truncate(time.Second) // cut-off within 5 minutes
	g := newRig(t, holdID{id: tasks.TaskID("BL1", initiated)}, time.Second, 2*time.Second)
	q, sb, insp, sw := g.q, g.sb, g.insp, g.sw
	srv := g.start()
	t.Cleanup(srv.Shutdown)
	_ = sb.Seed(rpctest.Refund{OrderRef: "BL1", InitiatedAt: initiated})
	id := g.enqueue(t, "BL1", initiated, asynq.MaxRetry(0))
	s := &stack{queue: q, sb: sb, insp: insp}
	s.wait(t, id, 20*time.Second, archived) // held
	rep, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backlog.Tasks != 1 || rep.Backlog.AtRisk5m != 1 {
		t.Fatalf("backlog %+v with one held cancellation, its cut-off within 5 minutes; want it counted", rep.Backlog)
	}
}

// "The rule holds for every task in REFUND_QUEUE, whatever options its
// producer set": a raw producer's task enqueued with asynq.Group (asynq's
// aggregation) sits in the queue's "aggregating" state, which refundd's
// server (no GroupAggregator) never hands over. The sweep counts it in the
// backlog and replaces it without its group, so the handler judges it:
// past its cut-off, archived "window closed".
func TestGroupedTaskIsHeldToTheWindow(t *testing.T) {
	t.Parallel()
	s := start(t, worker.Policy{})
	late := time.Now().Add(-119*time.Minute - 30*time.Second) // cut-off passed 30 s ago
	open := time.Now().Add(-10 * time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "G2", InitiatedAt: open})
	id := s.rawTask(t, "G1", late, asynq.Group("batch"))
	id2 := s.rawTask(t, "G2", open, asynq.Group("batch"), asynq.Retention(time.Hour))
	r, err := s.sweep.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Backlog.Tasks != 2 || r.Replaced != 2 {
		t.Errorf("sweep report %+v: want both grouped tasks counted in the backlog and replaced", r)
	}
	s.wait(t, id, 20*time.Second, func(i *asynq.TaskInfo) bool { return archived(i) && strings.HasPrefix(i.LastErr, "window closed at") })
	s.wait(t, id2, 20*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateCompleted })
	if rf, _ := s.sb.Refund("G2"); rf.Status != rpctest.StatusCanceled {
		t.Fatalf("grouped task's refund %s, want CANCELED", rf.Status)
	}
}
