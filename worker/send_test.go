package worker

// What happens right before a cancel is sent — the check of a retry, the
// "sending" record, the start deadlines — meeting shutdowns, stalls, a
// session error and holds. (Found by a second hostile review: each that
// could fail failed before its fix.)

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// cancelOnGate runs hook when a request of method asks the Gate to go,
// then answers the context's error if it ended (vendorbudget's Wait does).
type cancelOnGate struct {
	method string
	hook   func()
}

func (g *cancelOnGate) Wait(ctx context.Context, method string) error {
	if method == g.method && g.hook != nil {
		h := g.hook
		g.hook = nil
		h()
	}
	return ctx.Err()
}
func (g *cancelOnGate) Done(context.Context, string, error) {}

// cancels answers how many cancelRefund calls reached the sandbox.
func (e *env) cancels() int { return len(e.cancelCalls()) }

// A retry (its first cancel answered 429: refused for load, never
// applied) is shut down (a rolling restart: asynq cancels its context)
// while its check's getOrder waits at the Gate. No second cancel went out,
// and the "sending" record, written only after the check, was not either.
// Meanwhile the task's refund was settled by someone else and a newer
// refund issued: the outcome is superseded (no cancel of this task's can
// have applied: the sandbox's ledger holds one, answered 429), sent 1.
func TestShutdownDuringTheCheckLeavesNoFalseSending(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SC1", InitiatedAt: initiated, RefundID: "RF-ours"})
	gate := &cancelOnGate{method: rpcclient.MethodGetOrder}
	e.useGate(t, gate)
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "sc", Payload: payload("SC1", initiated)}
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 429, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	res, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) || res.MaybeApplied != "" || res.Sent != 1 {
		t.Fatalf("delivery 1: %+v %v; want a retry, one cancel sent, not maybe applied", res, err)
	}
	e.clock.Set(rerr.At)
	// Delivery 2: shut down while its check's getOrder waits at the Gate.
	ctx, cancel := context.WithCancel(context.Background())
	gate.hook = cancel
	if res, err := e.h.Deliver(ctx, d); res != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("delivery 2: %+v %v; want stopped by the shutdown", res, err)
	}
	// Someone else settles this task's refund; a newer one is issued.
	e.clock.Set(e.clock.Now().Add(time.Minute))
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SC1", InitiatedAt: e.clock.Now().Add(-time.Second), RefundID: "RF-newer"})
	res, err = e.h.Deliver(context.Background(), d)
	if res == nil || res.Outcome != tasks.OutcomeSuperseded || res.Sent != e.cancels() {
		var o string
		if res != nil {
			o = res.Outcome + " sent=" + fmtInt(res.Sent) + " (" + res.Reason + ")"
		}
		t.Fatalf("delivery 3: %s %v; the sandbox's ledger holds %d cancelRefund (answered 429: never applied); want superseded, sent=%d",
			o, err, e.cancels(), e.cancels())
	}
}

func fmtInt(n int) string { return fmt.Sprint(n) }

// lateOnceGate lets the first request of method through only once its
// start deadline has passed (the ceiling's slow round trip), then every
// request at once.
type lateOnceGate struct {
	clock  *rpctest.Clock
	method string
	done   bool
}

func (g *lateOnceGate) Wait(ctx context.Context, method string) error {
	if sd, ok := rpcclient.StartDeadline(ctx); ok && method == g.method && !g.done {
		g.done = true
		g.clock.Set(sd.Add(time.Millisecond))
	}
	return nil
}
func (g *lateOnceGate) Done(context.Context, string, error) {}

// The check's getOrder of an ordinary retry, late past the attempt's
// OrdinaryDeadline: the retry must still be placed so that the last
// chance runs and cancels.
func TestCheckPastTheOrdinaryDeadlineLeavesTheLastChance(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 30*time.Second)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "OD1", InitiatedAt: initiated, RefundID: "RF-OD1"})
	gate := &lateOnceGate{clock: e.clock, method: rpcclient.MethodGetOrder}
	e.useGate(t, gate)
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 429, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "od", Payload: payload("OD1", initiated)}
	res := deliverUntilFinal(t, e, d)
	if r, _ := e.srv.Refund("OD1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("refund %s, record %s (%s)", r.Status, res.Outcome, res.Reason)
	}
}

