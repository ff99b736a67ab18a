// Package worker is the asynq side of refund cancellation: the task handler
// and its policies — the 2-hour window, the retry schedule, what each class
// of failure means for the task, and the result it leaves.
//
// The handler never sends a request after a task's cut-off (window close
// minus a safety margin), archives an expired task in one run without calling
// 2Checkout, and schedules every retry before the cut-off (Policy). It
// retries answers it does not recognise a bounded number of times, keeps in
// the task's result what its attempts learned (above all: whether one may
// have cancelled the refund with its answer lost), and before archiving after
// such an attempt asks getOrder what is true — ending "unknown" where
// 2Checkout cannot tell. A retry never cancels a refund other than its own.
// Under a backlog it calls 2Checkout only in the task's turn (Turns,
// deadline-first), holding the task — uncounted — until then. It knows
// nothing of HTTP.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/warmstack"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// Outcomes of a cancellation (tasks.Outcome…, here for the handler's
// readers): the first two complete the task, the others archive it.
const (
	OutcomeCancelled        = tasks.OutcomeCancelled
	OutcomeAlreadyCancelled = tasks.OutcomeAlreadyCancelled
	OutcomeRefused          = tasks.OutcomeRefused
	OutcomeWindowClosed     = tasks.OutcomeWindowClosed
	OutcomeInvalid          = tasks.OutcomeInvalid
	OutcomeSuperseded       = tasks.OutcomeSuperseded
	OutcomeUnknown          = tasks.OutcomeUnknown
	OutcomeRetry            = tasks.OutcomeRetry
	OutcomeHeld             = tasks.OutcomeHeld
)

// Result is the record a task keeps (tasks.Result): the record of a
// finished task, and, while it retries, what its attempts learned so far —
// the next attempt reads it back.
type Result = tasks.Result

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

// TaskReader reads a task as the queue holds it; *asynq.Inspector is one.
type TaskReader interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// API calls 2Checkout. Required.
	API RefundAPI
	// Policy is the window and retry schedule; zero fields take defaults.
	Policy Policy
	// UnknownErrorAttempts: an error no class is known for is retried until
	// it has come back this many times (or the cut-off), then the task is
	// archived with 2Checkout's code and message. Default 3.
	UnknownErrorAttempts int
	// Tasks reads back, on a retry, the record earlier attempts left in the
	// task's result. Without it every retry assumes an earlier attempt may
	// have reached 2Checkout, and unknown errors are counted per attempt.
	Tasks TaskReader
	// Logger logs every attempt. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told each attempt's outcome.
	Observer Observer
	// Notifier, if set, is handed every final record (completed or
	// archived) before the task ends; if it fails, the task is retried, so
	// no final state goes unannounced.
	Notifier Notifier
	// Turns, if set, orders the fleet's calls deadline-first under a
	// backlog: an attempt calls 2Checkout only in its turn, and is held
	// (outcome held, an uncounted retry) until then.
	Turns Turns
}

// Notifier queues the announcement of a task's final record (the webhook);
// it must be idempotent per taskID.
type Notifier interface {
	Notify(ctx context.Context, taskID string, record []byte) error
}

// DefaultUnknownErrorAttempts is HandlerConfig.UnknownErrorAttempts' default.
const DefaultUnknownErrorAttempts = 3

