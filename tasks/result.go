package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Outcomes of a cancellation. The first two complete the task (the refund
// is cancelled); the others archive it.
const (
	// OutcomeCancelled: 2Checkout answered cancelRefund with success.
	OutcomeCancelled = "cancelled"
	// OutcomeAlreadyCancelled: 2Checkout's getOrder shows the refund
	// cancelled (an earlier attempt whose answer was lost, or someone else).
	OutcomeAlreadyCancelled = "already_cancelled"
	// OutcomeRefused: 2Checkout refused; the refund was not cancelled.
	OutcomeRefused = "refused"
	// OutcomeWindowClosed: the window closed; the refund was not cancelled.
	OutcomeWindowClosed = "window_closed"
	// OutcomeInvalid: the task's payload could not be used; nothing was sent.
	OutcomeInvalid = "invalid"
	// OutcomeSuperseded: the order's pending refund is not this task's (a
	// newer one); this task's refund was settled before, and the newer one
	// is left alone.
	OutcomeSuperseded = "superseded"
	// OutcomeUnknown: an attempt may have reached 2Checkout without an
	// answer and nothing 2Checkout answers can tell whether the refund was
	// cancelled: an operator must check the order.
	OutcomeUnknown = "unknown"
	// OutcomeDuplicate: another task owns this refund (the first to claim
	// it); this one ended without asking 2Checkout anything. Reason names
	// the owner.
	OutcomeDuplicate = "duplicate"
	// OutcomeSending is not final: a cancelRefund is being sent. A record
	// left in this state by a delivery that ended mid-call (a crash, a
	// shutdown, a timeout) tells the next delivery that the request may
	// have reached 2Checkout.
	OutcomeSending = "sending"
	// OutcomeRetry is not final: the attempt failed and a retry is scheduled.
	OutcomeRetry = "retry"
	// OutcomeHeld is not final: nothing was sent; under a backlog the task
	// waits for its turn (deadline-first dispatch) behind tasks whose
	// windows close sooner. It is not a failure and counts no retry.
	OutcomeHeld = "held"
)

// IsFinal reports whether outcome ends the task (any outcome but sending,
// retry and held).
func IsFinal(outcome string) bool {
	return outcome != "" && outcome != OutcomeRetry && outcome != OutcomeHeld && outcome != OutcomeSending
}

// FinalOutcomes lists every final outcome, completed ones first.
var FinalOutcomes = []string{OutcomeCancelled, OutcomeAlreadyCancelled, OutcomeRefused, OutcomeWindowClosed,
	OutcomeInvalid, OutcomeSuperseded, OutcomeUnknown, OutcomeDuplicate}

// Result is the record of a refund's cancellation, written by the worker
// alone (internal/records keeps it in Redis; the task's asynq result shows
// a copy): on every final state, and, while the task retries, what its
// attempts learned so far. It is what GET /v1/cancellations/…, refundctl
// status, the dashboard and completion webhooks show. Decode it with
// DecodeResult.
type Result struct {
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// TaskID is the task that owns the refund (for a duplicate: the
	// duplicate's own ID; Reason names the owner).
	TaskID            string    `json:"task_id,omitempty"`
	OrderRef          string    `json:"order_ref"`
	RefundInitiatedAt time.Time `json:"refund_initiated_at,omitzero"`
	// Run numbers the refund's runs: 1, and one more for each time an
	// operator asked to try again (refundctl rerun).
	Run int `json:"run,omitempty"`
	// Reason says in words why an archived task ended (its last error too).
	Reason string `json:"reason,omitempty"`
	// VendorCode and VendorError are 2Checkout's error code and name from
	// the answer that decided the outcome (or, while retrying, the last
	// one), where there was one.
	VendorCode  int    `json:"vendor_code,omitempty"`
	VendorError string `json:"vendor_error,omitempty"`
	// RefundID is 2Checkout's refund ID (outcomes cancelled and
	// already_cancelled, when 2Checkout gave one).
	RefundID string `json:"refund_id"`
	// Attempts counts the runs that sent a request about the refund.
	Attempts int `json:"attempts"`
	// Sent counts the cancelRefund requests sent for the refund (any of
	// which may have reached 2Checkout).
	Sent int `json:"sent,omitempty"`
	// Confirmed: the outcome was confirmed with getOrder.
	Confirmed      bool      `json:"confirmed,omitempty"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
	WindowClosesAt time.Time `json:"window_closes_at,omitzero"`
	// MaybeApplied names the first failure after which a cancelRefund may
	// have gone through with its answer lost; empty if none did.
	MaybeApplied string `json:"maybe_applied,omitempty"`
	// UnknownErrors counts answers no class was known for.
	UnknownErrors int `json:"unknown_errors,omitempty"`
	// NextAttemptAt is when the retry is due (outcome retry).
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
}

// Final reports whether r records a finished task (not one still retrying).
func (r *Result) Final() bool { return r != nil && IsFinal(r.Outcome) }

// Cancelled reports whether the record says the refund is cancelled.
func (r *Result) Cancelled() bool {
	return r != nil && (r.Outcome == OutcomeCancelled || r.Outcome == OutcomeAlreadyCancelled)
}

// ErrNoResult: a task has no result record (it has not run yet).
var ErrNoResult = errors.New("no result record")

// Refund answers the refund r is the record of (its order and initiation).
func (r *Result) Refund() CancelRefund {
	return CancelRefund{OrderRef: r.OrderRef, RefundInitiatedAt: r.RefundInitiatedAt}
}

// NextRun answers the record a new run of r's refund starts from (an
// operator's "try again" after r, a final record): the attempts made and
// what may have reached 2Checkout stand, so the new run's first attempt
// checks the order before it cancels if any earlier one may have applied.
func (r *Result) NextRun() *Result {
	next := &Result{Outcome: OutcomeRetry, TaskID: r.TaskID, OrderRef: r.OrderRef, RefundInitiatedAt: r.RefundInitiatedAt,
		Run: r.Run + 1, Attempts: r.Attempts, MaybeApplied: r.MaybeApplied, Sent: r.Sent, WindowClosesAt: r.WindowClosesAt}
	return next
}

// DecodeResult reads a refund's record: the one decoder, used by the
// records store (and so the handler, the sweep, the API and refundctl),
// the Enqueuer's "already queued", the dashboard and the demo.
func DecodeResult(b []byte) (*Result, error) {
	if len(b) == 0 {
		return nil, ErrNoResult
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("result record: %w", err)
	}
	if r.Outcome == "" {
		return nil, errors.New("result record: no outcome")
	}
	return &r, nil
}
