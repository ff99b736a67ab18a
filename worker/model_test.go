package worker_test

// A model-based (state-machine) test of the handler over the composition
// of every move that can reach a refund's task: pgregory.net/rapid draws
// random sequences of deliveries (counted and uncounted retries, MaxRetry
// 0, 1, 3 and the default), a crash at any operation of a delivery (a
// Redis command, a call to 2Checkout, the notification's enqueue; before
// it or after it, its answer lost), a shutdown requeue and an asynq
// Timeout mid-operation, a lost asynq retry write, a stalled delivery that
// wakes after its successor ran, a second task for the refund, failed
// claims, record writes and notification enqueues, the window sweep's and
// an operator's Run, an operator's Rerun, vendor faults (503, 500, drop,
// apply_then_drop, malformed, expired session, an unknown error), a refusal
// (the refund COMPLETED), someone else's cancel, a newer refund on the
// order, both sandbox modes, and the clock crossing the cut-off. It drives
// worker.Handler.Deliver with the real records.Store on real Redis and the
// real rpcclient against an rpctest sandbox (one per sequence), all on one
// injected clock, and plays asynq v0.26's part (what it does with each
// delivery's answer) and the window sweep's judgement in memory. After
// every step it judges from the sandbox's ledger and state, and from the
// store:
//
//   - at most one applied cancelRefund per refund; none again after one
//     that applied without a getOrder answered in between; none after the
//     record is final, none at or after the cut-off, none while a newer
//     refund is the order's pending one; none from a duplicate or from a
//     delivery that could not claim;
//   - the final record agrees with the sandbox: cancelled and
//     already_cancelled ⇒ the refund is cancelled; refused, window_closed
//     and superseded ⇒ this task did not cancel it; unknown ⇒ the sandbox
//     could not tell (documented-only mode, a getOrder or its login that
//     failed, or a newer refund hiding this one);
//   - what was announced is what the record says;
//
// and at the end of each sequence it lets the system come to rest (no
// faults, the clock following asynq's retries and the sweep) and asserts
// that the refund's record is final and announced, run by run.
//
// Not drawn: a newer refund in documented-only mode, or before the task
// sent anything (README, known limits: getOrder cannot show it there, and
// a first attempt never checks). Defects that stand are stepped around
// (openDefects) and replayed in TestModelCounterexamples.
//
// RAPID_CHECKS=n (or -rapid.checks=n) runs more sequences (default
// modelChecks, a quarter with -short); RAPID_STEPS=n makes them longer.
// A failure prints its -rapid.seed.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// errInjected is every failure the model injects into Redis or the notifier.
var errInjected = errors.New("injected: connection reset by peer")

// crashSignal is the panic that simulates a process dying mid-delivery.
type crashSignal struct{}

// How a delivery is disrupted at its op-th operation (a Redis command of
// the store, a call to 2Checkout, a notification enqueue).
const (
	disruptNone     = iota
	disruptCrash    // the process dies: nothing after runs; asynq's recoverer re-delivers
	disruptShutdown // asynq's shutdown cancels the context; the task is requeued, uncounted
	disruptTimeout  // the task's asynq Timeout cancels the context; a counted failure
	disruptLost     // the delivery ends, but asynq's write of its answer is lost: the recoverer re-delivers
	disruptPause    // the delivery stalls (a hung call past asynq's Timeout, a paused process) while another runs
)

var disruptNames = []string{"none", "crash", "shutdown", "timeout", "retry-write-lost", "pause"}

// disruption is one delivery's: the wrappers find it in the context.
type disruption struct {
	// pause, for disruptPause: closed-over channels; the delivery signals
	// paused when it stops at its op, and goes on when resume is closed.
	paused, resume chan struct{}
	// claimed: the delivery's claim reached the store.
	claimed bool
	kind    int
	at      int  // the operation it strikes
	after   bool // the operation is performed first (its answer is lost)
	n       int  // operations so far
	fired   bool
	cancel  context.CancelFunc
}

type disruptionKey struct{}

// disrupted answers the delivery's disruption (nil: none).
func disrupted(ctx context.Context) *disruption {
	d, _ := ctx.Value(disruptionKey{}).(*disruption)
	return d
}

// step runs one operation of the delivery under its disruption.
func step(ctx context.Context, do func(context.Context) error) error {
	d := disrupted(ctx)
	if d == nil || d.kind == disruptNone || d.kind == disruptLost {
		return do(ctx)
	}
	i := d.n
	d.n++
	if i != d.at {
		return do(ctx)
	}
	d.fired = true
	if d.kind == disruptPause {
		var err error
		if d.after {
			err = do(ctx)
		}
		close(d.paused)
		<-d.resume
		if !d.after {
			err = do(ctx)
		}
		return err
	}
	if d.kind == disruptCrash {
		if d.after {
			_ = do(ctx)
		}
		panic(crashSignal{})
	}
	// shutdown or timeout: the context ends mid-operation
	if d.after {
		_ = do(context.WithoutCancel(ctx))
		d.cancel()
		return ctx.Err()
	}
	d.cancel()
	return do(ctx)
}

// modelAPI is the real client, disrupted on demand.
type modelAPI struct {
	inner worker.RefundAPI
}

func (a *modelAPI) CancelRefund(ctx context.Context, ref string, check func(context.Context) error) (id string, err error) {
	err = step(ctx, func(ctx context.Context) error {
		var e error
		id, e = a.inner.CancelRefund(ctx, ref, check)
		return e
	})
	return id, err
}

func (a *modelAPI) GetOrder(ctx context.Context, ref string) (o *rpcclient.Order, err error) {
	err = step(ctx, func(ctx context.Context) error {
		var e error
		o, e = a.inner.GetOrder(ctx, ref)
		return e
	})
	return o, err
}

// modelMemory is the real store, with chosen commands failing.
type modelMemory struct {
	inner *records.Store
	// failClaim, failWrite, failFinal, failAnnounced: how many of the next
	// such calls fail (failFinal: writes of a final record).
	failClaim, failWrite, failFinal, failAnnounced int
	// mutant seeds a defect on purpose (TestModelFindsSeededDefects):
	// "forget" hides a record that is not final from the handler (it
	// believes every delivery a first attempt); "no-sending" drops the
	// write that says a cancelRefund is on its way.
	mutant string
}

