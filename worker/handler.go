// Package worker is the asynq side of refund cancellation: the task handler
// and its policies — the 2-hour window, the retry schedule, what each class
// of failure means for the task, and the record it leaves.
//
// The refund's record (Memory) is the handler's only memory. Every
// delivery claims the refund first: the first task to claim it owns it,
// and any other task for the same refund ends at once as a duplicate,
// naming the owner. The owner's delivery reads the record: a final record
// is final — the delivery only finishes announcing it —; otherwise the
// attempt goes on from what earlier ones learned. Before a cancelRefund is
// sent the record says so (sending), so a delivery that follows a crash,
// a shutdown, a timeout or any other move of asynq's or an operator's
// knows that request may have reached 2Checkout, and asks getOrder before
// cancelling again or giving up. Deliveries are fenced: only the latest
// may write.
//
// The handler never sends a request after a task's cut-off (window close
// minus a safety margin), archives an expired task in one run without
// calling 2Checkout, and schedules every retry before the cut-off
// (Policy). It retries answers it does not recognise a bounded number of
// times, and before archiving after an attempt that may have cancelled the
// refund with its answer lost, asks getOrder what is true — ending
// "unknown" only where 2Checkout cannot tell. A retry never cancels a
// refund other than its own. Under a backlog it calls 2Checkout only in
// the task's turn (Turns, deadline-first), holding the task — uncounted —
// until then. It knows nothing of HTTP.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// RefundAPI is what the handler needs of 2Checkout; *rpcclient.Client has it.
type RefundAPI interface {
	// CancelRefund sends cancelRefund; before, if not nil, runs once the
	// request may go, right before it is sent, and stops it with an error
	// (rpcclient.Client's).
	CancelRefund(ctx context.Context, orderRef string, before func(context.Context) error) (string, error)
	GetOrder(ctx context.Context, orderRef string) (*rpcclient.Order, error)
}

// Observer is told how each attempt ended, for metrics. outcome is one of
// the tasks.Outcome… constants; slack is the time left before the window
// closes.
type Observer interface {
	Attempted(outcome string, slack time.Duration)
}

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// API calls 2Checkout. Required.
	API RefundAPI
	// Memory keeps each refund's record. Required.
	Memory Memory
	// Policy is the window and retry schedule; zero fields take defaults.
	Policy Policy
	// UnknownErrorAttempts: an error no class is known for is retried until
	// it has come back this many times (or the cut-off), then the task is
	// archived with 2Checkout's code and message. Default 3.
	UnknownErrorAttempts int
	// Logger logs every attempt. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told each attempt's outcome.
	Observer Observer
	// Notifier, if set, is handed every final record; until it has taken
	// one, the task is retried (uncounted) to announce it, and nothing is
	// asked of 2Checkout again.
	Notifier Notifier
	// Turns, if set, orders the fleet's calls deadline-first under a
	// backlog: an attempt calls 2Checkout only in its turn, and is held
	// (outcome held, an uncounted retry) until then.
	Turns Turns
}

// NoRecord starts the error of a delivery that could not claim and read
// its refund's record, and so sent nothing and wrote nothing: a task asynq
// archives with it (at MaxRetry 0) is asynq's doing, and the window sweep
// runs it again.
const NoRecord = "read the refund's record (nothing sent)"

// DefaultUnknownErrorAttempts is HandlerConfig.UnknownErrorAttempts' default.
const DefaultUnknownErrorAttempts = 3

// Handler processes refund:cancel tasks. It is an asynq.Handler.
type Handler struct {
	api     RefundAPI
	mem     Memory
	policy  Policy
	unknown int
	log     *zap.Logger
	now     func() time.Time
	obs     Observer
	notify  Notifier
	turns   Turns
}

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("worker: HandlerConfig.API is required")
	}
	if cfg.Memory == nil {
		return nil, errors.New("worker: HandlerConfig.Memory is required")
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
	return &Handler{api: cfg.API, mem: cfg.Memory, policy: p, unknown: cfg.UnknownErrorAttempts, log: cfg.Logger,
		now: cfg.Now, obs: cfg.Observer, notify: cfg.Notifier, turns: cfg.Turns}, nil
}