// Handler processes refund:cancel tasks. It is an asynq.Handler.
type Handler struct {
	api     RefundAPI
	policy  Policy
	unknown int
	tasks   TaskReader
	log     *zap.Logger
	// attempts logs each attempt's one line, without the caller: it is
	// always finish, and finding it costs a stack walk per attempt.
	attempts *zap.Logger
	now      func() time.Time
	obs      Observer
	notify   Notifier
	turns    Turns
	warm     *warmstack.Pool
}

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("worker: HandlerConfig.API is required")
	}
	p, err := cfg.Policy.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.UnknownErrorAttempts < 0 {
		return nil, fmt.Errorf("worker: HandlerConfig.UnknownErrorAttempts %d must not be negative", cfg.UnknownErrorAttempts)
	}
	if cfg.UnknownErrorAttempts == 0 {
		cfg.UnknownErrorAttempts = DefaultUnknownErrorAttempts
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	warm := warmstack.New(0, func(v any, stack []byte) {
		log.Error("task handler panic, with its stack (asynq reports it as the task's error)", zap.Any("panic", v), zap.ByteString("stack", stack))
	})
	return &Handler{api: cfg.API, policy: p, unknown: cfg.UnknownErrorAttempts, tasks: cfg.Tasks, log: log,
		attempts: log.WithOptions(zap.WithCaller(false)), now: cfg.Now, obs: cfg.Observer, notify: cfg.Notifier, turns: cfg.Turns, warm: warm}, nil
}

// TerminalError ends a task: asynq archives it at once (it matches
// asynq.SkipRetry) with Reason as its last error.
type TerminalError struct {
	Outcome string // OutcomeRefused, OutcomeWindowClosed, OutcomeInvalid, OutcomeSuperseded or OutcomeUnknown
	Reason  string
}

func (e *TerminalError) Error() string { return e.Reason }

// Is makes errors.Is(err, asynq.SkipRetry) true, so asynq archives the task.
func (e *TerminalError) Is(target error) bool { return target == asynq.SkipRetry }

// RetryError asks for a retry at At; RetryDelay reads it.
type RetryError struct {
	At    time.Time
	Cause error
	// Uncounted: the retry must not count against the task's MaxRetry
	// (IsFailure answers false), because the count would archive the task
	// while its window is open. Set when the task's retries are used up.
	Uncounted bool
	// Held: nothing was sent; the task waits for its turn (Turns). Such a
	// retry is always Uncounted and NothingSent.
	Held bool
	// NothingSent: the run sent nothing about the refund (see nothingSent):
	// the record adds no attempt.
	NothingSent bool
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry at %s)", e.Cause, e.At.UTC().Format(time.RFC3339))
}
func (e *RetryError) Unwrap() error { return e.Cause }

// IsFailure is the server's asynq.Config.IsFailure: every error counts as a
// failure (attempt numbers, and so the backoff, come from asynq's retry
// count) except a RetryError marked Uncounted — so a task whose producer
// set a small MaxRetry is not archived by the counter while a retry still
// fits in its window.
func (h *Handler) IsFailure(err error) bool {
	var rerr *RetryError
	return !errors.As(err, &rerr) || !rerr.Uncounted
}

// Attempt is one delivery of a task, as asynq hands it over.
type Attempt struct {
	TaskID   string
	Retried  int // retries so far; the attempt number is Retried+1
	MaxRetry int // the task's MaxRetry; 0 means unknown (no limit is assumed)
	Payload  []byte
	// Prior is the record earlier attempts left (the task's result, or the
	// PriorHeader of a task the window sweep re-enqueued); nil if none.
	Prior *Result
}

// PriorHeader is the task header under which a re-enqueued copy of a task
// carries the record (a Result as JSON) its earlier attempts left.
const PriorHeader = "refundd-prior"

// number answers this attempt's number: asynq's count (Retried+1), or one
// more than the record's when retries asynq did not count (a producer's
// small MaxRetry, see IsFailure) held its count back — so the record's
// attempts and the backoff keep growing.
func (a Attempt) number() int {
	n := a.Retried + 1
	if a.Prior != nil && a.Prior.Attempts+1 > n {
		n = a.Prior.Attempts + 1
	}
	return n
}

// first reports whether no attempt came before this one. Runs that sent
// nothing about the refund are not attempts: a record of them alone counts
// no attempt and nothing that may have been applied — provided no run
// since ended without a record (a crash mid-call).
func (a Attempt) first() bool {
	if a.Prior == nil {
		return a.Retried == 0
	}
	return a.Prior.Attempts == 0 && a.Prior.MaybeApplied == "" && a.Retried <= a.Prior.Retried+1
}

