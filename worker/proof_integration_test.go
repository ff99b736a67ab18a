package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// The proof of issue 8 against real Redis and the sandbox: every judgement
// from the sandbox's ledger and refund states and from asynq's Inspector.

func (s *stack) cancelCalls() []rpctest.Call {
	var out []rpctest.Call
	for _, c := range s.sb.Ledger() {
		if c.Method == "cancelRefund" {
			out = append(out, c)
		}
	}
	return out
}

func (s *stack) enqueue(t *testing.T, ref string, initiated time.Time) string {
	t.Helper()
	if _, err := s.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	return tasks.TaskID(ref, initiated)
}

func result(t *testing.T, info *asynq.TaskInfo) tasks.Result {
	t.Helper()
	var r tasks.Result
	if err := json.Unmarshal(info.Result, &r); err != nil {
		t.Fatalf("result %q: %v", info.Result, err)
	}
	return r
}

// Case 1: a huge Retry-After does not end a task with time left: it is cut
// to RetryAfterMax and the task completes. A short one is honoured on the
// wire, to the second.
func TestRetryAfterHonouredAndBounded(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		retryAfter int
		max        time.Duration
		wantGap    time.Duration
	}{
		{"Retry-After 100000 cut to RETRY_AFTER_MAX", 100000, 2 * time.Second, 2 * time.Second},
		{"Retry-After 2 honoured on the wire", 2, 0, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, stackOptions{Policy: &worker.Policy{BaseDelay: 100 * time.Millisecond, MinDelay: 50 * time.Millisecond, RetryAfterMax: tc.max}})
			initiated := time.Now().Add(-10 * time.Minute)
			_ = s.sb.Seed(rpctest.Refund{OrderRef: "RA1", InitiatedAt: initiated})
			_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 429, RetryAfter: tc.retryAfter, FirstN: 1})
			info := s.waitFinished(t, s.enqueue(t, "RA1", initiated))
			if info.State != asynq.TaskStateCompleted || result(t, info).Outcome != tasks.OutcomeCancelled {
				t.Fatalf("%v %q %s", info.State, info.LastErr, info.Result)
			}
			calls := s.cancelCalls()
			if len(calls) != 2 || calls[1].Time.Sub(calls[0].Time) < tc.wantGap {
				t.Fatalf("calls %+v: want 2, %v apart at least", calls, tc.wantGap)
			}
			if r, _ := s.sb.Refund("RA1"); r.Status != rpctest.StatusCanceled {
				t.Fatalf("sandbox %s", r.Status)
			}
		})
	}
}

// Case 2: an error code nobody documented is retried, then archived with
// the vendor's code and message verbatim; the refund stays pending.
func TestUnknownCodesRetriedThenArchived(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{DocumentedOnly: true})
	initiated := time.Now().Add(-10 * time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "UK1", InitiatedAt: initiated})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "rpc_error", Code: 300, Message: "Refund cannot be canceled right now"})
	info := s.waitFinished(t, s.enqueue(t, "UK1", initiated))
	// Documented-only: getOrder cannot show the refund's status, so an
	// answer nobody recognises ends "outcome unknown" with the vendor's
	// words verbatim — never a refusal the vendor did not state.
	want := "outcome unknown: 2Checkout refused: 300 ERROR_300: Refund cannot be canceled right now (an answer this worker does not recognise, 3 times); "
	if info.State != asynq.TaskStateArchived || !strings.HasPrefix(info.LastErr, want) || !strings.Contains(info.LastErr, "check order UK1") || info.Retried != 2 {
		t.Fatalf("%v retried %d %q", info.State, info.Retried, info.LastErr)
	}
	if res := result(t, info); res.Outcome != tasks.OutcomeUnknown {
		t.Fatalf("outcome %s", res.Outcome)
	}
	if n := len(s.cancelCalls()); n != 3 {
		t.Fatalf("%d cancelRefund calls", n)
	}
	if r, _ := s.sb.Refund("UK1"); r.Status != rpctest.StatusPending {
		t.Fatalf("sandbox %s", r.Status)
	}
}

