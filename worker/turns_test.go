package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// fakeTurns answers Take from its fields and records what it was asked.
type fakeTurns struct {
	grant    bool
	err      error
	until    time.Time
	ahead    int
	asked    []time.Time // cut-offs
	released int
	// ledger, when set, is read at Release: the calls made in the turn.
	ledger func() int
	inTurn int
}

func (f *fakeTurns) Take(_ context.Context, _ string, cutoff time.Time) (Turn, error) {
	f.asked = append(f.asked, cutoff)
	if f.err != nil {
		return Turn{}, f.err
	}
	if !f.grant {
		return Turn{HeldUntil: f.until, Ahead: f.ahead}, nil
	}
	return Turn{Release: func() {
		f.released++
		if f.ledger != nil {
			f.inTurn = f.ledger()
		}
	}}, nil
}

func TestHeldTaskSendsNothingCountsNoRetryAndKeepsItsRecord(t *testing.T) {
	initiated := t0.Add(-time.Hour)
	cutoff := initiated.Add(2*time.Hour - DefaultSafetyMargin)
	cases := []struct {
		name   string
		prior  *tasks.Result
		first  bool // the next attempt is still the first (no getOrder before cancelRefund)
		vendor string
	}{
		{"first delivery", nil, true, ""},
		{"after a hold", &tasks.Result{Outcome: tasks.OutcomeHeld, Attempts: 0}, true, ""},
		{"after a failed attempt", &tasks.Result{Outcome: tasks.OutcomeRetry, Attempts: 1, Sent: 1, VendorError: "HTTP_STATUS", VendorCode: 0}, false, "HTTP_STATUS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			_ = e.srv.Seed(rpctest.Refund{OrderRef: "H1", InitiatedAt: initiated})
			turns := &fakeTurns{until: t0.Add(time.Minute), ahead: 7}
			e.h.turns = turns
			retried := 0
			p := tasks.CancelRefund{OrderRef: "H1", RefundInitiatedAt: initiated}
			if tc.prior != nil {
				retried = tc.prior.Attempts
				r := *tc.prior
				r.TaskID, r.OrderRef, r.RefundInitiatedAt, r.Run = "t", "H1", initiated, 1
				e.mem.seed(p, "t", &r)
			}
			a := Delivery{Type: tasks.TypeCancelRefund, TaskID: "t", Retried: retried, MaxRetry: 25, Payload: payload("H1", initiated)}
			res, err := e.h.Deliver(context.Background(), a)
			var rerr *RetryError
			if !errors.As(err, &rerr) || !rerr.Held || !rerr.At.Equal(t0.Add(time.Minute)) || e.h.IsFailure(err) {
				t.Fatalf("err %v, want a held, uncounted retry at HeldUntil", err)
			}
			if n := len(e.srv.Ledger()); n != 0 {
				t.Fatalf("a held task sent %d requests", n)
			}
			if len(turns.asked) != 1 || !turns.asked[0].Equal(cutoff) {
				t.Fatalf("Take asked with cut-offs %v, want [%v]", turns.asked, cutoff)
			}
			wantAttempts := 0
			if tc.prior != nil {
				wantAttempts = tc.prior.Attempts
			}
			if res.Outcome != tasks.OutcomeHeld || res.Attempts != wantAttempts || res.VendorError != tc.vendor || res.Final() {
				t.Fatalf("record %+v, want held with %d attempts and the prior's vendor error %q", res, wantAttempts, tc.vendor)
			}
			if e.obs.outcomes[0] != tasks.OutcomeHeld {
				t.Fatalf("observer told %v, want held", e.obs.outcomes)
			}
			// Its turn comes: the attempt is the first still, or a retry.
			turns.grant = true
			turns.ledger = func() int { return len(e.srv.Ledger()) }
			res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "t", Retried: retried, MaxRetry: 25, Payload: a.Payload})
			if err != nil || !res.Cancelled() {
				t.Fatalf("in its turn: %v %+v", err, res)
			}
			if turns.released != 1 || turns.inTurn != len(e.srv.Ledger()) {
				t.Fatalf("released %d times, after %d of %d calls; want once, after all", turns.released, turns.inTurn, len(e.srv.Ledger()))
			}
			gotFirst := e.srv.Ledger()[len(e.srv.Ledger())-1].Method == "cancelRefund" && !hasMethod(e.srv.Ledger(), "getOrder")
			if gotFirst != tc.first {
				t.Fatalf("ledger %v: first attempt %v, want %v", e.srv.Ledger(), gotFirst, tc.first)
			}
		})
	}
}