// ambiguity answers why an earlier attempt may have cancelled the refund
// with its answer lost, or "" if none can have.
func (a Attempt) ambiguity() string {
	switch {
	case a.first():
		return ""
	case a.Prior == nil:
		return "an earlier attempt left no record (a crash or a timeout mid-call, or the record could not be read)"
	case a.Prior.MaybeApplied != "":
		return a.Prior.MaybeApplied
	case a.Retried > a.Prior.Retried+1:
		return "an earlier attempt ended without a record (a crash or a timeout mid-call)"
	}
	return ""
}

// ProcessTask implements asynq.Handler. It writes the attempt's record to
// the task's result (asynq keeps it with the task while it retries, when
// it is archived, and with the retention once completed). The work runs on
// a goroutine whose stack has grown already (warmstack): asynq's goroutine
// per task would grow a new stack every time.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) (err error) {
	h.warm.Run(func() { err = h.processTask(ctx, t) })
	return err
}

func (h *Handler) processTask(ctx context.Context, t *asynq.Task) error {
	if t.Type() != tasks.TypeCancelRefund {
		return &TerminalError{Outcome: OutcomeInvalid, Reason: fmt.Sprintf("invalid payload: unknown task type %q", t.Type())}
	}
	a := Attempt{Payload: t.Payload()}
	a.TaskID, _ = asynq.GetTaskID(ctx)
	a.Retried, _ = asynq.GetRetryCount(ctx)
	a.MaxRetry, _ = asynq.GetMaxRetry(ctx)
	a.Prior = h.prior(ctx, t, a)
	var res *Result
	var err error
	if a.Prior.Final() {
		// An earlier attempt reached this final state and recorded it, but
		// could not end the task (its notification was not queued): the
		// record stands — nothing is asked of 2Checkout again — and only the
		// ending is repeated. (To try a finished cancellation again, delete
		// its task and enqueue it anew.)
		res = a.Prior
		if !res.Cancelled() {
			err = &TerminalError{Outcome: res.Outcome, Reason: res.Reason}
		}
	} else {
		res, err = h.Handle(ctx, a)
	}
	if res == nil || ctx.Err() != nil {
		return err
	}
	b, _ := tasks.EncodeResult(res)
	if w := t.ResultWriter(); w != nil {
		if _, werr := w.Write(b); werr != nil {
			if err == nil {
				// The refund is cancelled; only the record is missing.
				// Retrying confirms it with getOrder and writes it again.
				return fmt.Errorf("write result: %w", werr)
			}
			h.log.Warn("could not record the attempt; the next one assumes the worst", zap.String("task_id", a.TaskID), zap.Error(werr))
		}
	}
	if h.notify != nil && res.Final() {
		if nerr := h.notify.Notify(ctx, a.TaskID, b); nerr != nil {
			// Not ended: the retry finds the final record and ends it again.
			h.log.Warn("could not queue the completion notification; retrying the task to announce it",
				zap.String("task_id", a.TaskID), zap.String("outcome", res.Outcome), zap.Error(nerr))
			// Uncounted: a producer's small MaxRetry must not archive a task
			// whose ending was never announced.
			return &RetryError{At: h.now().Add(h.policy.MinDelay), Uncounted: true,
				Cause: fmt.Errorf("queue the completion notification (outcome %s is recorded): %w", res.Outcome, nerr)}
		}
	}
	return err
}