// Case 3: the last attempt that fits is ambiguous (the cancel applied, its
// answer lost). Before archiving for the window, getOrder tells the truth:
// already_cancelled; where it cannot (documented-only), the task is
// archived "outcome unknown", never refused or a plain window_closed.
func TestAmbiguousLastAttempt(t *testing.T) {
	t.Parallel()
	for _, docOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "sandbox", true: "documented-only"}[docOnly], func(t *testing.T) {
			t.Parallel()
			// A lead longer than the time left: the first attempt is the last.
			policy := worker.Policy{LastRetryLead: time.Minute}
			s := startStack(t, stackOptions{Policy: &policy, DocumentedOnly: docOnly})
			initiated := time.Now().Add(-2*time.Hour + time.Minute + 30*time.Second) // cut-off in 30s
			_ = s.sb.Seed(rpctest.Refund{OrderRef: "AM1", RefundID: "R-AM1", InitiatedAt: initiated})
			_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "apply_then_drop"})
			info := s.waitFinished(t, s.enqueue(t, "AM1", initiated))
			if r, _ := s.sb.Refund("AM1"); r.Status != rpctest.StatusCanceled || len(s.cancelCalls()) != 1 {
				t.Fatalf("sandbox %s, %d calls", r.Status, len(s.cancelCalls()))
			}
			res := result(t, info)
			if !docOnly {
				if info.State != asynq.TaskStateCompleted || res.Outcome != tasks.OutcomeAlreadyCancelled || !res.Confirmed || res.RefundID != "R-AM1" {
					t.Fatalf("%v %q %+v", info.State, info.LastErr, res)
				}
				return
			}
			if info.State != asynq.TaskStateArchived || res.Outcome != tasks.OutcomeUnknown || !strings.HasPrefix(info.LastErr, "outcome unknown: ") ||
				!strings.Contains(info.LastErr, "check order AM1") || strings.Contains(info.LastErr, "refused") {
				t.Fatalf("%v %q %+v", info.State, info.LastErr, res)
			}
		})
	}
}

// Case 4: a second refund on the same order is a new cancellation (from Go
// and from a raw asynq producer using the documented ID); a task retried
// for an old refund does not cancel the newer one.
func TestSecondRefundOnOneOrder(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	first := time.Now().Add(-30 * time.Minute).Truncate(time.Second)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "SR1", RefundID: "R-1", InitiatedAt: first})
	if info := s.waitFinished(t, s.enqueue(t, "SR1", first)); info.State != asynq.TaskStateCompleted {
		t.Fatalf("first refund: %v %q", info.State, info.LastErr)
	}
	// 2Checkout allows a new refund once the first is settled.
	second := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "SR1", RefundID: "R-2", InitiatedAt: second})
	if _, err := s.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "SR1", RefundInitiatedAt: first}); !errors.Is(err, tasks.ErrAlreadyQueued) {
		t.Fatalf("the first refund again: %v", err)
	}
	// A raw asynq producer with the documented ID.
	payload := `{"order_ref":"SR1","refund_initiated_at":"` + second.Format(time.RFC3339) + `"}`
	if _, err := s.client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)), asynq.Queue(s.queue),
		asynq.TaskID(tasks.TaskID("SR1", second)), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "SR1", RefundInitiatedAt: second}); !errors.Is(err, tasks.ErrAlreadyQueued) {
		t.Fatalf("the raw producer's task is not the same refund's: %v", err)
	}
	info := s.waitFinished(t, tasks.TaskID("SR1", second))
	if r, _ := s.sb.Refund("SR1"); info.State != asynq.TaskStateCompleted || r.Status != rpctest.StatusCanceled || r.RefundID != "R-2" {
		t.Fatalf("second refund: %v %q, sandbox %+v", info.State, info.LastErr, r)
	}

	// A stale task: its first call is refused (429: nothing applied); meanwhile its
	// refund is settled and a newer one initiated. Its retry leaves the
	// newer refund alone.
	old := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "SR2", RefundID: "R-OLD", InitiatedAt: old})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 429, RetryAfter: 4, FirstN: 1})
	id := s.enqueue(t, "SR2", old)
	s.waitState(t, id, 20*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateRetry || finished(i) })
	newer := time.Now().Add(-time.Minute).Truncate(time.Second)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "SR2", RefundID: "R-NEWER", InitiatedAt: newer})
	info = s.waitFinished(t, id)
	if info.State != asynq.TaskStateArchived || !strings.HasPrefix(info.LastErr, "superseded: ") {
		t.Fatalf("%v %q", info.State, info.LastErr)
	}
	if r, _ := s.sb.Refund("SR2"); r.Status != rpctest.StatusPending || r.RefundID != "R-NEWER" {
		t.Fatalf("the newer refund was touched: %+v", r)
	}
	n := 0
	for _, c := range s.cancelCalls() {
		if c.OrderRef == "SR2" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d cancelRefund calls for SR2", n)
	}
}