func hasMethod(calls []rpctest.Call, m string) bool {
	for _, c := range calls {
		if c.Method == m {
			return true
		}
	}
	return false
}

func TestNoTurnsAskedPastTheCutoffAndRedisDownDoesNotStopTheAttempt(t *testing.T) {
	e := newEnv(t, "")
	turns := &fakeTurns{err: errors.New("redis: connection refused")}
	e.h.turns = turns
	late := t0.Add(-2 * time.Hour) // past its cut-off: archived without a turn
	if _, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "late", Payload: payload("L1", late)}); err == nil || len(turns.asked) != 0 {
		t.Fatalf("past the cut-off: %v, asked %d turns; want archived without asking", err, len(turns.asked))
	}
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "R1", InitiatedAt: initiated})
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "r", Payload: payload("R1", initiated)})
	if err != nil || !res.Cancelled() {
		t.Fatalf("turns unavailable: %v %+v, want the call made anyway", err, res)
	}
}

func TestReached(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want reach
	}{
		{"held back by the budget", &rpcclient.GateError{Method: "cancelRefund", Err: context.DeadlineExceeded}, nothingReached},
		{"cancelRefund never left", &rpcclient.TransportError{Method: "cancelRefund", Err: context.Canceled, NotSent: true}, nothingReached},
		{"login sent, 2Checkout unavailable", &rpcclient.APIError{Method: "login", Name: rpcclient.NameHTTPStatus, HTTPStatus: 503}, loginReached},
		{"login got no answer", &rpcclient.TransportError{Method: "login", Err: errors.New("connection reset")}, loginReached},
		{"credentials refused", &rpcclient.APIError{Method: "login", Code: 10003, Name: rpcclient.NameAuthenticationFailed}, loginReached},
		{"cancelRefund 503: it was sent", &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 503}, refundReached},
		{"cancelRefund lost its connection", &rpcclient.TransportError{Method: "cancelRefund", Err: errors.New("EOF")}, refundReached},
		{"getOrder answered", &rpcclient.APIError{Method: "getOrder", Code: 20002, Name: "ORDER_NOT_FOUND"}, refundReached},
	}
	for _, tc := range cases {
		if got := reached(tc.err); got != tc.want {
			t.Errorf("%s: reached = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A run whose login failed is counted (its backoff grows) but is no
// attempt: the next run cancels at once, without a getOrder first.
func TestFailedLoginIsNoAttempt(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "L1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "login", Kind: "status", Status: 503, FirstN: 1})
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "l", MaxRetry: 25, Payload: payload("L1", initiated)})
	var rerr *RetryError
	if !errors.As(err, &rerr) || !rerr.NothingSent || !e.h.IsFailure(err) || res.Attempts != 0 {
		t.Fatalf("err %v, record %+v: want a counted retry whose record adds no attempt", err, res)
	}
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "l", Retried: 1, MaxRetry: 25, Payload: payload("L1", initiated)})
	if err != nil || !res.Cancelled() || hasMethod(e.srv.Ledger(), "getOrder") {
		t.Fatalf("second run: %v %+v, ledger %v: want cancelled with no getOrder", err, res, e.srv.Ledger())
	}
}