// nthGate runs hook when the n-th request of method asks to go.
type nthGate struct {
	method string
	n      int
	hook   func()
}

func (g *nthGate) Wait(_ context.Context, method string) error {
	if method == g.method {
		if g.n--; g.n == 0 && g.hook != nil {
			g.hook()
		}
	}
	return nil
}
func (g *nthGate) Done(context.Context, string, error) {}

// The session retry re-runs the check: a retry's cancel is refused for
// its session (expired), and before it is sent again the order's refund
// changes (settled; a newer one issued). The re-run check sees it.
func TestSessionRetryChecksAgain(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SR1", InitiatedAt: initiated, RefundID: "RF-ours"})
	gate := &nthGate{method: rpcclient.MethodCancelRefund, n: 3}
	e.useGate(t, gate)
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 429, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "sr", Payload: payload("SR1", initiated)}
	_, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("delivery 1: %v", err)
	}
	e.clock.Set(rerr.At)
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultExpireSession, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	gate.hook = func() {
		_ = e.srv.Seed(rpctest.Refund{OrderRef: "SR1", InitiatedAt: e.clock.Now(), RefundID: "RF-newer"})
	}
	res, err := e.h.Deliver(context.Background(), d)
	if cur, _ := e.srv.Refund("SR1"); cur.RefundID != "RF-newer" || cur.Status != rpctest.StatusPending {
		t.Fatalf("order's refund %+v; record %s %v", cur, res.Outcome, err)
	}
	if res.Outcome != tasks.OutcomeSuperseded {
		t.Fatalf("record %s (%s) %v", res.Outcome, res.Reason, err)
	}
}

// slowSending is Memory whose write of the "sending" record takes d (a
// Redis failover's stall), once.
type slowSending struct {
	Memory
	clock *rpctest.Clock
	d     time.Duration
}

func (m *slowSending) Write(ctx context.Context, c Claim, r *tasks.Result, delivery string, announced bool) error {
	if r.Outcome == tasks.OutcomeSending && m.d > 0 {
		m.clock.Set(m.clock.Now().Add(m.d))
		m.d = 0
	}
	return m.Memory.Write(ctx, c, r, delivery, announced)
}

// An ordinary attempt (the last one before the last chance) whose
// "sending" record takes 2.5 s to write: its cancel's start deadline
// (OrdinaryDeadline) has passed when it is to be sent, so nothing is sent.
// No retry fits any more (Policy.Next places none in the last chance's
// territory, and one at now + MinDelay could reach a worker after the
// cut-off), so the attempt goes on as the last chance, at once, and
// cancels the refund.
func TestStallPastTheOrdinaryDeadlineKeepsTheLastChance(t *testing.T) {
	e := newEnv(t, "")
	e.h.mem = &slowSending{Memory: e.mem, clock: e.clock, d: 2500 * time.Millisecond}
	// t0 is the last ordinary instant: OrdinaryDeadline − 1 ns.
	cutoff := e.h.policy.OrdinaryDeadline(t0.Add(time.Hour)) // any cut-off with whole seconds
	lead := t0.Add(time.Hour).Sub(cutoff)                    // cut-off − OrdinaryDeadline
	cutoff = t0.Add(lead - time.Nanosecond)
	initiated := cutoff.Add(-e.h.policy.Window + e.h.policy.SafetyMargin)
	if e.h.policy.LastChance(t0, cutoff) || !e.h.policy.LastChance(t0.Add(time.Nanosecond), cutoff) {
		t.Fatal("set-up: t0 must be the last ordinary instant")
	}
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "ST1", InitiatedAt: initiated, RefundID: "RF-ST1"})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "st", Payload: payload("ST1", initiated)}
	res, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if errors.As(err, &rerr) && !rerr.At.Before(cutoff.Add(-e.h.policy.LastRetryLead)) {
		t.Errorf("retry placed at %s: cut-off %s, LastRetryLead %v (no retry at or after %s; past the cut-off: %v); record %s (%s)",
			rerr.At.Format(time.RFC3339Nano), cutoff.Format(time.RFC3339Nano), e.h.policy.LastRetryLead,
			cutoff.Add(-e.h.policy.LastRetryLead).Format(time.RFC3339Nano), rerr.At.After(cutoff), res.Outcome, res.Reason)
	}
	if err != nil && rerr == nil {
		t.Fatalf("%+v %v", res, err)
	}
	if rerr != nil {
		// asynq at the worst lag LastRetryLead covers (LeadFor): the retry
		// reaches a worker just under LastRetryLead after it is due.
		e.clock.Set(rerr.At.Add(e.h.policy.LastRetryLead - time.Millisecond))
		res = deliverUntilFinal(t, e, d)
	}
	if r, _ := e.srv.Refund("ST1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("refund %s, record %s (%s), %d cancelRefund sent: the attempt found its ordinary deadline gone at %s, %v before the cut-off, and sent nothing",
			r.Status, res.Outcome, res.Reason, e.cancels(), t0.Add(2500*time.Millisecond).Format(time.RFC3339Nano), cutoff.Sub(t0.Add(2500*time.Millisecond)))
	}
}

