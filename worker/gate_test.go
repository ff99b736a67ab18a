package worker

// The fleet's Gate (throttle, outage hold, ceiling) meeting the window's
// last chance, the check before a retry's cancel, the shared login and the
// send deadline. (Found by a hostile review: each failed before its fix.)

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// stallGate plays vendorbudget.Gate for a fleet whose throttle (or outage
// hold) holds every non-priority request: like vendorbudget's Wait it
// waits (the fake clock advances) until the next wait would cross the
// request's start deadline, then answers rpcclient.ErrStartDeadline
// without sending. Priority requests (the last chance, the settling
// getOrder) go through at once, as the Gate promises.
type stallGate struct {
	clock  *rpctest.Clock
	step   time.Duration // the throttle's wait per turn (1/rate)
	method string        // the method the fleet throttles
	held   []string
}

func (g *stallGate) Wait(ctx context.Context, method string) error {
	if rpcclient.Priority(ctx) || method != g.method {
		return nil
	}
	g.held = append(g.held, method)
	if sd, ok := rpcclient.StartDeadline(ctx); ok {
		if at := sd.Add(-g.step / 2); at.After(g.clock.Now()) {
			g.clock.Set(at) // waited in steps until the next would cross it
		}
		return rpcclient.ErrStartDeadline
	}
	return &rpcclient.GateError{Method: method, Err: context.DeadlineExceeded}
}
func (g *stallGate) Done(context.Context, string, error) {}

// deliverUntilFinal plays asynq: each retry is delivered exactly at its
// RetryError.At (asynq at its best: no lag), until the record is final.
func deliverUntilFinal(t *testing.T, e *env, d Delivery) *tasks.Result {
	t.Helper()
	for i := 0; i < 50; i++ {
		res, err := e.h.Deliver(context.Background(), d)
		if res != nil && res.Final() {
			return res
		}
		var rerr *RetryError
		if !errors.As(err, &rerr) {
			t.Fatalf("delivery %d: %+v %v", i, res, err)
		}
		if rerr.At.After(e.clock.Now()) {
			e.clock.Set(rerr.At)
		}
	}
	t.Fatal("no final record after 50 deliveries")
	return nil
}

// A fleet that throttles cancelRefund (2Checkout refusing for load) holds
// an ordinary attempt 20 s before the cut-off until its send deadline;
// the handler then places the retry MinDelay later — at the cut-off — so
// the last chance, which the throttle may not hold, is never taken, and
// the refund (cancellable, 2Checkout accepting priority requests the whole
// time) ends window_closed with no cancelRefund ever sent. The retry after
// a send-deadline miss should be placed by the Policy (its last slot), or
// the ordinary attempt's start deadline kept clear of it.
func TestThrottleHeldAttemptDoesNotEatTheLastChance(t *testing.T) {
	e := newEnv(t, "")
	// cut-off 20.5 s after t0: t0 is an ordinary attempt (the last slot
	// is cut-off − 3 s − …), its send deadline t0+20 s falls before the
	// cut-off.
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 20*time.Second + 500*time.Millisecond)
	cutoff := e.h.policy.Cutoff(initiated)
	if e.h.policy.LastChance(t0, cutoff) {
		t.Fatal("set-up: t0 must be an ordinary attempt")
	}
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "TH1", InitiatedAt: initiated, RefundID: "RF-TH1"})
	gate := &stallGate{clock: e.clock, step: time.Second, method: rpcclient.MethodCancelRefund}
	e.useGate(t, gate)
	d := Delivery{Type: tasks.TypeCancelRefund, TaskID: "th", MaxRetry: tasks.DefaultMaxRetry, Payload: payload("TH1", initiated)}
	res := deliverUntilFinal(t, e, d)
	cancels := e.cancels()
	r, _ := e.srv.Refund("TH1")
	if r.Status != rpctest.StatusCanceled {
		t.Fatalf("refund %s, outcome %s (%s), %d cancelRefund sent, held: %v; want cancelled by the last chance before the cut-off %v",
			r.Status, res.Outcome, res.Reason, cancels, gate.held, cutoff)
	}
}