// After "not cancellable", the confirming getOrder held back by the budget
// does not make the run "nothing sent": a cancelRefund went out, so the
// retry counts and checks the order first.
func TestConfirmHeldBackAfterACancelStillCounts(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", InitiatedAt: initiated, Status: "CANCELED"}) // "not cancellable"
	gate := &refusingGate{refuse: "getOrder"}
	e.useGate(t, gate)
	_, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "n", MaxRetry: 25, Payload: payload("N1", initiated)})
	var rerr *RetryError
	if !errors.As(err, &rerr) || rerr.NothingSent || !e.h.IsFailure(err) {
		t.Fatalf("err %v (%+v), want a counted retry", err, rerr)
	}
}

// refusingGate lets every request through but those for one method.
type refusingGate struct{ refuse string }

func (g *refusingGate) Wait(_ context.Context, method string) error {
	if method == g.refuse {
		return errors.New("held back")
	}
	return nil
}
func (g *refusingGate) Done(context.Context, string, error) {}

// A task at its producer's MaxRetry retries uncounted, so asynq's count
// stays put: the attempt number comes from the record then, and the
// record's attempts and the backoff keep growing.
func TestAttemptNumberGrowsPastAFrozenCounter(t *testing.T) {
	cases := []struct {
		name         string
		retried      int
		prior        *tasks.Result
		wantAttempts int
		wantDelay    time.Duration // Rand 0.5: half of min(MaxDelay, 2s·2^(n−1)), at least 1s
	}{
		{"first attempt", 0, nil, 1, time.Second},
		{"asynq counts", 3, &tasks.Result{Outcome: tasks.OutcomeRetry, Attempts: 3, Sent: 3}, 4, 8 * time.Second},
		{"counter frozen at MaxRetry 1", 0, &tasks.Result{Outcome: tasks.OutcomeRetry, Attempts: 5, Sent: 5}, 6, 32 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			initiated := t0.Add(-time.Hour)
			_ = e.srv.Seed(rpctest.Refund{OrderRef: "F1", InitiatedAt: initiated})
			_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503})
			if tc.prior != nil {
				r := *tc.prior
				r.TaskID, r.OrderRef, r.RefundInitiatedAt, r.Run = "f", "F1", initiated, 1
				e.mem.seed(tasks.CancelRefund{OrderRef: "F1", RefundInitiatedAt: initiated}, "f", &r)
			}
			res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "f", Retried: tc.retried, MaxRetry: 1, Payload: payload("F1", initiated)})
			var rerr *RetryError
			if !errors.As(err, &rerr) {
				t.Fatalf("%v", err)
			}
			if res.Attempts != tc.wantAttempts || rerr.At.Sub(t0) != tc.wantDelay {
				t.Fatalf("attempts %d, retry in %v; want %d, %v", res.Attempts, rerr.At.Sub(t0), tc.wantAttempts, tc.wantDelay)
			}
		})
	}
}

// priorityOnlyGate holds back every request but priority ones (a fleet
// throttled to nothing, or holding for an outage).
type priorityOnlyGate struct{ held []string }

func (g *priorityOnlyGate) Wait(ctx context.Context, method string) error {
	if !rpcclient.Priority(ctx) {
		g.held = append(g.held, method)
		return &rpcclient.GateError{Method: method, Err: errors.New("held back: the fleet is throttled")}
	}
	return nil
}
func (g *priorityOnlyGate) Done(context.Context, string, error) {}

