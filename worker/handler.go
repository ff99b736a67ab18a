// Package worker is the asynq side of refund cancellation: the task handler
// and its policies — the 2-hour window, the retry schedule, what each class
// of failure means for the task, and the result it leaves.
//
// The handler never sends a request after a task's cut-off (window close
// minus a safety margin), archives an expired task in one run without calling
// 2Checkout, schedules every retry before the cut-off, and confirms an
// ambiguous "not cancellable" answer with getOrder. It knows nothing of HTTP.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// Outcomes of a cancellation: the first two complete the task, the others
// archive it.
const (
	OutcomeCancelled        = "cancelled"
	OutcomeAlreadyCancelled = "already_cancelled"
	OutcomeRefused          = "refused"
	OutcomeWindowClosed     = "window_closed"
	OutcomeInvalid          = "invalid"
	// OutcomeRetry is not final: the attempt failed and a retry is scheduled.
	OutcomeRetry = "retry"
)

// Result is the JSON a completed task keeps (with its retention).
type Result struct {
	Outcome        string    `json:"outcome"`
	OrderRef       string    `json:"order_ref"`
	RefundID       string    `json:"refund_id"`
	Attempts       int       `json:"attempts"`
	FinishedAt     time.Time `json:"finished_at"`
	WindowClosesAt time.Time `json:"window_closes_at"`
	// Confirmed: the outcome was confirmed with getOrder after 2Checkout
	// answered that the refund was not cancellable (an earlier attempt, or
	// someone else, had cancelled it).
	Confirmed bool `json:"confirmed,omitempty"`
}

// RefundAPI is what the handler needs of 2Checkout; *rpcclient.Client has it.
type RefundAPI interface {
	CancelRefund(ctx context.Context, orderRef string) (string, error)
	GetOrder(ctx context.Context, orderRef string) (*rpcclient.Order, error)
}

// Observer is told how each attempt ended, for metrics. outcome is one of the
// Outcome constants; slack is the time left before the window closes.
type Observer interface {
	Attempted(outcome string, slack time.Duration)
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// API calls 2Checkout. Required.
	API RefundAPI
	// Policy is the window and retry schedule; zero fields take defaults.
	Policy Policy
	// Logger logs every attempt. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told each attempt's outcome.
	Observer Observer
}

// Handler processes refund:cancel tasks. It is an asynq.Handler.
type Handler struct {
	api    RefundAPI
	policy Policy
	log    *zap.Logger
	now    func() time.Time
	obs    Observer
}

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("worker: HandlerConfig.API is required")
	}
	p, err := cfg.Policy.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{api: cfg.API, policy: p, log: cfg.Logger, now: cfg.Now, obs: cfg.Observer}, nil
}

// Policy answers the effective policy.
func (h *Handler) Policy() Policy { return h.policy }

// TerminalError ends a task: asynq archives it at once (it matches
// asynq.SkipRetry) with Reason as its last error.
type TerminalError struct {
	Outcome string // OutcomeRefused, OutcomeWindowClosed or OutcomeInvalid
	Reason  string
}

func (e *TerminalError) Error() string { return e.Reason }

// Is makes errors.Is(err, asynq.SkipRetry) true, so asynq archives the task.
func (e *TerminalError) Is(target error) bool { return target == asynq.SkipRetry }

// RetryError asks for a retry at At; RetryDelay reads it.
type RetryError struct {
	At    time.Time
	Cause error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry at %s)", e.Cause, e.At.UTC().Format(time.RFC3339))
}
func (e *RetryError) Unwrap() error { return e.Cause }

// Attempt is one delivery of a task, as asynq hands it over.
type Attempt struct {
	TaskID  string
	Retried int // retries so far; the attempt number is Retried+1
	Payload []byte
}