// The same with the check before a retry's cancel: a first cancel answered
// 503 (it may have applied), so the retry asks getOrder first; 2Checkout
// is refusing getOrder for load and the fleet throttles it. The read has
// no send deadline but the cut-off, so the throttle may hold it — from ten
// minutes before the cut-off — up to the cut-off itself, and the handler
// takes that for the window's end: no last chance (which the throttle may
// not hold) is ever placed, and the cancellable refund ends window_closed.
func TestThrottledCheckDoesNotEatTheLastChance(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 10*time.Minute)
	cutoff := e.h.policy.Cutoff(initiated)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "TC1", InitiatedAt: initiated, RefundID: "RF-TC1"})
	gate := &stallGate{clock: e.clock, step: time.Second, method: rpcclient.MethodGetOrder}
	e.useGate(t, gate)
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultStatus, Status: 503, FirstN: 1})
	d := Delivery{Type: tasks.TypeCancelRefund, TaskID: "tc", MaxRetry: tasks.DefaultMaxRetry, Payload: payload("TC1", initiated)}
	res := deliverUntilFinal(t, e, d)
	cancels := e.cancels()
	r, _ := e.srv.Refund("TC1")
	if r.Status != rpctest.StatusCanceled {
		t.Fatalf("refund %s, outcome %s (%s), %d cancelRefund sent (the first answered 503), held: %v; want cancelled by a last chance before the cut-off %v",
			r.Status, res.Outcome, res.Reason, cancels, gate.held, cutoff)
	}
}

// lateGate lets method through only once its start deadline has passed (a
// slow Redis round trip at the ceiling, a slow shared login): the client's
// own check then refuses to start it (rpcclient.ErrStartDeadline).
type lateGate struct {
	clock  *rpctest.Clock
	method string
}

func (g *lateGate) Wait(ctx context.Context, method string) error {
	if sd, ok := rpcclient.StartDeadline(ctx); ok && method == g.method {
		g.clock.Set(sd.Add(time.Millisecond))
	}
	return nil
}
func (g *lateGate) Done(context.Context, string, error) {}

// The record's "sent" counts cancelRefunds sent: a last chance whose
// cancel the client refused to start (its start deadline, the cut-off,
// passed while it waited) sent nothing, but the record counts it —
// sent 1, attempts 1 — while the sandbox's ledger holds no cancelRefund.
// (The check for "nothing left" tests ErrStartDeadline only before the
// cut-off; after it, reached() takes the sentinel for a request that
// reached 2Checkout.) A rerun then believes a cancel of its went out.
func TestCancelNotStartedAtTheCutoffIsNotCountedSent(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 2*time.Second) // cut-off in 2 s: the last chance
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "NS1", InitiatedAt: initiated})
	e.useGate(t, &lateGate{clock: e.clock, method: rpcclient.MethodCancelRefund})
	d := Delivery{Type: tasks.TypeCancelRefund, TaskID: "ns", MaxRetry: tasks.DefaultMaxRetry, Payload: payload("NS1", initiated)}
	res, err := e.h.Deliver(context.Background(), d)
	cancels := e.cancels()
	if res == nil || !res.Final() {
		t.Fatalf("%+v %v; want a final record", res, err)
	}
	if res.Sent != cancels {
		t.Fatalf("record %s sent=%d attempts=%d, but the sandbox's ledger holds %d cancelRefund", res.Outcome, res.Sent, res.Attempts, cancels)
	}
}

// queueGate holds every non-priority login (queued at the fleet's ceiling
// behind the process's other requests, as vendorbudget's poller does)
// until released; priority requests and everything else go at once.
type queueGate struct {
	entered chan struct{}
	release chan struct{}
	once    bool
}