// prior reads the record earlier attempts left in the task's result, or
// else the one a re-enqueued copy carries in its PriorHeader. A first
// delivery (retry count 0) has no record — unless its retries are not
// counted (MaxRetry 0 or 1: see IsFailure) or the sweep re-ran it from the
// archive, both only with MaxRetry ≤ 1 — so the common first attempt costs
// no read.
func (h *Handler) prior(ctx context.Context, t *asynq.Task, a Attempt) *Result {
	if h.tasks != nil && (a.Retried > 0 || a.MaxRetry <= 1) {
		queue, _ := asynq.GetQueueName(ctx)
		info, err := h.tasks.GetTaskInfo(queue, a.TaskID)
		var r Result
		switch {
		case err != nil:
			h.log.Warn("could not read the task's record; assuming an earlier attempt may have reached 2Checkout", zap.String("task_id", a.TaskID), zap.Error(err))
		case len(info.Result) > 0 && json.Unmarshal(info.Result, &r) == nil:
			return &r
		}
	}
	if v, ok := t.Headers()[PriorHeader]; ok {
		var r Result
		if json.Unmarshal([]byte(v), &r) == nil {
			return &r
		}
	}
	return nil
}

// Handle runs one attempt. It answers the attempt's record (nil only for an
// invalid payload) and nil, a *TerminalError, a *RetryError, or the
// context's error when asynq cancelled the attempt (shutdown or timeout).
func (h *Handler) Handle(ctx context.Context, a Attempt) (*Result, error) {
	start := h.now()
	// The attempt's fields, on its one log line (not a Logger.With copy per
	// attempt: that encodes them twice).
	log := attemptLog{h.attempts, append(make([]zap.Field, 0, 10), zap.String("task_id", a.TaskID), zap.Int("attempt", a.number()), zap.Skip())}
	p, err := tasks.Decode(a.Payload)
	if err != nil {
		terr := &TerminalError{Outcome: OutcomeInvalid, Reason: "invalid payload: " + err.Error()}
		res := &Result{Outcome: OutcomeInvalid, Reason: terr.Reason, Attempts: a.number(), Retried: a.Retried, FinishedAt: h.now().UTC()}
		h.finish(log, start, time.Time{}, res, terr)
		return res, terr
	}
	log.fields[2] = zap.String("order_ref", p.OrderRef)
	res := &Result{Outcome: OutcomeRetry, OrderRef: p.OrderRef, Attempts: a.number(), WindowClosesAt: h.policy.Closes(p.RefundInitiatedAt).UTC(),
		MaybeApplied: a.ambiguity(), Retried: a.Retried}
	if a.Prior != nil {
		res.UnknownErrors = a.Prior.UnknownErrors
	}
	err = h.attempt(ctx, p, a, start, res)
	switch {
	case err == nil:
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		res = nil // asynq stopped the attempt: nothing to record
	default:
		var terr *TerminalError
		var rerr *RetryError
		if errors.As(err, &terr) {
			res.Outcome, res.Reason = terr.Outcome, terr.Reason
		} else if errors.As(err, &rerr) {
			res.NextAttemptAt = rerr.At.UTC()
			if rerr.NothingSent { // holds included
				res.Attempts = 0 // this run was no attempt: the attempts made so far
				if a.Prior != nil {
					res.Attempts = a.Prior.Attempts
				}
			}
			if rerr.Held {
				held(res, a.Prior, rerr)
			}
		}
	}
	if res != nil && res.Final() {
		res.FinishedAt = h.now().UTC()
	}
	h.finish(log, start, h.policy.Closes(p.RefundInitiatedAt), res, err)
	return res, err
}

