package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// run drives a task's attempts the way asynq would: each retry runs when
// due (the clock jumps there), with the retry count and the record the
// previous attempt left. It answers the last attempt's record and error.
func (e *env) run(t *testing.T, ref string, initiated time.Time) (*tasks.Result, int, error) {
	t.Helper()
	for retried := 0; retried < 1000; retried++ {
		res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: retried, Payload: payload(ref, initiated)})
		var rerr *RetryError
		if !errors.As(err, &rerr) {
			return res, retried + 1, err
		}
		if res == nil || res.Outcome != tasks.OutcomeRetry || !res.NextAttemptAt.Equal(rerr.At.UTC()) {
			t.Fatalf("retry record %+v for %v", res, err)
		}
		e.clock.Set(rerr.At)
	}
	t.Fatal("no end after 1000 attempts")
	return nil, 0, nil
}

// cancelCalls answers the cancelRefund calls of the ledger.
func (e *env) cancelCalls() []rpctest.Call {
	var out []rpctest.Call
	for _, c := range e.srv.Ledger() {
		if c.Method == "cancelRefund" {
			out = append(out, c)
		}
	}
	return out
}

func terminal(t *testing.T, err error) *TerminalError {
	t.Helper()
	var terr *TerminalError
	if !errors.As(err, &terr) || !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("want a terminal error, got %v", err)
	}
	return terr
}

// Case 2: an error nobody documented is retried, then archived with the
// vendor's code and message verbatim; a documented refusal ends at once.
func TestUnknownErrors(t *testing.T) {
	initiated := t0.Add(-time.Hour)
	cases := []struct {
		name       string
		rule       rpctest.FaultRule
		wantCalls  int
		wantReason string
	}{
		// An unrecognised answer is archived as a refusal only once getOrder
		// shows the refund still open.
		{"unknown code: three tries", rpctest.FaultRule{Method: "cancelRefund", Kind: "rpc_error", Code: 300, Message: "Refund cannot be canceled"},
			3, "2Checkout refused: 300 ERROR_300: Refund cannot be canceled (an answer this worker does not recognise, 3 times); getOrder confirms the refund is PENDING, not cancelled"},
		{"proxy 403: three tries", rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 403},
			3, "2Checkout refused: HTTP 403 HTTP_STATUS: Forbidden (an answer this worker does not recognise, 3 times); getOrder confirms the refund is PENDING, not cancelled"},
		{"documented message: at once", rpctest.FaultRule{Method: "cancelRefund", Kind: "rpc_error", Code: 1, Message: "Invalid ORDER_REF"},
			1, "2Checkout refused: 1 INVALID_ORDER_REFERENCE: Invalid ORDER_REF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			_ = e.srv.Seed(rpctest.Refund{OrderRef: "U1", InitiatedAt: initiated})
			_ = e.srv.SetFaults(tc.rule)
			res, attempts, err := e.run(t, "U1", initiated)
			terr := terminal(t, err)
			if terr.Outcome != tasks.OutcomeRefused || terr.Reason != tc.wantReason || attempts != tc.wantCalls || res.Reason != terr.Reason {
				t.Fatalf("after %d attempts: %q (%s)", attempts, terr.Reason, terr.Outcome)
			}
			if n := len(e.cancelCalls()); n != tc.wantCalls {
				t.Fatalf("%d cancelRefund calls, want %d", n, tc.wantCalls)
			}
			if r, _ := e.srv.Refund("U1"); r.Status != rpctest.StatusPending {
				t.Fatalf("refund %+v", r)
			}
		})
	}
	// The cut-off comes first: an unknown error a minute before it is not
	// retried three times.
	e := newEnv(t, "")
	late := t0.Add(-119*time.Minute + 30*time.Second) // cut-off in 30s
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "U2", InitiatedAt: late})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "rpc_error", Code: 300, Message: "nope"})
	e.h.policy.MinDelay = 20 * time.Second
	_, attempts, err := e.run(t, "U2", late)
	if terr := terminal(t, err); terr.Outcome != tasks.OutcomeWindowClosed || attempts != 2 || !strings.Contains(terr.Reason, "300 ERROR_300: nope") {
		t.Fatalf("after %d attempts: %v", attempts, err)
	}
}