func (m *modelMemory) Claim(ctx context.Context, p tasks.CancelRefund, id, token string) (c worker.Claim, err error) {
	err = step(ctx, func(ctx context.Context) error {
		if m.failClaim > 0 {
			m.failClaim--
			return errInjected
		}
		var e error
		c, e = m.inner.Claim(ctx, p, id, token)
		if d := disrupted(ctx); d != nil && e == nil {
			d.claimed = true
		}
		if m.mutant == "forget" && !c.Record.Final() {
			c.Record = nil
		}
		return e
	})
	return c, err
}

func (m *modelMemory) Write(ctx context.Context, c worker.Claim, r *tasks.Result, delivery string, announced bool) error {
	return step(ctx, func(ctx context.Context) error {
		if r.Final() && m.failFinal > 0 {
			m.failFinal--
			return errInjected
		}
		if m.failWrite > 0 {
			m.failWrite--
			return errInjected
		}
		if m.mutant == "no-sending" && r.Outcome == tasks.OutcomeSending {
			return nil
		}
		return m.inner.Write(ctx, c, r, delivery, announced)
	})
}

func (m *modelMemory) Announced(ctx context.Context, r *tasks.Result) error {
	return step(ctx, func(ctx context.Context) error {
		if m.failAnnounced > 0 {
			m.failAnnounced--
			return errInjected
		}
		return m.inner.Announced(ctx, r)
	})
}

// modelNotifier keeps every notification it takes, and refuses on demand.
type modelNotifier struct {
	fail int // refuse the next fail calls
	down bool
	got  map[string][]string // delivery ID → outcomes announced
}

func (n *modelNotifier) Notify(ctx context.Context, id string, record []byte) error {
	return step(ctx, func(ctx context.Context) error {
		if n.down || n.fail > 0 {
			if n.fail > 0 {
				n.fail--
			}
			return errInjected
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := tasks.DecodeResult(record)
		if err != nil {
			return err
		}
		n.got[id] = append(n.got[id], r.Outcome)
		return nil
	})
}

// tb is what the model needs of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// modelTurns plays deadline-first dispatch: a turn, a hold, or Redis
// unreachable.
type modelTurns struct {
	mode int           // 0 grant, 1 hold, 2 fail
	hold time.Duration // how long a hold lasts
	now  func() time.Time
}

func (tu *modelTurns) Take(ctx context.Context, _ string, _ time.Time) (turn worker.Turn, err error) {
	err = step(ctx, func(context.Context) error {
		switch tu.mode {
		case 1:
			turn = worker.Turn{HeldUntil: tu.now().Add(tu.hold), Ahead: 3}
		case 2:
			return errInjected
		default:
			turn = worker.Turn{Release: func() {}}
		}
		return nil
	})
	return turn, err
}

// mtask is asynq's view of one task.
type mtask struct {
	id       string
	state    string // pending, retry, archived, completed
	retried  int
	maxRetry int
	retryAt  time.Time
	// unclaimed: its last delivery ended before its claim reached the store.
	unclaimed bool
	// byOperator: an operator archived it (and nothing ran it since).
	byOperator bool
	// lastErr is asynq's LastErr of the task.
	lastErr string
	// zombieLast: the last delivery to write its record was a stalled one
	// that woke with a live context after asynq had moved on.
	zombieLast bool
}

// refundModel is one sequence's world.
type refundModel struct {
	ctx        context.Context
	clock      *rpctest.Clock
	sb         *rpctest.Server
	documented bool
	store      *records.Store
	mem        *modelMemory
	api        *modelAPI
	notifier   *modelNotifier // nil: the handler has none
	turns      *modelTurns
	h          *worker.Handler
	ref        string
	initiated  time.Time
	cutoff     time.Time
	payload    []byte
	owner      string // the canonical task's ID
	tasks      []*mtask
	// newerAt is the ledger length when a newer refund was seeded (-1: none);
	// ours is our refund's state when it was replaced.
	newerAt int
	ours    rpctest.Refund
	// finalAt is the ledger length when the record was first seen final in
	// this run (-1: not final).
	finalAt int
	// tol: the defects the model steps around.
	tol tolerances
	// beforeWake, if set, runs before a stalled delivery wakes (replays).
	beforeWake func()
	// zombieCalls: ledger indices of calls a stalled delivery made after it
	// woke with a live context (tolerated while tol.zombieSend).
	zombieCalls map[int]bool
	// externallyCancelled: someone else cancelled our refund.
	externallyCancelled bool
	steps               *atomic.Int64
}

type modelEnv struct {
	redis *redistest.Redis
	rdb   *redis.Client
	queue string
	seq   atomic.Int64
	steps atomic.Int64
}

func newModelEnv(t *testing.T) *modelEnv {
	r := redistest.New(t)
	rdb := r.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	return &modelEnv{redis: r, rdb: rdb, queue: r.Queue(t)}
}

// modelSetup is one sequence's set-up.
type modelSetup struct {
	Documented bool          // the sandbox speaks only what 2Checkout documents
	Age        time.Duration // the refund's age when the sequence starts
	Notifier   bool          // the handler has a Notifier
	MaxRetry   int           // the task's MaxRetry
}

// drawSetup draws a set-up.
func drawSetup(rt *rapid.T) modelSetup {
	return modelSetup{
		Documented: rapid.Bool().Draw(rt, "documentedOnly"),
		Age:        time.Duration(rapid.IntRange(1, 125).Draw(rt, "refundAgeMinutes")) * time.Minute,
		Notifier:   rapid.IntRange(0, 4).Draw(rt, "notifier") > 0,
		MaxRetry:   rapid.SampledFrom([]int{0, 1, 3, tasks.DefaultMaxRetry}).Draw(rt, "maxRetry"),
	}
}

// newModel builds one sequence's world.
func (env *modelEnv) newModel(rt tb, s modelSetup) *refundModel {
	n := env.seq.Add(1)
	documented := s.Documented
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := rpctest.NewClock(start)
	sb := rpctest.NewServer(rpctest.Config{Now: clock.Now, DocumentedOnly: documented})
	rt.Cleanup(sb.Close)
	client, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode,
		SecretKey: rpctest.DefaultSecretKey, Now: clock.Now, RequestTimeout: 5 * time.Second, CredentialsBackoff: time.Millisecond})
	if err != nil {
		rt.Fatal(err)
	}
	m := &refundModel{ctx: context.Background(), clock: clock, sb: sb, documented: documented, newerAt: -1, finalAt: -1, steps: &env.steps, tol: openDefects, zombieCalls: map[int]bool{}}
	m.ref = fmt.Sprintf("M%d", n)
	m.initiated = start.Add(-s.Age)
	m.cutoff = m.initiated.Add(tasks.Window - worker.DefaultSafetyMargin)
	if err := sb.Seed(rpctest.Refund{OrderRef: m.ref, InitiatedAt: m.initiated, RefundID: "RF-" + m.ref}); err != nil {
		rt.Fatal(err)
	}
	q := fmt.Sprintf("%s-%d", env.queue, n)
	m.store = records.New(env.rdb, q, 0)
	// The queue is named after env.queue: redistest deletes its keys when the test ends.
	m.api = &modelAPI{inner: client}
	m.mem = &modelMemory{inner: m.store}
	var notifier worker.Notifier
	if s.Notifier {
		m.notifier = &modelNotifier{got: map[string][]string{}}
		notifier = m.notifier
	}
	m.turns = &modelTurns{now: clock.Now}
	m.h, err = worker.NewHandler(worker.HandlerConfig{API: m.api, Memory: m.mem, Notifier: notifier, Now: clock.Now, Turns: m.turns,
		Policy: worker.Policy{Rand: func() float64 { return 0.5 }}})
	if err != nil {
		rt.Fatal(err)
	}
	p := tasks.CancelRefund{OrderRef: m.ref, RefundInitiatedAt: m.initiated}
	if m.payload, err = json.Marshal(p); err != nil {
		rt.Fatal(err)
	}
	m.owner = p.TaskID()
	m.tasks = []*mtask{{id: m.owner, state: "pending", maxRetry: s.MaxRetry}}
	return m
}