func (h *Handler) attempt(ctx context.Context, p tasks.CancelRefund, a Attempt, now time.Time, res *Result) error {
	closes := h.policy.Closes(p.RefundInitiatedAt)
	cutoff := h.policy.Cutoff(p.RefundInitiatedAt)
	if !now.Before(cutoff) {
		return h.settle(ctx, p, res, windowClosed(closes, cutoff, nil))
	}
	rctx := rpcclient.WithStartDeadline(ctx, cutoff)
	// Relative, so the bound is right whatever clock h.now reads.
	rctx, cancel := context.WithTimeout(rctx, cutoff.Sub(now)+h.policy.RequestTimeout)
	defer cancel()

	if h.turns != nil {
		turn, err := h.turns.Take(ctx, a.TaskID, cutoff)
		switch {
		case err != nil:
			h.log.Warn("deadline-first dispatch unavailable: calling without a turn", zap.String("task_id", a.TaskID), zap.Error(err))
		case !turn.Granted():
			at := turn.HeldUntil
			if last := cutoff.Add(-h.policy.LastRetryLead); at.After(last) && last.After(now) {
				at = last // due while a worker can still take it before the cut-off
			}
			return &RetryError{At: at, Uncounted: true, Held: true, NothingSent: true, Cause: fmt.Errorf(
				"held: waiting its turn behind %d refund(s) whose windows close sooner (deadline-first dispatch; nothing sent, not a failure, no retry counted)", turn.Ahead)}
		default:
			defer turn.Release()
		}
	}

	if !a.first() {
		// cancelRefund names no refund, only the order: before cancelling
		// again, make sure the order's refund is still this task's.
		o, err := h.api.GetOrder(rctx, p.OrderRef)
		if err != nil {
			return h.retryOrGiveUp(ctx, p, a, res, false, err, fmt.Errorf("checking the order's refund with getOrder: %w", err))
		}
		switch sameRefund(o, p.RefundInitiatedAt) {
		case refundOther:
			return &TerminalError{Outcome: OutcomeSuperseded, Reason: superseded(o, p, res.MaybeApplied)}
		case refundOurs:
			if o.RefundStatus == "CANCELED" {
				res.Outcome, res.RefundID, res.Confirmed = OutcomeAlreadyCancelled, o.RefundID, true
				return nil
			}
		}
	}

	refundID, err := h.api.CancelRefund(rctx, p.OrderRef)
	if err == nil {
		res.Outcome, res.RefundID = OutcomeCancelled, refundID
		return nil
	}
	if res.MaybeApplied == "" && rpcclient.MaybeApplied(err) {
		res.MaybeApplied = "cancelRefund at " + h.now().UTC().Format(time.RFC3339) + " got no clear answer: " + describe(err)
	}
	if rpcclient.IsName(err, rpcclient.NameRefundNotCancellable) {
		// An earlier attempt (or someone else) may have cancelled it. Ask
		// the order what is true — a read, allowed after the cut-off too,
		// so not under the start deadline.
		gctx, gcancel := context.WithTimeout(ctx, h.policy.RequestTimeout)
		defer gcancel()
		o, gerr := h.api.GetOrder(gctx, p.OrderRef)
		switch {
		case gerr == nil && o.RefundStatus == "CANCELED" && sameRefund(o, p.RefundInitiatedAt) != refundOther:
			res.Outcome, res.RefundID, res.Confirmed = OutcomeAlreadyCancelled, o.RefundID, true
			return nil
		case gerr != nil && rpcclient.Classify(gerr) != rpcclient.ClassPermanent:
			return h.retryOrGiveUp(ctx, p, a, res, true, gerr, fmt.Errorf("%w; confirming with getOrder: %v", err, gerr))
		}
	}
	return h.retryOrGiveUp(ctx, p, a, res, false, err, err)
}

// held makes res the record of a hold: what earlier attempts learned
// stands, and no attempt is added.
func held(res, prior *Result, rerr *RetryError) {
	res.Outcome, res.Reason = OutcomeHeld, rerr.Cause.Error()
	if prior != nil {
		res.VendorCode, res.VendorError = prior.VendorCode, prior.VendorError
	}
}