// IsFailure is the server's asynq.Config.IsFailure: every error counts as a
// failure (asynq's retry count and failure statistics) except a RetryError
// marked Uncounted. The handler itself never reads the count.
func (h *Handler) IsFailure(err error) bool {
	var rerr *RetryError
	return !errors.As(err, &rerr) || !rerr.Uncounted
}

// Delivery is one delivery of a task, as asynq hands it over.
type Delivery struct {
	TaskID   string
	Queue    string
	Retried  int // asynq's retry count: only to know whether a retry archives the task
	MaxRetry int
	Type     string
	Payload  []byte
}

// ProcessTask implements asynq.Handler.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	d := Delivery{Type: t.Type(), Payload: t.Payload()}
	d.TaskID, _ = asynq.GetTaskID(ctx)
	d.Queue, _ = asynq.GetQueueName(ctx)
	d.Retried, _ = asynq.GetRetryCount(ctx)
	d.MaxRetry, _ = asynq.GetMaxRetry(ctx)
	res, err := h.Deliver(ctx, d)
	var write func([]byte) (int, error)
	if w := t.ResultWriter(); w != nil {
		write = w.Write
	}
	return h.copyResult(d, res, err, write)
}

// copyResult copies the delivery's record res into the task's asynq result
// with write, and answers what asynq is to be told (err). The copy is the
// dashboard's view; the record in Memory is the truth. A final record whose
// copy fails (Redis restarting) must not leave an older one showing on a
// finished task: the task is retried instead (uncounted), and its next
// delivery, finding the record final, copies it again — unless asynq would
// archive it for the retry (its retries spent, a MaxRetry 0), which would
// hide a finished task's ending: then it ends as it is, its copy stale.
func (h *Handler) copyResult(d Delivery, res *tasks.Result, err error, write func([]byte) (int, error)) error {
	if res == nil || write == nil {
		return err
	}
	b, _ := json.Marshal(res)
	_, werr := write(b)
	switch {
	case werr == nil:
		return err
	case res.Final() && d.Retried < d.MaxRetry:
		return &RetryError{At: h.now().Add(h.policy.MinDelay), Uncounted: true, NothingSent: true,
			Cause: fmt.Errorf("copy the final record (%s) to the task's result: %w", res.Outcome, werr)}
	default:
		h.log.Debug("could not copy the record to the task's result", zap.String("task_id", d.TaskID), zap.Error(werr))
		return err
	}
}