// deliverable answers the tasks asynq (or an operator's Run of a retry) may hand a worker now.
func (m *refundModel) deliverable() []*mtask {
	var out []*mtask
	for _, t := range m.tasks {
		if t.state == "pending" || t.state == "retry" {
			out = append(out, t)
		}
	}
	return out
}

// ledger answers the sandbox's calls: the sandbox serves this sequence
// alone, so all are for our order, or logins.
func (m *refundModel) ledger() []rpctest.Call { return m.sb.Ledger() }

// refundCalls counts the calls about our order (logins aside: a login the
// client started for a call that gave up may land later).
func (m *refundModel) refundCalls() int {
	n := 0
	for _, c := range m.sb.Ledger() {
		if c.OrderRef == m.ref {
			n++
		}
	}
	return n
}

// deliver runs one delivery of t, disrupted as d says, and plays asynq's
// part with its answer.
func (m *refundModel) deliver(rt tb, t *mtask, kind, at int, after bool) {
	m.steps.Add(1)
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	d := &disruption{kind: kind, at: at, after: after, cancel: cancel}
	ctx = context.WithValue(ctx, disruptionKey{}, d)
	before := m.refundCalls()
	dl := worker.Delivery{TaskID: t.id, Queue: "q", Retried: t.retried, MaxRetry: t.maxRetry, Type: tasks.TypeCancelRefund, Payload: m.payload}
	res, err, crashed := m.run(ctx, dl)
	t.unclaimed, t.zombieLast, t.byOperator = !d.claimed, false, false
	m.afterDelivery(rt, t, kind, crashed, ctx.Err(), res, err)
	rt.Logf("deliver %s (retried %d/%d, %s at op %d after=%v fired=%v): %s %v → %s", t.id, dl.Retried, dl.MaxRetry,
		disruptNames[kind], at, after, d.fired, outcomeOf(res), err, t.state)
	if !d.claimed && m.refundCalls() != before {
		rt.Fatalf("a delivery of %s that never claimed the refund called 2Checkout", t.id)
	}
	if res != nil && res.Outcome == tasks.OutcomeDuplicate {
		if n := m.refundCalls(); n != before {
			rt.Fatalf("a duplicate delivery of %s called 2Checkout %d time(s)", t.id, n-before)
		}
	}
}

// afterDelivery plays asynq's part with a delivery's answer
// (processor.handleFailedMessage, the recoverer, the shutdown's requeue).
func (m *refundModel) afterDelivery(rt tb, t *mtask, kind int, crashed bool, ctxErr error, res *tasks.Result, err error) {
	task := asynq.NewTask(tasks.TypeCancelRefund, m.payload)
	now := m.clock.Now()
	// asynq's part (processor.handleFailedMessage, recoverer, requeue).
	recoverer := func() {
		t.lastErr = "asynq: task lease expired"
		if t.retried >= t.maxRetry {
			t.state = "archived"
			return
		}
		t.retryAt = now.Add(m.h.RetryDelay(t.retried, errors.New("asynq: task lease expired"), task))
		t.state, t.retried = "retry", t.retried+1
	}
	failed := func(err error) {
		t.lastErr = err.Error()
		switch {
		case errors.Is(err, asynq.SkipRetry) || t.retried >= t.maxRetry:
			t.state = "archived"
		default:
			t.retryAt = now.Add(m.h.RetryDelay(t.retried, err, task))
			t.state = "retry"
			if m.h.IsFailure(err) {
				t.retried++
			}
		}
	}
	switch {
	case crashed || kind == disruptLost:
		recoverer()
	case kind == disruptShutdown && ctxErr != nil:
		t.state = "pending"
	case kind == disruptTimeout && ctxErr != nil:
		failed(context.DeadlineExceeded)
	case err == nil:
		t.state = "completed"
	default:
		failed(err)
	}
}

func outcomeOf(r *tasks.Result) string {
	if r == nil {
		return "<nil>"
	}
	return r.Outcome
}

// run delivers, turning a simulated crash into crashed.
func (m *refundModel) run(ctx context.Context, d worker.Delivery) (res *tasks.Result, err error, crashed bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashSignal); !ok {
				panic(r)
			}
			res, err, crashed = nil, nil, true
		}
	}()
	res, err = m.h.Deliver(ctx, d)
	return res, err, false
}