// retryOrGiveUp decides what a failed call means for the task. class is
// judged on classErr; the reason carries err. sent: a cancelRefund went
// out in this attempt before the call that failed.
func (h *Handler) retryOrGiveUp(ctx context.Context, p tasks.CancelRefund, a Attempt, res *Result, sent bool, classErr, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // asynq stopped this attempt: it requeues or retries the task
	}
	var ae *rpcclient.APIError
	if errors.As(classErr, &ae) {
		res.VendorCode, res.VendorError = ae.Code, ae.Name
	}
	closes, cutoff := h.policy.Closes(p.RefundInitiatedAt), h.policy.Cutoff(p.RefundInitiatedAt)
	switch rpcclient.Classify(classErr) {
	case rpcclient.ClassNotStarted:
		return h.settle(ctx, p, res, windowClosed(closes, cutoff, nil))
	case rpcclient.ClassPermanent:
		if rpcclient.IsName(classErr, rpcclient.NameRefundWindowExpired) {
			return h.settle(ctx, p, res, windowClosed(closes, cutoff, classErr))
		}
		return h.settle(ctx, p, res, &TerminalError{Outcome: OutcomeRefused, Reason: "2Checkout refused: " + describe(classErr)})
	case rpcclient.ClassUnknown:
		if res.UnknownErrors++; res.UnknownErrors >= h.unknown || (h.tasks == nil && a.Retried+1 >= h.unknown) {
			// An answer we do not recognise does not say the refund is still
			// open (after a lost write — a crash, a Redis failover — the
			// refund may be cancelled already): getOrder decides, and where
			// it cannot tell, the outcome is unknown, never a false refusal.
			doubt := res.MaybeApplied
			if doubt == "" {
				doubt = "2Checkout's answer is not one this worker recognises, so it does not show the refund still open"
			}
			return h.settleWith(ctx, p, res, &TerminalError{Outcome: OutcomeRefused,
				Reason: fmt.Sprintf("2Checkout refused: %s (an answer this worker does not recognise, %d times)", describe(classErr), res.UnknownErrors)}, doubt)
		}
	}
	at, ok := h.policy.Next(h.now(), a.number(), cutoff, classErr)
	if !ok {
		wait := ""
		if ra, has := rpcclient.RetryAfter(classErr); has {
			wait = fmt.Sprintf(" (2Checkout asked to wait %v: Retry-After)", ra)
		}
		return h.settle(ctx, p, res, &TerminalError{Outcome: OutcomeWindowClosed,
			Reason: fmt.Sprintf("no retry fits before the window closes at %s%s: last error: %v", closes.UTC().Format(time.RFC3339), wait, err)})
	}
	aboutRefund, atAll := false, false
	if !sent {
		aboutRefund, atAll = nothingSent(classErr)
	}
	return &RetryError{At: at, Cause: err, NothingSent: aboutRefund, Uncounted: a.MaxRetry > 0 && a.Retried+1 >= a.MaxRetry || atAll}
}

// nothingSent reads a failed call's error: aboutRefund, no request about
// the refund reached 2Checkout (only a login did, or nothing); atAll, no
// request left at all — the shared budget held it back (rpcclient.GateError:
// waiting out an outage, Redis unreachable) or the caller's context ended
// first. A run that sent nothing about the refund is not an attempt: its
// record adds none, so the next run is still a first attempt if this one
// was (no getOrder before cancelRefund). A run that sent nothing at all
// counts no retry either; a failed login does (so its backoff grows).
func nothingSent(err error) (aboutRefund, atAll bool) {
	var ge *rpcclient.GateError
	var te *rpcclient.TransportError
	var ae *rpcclient.APIError
	switch {
	case errors.As(err, &ge) || errors.As(err, &te) && te.NotSent:
		return true, true
	case errors.As(err, &te):
		return te.Method == rpcclient.MethodLogin, false
	case errors.As(err, &ae):
		return ae.Method == rpcclient.MethodLogin, false
	}
	return false, false
}

// settle is the last word before a task is archived: when an attempt may
// have cancelled the refund with its answer lost, ask getOrder what is
// true — reads are allowed after the window, and no cancelRefund is sent.
// A cancelled refund completes the task; a refund getOrder shows still
// open keeps terr; where getOrder cannot tell, the outcome is unknown.
func (h *Handler) settle(ctx context.Context, p tasks.CancelRefund, res *Result, terr *TerminalError) error {
	return h.settleWith(ctx, p, res, terr, res.MaybeApplied)
}

