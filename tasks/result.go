package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/refundd/refund-canceller/internal/plainjson"
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
	// OutcomeRetry is not final: the attempt failed and a retry is scheduled.
	OutcomeRetry = "retry"
	// OutcomeHeld is not final: nothing was sent; under a backlog the task
	// waits for its turn (deadline-first dispatch) behind tasks whose
	// windows close sooner. It is not a failure and counts no retry.
	OutcomeHeld = "held"
)

// IsFinal reports whether outcome ends the task (any outcome but retry and held).
func IsFinal(outcome string) bool {
	return outcome != "" && outcome != OutcomeRetry && outcome != OutcomeHeld
}

// FinalOutcomes lists every final outcome, completed ones first.
var FinalOutcomes = []string{OutcomeCancelled, OutcomeAlreadyCancelled, OutcomeRefused, OutcomeWindowClosed,
	OutcomeInvalid, OutcomeSuperseded, OutcomeUnknown}

// Result is the record a cancellation task keeps as its asynq result: on
// every final state (completed or archived: asynq keeps an archived task's
// result too), and, while it retries, what its attempts learned so far.
// It is what GET /v1/cancellations/…, refundctl status, the dashboard and
// completion webhooks show. Decode it with DecodeResult.
type Result struct {
	// Outcome is one of the Outcome constants.
	Outcome  string `json:"outcome"`
	OrderRef string `json:"order_ref"`
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
	// Attempts is how many times the handler ran for this task.
	Attempts int `json:"attempts"`
	// Confirmed: the outcome was confirmed with getOrder.
	Confirmed      bool      `json:"confirmed,omitempty"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
	WindowClosesAt time.Time `json:"window_closes_at,omitzero"`
	// MaybeApplied names the first failure after which a cancelRefund may
	// have gone through with its answer lost; empty if none did.
	MaybeApplied string `json:"maybe_applied,omitempty"`
	// UnknownErrors counts answers no class was known for.
	UnknownErrors int `json:"unknown_errors,omitempty"`
	// Retried is asynq's retry count when this record was written: an
	// attempt that finds a higher count than Retried+1 knows an attempt in
	// between ended without a record (a crash or a timeout mid-call).
	Retried int `json:"retried"`
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

// EncodeResult writes r exactly as json.Marshal(r) does, but without
// reflection (the handler writes one record per attempt); a record
// json.Marshal would refuse (a time outside years 0–9999) goes through
// json.Marshal and gets its error. FuzzEncodeResult holds the two to the
// same bytes.
func EncodeResult(r *Result) ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"outcome":`...)
	b = plainjson.AppendString(b, r.Outcome)
	b = append(b, `,"order_ref":`...)
	b = plainjson.AppendString(b, r.OrderRef)
	if r.Reason != "" {
		b = append(b, `,"reason":`...)
		b = plainjson.AppendString(b, r.Reason)
	}
	if r.VendorCode != 0 {
		b = append(b, `,"vendor_code":`...)
		b = strconv.AppendInt(b, int64(r.VendorCode), 10)
	}
	if r.VendorError != "" {
		b = append(b, `,"vendor_error":`...)
		b = plainjson.AppendString(b, r.VendorError)
	}
	b = append(b, `,"refund_id":`...)
	b = plainjson.AppendString(b, r.RefundID)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	if r.Confirmed {
		b = append(b, `,"confirmed":true`...)
	}
	b, finishedOK := appendTime(b, `,"finished_at":`, r.FinishedAt)
	b, closesOK := appendTime(b, `,"window_closes_at":`, r.WindowClosesAt)
	if r.MaybeApplied != "" {
		b = append(b, `,"maybe_applied":`...)
		b = plainjson.AppendString(b, r.MaybeApplied)
	}
	if r.UnknownErrors != 0 {
		b = append(b, `,"unknown_errors":`...)
		b = strconv.AppendInt(b, int64(r.UnknownErrors), 10)
	}
	b = append(b, `,"retried":`...)
	b = strconv.AppendInt(b, int64(r.Retried), 10)
	b, nextOK := appendTime(b, `,"next_attempt_at":`, r.NextAttemptAt)
	if !finishedOK || !closesOK || !nextOK {
		return json.Marshal(r) // for its error
	}
	return append(b, '}'), nil
}

// appendTime appends key and t as an omitzero field; false if t has no
// JSON form.
func appendTime(b []byte, key string, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return b, true
	}
	b = append(b, key...)
	b = append(b, '"')
	b, err := t.AppendText(b)
	return append(b, '"'), err == nil
}

// DecodeResult reads a task's result record: the one decoder used by the
// API, refundctl, the dashboard, the demo and the webhook.
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