// sweep plays the window sweep as internal/windowsweep does it: an
// archived task runs again if decideAll judges it due and records.Store.Run's
// script moves it (both mirrored here: the model keeps asynq's state in
// memory); a retry past the cut-off runs now.
func (m *refundModel) sweep(rt tb) int {
	p := tasks.CancelRefund{OrderRef: m.ref, RefundInitiatedAt: m.initiated}
	es, err := m.store.Judge(m.ctx, []tasks.CancelRefund{p})
	if err != nil {
		rt.Fatal(err)
	}
	now := m.clock.Now()
	moved := 0
	e := es[0]
	for _, t := range m.tasks {
		switch {
		case t.state == "archived":
			// windowsweep.decideAll's judgement of an archived task …
			unclaimed := e.Owner == "" && t.lastErr != "" ||
				e.Owner == t.id && !e.Record.Final() &&
					windowsweep.AsynqsOwn(t.lastErr)
			due := unclaimed || e.Owner == t.id && e.Due(now)
			// … and records.Store.Run's script, which moves it
			moves := (e.Owner == t.id || e.Owner == "") && (e.Record.Final() && !e.Done || !e.Record.Final() &&
				(unclaimed || e.Delivery == worker.DeliveryRunning || e.Delivery == worker.DeliveryParked))
			if !due || !moves {
				continue
			}
			if t.byOperator && !m.tol.operatorArchive {
				rt.Fatalf("the sweep runs %s, which an operator archived (record %s, delivery %s, last error %q)", t.id, outcomeOf(e.Record), e.Delivery, t.lastErr)
			}
		case t.state == "retry" && !now.Before(m.cutoff) && t.retryAt.After(now):
		default:
			continue
		}
		t.state = "pending"
		moved++
	}
	return moved
}

// recordEntry reads the refund's entry.
func (m *refundModel) recordEntry(rt tb) (records.Entry, bool) {
	e, ok, err := m.store.Get(m.ctx, m.ref, m.initiated)
	if err != nil {
		rt.Fatal(err)
	}
	return e, ok
}

// check asserts the invariants after a step.
func (m *refundModel) check(rt tb) {
	calls := m.ledger()
	e, ok := m.recordEntry(rt)
	cur, _ := m.sb.Refund(m.ref)
	ours := cur
	if m.newerAt >= 0 {
		ours = m.ours
	}
	applied := 0
	asked := true // a getOrder answered since the last cancelRefund that applied
	for i, c := range calls {
		z := m.zombieCalls[i] // tolerated: no fence, no getOrder, after the final record
		if c.Method == rpcclient.MethodGetOrder && c.Outcome == "ok" && !strings.Contains(c.Fault, rpctest.FaultApplyThenDrop) {
			asked = true
		}
		if c.Method != rpcclient.MethodCancelRefund {
			continue
		}
		if !asked && !z {
			rt.Fatalf("ledger %d: cancelRefund again, after one that applied, with no getOrder answered in between (ledger %+v)", i, calls)
		}
		if c.Outcome == "ok" {
			asked = false
		}
		if !c.Time.Before(m.cutoff) {
			rt.Fatalf("ledger %d: cancelRefund at %s, at or after the cut-off %s", i, c.Time.Format(time.RFC3339), m.cutoff.Format(time.RFC3339))
		}
		if m.finalAt >= 0 && i >= m.finalAt && !z {
			rt.Fatalf("ledger %d: cancelRefund after the record was final (%s)", i, e.Record.Outcome)
		}
		if m.newerAt >= 0 && i >= m.newerAt && !z {
			rt.Fatalf("ledger %d: cancelRefund (%s) while a newer refund is the order's pending one", i, c.Outcome)
		}
		if c.Outcome == "ok" && (m.newerAt < 0 || i < m.newerAt) {
			applied++
		}
	}
	if applied > 1 {
		rt.Fatalf("%d applied cancelRefund calls for one refund", applied)
	}
	if m.newerAt >= 0 && cur.Status == rpctest.StatusCanceled && len(m.zombieCalls) == 0 {
		rt.Fatalf("the newer refund was cancelled")
	}
	if !ok || e.Record == nil {
		return
	}
	r := e.Record
	if e.Owner != r.TaskID || r.Outcome == tasks.OutcomeDuplicate {
		rt.Fatalf("record of owner %s holds %s's %s", e.Owner, r.TaskID, r.Outcome)
	}
	if !r.Final() {
		return
	}
	if m.finalAt < 0 {
		m.finalAt = len(calls)
	}
	switch r.Outcome {
	case tasks.OutcomeCancelled, tasks.OutcomeAlreadyCancelled:
		if ours.Status != rpctest.StatusCanceled {
			rt.Fatalf("record says %s, the sandbox says the refund is %s", r.Outcome, ours.Status)
		}
		if r.Outcome == tasks.OutcomeCancelled && applied != 1 {
			rt.Fatalf("record says cancelled, %d cancelRefund applied", applied)
		}
	case tasks.OutcomeRefused, tasks.OutcomeWindowClosed, tasks.OutcomeSuperseded:
		if applied > 0 && !(m.tol.supersededOwnCancel && r.Outcome == tasks.OutcomeSuperseded && r.MaybeApplied != "") {
			rt.Fatalf("record says %s (%s), but this task's cancelRefund was applied", r.Outcome, r.Reason)
		}
	case tasks.OutcomeUnknown:
		if !m.documented && m.newerAt < 0 {
			// A getOrder whose login failed never reached 2Checkout; a
			// stalled delivery's calls are not the deciding one's.
			var last *rpctest.Call
			for i, c := range calls {
				if !m.zombieCalls[i] && (c.Method == rpcclient.MethodGetOrder || c.Method == rpcclient.MethodLogin) {
					last = &c
				}
			}
			if last != nil && last.Method == rpcclient.MethodGetOrder && last.Outcome == "ok" && last.Fault == "" {
				rt.Fatalf("record says unknown (%s), but the last getOrder answered cleanly showing the refund %s (ledger %+v)", r.Reason, ours.Status, calls)
			}
		}
	default:
		rt.Fatalf("final record with outcome %s (%s)", r.Outcome, r.Reason)
	}
	if m.notifier != nil {
		id := worker.DeliveryID(r)
		for _, o := range m.notifier.got[id] {
			if o != r.Outcome {
				rt.Fatalf("announced %s as %s, the record says %s", id, o, r.Outcome)
			}
		}
		if e.Done && len(m.notifier.got[id]) == 0 {
			rt.Fatalf("record of run %d marked announced, but the notifier never took %s", r.Run, id)
		}
	}
}