// settleWith is settle for a doubt other than (or beside) an ambiguous
// attempt: doubt says why terr alone may not be the truth; empty, terr is.
func (h *Handler) settleWith(ctx context.Context, p tasks.CancelRefund, res *Result, terr *TerminalError, doubt string) error {
	if doubt == "" {
		return terr
	}
	gctx, cancel := context.WithTimeout(ctx, h.policy.RequestTimeout)
	defer cancel()
	o, err := h.api.GetOrder(gctx, p.OrderRef)
	var why string
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		why = "getOrder failed: " + describe(err)
	case sameRefund(o, p.RefundInitiatedAt) == refundOther:
		why = "the order now shows a different refund (initiated at " + o.RefundInitiatedAt + ")"
	case o.RefundStatus == "CANCELED":
		res.Outcome, res.RefundID, res.Confirmed = OutcomeAlreadyCancelled, o.RefundID, true
		return nil
	case o.RefundStatus != "":
		terr.Reason += "; getOrder confirms the refund is " + o.RefundStatus + ", not cancelled"
		return terr
	default:
		why = "getOrder does not show the refund's status (2Checkout documents no way to read it)"
	}
	return &TerminalError{Outcome: OutcomeUnknown, Reason: fmt.Sprintf("outcome unknown: %s; but %s, and %s: check order %s in 2Checkout's control panel",
		terr.Reason, doubt, why, p.OrderRef)}
}

// Whose refund getOrder shows, as far as it tells.
const (
	refundUnknown = iota // getOrder shows no (readable) initiation time
	refundOurs
	refundOther
)

func sameRefund(o *rpcclient.Order, initiated time.Time) int {
	if o == nil || o.RefundInitiatedAt == "" {
		return refundUnknown
	}
	t, err := time.Parse(time.RFC3339Nano, o.RefundInitiatedAt)
	if err != nil {
		return refundUnknown
	}
	if t.Truncate(time.Second).Equal(initiated.Truncate(time.Second)) {
		return refundOurs
	}
	return refundOther
}

func superseded(o *rpcclient.Order, p tasks.CancelRefund, maybe string) string {
	by := "by someone else"
	if maybe != "" {
		by = "by an earlier attempt whose answer was lost (" + maybe + "), or by someone else"
	}
	return fmt.Sprintf("superseded: order %s's refund is now the one initiated at %s (%s); this task's refund (initiated at %s) was settled before this attempt, %s; the newer refund is left alone",
		p.OrderRef, o.RefundInitiatedAt, o.RefundStatus, p.RefundInitiatedAt.UTC().Format(time.RFC3339), by)
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

// attemptLog is the logger and the fields of one attempt.
type attemptLog struct {
	l      *zap.Logger
	fields []zap.Field
}

// finish logs the attempt and tells the observer.
func (h *Handler) finish(al attemptLog, start, closes time.Time, res *Result, err error) {
	log := al.l
	now := h.now()
	outcome := OutcomeRetry
	var terr *TerminalError
	var rerr *RetryError
	switch {
	case err == nil:
		outcome = res.Outcome
	case errors.As(err, &terr):
		outcome = terr.Outcome
	case errors.As(err, &rerr) && rerr.Held:
		outcome = OutcomeHeld
	}
	fields := append(al.fields, zap.String("outcome", outcome), zap.Duration("duration", now.Sub(start)))
	if !closes.IsZero() {
		fields = append(fields, zap.Time("window_closes_at", closes))
	}
	switch {
	case err == nil:
		log.Info("refund cancellation done", append(fields, zap.String("refund_id", res.RefundID), zap.Bool("confirmed", res.Confirmed))...)
	case terr != nil:
		log.Warn("refund cancellation archived", append(fields, zap.String("reason", terr.Reason))...)
	case outcome == OutcomeHeld:
		// Many at a time under a backlog: debug, the metrics count them.
		log.Debug("refund cancellation held for its turn", append(fields, zap.Time("retry_at", rerr.At), zap.Error(rerr.Cause))...)
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