// Deliver runs one delivery of a task: it claims the refund, reads its
// record, and runs an attempt, finishes announcing a final record, or ends
// a duplicate. It answers the record the delivery leaves (nil when asynq
// stopped it) and nil, a *TerminalError, a *RetryError, or the context's
// error.
func (h *Handler) Deliver(ctx context.Context, d Delivery) (*tasks.Result, error) {
	start := h.now()
	log := h.log.With(zap.String("task_id", d.TaskID))
	p, err := h.payload(d, start)
	if err != nil {
		terr := &TerminalError{Outcome: tasks.OutcomeInvalid, Reason: "invalid payload: " + err.Error()}
		res := &tasks.Result{Outcome: tasks.OutcomeInvalid, TaskID: d.TaskID, Reason: terr.Reason, FinishedAt: start.UTC()}
		h.finish(log, start, time.Time{}, res, terr)
		return res, terr
	}
	log = log.With(zap.String("order_ref", p.OrderRef))
	closes := h.policy.Closes(p.RefundInitiatedAt)
	c, err := h.mem.Claim(ctx, p, d.TaskID, newToken())
	if err != nil {
		// Nothing is sent without the record; asynq keeps the task.
		rerr := &RetryError{At: start.Add(h.policy.MinDelay), Uncounted: true, NothingSent: true,
			Cause: fmt.Errorf("%s: %w", NoRecord, err)}
		h.finish(log, start, closes, nil, rerr)
		return nil, rerr
	}
	if c.Owner != d.TaskID {
		terr := &TerminalError{Outcome: tasks.OutcomeDuplicate, Reason: fmt.Sprintf(
			"duplicate: task %s owns the cancellation of order %s's refund initiated at %s; this task asked 2Checkout nothing",
			c.Owner, p.OrderRef, p.RefundInitiatedAt.UTC().Format(time.RFC3339))}
		res := &tasks.Result{Outcome: tasks.OutcomeDuplicate, TaskID: d.TaskID, OrderRef: p.OrderRef, RefundInitiatedAt: p.RefundInitiatedAt.UTC(),
			Reason: terr.Reason, WindowClosesAt: closes.UTC(), FinishedAt: start.UTC()}
		h.finish(log, start, closes, res, terr)
		return res, terr
	}
	if c.Record.Final() {
		// The record stands; only the ending is repeated (and announced,
		// if it was not).
		return c.Record, h.end(ctx, log, c, c.Record, ending(c.Record))
	}
	res, err := h.attempt(ctx, log, d, p, c, start)
	if res == nil {
		return nil, err // asynq stopped the attempt; the record says what it had sent
	}
	delivery := DeliveryDone
	var rerr *RetryError
	if errors.As(err, &rerr) && d.Retried >= d.MaxRetry {
		delivery = DeliveryParked // asynq's counter archives it; the sweep runs it when due
	}
	if werr := h.write(ctx, c, res, delivery); werr != nil {
		if res.Final() {
			// Unrecorded, the outcome is not announced; the next delivery
			// finds the record as it was (sending, if a cancelRefund went
			// out) and settles it with getOrder.
			return res, &RetryError{At: h.now().Add(h.policy.MinDelay), Uncounted: true,
				Cause: fmt.Errorf("record the outcome %s: %w", res.Outcome, werr)}
		}
		log.Warn("could not record the attempt; the next delivery finds the record as it was", zap.Error(werr))
	}
	if !res.Final() {
		return res, err
	}
	return res, h.end(ctx, log, c, res, err)
}

// payload decodes and validates the task's payload as the front doors do
// (tasks.Decode, Validate against the clock).
func (h *Handler) payload(d Delivery, now time.Time) (tasks.CancelRefund, error) {
	if d.Type != tasks.TypeCancelRefund {
		return tasks.CancelRefund{}, fmt.Errorf("unknown task type %q", d.Type)
	}
	p, err := tasks.Decode(d.Payload)
	if err == nil {
		err = p.Validate(now)
	}
	return p, err
}

// write writes the record, trying a few times over a Redis blip.
func (h *Handler) write(ctx context.Context, c Claim, res *tasks.Result, delivery string) error {
	var err error
	for try := 0; try < 3; try++ {
		if err = h.mem.Write(ctx, c, res, delivery, h.notify == nil); err == nil || errors.Is(err, ErrFenced) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// ending answers the error that ends a task with the final record r.
func ending(r *tasks.Result) error {
	if r.Cancelled() {
		return nil
	}
	return &TerminalError{Outcome: r.Outcome, Reason: r.Reason}
}

// end announces the final record res (unless it was) and answers how the
// task ends: err, or, when the announcement could not be queued, an
// uncounted retry that only announces it.
func (h *Handler) end(ctx context.Context, log *zap.Logger, c Claim, res *tasks.Result, err error) error {
	if h.notify == nil || c.Announced {
		return err
	}
	b, _ := json.Marshal(res)
	nerr := h.notify.Notify(ctx, DeliveryID(res), b)
	if nerr == nil {
		nerr = h.mem.Announced(ctx, res)
	}
	if nerr != nil {
		log.Warn("could not queue the completion notification; the task is retried only to announce it (nothing is asked of 2Checkout again)",
			zap.String("outcome", res.Outcome), zap.Error(nerr))
		return &RetryError{At: h.now().Add(h.policy.MinDelay), Uncounted: true, NothingSent: true,
			Cause: fmt.Errorf("queue the completion notification (outcome %s is recorded): %w", res.Outcome, nerr)}
	}
	return err
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