// settle lets the system come to rest: no more faults, the clock follows
// asynq's retries and the sweep. It asserts that the refund's record ends
// final and announced, every run of it.
func (m *refundModel) settle(rt tb) {
	_ = m.sb.SetFaults()
	m.turns.mode = 0
	m.mem.failClaim, m.mem.failWrite, m.mem.failFinal, m.mem.failAnnounced = 0, 0, 0, 0
	if m.notifier != nil {
		m.notifier.fail, m.notifier.down = 0, false
	}
	for _, t := range m.tasks {
		if t.byOperator { // the operator presses Run on what they archived
			t.state, t.byOperator = "pending", false
		}
	}
	for i := 0; i < 400; i++ {
		if ts := m.deliverable(); len(ts) > 0 {
			t := ts[0]
			for _, o := range ts {
				if o.state == "pending" || o.retryAt.Before(t.retryAt) {
					t = o
				}
			}
			if t.state == "retry" && t.retryAt.After(m.clock.Now()) {
				m.clock.Set(t.retryAt)
			}
			m.deliver(rt, t, disruptNone, 0, false)
			m.check(rt)
			continue
		}
		if m.sweep(rt) > 0 {
			continue
		}
		// Nothing runs now: a parked task runs when its record says.
		e, _ := m.recordEntry(rt)
		if e.Record != nil && !e.Record.Final() && e.Delivery == worker.DeliveryParked && e.Record.NextAttemptAt.After(m.clock.Now()) {
			m.clock.Set(e.Record.NextAttemptAt)
			if m.sweep(rt) > 0 {
				continue
			}
		}
		break
	}
	if ts := m.deliverable(); len(ts) > 0 {
		rt.Fatalf("no rest after 400 deliveries: task %s still %s", ts[0].id, ts[0].state)
	}
	e, ok := m.recordEntry(rt)
	states := make([]string, 0, len(m.tasks))
	for _, t := range m.tasks {
		states = append(states, t.id+"="+t.state)
	}
	var owner *mtask
	for _, t := range m.tasks {
		if t.id == e.Owner || !ok && t.id == m.owner {
			owner = t
		}
	}
	switch {
	case (!ok || !e.Record.Final()) && owner.state == "archived" && (m.tol.archivedUnclaimed && owner.unclaimed || m.tol.zombieSend && owner.zombieLast):
		rt.Logf("defect tolerated: at rest unsettled, archived by asynq after a delivery that could not claim (tasks %v)", states)
		return
	case !ok || e.Record == nil:
		rt.Fatalf("at rest with no record (tasks %v): asynq archived the task before any record was written, and the sweep does not run it", states)
	case !e.Record.Final():
		rt.Fatalf("at rest with record %s (delivery %s; tasks %v): the refund is left unsettled and nothing will run it", e.Record.Outcome, e.Delivery, states)
	case m.notifier != nil && !e.Done:
		rt.Fatalf("at rest with final record %s not announced (tasks %v)", e.Record.Outcome, states)
	}
	if m.notifier != nil {
		for _, r := range append(e.Earlier, e.Record) {
			if got := m.notifier.got[worker.DeliveryID(r)]; len(got) == 0 {
				rt.Fatalf("run %d's final record (%s) was never announced", r.Run, r.Outcome)
			}
		}
	}
	for _, t := range m.tasks {
		if t.state != "completed" && t.state != "archived" {
			rt.Fatalf("at rest with task %s %s", t.id, t.state)
		}
	}
}

// tolerances names the defects the model steps around while they stand,
// so it keeps finding others; TestModelCounterexamples replays each with
// none. Set a field false in openDefects once its defect is fixed.
type tolerances struct {
	// supersededOwnCancel: a superseded record whose own cancelRefund may
	// have applied (its reason says so), where settle would say unknown.
	supersededOwnCancel bool
	// archivedUnclaimed: a task asynq archived at its MaxRetry after a
	// delivery that never claimed (the claim failed, or the process died
	// before it): the record does not say asynq archived it (none yet, or
	// a new run's "done"), so nothing runs it again.
	archivedUnclaimed bool
	// operatorArchive: the sweep runs a task an operator archived.
	operatorArchive bool
	// zombieSend: a delivery that stalled past its lease (its successor
	// ran meanwhile) and wakes with a live context sends what it was about
	// to send, unfenced: a cancelRefund after the record is final, or with
	// a newer refund pending; and what it writes of how its delivery ends
	// ("done": asynq retries it) is false, as asynq dropped its answer.
	zombieSend bool
	// unannouncedRerun: the model draws no operator Rerun of a run whose
	// ending was not announced yet (the rerun drops that announcement).
	unannouncedRerun bool
}

// openDefects are the defects that stand (see /work/notes/model-defects.md).
// zombieSend stays for the race asynq leaves open: a stalled delivery's
// context is cancelled when its lease expires (processor.go), so only in
// the instants after a paused process resumes can it still act; the
// 20 s send deadline keeps it from sending a cancel (the counterexample
// replays without tolerance), but its reads and its record of how it
// ended (delivery "done" over a newer delivery's "parked") are not fenced.
var openDefects = tolerances{operatorArchive: true, zombieSend: true}

// rerun plays an operator's "try again" (the README's procedure): a new
// run in the store, the task deleted and enqueued anew. It answers why it
// could not, or "".
func (m *refundModel) rerun(rt tb) string {
	rt.Helper()
	e, ok := m.recordEntry(rt)
	if !ok {
		return "no record"
	}
	var owner *mtask
	for _, t := range m.tasks {
		if t.id == e.Owner {
			owner = t
		}
	}
	if owner == nil || (owner.state != "archived" && owner.state != "completed") {
		return "the owner's task has not ended"
	}
	if m.tol.unannouncedRerun && m.notifier != nil && !e.Done {
		return "defect: a rerun drops an unannounced ending"
	}
	if _, err := m.store.Rerun(m.ctx, m.ref, m.initiated); err != nil {
		if errors.Is(err, records.ErrNotFinal) || errors.Is(err, records.ErrCancelled) || errors.Is(err, records.ErrUnannounced) {
			return err.Error()
		}
		rt.Fatal(err)
	}
	owner.state, owner.retried, owner.byOperator = "pending", 0, false
	m.finalAt = -1
	rt.Logf("operator: rerun")
	return ""
}