func (g *queueGate) Wait(ctx context.Context, method string) error {
	if method != rpcclient.MethodLogin || rpcclient.Priority(ctx) {
		return nil
	}
	if !g.once {
		g.once = true
		close(g.entered)
	}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (g *queueGate) Done(context.Context, string, error) {}

// The last chance is a priority request, but it needs a session: when an
// ordinary request of the same process has just started the shared login
// (the session expired; the ordinary login waits its turn at the fleet's
// ceiling), the last chance waits for that ordinary login instead of
// logging in as a priority request, past its cut-off: the refund —
// cancellable, 2Checkout answering — ends window_closed.
func TestLastChanceDoesNotWaitForAnOrdinaryLogin(t *testing.T) {
	e := newEnv(t, "")
	e.h.policy.RequestTimeout = time.Second // bounds how long the test waits for the failure
	gate := &queueGate{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() { close(gate.release) })
	api, err := rpcclient.New(rpcclient.Config{URL: e.srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: e.clock.Now, RequestTimeout: 5 * time.Second, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	e.h.api = api
	early := t0.Add(-30 * time.Minute)
	lastChance := t0.Add(-2*time.Hour + DefaultSafetyMargin + 3*time.Second) // cut-off in 3 s
	if !e.h.policy.LastChance(t0, e.h.policy.Cutoff(lastChance)) {
		t.Fatal("set-up: not a last chance")
	}
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "ORD1", InitiatedAt: early}, rpctest.Refund{OrderRef: "LCL1", InitiatedAt: lastChance, RefundID: "RF-LCL1"})
	// An ordinary task starts the shared login; it waits at the ceiling.
	go func() {
		_, _ = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "ord", MaxRetry: tasks.DefaultMaxRetry, Payload: payload("ORD1", early)})
	}()
	<-gate.entered
	// The last chance of another task, in the same process.
	type answer struct {
		res *tasks.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "lcl", MaxRetry: tasks.DefaultMaxRetry, Payload: payload("LCL1", lastChance)})
		done <- answer{res, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-time.After(30 * time.Second): // a bound on a hang, not a wait for work
		t.Fatal("the last chance hung")
	}
	if r, _ := e.srv.Refund("LCL1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("last chance: refund %s, record %s (%s) %v; want the priority cancel sent (2Checkout answers; only an ordinary login was queued)",
			r.Status, a.res.Outcome, a.res.Reason, a.err)
	}
}

// hookGate runs hook when a request of method asks to go (the time it
// waits in the fleet's outage hold or throttle, up to its send deadline),
// then lets it go.
type hookGate struct {
	method string
	hook   func()
}

func (g *hookGate) Wait(_ context.Context, method string) error {
	if method == g.method && g.hook != nil {
		h := g.hook
		g.hook = nil
		h()
	}
	return nil
}
func (g *hookGate) Done(context.Context, string, error) {}

// Never someone else's refund: the retry after a 503'd cancel checks the
// order with getOrder "right before the cancel" — but the cancel then
// waits in the fleet's gate (a cancelRefund outage's hold: only the probe
// goes; or the throttle), up to its 20 s send deadline. Meanwhile the
// task's own refund completes and a newer refund is issued on the order;
// the cancel goes out when the gate lets it and cancels the newer refund.
// The check is as stale as the gate's wait, not as stale as a round trip.
func TestNewerRefundDuringAGateHoldIsLeftAlone(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "GH1", InitiatedAt: initiated, RefundID: "RF-ours"})
	gate := &hookGate{method: rpcclient.MethodCancelRefund}
	e.useGate(t, gate)
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "gh", Payload: payload("GH1", initiated)}
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 503, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	_, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("delivery 1: %v", err)
	}
	e.clock.Set(rerr.At)
	// The retry: its check shows its refund pending; its cancel then waits
	// 15 s in the gate, during which the order changes.
	gate.hook = func() {
		_ = e.srv.Seed(rpctest.Refund{OrderRef: "GH1", InitiatedAt: initiated, RefundID: "RF-ours", Status: rpctest.StatusCompleted})
		e.clock.Set(e.clock.Now().Add(10 * time.Second))
		_ = e.srv.Seed(rpctest.Refund{OrderRef: "GH1", InitiatedAt: e.clock.Now(), RefundID: "RF-newer"})
		e.clock.Set(e.clock.Now().Add(5 * time.Second))
	}
	res, err := e.h.Deliver(context.Background(), d)
	if cur, _ := e.srv.Refund("GH1"); cur.RefundID != "RF-newer" || cur.Status != rpctest.StatusPending {
		t.Fatalf("the order's refund is now %+v; want the newer one left pending (this task's record: %s, refund_id %q, %q %v)", cur, res.Outcome, res.RefundID, res.Reason, err)
	}
}