// ProcessTask implements asynq.Handler.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	if t.Type() != tasks.TypeCancelRefund {
		return &TerminalError{Outcome: OutcomeInvalid, Reason: fmt.Sprintf("invalid payload: unknown task type %q", t.Type())}
	}
	id, _ := asynq.GetTaskID(ctx)
	retried, _ := asynq.GetRetryCount(ctx)
	res, err := h.Handle(ctx, Attempt{TaskID: id, Retried: retried, Payload: t.Payload()})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	if w := t.ResultWriter(); w != nil {
		if _, werr := w.Write(b); werr != nil {
			// The refund is cancelled; only the record is missing. Retrying
			// would confirm it with getOrder and write the record again.
			return fmt.Errorf("write result: %w", werr)
		}
	}
	return nil
}

// Handle runs one attempt. It answers the result, a *TerminalError, a
// *RetryError, or the context's error when asynq cancelled the attempt
// (shutdown or timeout).
func (h *Handler) Handle(ctx context.Context, a Attempt) (*Result, error) {
	start := h.now()
	// Fields, not log.With: With copies the encoder (and a buffer) per task.
	log := append(make([]zap.Field, 0, 12), zap.String("task_id", a.TaskID), zap.Int("attempt", a.Retried+1))
	p, err := tasks.Decode(a.Payload)
	if err != nil {
		terr := &TerminalError{Outcome: OutcomeInvalid, Reason: "invalid payload: " + err.Error()}
		h.finish(log, start, time.Time{}, nil, terr)
		return nil, terr
	}
	log = append(log, zap.String("order_ref", p.OrderRef))
	res, err := h.attempt(ctx, p, a, start)
	h.finish(log, start, h.policy.Closes(p.RefundInitiatedAt), res, err)
	return res, err
}

func (h *Handler) attempt(ctx context.Context, p tasks.CancelRefund, a Attempt, now time.Time) (*Result, error) {
	closes := h.policy.Closes(p.RefundInitiatedAt)
	cutoff := h.policy.Cutoff(p.RefundInitiatedAt)
	if !now.Before(cutoff) {
		return nil, windowClosed(closes, cutoff, nil)
	}
	rctx := rpcclient.WithStartDeadline(ctx, cutoff)
	// Relative, so the bound is right whatever clock h.now reads.
	rctx, cancel := context.WithTimeout(rctx, cutoff.Sub(now)+h.policy.RequestTimeout)
	defer cancel()
	result := func(outcome, refundID string, confirmed bool) *Result {
		return &Result{Outcome: outcome, OrderRef: p.OrderRef, RefundID: refundID, Attempts: a.Retried + 1,
			FinishedAt: h.now().UTC(), WindowClosesAt: closes.UTC(), Confirmed: confirmed}
	}

	refundID, err := h.api.CancelRefund(rctx, p.OrderRef)
	if err == nil {
		return result(OutcomeCancelled, refundID, false), nil
	}
	if rpcclient.IsName(err, rpcclient.NameRefundNotCancellable) {
		// Ambiguous: an earlier attempt (or someone else) may have cancelled
		// it. Ask the order what is true.
		o, gerr := h.api.GetOrder(rctx, p.OrderRef)
		switch {
		case gerr == nil && o.RefundStatus == "CANCELED":
			return result(OutcomeAlreadyCancelled, o.RefundID, true), nil
		case gerr != nil && rpcclient.Classify(gerr) != rpcclient.ClassPermanent:
			err = fmt.Errorf("%w; confirming with getOrder: %v", err, gerr)
			return nil, h.retryOrGiveUp(ctx, a, closes, cutoff, gerr, err)
		}
	}
	return nil, h.retryOrGiveUp(ctx, a, closes, cutoff, err, err)
}

// retryOrGiveUp decides what a failed call means for the task. class is
// judged on classErr; the reason carries err.
func (h *Handler) retryOrGiveUp(ctx context.Context, a Attempt, closes, cutoff time.Time, classErr, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // asynq stopped this attempt: it requeues or retries the task
	}
	switch rpcclient.Classify(classErr) {
	case rpcclient.ClassNotStarted:
		return windowClosed(closes, cutoff, nil)
	case rpcclient.ClassPermanent:
		if rpcclient.IsName(classErr, rpcclient.NameRefundWindowExpired) {
			return windowClosed(closes, cutoff, classErr)
		}
		return &TerminalError{Outcome: OutcomeRefused, Reason: "2Checkout refused: " + describe(classErr)}
	}
	at, ok := h.policy.Next(h.now(), a.Retried+1, cutoff, classErr)
	if !ok {
		return &TerminalError{Outcome: OutcomeWindowClosed, Reason: fmt.Sprintf("no retry fits before the window closes at %s: last error: %v",
			closes.UTC().Format(time.RFC3339), err)}
	}
	return &RetryError{At: at, Cause: err}
}