// actions answers the moves of the state machine.
func (m *refundModel) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"":                func(rt *rapid.T) { m.check(rt) },
		"deliver":         m.deliverAction,
		"deliverAgain":    m.deliverAction,
		"deliverOnceMore": m.deliverAction,
		"sweep":           func(rt *rapid.T) { m.sweep(rt) },
		"zombie":          m.zombieAction,
		"operatorArchive": func(rt *rapid.T) {
			var ts []*mtask
			for _, t := range m.tasks {
				if t.state == "pending" || t.state == "retry" {
					ts = append(ts, t)
				}
			}
			if len(ts) == 0 {
				rt.Skip("nothing to archive")
			}
			t := rapid.SampledFrom(ts).Draw(rt, "task")
			t.state, t.byOperator = "archived", true
			rt.Logf("operator: archive %s", t.id)
		},
		"operatorRunArchived": func(rt *rapid.T) {
			var ts []*mtask
			for _, t := range m.tasks {
				if t.state == "archived" {
					ts = append(ts, t)
				}
			}
			if len(ts) == 0 {
				rt.Skip("nothing archived")
			}
			t := rapid.SampledFrom(ts).Draw(rt, "task")
			t.state, t.byOperator = "pending", false
		},
		"operatorRerun": func(rt *rapid.T) {
			if why := m.rerun(rt); why != "" {
				rt.Skip(why)
			}
		},
		"secondTask": func(rt *rapid.T) {
			if len(m.tasks) > 1 {
				rt.Skip("one is enough")
			}
			maxRetry := rapid.SampledFrom([]int{0, tasks.DefaultMaxRetry}).Draw(rt, "dupMaxRetry")
			m.tasks = append(m.tasks, &mtask{id: "raw-" + m.ref, state: "pending", maxRetry: maxRetry})
		},
		"advance": func(rt *rapid.T) {
			m.clock.Advance(time.Duration(rapid.IntRange(1, 600).Draw(rt, "seconds")) * time.Second)
		},
		"advanceNearCutoff": func(rt *rapid.T) {
			to := m.cutoff.Add(time.Duration(rapid.IntRange(-90, 90).Draw(rt, "secondsFromCutoff")) * time.Second)
			if to.After(m.clock.Now()) {
				m.clock.Set(to)
			}
		},
		"vendorFault": func(rt *rapid.T) {
			rules := []rpctest.FaultRule{
				{Kind: rpctest.FaultStatus, Status: 503},
				{Kind: rpctest.FaultStatus, Status: 500},
				{Kind: rpctest.FaultDrop},
				{Kind: rpctest.FaultApplyThenDrop},
				{Kind: rpctest.FaultApplyThenDrop, Status: 502},
				{Kind: rpctest.FaultMalformed},
				{Kind: rpctest.FaultExpireSession},
				{Kind: rpctest.FaultRPCError, Code: 1, Message: "Something went wrong"},
			}
			r := rapid.SampledFrom(rules).Draw(rt, "fault")
			r.Method = rapid.SampledFrom([]string{"", rpcclient.MethodCancelRefund, rpcclient.MethodGetOrder}).Draw(rt, "faultMethod")
			r.FirstN = rapid.IntRange(1, 4).Draw(rt, "faultFirstN")
			if err := m.sb.SetFaults(r); err != nil {
				rt.Fatal(err)
			}
		},
		"vendorHeals": func(rt *rapid.T) { _ = m.sb.SetFaults() },
		"dispatch": func(rt *rapid.T) {
			m.turns.mode = rapid.IntRange(0, 2).Draw(rt, "turns")
			m.turns.hold = time.Duration(rapid.IntRange(1, 3600).Draw(rt, "holdSeconds")) * time.Second
		},
		"operatorReenqueue": func(rt *rapid.T) {
			// The task deleted and enqueued anew, same ID, no Rerun: the
			// record stands.
			t := m.task(m.owner)
			if t.state != "archived" && t.state != "completed" {
				rt.Skip("the task has not ended")
			}
			t.state, t.retried, t.byOperator = "pending", 0, false
			rt.Logf("operator: delete and enqueue %s anew", t.id)
		},
		"refundCompleted": func(rt *rapid.T) {
			cur, _ := m.sb.Refund(m.ref)
			if m.newerAt >= 0 || cur.Status != rpctest.StatusPending {
				rt.Skip("not pending")
			}
			cur.Status = rpctest.StatusCompleted
			cur.OrderStatus = ""
			_ = m.sb.Seed(cur)
		},
		"someoneElseCancels": func(rt *rapid.T) {
			cur, _ := m.sb.Refund(m.ref)
			if m.newerAt >= 0 || cur.Status != rpctest.StatusPending {
				rt.Skip("not pending")
			}
			cur.Status = rpctest.StatusCanceled
			_ = m.sb.Seed(cur)
			m.externallyCancelled = true
		},
		"newerRefund": func(rt *rapid.T) {
			if m.documented {
				// getOrder shows no refund there: a retry cancels a newer
				// refund (README, known limits). Not drawn.
				rt.Skip("documented-only: a known limit")
			}
			cur, _ := m.sb.Refund(m.ref)
			if m.newerAt >= 0 || cur.Status == rpctest.StatusPending {
				rt.Skip("our refund is still pending, or replaced already")
			}
			// A task's first attempt never checks the order (README, known
			// limits): a newer refund is drawn only once this task has sent.
			sent := false
			for _, c := range m.ledger() {
				sent = sent || c.Method == rpcclient.MethodCancelRefund
			}
			if !sent {
				rt.Skip("no cancelRefund sent yet")
			}
			m.ours = cur
			m.newerAt = len(m.ledger())
			if err := m.sb.Seed(rpctest.Refund{OrderRef: m.ref, InitiatedAt: m.clock.Now(), RefundID: "RF2-" + m.ref}); err != nil {
				rt.Fatal(err)
			}
		},
		"redisFails": func(rt *rapid.T) {
			n := rapid.IntRange(1, 3).Draw(rt, "times")
			switch rapid.IntRange(0, 3).Draw(rt, "command") {
			case 0:
				m.mem.failClaim = n
			case 1:
				m.mem.failWrite = n
			case 2:
				m.mem.failFinal = n
			default:
				m.mem.failAnnounced = n
			}
		},
		"notifierFails": func(rt *rapid.T) {
			if m.notifier == nil {
				rt.Skip("no notifier")
			}
			m.notifier.fail = rapid.IntRange(1, 4).Draw(rt, "times")
		},
		"notifierDown": func(rt *rapid.T) {
			if m.notifier == nil {
				rt.Skip("no notifier")
			}
			m.notifier.down = !m.notifier.down
		},
	}
}

// deliverAction: a worker takes a task, maybe disrupted mid-delivery.
func (m *refundModel) deliverAction(rt *rapid.T) {
	ts := m.deliverable()
	if len(ts) == 0 {
		rt.Skip("nothing to deliver")
	}
	t := rapid.SampledFrom(ts).Draw(rt, "task")
	kind := rapid.IntRange(0, 8).Draw(rt, "disruption")
	if kind >= disruptPause {
		kind = disruptNone // most deliveries run undisturbed; pauses are zombieAction's
	}
	var at int
	var after bool
	if kind != disruptNone && kind != disruptLost {
		at = rapid.IntRange(0, 7).Draw(rt, "op")
		after = rapid.Bool().Draw(rt, "after")
	}
	m.deliver(rt, t, kind, at, after)
}