// Case 1 in the handler: a vendor's long wait near the cut-off still gets
// the last retry; when none fits, the reason names the Retry-After.
func TestRetryAfterNearTheCutoff(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-119*time.Minute + 14*time.Second) // cut-off in 14s
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "RA", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 429, RetryAfter: 3, FirstN: 1})
	res, attempts, err := e.run(t, "RA", initiated)
	if err != nil || res.Outcome != tasks.OutcomeCancelled || attempts != 2 {
		t.Fatalf("after %d attempts: %+v %v", attempts, res, err)
	}
	calls := e.cancelCalls()
	if gap := calls[1].Time.Sub(calls[0].Time); gap < 3*time.Second {
		t.Fatalf("retried %v after Retry-After 3", gap)
	}

	e = newEnv(t, "")
	initiated = t0.Add(-119*time.Minute + 2*time.Second) // cut-off in 2s: nothing fits after the call
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "RB", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 429, RetryAfter: 100000})
	_, _, err = e.run(t, "RB", initiated)
	if terr := terminal(t, err); terr.Outcome != tasks.OutcomeWindowClosed || !strings.Contains(terr.Reason, "(2Checkout asked to wait 27h46m40s: Retry-After)") {
		t.Fatalf("%v", err)
	}
}

// Case 3: before archiving, an ambiguous attempt is settled with getOrder.
func TestTruthAtTheEndOfTheWindow(t *testing.T) {
	lead := 1800 * time.Millisecond
	// The cut-off is lead + 0.5s after now: the first call is the last that fits.
	lastChance := t0.Add(-119*time.Minute + lead + 500*time.Millisecond)
	cases := []struct {
		name        string
		docOnly     bool
		faults      []rpctest.FaultRule
		wantOutcome string
		wantReason  []string // substrings
		wantStatus  string   // the sandbox's refund afterwards
	}{
		{"answer lost, refund cancelled: already_cancelled", false,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "apply_then_drop"}},
			tasks.OutcomeAlreadyCancelled, nil, rpctest.StatusCanceled},
		{"answer lost, documented-only: unknown, never refused", true,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "apply_then_drop"}},
			tasks.OutcomeUnknown, []string{"outcome unknown: no retry fits", "got no clear answer", "getOrder does not show the refund's status", "check order T1"}, rpctest.StatusCanceled},
		{"5xx, not applied: getOrder says still pending", false,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "status", Status: 502}},
			tasks.OutcomeWindowClosed, []string{"no retry fits", "getOrder confirms the refund is PENDING, not cancelled"}, rpctest.StatusPending},
		{"5xx, documented-only: unknown", true,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "status", Status: 502}},
			tasks.OutcomeUnknown, []string{"outcome unknown"}, rpctest.StatusPending},
		{"429 only: not ambiguous, window_closed", true,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "status", Status: 429}},
			tasks.OutcomeWindowClosed, []string{"no retry fits"}, rpctest.StatusPending},
		{"getOrder fails too: unknown", false,
			[]rpctest.FaultRule{{Method: "cancelRefund", Kind: "apply_then_drop"}, {Method: "getOrder", Kind: "status", Status: 503}},
			tasks.OutcomeUnknown, []string{"getOrder failed: HTTP 503"}, rpctest.StatusCanceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, "", rpctest.Config{DocumentedOnly: tc.docOnly})
			e.h.policy.LastRetryLead = lead
			_ = e.srv.Seed(rpctest.Refund{OrderRef: "T1", RefundID: "R-T1", InitiatedAt: lastChance})
			_ = e.srv.SetFaults(tc.faults...)
			res, attempts, err := e.run(t, "T1", lastChance)
			if attempts != 1 {
				t.Fatalf("%d attempts", attempts)
			}
			got := res.Outcome
			if tc.wantOutcome == tasks.OutcomeAlreadyCancelled {
				if err != nil || got != tc.wantOutcome || !res.Confirmed || res.RefundID != "R-T1" {
					t.Fatalf("%+v %v", res, err)
				}
			} else {
				terr := terminal(t, err)
				if terr.Outcome != tc.wantOutcome || got != tc.wantOutcome {
					t.Fatalf("%s: %q", terr.Outcome, terr.Reason)
				}
				for _, w := range tc.wantReason {
					if !strings.Contains(terr.Reason, w) {
						t.Fatalf("reason %q lacks %q", terr.Reason, w)
					}
				}
				if strings.Contains(terr.Reason, "refused") {
					t.Fatalf("reason says refused: %q", terr.Reason)
				}
			}
			if r, _ := e.srv.Refund("T1"); r.Status != tc.wantStatus {
				t.Fatalf("sandbox refund %s, want %s", r.Status, tc.wantStatus)
			}
			if n := len(e.cancelCalls()); n != 1 {
				t.Fatalf("%d cancelRefund calls", n)
			}
		})
	}
}