func windowClosed(closes, cutoff time.Time, vendor error) *TerminalError {
	reason := fmt.Sprintf("window closed at %s (no request starts after %s)", closes.UTC().Format(time.RFC3339), cutoff.UTC().Format(time.RFC3339))
	if vendor != nil {
		reason = fmt.Sprintf("window closed at %s: 2Checkout refused: %s", closes.UTC().Format(time.RFC3339), describe(vendor))
	}
	return &TerminalError{Outcome: OutcomeWindowClosed, Reason: reason}
}

// describe answers "<code> <NAME>: <message>" for an *APIError.
func describe(err error) string {
	var ae *rpcclient.APIError
	if errors.As(err, &ae) {
		if ae.Code != 0 {
			return fmt.Sprintf("%d %s: %s", ae.Code, ae.Name, ae.Message)
		}
		return fmt.Sprintf("HTTP %d %s: %s", ae.HTTPStatus, ae.Name, ae.Message)
	}
	return err.Error()
}

// finish logs the attempt, with the task's fields first, and tells the observer.
func (h *Handler) finish(task []zap.Field, start, closes time.Time, res *Result, err error) {
	log, now := h.log, h.now()
	outcome := OutcomeRetry
	var terr *TerminalError
	var rerr *RetryError
	switch {
	case err == nil:
		outcome = res.Outcome
	case errors.As(err, &terr):
		outcome = terr.Outcome
	}
	fields := append(task, zap.String("outcome", outcome), zap.Duration("duration", now.Sub(start)))
	if !closes.IsZero() {
		fields = append(fields, zap.Time("window_closes_at", closes))
	}
	switch {
	case err == nil:
		log.Info("refund cancellation done", append(fields, zap.String("refund_id", res.RefundID), zap.Bool("confirmed", res.Confirmed))...)
	case terr != nil:
		log.Warn("refund cancellation archived", append(fields, zap.String("reason", terr.Reason))...)
	case errors.As(err, &rerr):
		fields = append(fields, zap.Time("retry_at", rerr.At), zap.Error(rerr.Cause))
		if rpcclient.Classify(rerr.Cause) == rpcclient.ClassCredentials {
			log.Error("2Checkout refused our credentials; will retry within the window", fields...)
		} else {
			log.Warn("refund cancellation attempt failed; retrying", fields...)
		}
	default:
		log.Info("refund cancellation attempt stopped by the queue", append(fields, zap.Error(err))...)
	}
	if h.obs != nil {
		slack := time.Duration(0)
		if !closes.IsZero() {
			slack = closes.Sub(now)
		}
		h.obs.Attempted(outcome, slack)
	}
}

// RetryDelay is the server's asynq.RetryDelayFunc: it places the retry where
// the handler's RetryError asked. For any other error (an attempt asynq
// timed out, a panic) it asks the Policy, from the task's payload; if no
// retry fits it answers the time to the cut-off, where the next run archives
// the task without calling 2Checkout.
func (h *Handler) RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	now := h.now()
	var rerr *RetryError
	if errors.As(err, &rerr) {
		return max(rerr.At.Sub(now), 0)
	}
	p, derr := tasks.Decode(t.Payload())
	if derr != nil {
		return 0 // the next run archives it as invalid
	}
	cutoff := h.policy.Cutoff(p.RefundInitiatedAt)
	if at, ok := h.policy.Next(now, n, cutoff, err); ok {
		return at.Sub(now)
	}
	return max(cutoff.Sub(now), 0)
}