// zombieAction: a delivery stalls at one of its operations (a call hung
// past asynq's Timeout, or a process paused past its lease), asynq gives
// up on it and the task runs again — through a retry, or the sweep or an
// operator's Run once archived — while the stalled one is still alive;
// then the stalled one goes on, and its answer is lost (its lease is).
func (m *refundModel) zombieAction(rt *rapid.T) {
	ts := m.deliverable()
	if len(ts) == 0 {
		rt.Skip("nothing to deliver")
	}
	t := rapid.SampledFrom(ts).Draw(rt, "task")
	at := rapid.IntRange(0, 7).Draw(rt, "op")
	after := rapid.Bool().Draw(rt, "after")
	alive := rapid.Bool().Draw(rt, "contextAlive")
	m.zombie(rt, t, at, after, alive)
}

// zombie: see zombieAction. alive: the stalled delivery's context is still
// live when it wakes (a process paused shorter than the task's Timeout but
// longer than its lease); else it has ended (the Timeout's deadline).
func (m *refundModel) zombie(rt tb, t *mtask, at int, after, alive bool) {
	rt.Helper()
	m.steps.Add(1)
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	d := &disruption{kind: disruptPause, at: at, after: after, cancel: cancel, paused: make(chan struct{}), resume: make(chan struct{})}
	ctx = context.WithValue(ctx, disruptionKey{}, d)
	dl := worker.Delivery{TaskID: t.id, Queue: "q", Retried: t.retried, MaxRetry: t.maxRetry, Type: tasks.TypeCancelRefund, Payload: m.payload}
	type answer struct {
		res *tasks.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err, _ := m.run(ctx, dl)
		done <- answer{res, err}
	}()
	select {
	case a := <-done:
		rt.Logf("zombie %s never stalled: %s %v", t.id, outcomeOf(a.res), a.err)
		// it ran through: asynq handles its answer as any delivery's
		t.unclaimed = !d.claimed
		m.afterDelivery(rt, t, disruptNone, false, nil, a.res, a.err)
		return
	case <-d.paused:
	}
	// asynq gives up on it: the Timeout (a counted failure, archived at
	// MaxRetry), then the retry, or the sweep, runs the task again.
	t.unclaimed = !d.claimed
	m.afterDelivery(rt, t, disruptTimeout, false, context.DeadlineExceeded, nil, nil)
	if t.state == "archived" {
		t.state = "pending"
	}
	rt.Logf("zombie %s stalled at op %d (after=%v, context alive=%v); the task runs again", t.id, at, after, alive)
	if alive {
		// A live context means a paused process: asynq re-delivers its task
		// only once its lease (30 s) expired.
		m.clock.Advance(31 * time.Second)
	}
	m.deliver(rt, t, disruptNone, 0, false)
	if !alive {
		cancel()
	}
	if m.beforeWake != nil {
		m.beforeWake()
	}
	from := len(m.ledger())
	close(d.resume)
	a := <-done
	if alive && m.tol.zombieSend {
		for i := from; i < len(m.ledger()); i++ {
			m.zombieCalls[i] = true
		}
		t.zombieLast = true
	}
	rt.Logf("zombie %s woke: %s %v (its answer is lost)", t.id, outcomeOf(a.res), a.err)
}

// TestModel drives the handler through random sequences of moves and
// judges each step from the sandbox and the store (see the file's comment).
func TestModel(t *testing.T) {
	noFailFile()
	defaultChecks(modelChecks)
	env := newModelEnv(t)
	var seqs atomic.Int64
	start := time.Now() // wall clock: a figure for the log, not a bound
	rapid.Check(t, func(rt *rapid.T) {
		seqs.Add(1)
		m := env.newModel(rt, drawSetup(rt))
		rt.Repeat(m.actions())
		m.settle(rt)
	})
	t.Logf("%d sequences, %d deliveries in %v", seqs.Load(), env.steps.Load(), time.Since(start).Round(time.Millisecond))
}

// modelChecks is how many sequences TestModel runs unless -rapid.checks
// or RAPID_CHECKS says otherwise (rapid's own default is 100, too few for
// this model's state space).
const modelChecks = 2000

// defaultChecks sets -rapid.checks to n unless the run set it.
func defaultChecks(n int) {
	set := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		if testing.Short() {
			n /= 4
		}
		_ = flag.Set("rapid.checks", strconv.Itoa(n))
	}
}

// noFailFile keeps rapid from writing fail files into the source tree
// unless one is asked for: a failure prints its -rapid.seed.
func noFailFile() {
	if f := flag.Lookup("rapid.failfile"); f != nil && f.Value.String() == "" && os.Getenv("RAPID_NOFAILFILE") == "" {
		_ = flag.Set("rapid.nofailfile", "true")
	}
}

// task answers the model's task id.
func (m *refundModel) task(id string) *mtask {
	for _, t := range m.tasks {
		if t.id == id {
			return t
		}
	}
	return nil
}