// Case 3, the 10,000-task run's story: the cancel applied with its answer
// lost, the retry's "not cancellable" lost too, no retry fits: getOrder
// tells the truth, and nothing is sent after the cut-off. Also a task
// whose earlier attempt was ambiguous, run after the cut-off.
func TestAmbiguousLastAttemptsEndAlreadyCancelled(t *testing.T) {
	e := newEnv(t, "")
	e.h.policy.LastRetryLead = time.Second
	initiated := t0.Add(-119*time.Minute + 4*time.Second) // cut-off in 4s: two attempts fit
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "Z1", RefundID: "R-Z1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "apply_then_drop"})
	res, attempts, err := e.run(t, "Z1", initiated)
	if err != nil || res.Outcome != tasks.OutcomeAlreadyCancelled || !res.Confirmed || attempts != 2 {
		t.Fatalf("after %d: %+v %v", attempts, res, err)
	}
	cutoff := e.h.policy.Cutoff(initiated)
	for _, c := range e.cancelCalls() {
		if !c.Time.Before(cutoff) {
			t.Fatalf("cancelRefund at %v, cut-off %v", c.Time, cutoff)
		}
	}

	e = newEnv(t, "")
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "Z2", RefundID: "R-Z2", InitiatedAt: t0.Add(-3 * time.Hour), Status: rpctest.StatusCanceled})
	late := tasks.CancelRefund{OrderRef: "Z2", RefundInitiatedAt: t0.Add(-3 * time.Hour)}
	e.mem.seed(late, "t", &tasks.Result{Outcome: tasks.OutcomeRetry, TaskID: "t", OrderRef: "Z2", RefundInitiatedAt: late.RefundInitiatedAt, Run: 1, Attempts: 1, Sent: 1,
		MaybeApplied: "cancelRefund got no clear answer: EOF"})
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: 1, Payload: payload("Z2", t0.Add(-3*time.Hour))})
	if err != nil || res.Outcome != tasks.OutcomeAlreadyCancelled || !res.Confirmed {
		t.Fatalf("after the cut-off: %+v %v", res, err)
	}
	if n := len(e.cancelCalls()); n != 0 {
		t.Fatalf("%d cancelRefund calls after the cut-off", n)
	}
	// Without a prior ambiguity, a late run asks nothing.
	e.mem.seed(late, "t", &tasks.Result{Outcome: tasks.OutcomeRetry, TaskID: "t", OrderRef: "Z2", RefundInitiatedAt: late.RefundInitiatedAt, Run: 1, Attempts: 1})
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: 1, Payload: payload("Z2", t0.Add(-3*time.Hour))})
	if terr := terminal(t, err); terr.Outcome != tasks.OutcomeWindowClosed || res.Outcome != tasks.OutcomeWindowClosed || len(e.srv.Ledger()) != 2 {
		t.Fatalf("%v %d calls", err, len(e.srv.Ledger()))
	}
}

// A delivery that ended mid-call (a crash, a shutdown requeue, a timeout:
// asynq moved the task on its own, counted or not) left the record
// "sending": the next delivery — whatever asynq's counter says — checks the
// order before it cancels again, and completes as already_cancelled
// without a second cancelRefund when the first one applied.
func TestSendingRecordMeansMaybeApplied(t *testing.T) {
	for _, retried := range []int{0, 1} { // a shutdown requeue counts nothing; a crash counts one
		e := newEnv(t, "")
		initiated := t0.Add(-time.Hour)
		_ = e.srv.Seed(rpctest.Refund{OrderRef: "C1", RefundID: "R-C1", InitiatedAt: initiated})
		ctx, cancel := context.WithCancel(context.Background())
		h, err := NewHandler(HandlerConfig{API: cancelAfterApply{RefundAPI: e.api, cancel: cancel}, Memory: e.mem, Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := h.Deliver(ctx, Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Payload: payload("C1", initiated)}); res != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped delivery: %+v %v", res, err)
		}
		if rec := e.mem.record(tasks.CancelRefund{OrderRef: "C1", RefundInitiatedAt: initiated}); rec == nil || rec.Outcome != tasks.OutcomeSending || rec.Sent != 1 {
			t.Fatalf("record after the stopped delivery: %+v", rec)
		}
		res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: retried, Payload: payload("C1", initiated)})
		if err != nil || res.Outcome != tasks.OutcomeAlreadyCancelled || !res.Confirmed || res.RefundID != "R-C1" || len(e.cancelCalls()) != 1 {
			t.Fatalf("retried %d: %+v %v, %d cancels", retried, res, err, len(e.cancelCalls()))
		}
	}
}

// cancelAfterApply lets cancelRefund apply, then ends the delivery's
// context before its answer is heard (asynq's shutdown or timeout).
type cancelAfterApply struct {
	RefundAPI
	cancel context.CancelFunc
}

func (c cancelAfterApply) CancelRefund(ctx context.Context, ref string, check func(context.Context) error) (string, error) {
	_, _ = c.RefundAPI.CancelRefund(ctx, ref, check)
	c.cancel()
	return "", ctx.Err()
}