// holdAll holds every ordinary attempt far beyond the cut-off (a long
// backlog of sooner cut-offs).
type holdAll struct{ until time.Time }

func (h holdAll) Take(context.Context, string, time.Time) (Turn, error) {
	return Turn{HeldUntil: h.until, Ahead: 100}, nil
}

// A held attempt's retry is placed where Policy.Next places the last one:
// in the last whole second before cut-off − LastRetryLead ("No retry is
// placed at or after cutoff − LastRetryLead": asynq may take the whole
// lead to hand it over).
func TestHeldRetryIsPlacedBeforeTheLead(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + time.Minute) // cut-off in 60 s
	cutoff := e.h.policy.Cutoff(initiated)
	e.h.turns = holdAll{until: cutoff}
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "HL1", InitiatedAt: initiated})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "hl", Payload: payload("HL1", initiated)}
	_, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) || !rerr.Held {
		t.Fatalf("%v; want a hold", err)
	}
	if lead := cutoff.Add(-e.h.policy.LastRetryLead); !rerr.At.Before(lead) {
		t.Fatalf("held retry at %s; cut-off %s − LastRetryLead %v = %s: want before it", rerr.At.Format(time.RFC3339Nano),
			cutoff.Format(time.RFC3339Nano), e.h.policy.LastRetryLead, lead.Format(time.RFC3339Nano))
	}
}

// loginHoldGate plays the fleet's throttle for the login: an ordinary
// login (the session expired; an ordinary attempt needs one) is held at
// the Gate until its own context ends — vendorbudget's Wait gives up at
// the login's RequestTimeout — and the fake clock advances by hold
// meanwhile. Priority requests (and priority logins) go at once.
type loginHoldGate struct {
	clock *rpctest.Clock
	hold  time.Duration
	held  int
}

func (g *loginHoldGate) Wait(ctx context.Context, method string) error {
	if method != rpcclient.MethodLogin || rpcclient.Priority(ctx) {
		return nil
	}
	g.held++
	g.clock.Set(g.clock.Now().Add(g.hold))
	return context.DeadlineExceeded
}
func (g *loginHoldGate) Done(context.Context, string, error) {}

// An ordinary attempt whose session must be renewed waits on an ordinary
// login, which the fleet's throttle holds for the login's whole
// RequestTimeout (15 s). The caller's start deadline (OrdinaryDeadline)
// bounds its wait: the attempt, begun 18 s before the cut-off, gives way
// and goes on as the last chance — a priority request with a priority
// login, which the throttle may not hold — and cancels the refund. (Found
// by a fourth hostile review: the login's GateError, 3 s before the
// cut-off, used to end the task window_closed.)
func TestHeldOrdinaryLoginDoesNotEatTheLastChance(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 18*time.Second) // cut-off in 18 s
	cutoff := e.h.policy.Cutoff(initiated)
	if e.h.policy.LastChance(t0, cutoff) || !e.h.policy.LastChance(t0.Add(15*time.Second), cutoff) {
		t.Fatal("set-up: t0 must be ordinary, t0+15 s the last chance")
	}
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "LH1", InitiatedAt: initiated, RefundID: "RF-LH1"})
	gate := &loginHoldGate{clock: e.clock, hold: 15 * time.Second}
	e.useGate(t, gate)
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "lh", Payload: payload("LH1", initiated)}
	res := deliverUntilFinal(t, e, d)
	if r, _ := e.srv.Refund("LH1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("refund %s, record %s (%s), %d cancelRefund sent, %d ordinary login(s) held; the attempt ended at %s, %v before the cut-off %s",
			r.Status, res.Outcome, res.Reason, e.cancels(), gate.held, e.clock.Now().Format(time.RFC3339), cutoff.Sub(e.clock.Now()), cutoff.Format(time.RFC3339))
	}
}