// TestModelCounterexamples replays the model's shrunk counterexamples with
// no tolerance. One whose defect stands is skipped with its name
// (MODEL_DEFECTS=1 runs it anyway, to see it fail).
func TestModelCounterexamples(t *testing.T) {
	env := newModelEnv(t)
	for _, c := range []struct {
		name   string
		defect string // non-empty while the defect stands
		setup  modelSetup
		script func(t *testing.T, m *refundModel)
	}{{
		name:  "a rerun waits for the announcement of the run it replaces",
		setup: modelSetup{Age: 125 * time.Minute, Notifier: true, MaxRetry: 0},
		script: func(t *testing.T, m *refundModel) {
			m.tol.unannouncedRerun = false
			m.notifier.down = true
			m.deliver(t, m.task(m.owner), disruptNone, 0, false) // window_closed, unannounced, archived
			m.check(t)
			if why := m.rerun(t); why == "" {
				t.Fatal("a rerun of a run whose ending was never announced was allowed")
			}
			m.notifier.down = false
			m.settle(t) // the sweep runs it: announced
			if why := m.rerun(t); why != "" {
				t.Fatal(why)
			}
		},
	}, {
		name:  "superseded never hides this task's own cancel",
		setup: modelSetup{Age: 10 * time.Minute, MaxRetry: tasks.DefaultMaxRetry},
		script: func(t *testing.T, m *refundModel) {
			// op 4 (claim, turn, sending write, cancelRefund, …) is the
			// write of the cancelled record: the shutdown cancels the
			// context after cancelRefund applied.
			m.deliver(t, m.task(m.owner), disruptShutdown, 4, false)
			if r, _ := m.sb.Refund(m.ref); r.Status != rpctest.StatusCanceled {
				t.Fatalf("set-up: the first delivery did not cancel (%s)", r.Status)
			}
			m.check(t)
			cur, _ := m.sb.Refund(m.ref)
			m.ours, m.newerAt = cur, len(m.ledger())
			if err := m.sb.Seed(rpctest.Refund{OrderRef: m.ref, InitiatedAt: m.clock.Now(), RefundID: "RF2-" + m.ref}); err != nil {
				t.Fatal(err)
			}
			m.deliver(t, m.task(m.owner), disruptNone, 0, false)
		},
	}, {
		name:  "a task archived before its first claim is run again",
		setup: modelSetup{Age: 10 * time.Minute, Notifier: true, MaxRetry: 0},
		script: func(t *testing.T, m *refundModel) {
			m.mem.failClaim = 1
			m.deliver(t, m.task(m.owner), disruptNone, 0, false)
		},
	}, {
		name:  "a rerun task archived before its claim is run again",
		setup: modelSetup{Age: 115 * time.Minute, MaxRetry: 0},
		script: func(t *testing.T, m *refundModel) {
			m.clock.Set(m.cutoff)
			m.deliver(t, m.task(m.owner), disruptNone, 0, false) // window_closed
			m.check(t)
			if why := m.rerun(t); why != "" {
				t.Fatal(why)
			}
			m.mem.failClaim = 1
			m.deliver(t, m.task(m.owner), disruptNone, 0, false)
		},
	}, {
		name:   "the sweep leaves a task an operator archived after a crash",
		defect: "known limit (docs/window-and-outcomes.md): a delivery that crashed leaves the record 'running'; asynq's recoverer puts the task in retry; an operator archives it before its re-delivery; the sweep reads 'running' as asynq's archive and runs it",
		setup:  modelSetup{Age: 10 * time.Minute, MaxRetry: tasks.DefaultMaxRetry},
		script: func(t *testing.T, m *refundModel) {
			o := m.task(m.owner)
			m.deliver(t, o, disruptCrash, 1, false) // dies after its claim (at its turn): nothing sent
			o.state, o.byOperator = "archived", true
			m.sweep(t)
		},
	}, {
		name:  "the sweep leaves a rerun task an operator archived",
		setup: modelSetup{Age: 115 * time.Minute, MaxRetry: tasks.DefaultMaxRetry},
		script: func(t *testing.T, m *refundModel) {
			m.clock.Set(m.cutoff)
			o := m.task(m.owner)
			m.deliver(t, o, disruptNone, 0, false) // window_closed
			if why := m.rerun(t); why != "" {
				t.Fatal(why)
			}
			o.state, o.byOperator = "archived", true
			m.sweep(t)
		},
	}, {
		name:  "a stalled delivery never cancels after its successor's final record",
		setup: modelSetup{Age: 10 * time.Minute, MaxRetry: tasks.DefaultMaxRetry},
		script: func(t *testing.T, m *refundModel) {
			m.beforeWake = func() {
				m.check(t) // the successor's record is final
				cur, _ := m.sb.Refund(m.ref)
				m.ours, m.newerAt = cur, len(m.ledger())
				if err := m.sb.Seed(rpctest.Refund{OrderRef: m.ref, InitiatedAt: m.clock.Now(), RefundID: "RF2-" + m.ref}); err != nil {
					t.Fatal(err)
				}
			}
			woke := -1
			wake := m.beforeWake
			m.beforeWake = func() { wake(); woke = len(m.ledger()) }
			// op 3 (claim, turn, the cancel, in it the sending write): done;
			// then it stalls past its lease, and wakes about to send.
			m.zombie(t, m.task(m.owner), 3, true, true)
			if woke < 0 {
				t.Fatal("set-up: the delivery never stalled")
			}
			for _, c := range m.ledger()[woke:] {
				if c.Method == rpcclient.MethodCancelRefund {
					t.Fatalf("the stalled delivery sent a cancelRefund when it woke, after its successor's final record: %+v", c)
				}
			}
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			if c.defect != "" && os.Getenv("MODEL_DEFECTS") == "" {
				t.Skip("defect: " + c.defect)
			}
			m := env.newModel(t, c.setup)
			m.tol = tolerances{}
			c.script(t, m)
			m.check(t)
			m.settle(t)
		})
	}
}

// recordingTB is a rapid.TB that keeps a failure instead of failing the test.
type recordingTB struct {
	*testing.T
	failed bool
	msg    string
}

func (r *recordingTB) Logf(string, ...any) {}
func (r *recordingTB) Log(...any)          {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordingTB) Error(args ...any)                 { r.failed, r.msg = true, fmt.Sprint(args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recordingTB) Fatal(args ...any)                 { r.Error(args...) }
func (r *recordingTB) FailNow()                          { r.failed = true }
func (r *recordingTB) Fail()                             { r.failed = true }
func (r *recordingTB) Failed() bool                      { return r.failed }

// TestModelFindsSeededDefects breaks the handler's memory on purpose, the
// way the handler broke before #22 (a re-delivery that believes it is a
// first attempt), and shows the model finds it.
func TestModelFindsSeededDefects(t *testing.T) {
	if testing.Short() {
		t.Skip("long: it runs the model until it fails, and shrinks")
	}
	noFailFile()
	env := newModelEnv(t)
	for _, f := range []string{"rapid.checks", "rapid.shrinktime"} {
		old := flag.Lookup(f).Value.String()
		t.Cleanup(func() { _ = flag.Set(f, old) })
	}
	_ = flag.Set("rapid.checks", "3000")
	_ = flag.Set("rapid.shrinktime", "3s")
	for _, mutant := range []string{"forget", "no-sending"} {
		t.Run(mutant, func(t *testing.T) {
			rec := &recordingTB{T: t}
			rapid.Check(rec, func(rt *rapid.T) {
				m := env.newModel(rt, drawSetup(rt))
				m.mem.mutant = mutant
				rt.Repeat(m.actions())
				m.settle(rt)
			})
			if !rec.failed {
				t.Fatalf("the model did not find the seeded defect %q", mutant)
			}
			t.Logf("found: %s", strings.SplitN(rec.msg, "\n", 2)[0])
		})
	}
}