// Case 4: a retry checks the order's refund is still its own; a newer
// refund on the order is left alone, and a new task cancels it. The
// stale task ends superseded when none of its cancels can have applied
// (a 429 refused it), unknown when one may have (a 503: its own cancel may
// be what settled its refund).
func TestNeverSomeoneElsesRefund(t *testing.T) {
	for _, tc := range []struct {
		status  int
		outcome string
	}{{429, tasks.OutcomeSuperseded}, {503, tasks.OutcomeUnknown}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) { neverSomeoneElses(t, tc.status, tc.outcome) })
	}
}

func neverSomeoneElses(t *testing.T, status int, outcome string) {
	e := newEnv(t, "")
	old := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", RefundID: "R-OLD", InitiatedAt: old})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: status, FirstN: 1})
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Payload: payload("N1", old)})
	var rerr *RetryError
	if !errors.As(err, &rerr) || res.Sent != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	// Meanwhile the old refund completed and a new one was initiated.
	newer := t0.Add(-10 * time.Minute)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "N1", RefundID: "R-NEW", InitiatedAt: newer})
	e.clock.Set(rerr.At)
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: 1, Payload: payload("N1", old)})
	terr := terminal(t, err)
	if terr.Outcome != outcome || res.Outcome != outcome || !strings.Contains(terr.Reason, "left alone") ||
		!strings.Contains(terr.Reason, newer.Format(time.RFC3339)) {
		t.Fatalf("%s %q", terr.Outcome, terr.Reason)
	}
	if r, _ := e.srv.Refund("N1"); r.Status != rpctest.StatusPending || r.RefundID != "R-NEW" || len(e.cancelCalls()) != 1 {
		t.Fatalf("newer refund touched: %+v, %d cancels", r, len(e.cancelCalls()))
	}
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t2", Payload: payload("N1", newer)})
	if err != nil || res.Outcome != tasks.OutcomeCancelled || res.RefundID != "R-NEW" {
		t.Fatalf("new task: %+v %v", res, err)
	}
	// Any later delivery of a task whose record is final (a Run from the
	// dashboard, a re-delivery) ends as the record says, asking nothing.
	n := len(e.srv.Ledger())
	res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t2", Retried: 1, Payload: payload("N1", newer)})
	if err != nil || res.Outcome != tasks.OutcomeCancelled || res.RefundID != "R-NEW" || len(e.srv.Ledger()) != n {
		t.Fatalf("%+v %v", res, err)
	}
}

// Case 5 in the handler: the retry that would use up MaxRetry is not
// counted, so asynq's counter does not archive a task with time left.
func TestRetryUncountedAtMaxRetry(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "M1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503})
	for _, tc := range []struct{ retried, max int }{{0, 25}, {23, 25}, {24, 25}, {30, 25}, {0, 1}, {3, 0}} {
		_, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: "t", Retried: tc.retried, MaxRetry: tc.max, Payload: payload("M1", initiated)})
		var rerr *RetryError
		if !errors.As(err, &rerr) {
			t.Fatalf("%+v: %v", tc, err)
		}
		wantCounted := tc.max == 0 || tc.retried+1 < tc.max
		if e.h.IsFailure(err) != wantCounted {
			t.Fatalf("%+v: IsFailure %v", tc, e.h.IsFailure(err))
		}
	}
	if !e.h.IsFailure(context.DeadlineExceeded) || !e.h.IsFailure(&TerminalError{}) {
		t.Fatal("other errors are failures")
	}
}

// slowCancel is the sandbox's API whose cancelRefund answer arrives after
// the clock moved on (a slow answer): the cut-off may pass in between.
type slowCancel struct {
	RefundAPI
	clock *rpctest.Clock
	took  time.Duration
}

func (s slowCancel) CancelRefund(ctx context.Context, ref string, check func(context.Context) error) (string, error) {
	id, err := s.RefundAPI.CancelRefund(ctx, ref, check)
	s.clock.Advance(s.took)
	return id, err
}

// A "not cancellable" answer that arrives after the cut-off is still
// confirmed with getOrder (reads are allowed after the window): the task
// ends with what 2Checkout said, never "window closed, no request sent".
func TestNotCancellableConfirmedAfterTheCutoff(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-2*time.Hour + DefaultSafetyMargin + time.Second) // cut-off in 1s
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "S1", Status: "COMPLETED", InitiatedAt: initiated})
	h, err := NewHandler(HandlerConfig{API: slowCancel{RefundAPI: e.api, clock: e.clock, took: 3 * time.Second}, Memory: e.mem, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Payload: payload("S1", initiated)})
	terr := terminal(t, err)
	if terr.Outcome != tasks.OutcomeRefused || !strings.HasPrefix(terr.Reason, "2Checkout refused: 20004 REFUND_NOT_CANCELLABLE: ") {
		t.Fatalf("%s: %q", terr.Outcome, terr.Reason)
	}
	if n := len(e.cancelCalls()); n != 1 {
		t.Fatalf("%d cancelRefund calls", n)
	}
}