// The last chance is never taken away: the attempt after which no retry
// fits (a 429 asked for 100,000 s, 30 s before the cut-off, so the policy
// placed the retry in the last slot) goes out whatever the fleet's
// throttle says and without waiting for a deadline-first turn, and
// cancels the refund. Earlier attempts are held back as usual.
func TestLastChanceIsNeverHeld(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + 30*time.Second) // cut-off in 30 s
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "LC1", InitiatedAt: initiated})
	gate := &priorityOnlyGate{}
	e.useGate(t, gate)
	turns := &fakeTurns{until: t0.Add(time.Hour), ahead: 3}
	e.h.turns = turns
	cutoff := e.h.policy.Cutoff(initiated)
	// 2Checkout's own answer, earlier: 429 with a Retry-After far past the cut-off.
	retryAt, ok := e.h.policy.Next(t0, 1, cutoff, &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 429, RetryAfter: 100000 * time.Second})
	if !ok || !e.h.policy.LastChance(retryAt, cutoff) || !retryAt.Before(cutoff) {
		t.Fatalf("retry at %v (ok %v), cut-off %v: want the last slot before the cut-off", retryAt, ok, cutoff)
	}
	// An ordinary attempt is held back by the throttled fleet...
	if _, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "lc", Payload: payload("LC1", initiated)}); err == nil {
		t.Fatal("an ordinary attempt went through a fleet that holds everything back")
	}
	turns.asked = nil
	// ...the last chance is not.
	e.clock.Set(retryAt)
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "lc", Payload: payload("LC1", initiated)})
	if err != nil || res.Outcome != tasks.OutcomeCancelled || len(turns.asked) != 0 {
		t.Fatalf("last chance: %+v %v; turns asked %d", res, err, len(turns.asked))
	}
	if r, _ := e.srv.Refund("LC1"); r.Status != rpctest.StatusCanceled {
		t.Fatalf("sandbox refund %+v", r)
	}
}

// The check that keeps a retry off a newer refund is asked right before
// the cancel, in the turn — never remembered from before a hold: a cancel
// answered 503, a hold, our refund completed and a newer one issued
// meanwhile; the retry leaves the newer one alone. (From a review: a check
// made before the hold and remembered cancelled the newer refund.)
func TestNewerRefundDuringAHoldIsLeftAlone(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", InitiatedAt: initiated, RefundID: "RF-ours"})
	turns := &fakeTurns{grant: true}
	e.h.turns = turns
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "n", Payload: payload("N1", initiated)}
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 503, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	_, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("delivery 1: %v", err)
	}
	e.clock.Set(rerr.At)
	turns.grant, turns.until = false, e.clock.Now().Add(10*time.Minute)
	if _, err = e.h.Deliver(context.Background(), d); !errors.As(err, &rerr) || !rerr.Held {
		t.Fatalf("delivery 2: %v; want held", err)
	}
	e.clock.Set(rerr.At)
	turns.grant = true
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", InitiatedAt: initiated, RefundID: "RF-ours", Status: rpctest.StatusCompleted})
	newer := e.clock.Now().Add(-time.Second)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", InitiatedAt: newer, RefundID: "RF-newer"})
	res, err := e.h.Deliver(context.Background(), d)
	if cur, _ := e.srv.Refund("N1"); cur.RefundID != "RF-newer" || cur.Status != rpctest.StatusPending {
		t.Fatalf("the order's refund is now %+v; want the newer one still pending", cur)
	}
	terr := &TerminalError{}
	if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeUnknown {
		t.Fatalf("%+v %v; want unknown (our 503'd cancel may be what settled our refund)", res, err)
	}
}

// probeSpy records, per cancelRefund through it, whether the request was
// marked to probe last.
type probeSpy struct{ marks []bool }

func (g *probeSpy) Wait(ctx context.Context, method string) error {
	if method == rpcclient.MethodCancelRefund {
		g.marks = append(g.marks, rpcclient.ProbeLast(ctx))
	}
	return nil
}
func (g *probeSpy) Done(context.Context, string, error) {}

// A first attempt's cancel is the last an outage's probe goes to (a failed
// probe of its would leave one more task to check its refund later); a
// cancel sent right after the task checked its refund is not held back.
func TestFirstCancelProbesLast(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "P1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Kind: rpctest.FaultStatus, Status: 503, Method: rpcclient.MethodCancelRefund, FirstN: 1})
	spy := &probeSpy{}
	e.useGate(t, spy)
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "p", Payload: payload("P1", initiated)}
	_, err := e.h.Deliver(context.Background(), d)
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("first attempt: %v", err)
	}
	e.clock.Set(rerr.At)
	if res, err := e.h.Deliver(context.Background(), d); err != nil || !res.Cancelled() {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if len(spy.marks) != 2 || !spy.marks[0] || spy.marks[1] {
		t.Fatalf("probe-last marks of the two cancels: %v; want [true false]", spy.marks)
	}
}