// nthCancelGate runs hook when the n-th request of method asks to go,
// then answers the context's error if it ended (vendorbudget's Wait does).
type nthCancelGate struct {
	method string
	n      int
	hook   func()
}

func (g *nthCancelGate) Wait(ctx context.Context, method string) error {
	if method == g.method {
		if g.n--; g.n == 0 && g.hook != nil {
			g.hook()
		}
	}
	return ctx.Err()
}
func (g *nthCancelGate) Done(context.Context, string, error) {}

// A first cancel is refused for its session (2Checkout answered
// SESSION_EXPIRED: never applied); the client logs in again and its resend
// waits at the Gate, where a shutdown (a rolling restart) stops it. The
// record does not go on saying "sending": it says the only cancel sent was
// refused. The next delivery checks the order (a cancel was sent) and,
// the task's refund having been settled by someone else and a newer one
// issued meanwhile, ends superseded, leaving the newer one alone. (Found
// by a fourth hostile review: it ended unknown.)
func TestShutdownDuringTheSessionResendLeavesNoFalseSending(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SX1", InitiatedAt: initiated, RefundID: "RF-ours"})
	gate := &nthCancelGate{method: rpcclient.MethodCancelRefund, n: 2}
	api, err := rpcclient.New(rpcclient.Config{URL: e.srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: e.clock.Now, RequestTimeout: time.Second, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	e.h.api = api
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "sx", Payload: payload("SX1", initiated)}
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultExpireSession, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	ctx, cancel := context.WithCancel(context.Background())
	gate.hook = cancel
	if res, err := e.h.Deliver(ctx, d); res != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("delivery 1: %+v %v; want stopped by the shutdown", res, err)
	}
	if n := e.cancels(); n != 1 {
		t.Fatalf("set-up: %d cancelRefund in the ledger, want the one refused for its session", n)
	}
	// Someone else settles this task's refund; a newer one is issued.
	e.clock.Set(e.clock.Now().Add(time.Minute))
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SX1", InitiatedAt: e.clock.Now().Add(-time.Second), RefundID: "RF-newer"})
	res, err := e.h.Deliver(context.Background(), d)
	if cur, _ := e.srv.Refund("SX1"); cur.RefundID != "RF-newer" || cur.Status != rpctest.StatusPending {
		t.Fatalf("the newer refund was touched: %+v", cur)
	}
	if res == nil || res.Outcome != tasks.OutcomeSuperseded {
		var o string
		if res != nil {
			o = res.Outcome + " sent=" + fmtInt(res.Sent) + " maybe_applied=" + res.MaybeApplied + " (" + res.Reason + ")"
		}
		t.Fatalf("delivery 2: %s %v; the ledger holds %d cancelRefund, answered SESSION_EXPIRED (never applied); want superseded", o, err, e.cancels())
	}
}

// Sent counts "the cancelRefund requests sent for the refund". A first
// cancel goes out and is refused for its session (SESSION_EXPIRED); the
// client logs in again, and the resend waits at the Gate past its send
// deadline (sendWithin), so it is not sent. The record counts the one
// that went out, as the sandbox's ledger does. (Found by a fourth hostile
// review: it counted none.)
func TestSessionRefusedCancelThenLateResendIsCountedSent(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "SL1", InitiatedAt: initiated, RefundID: "RF-SL1"})
	gate := &nthGate{method: rpcclient.MethodCancelRefund, n: 2}
	gate.hook = func() { e.clock.Set(e.clock.Now().Add(sendWithin + time.Second)) } // the resend waited past its send deadline
	api, err := rpcclient.New(rpcclient.Config{URL: e.srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: e.clock.Now, RequestTimeout: time.Second, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	e.h.api = api
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultExpireSession, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "sl", Payload: payload("SL1", initiated)}
	res, err := e.h.Deliver(context.Background(), d)
	if res == nil {
		t.Fatalf("delivery: %v", err)
	}
	if res.Sent != e.cancels() {
		t.Fatalf("record sent=%d attempts=%d (%s %v); the ledger holds %d cancelRefund", res.Sent, res.Attempts, res.Outcome, err, e.cancels())
	}
}
