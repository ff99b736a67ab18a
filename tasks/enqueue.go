package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/keys"
	"github.com/refundd/refund-canceller/internal/redisconn"
)

// ErrAlreadyQueued matches an *AlreadyQueuedError with errors.Is.
var ErrAlreadyQueued = errors.New("already queued")

// ErrWindowClosed matches a *WindowClosedError with errors.Is.
var ErrWindowClosed = errors.New("cancellation window closed")

// AlreadyQueuedError answers an enqueue for a refund that already has a
// cancellation task, in whatever state (pending, scheduled, retry, active,
// completed or archived, while retained). Nothing new was enqueued.
type AlreadyQueuedError struct {
	TaskID string
	// Info is the existing task; nil if asynq no longer holds it (it
	// finished and its retention ran out) — Record then tells.
	Info *asynq.TaskInfo
	// Record is the refund's record, if the worker has written one.
	Record *Result
}

func (e *AlreadyQueuedError) Error() string {
	if e.Info == nil {
		return fmt.Sprintf("already queued: task %s", e.TaskID)
	}
	return fmt.Sprintf("already queued: task %s is %s", e.TaskID, e.Info.State)
}

// Is makes errors.Is(err, ErrAlreadyQueued) true.
func (e *AlreadyQueuedError) Is(target error) bool { return target == ErrAlreadyQueued }

// State answers the existing task's state; for a task asynq no longer
// holds, its record's outcome ("record: cancelled"), or "unknown".
func (e *AlreadyQueuedError) State() string {
	switch {
	case e.Info != nil:
		return e.Info.State.String()
	case e.Record != nil:
		return "record: " + e.Record.Outcome
	}
	return "unknown"
}

// WindowClosedError refuses a cancellation whose 2-hour window had already
// closed: enqueuing it would only queue a task to die.
type WindowClosedError struct {
	OrderRef string
	ClosedAt time.Time
}

func (e *WindowClosedError) Error() string {
	return fmt.Sprintf("order %s: cancellation window closed at %s", e.OrderRef, e.ClosedAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrWindowClosed) true.
func (e *WindowClosedError) Is(target error) bool { return target == ErrWindowClosed }

// Enqueuer enqueues cancellations: one task per refund, never one whose
// window has closed.
type Enqueuer struct {
	client    *asynq.Client
	inspector *asynq.Inspector
	rdb       redis.UniversalClient
	queue     string
	now       func() time.Time
}

// EnqueuerConfig configures an Enqueuer.
type EnqueuerConfig struct {
	// Redis connects to the queue's Redis. Required.
	Redis asynq.RedisConnOpt
	// Queue is the queue to enqueue to. Default DefaultQueue.
	Queue string
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// NewEnqueuer connects an Enqueuer. Close it when done.
func NewEnqueuer(cfg EnqueuerConfig) (*Enqueuer, error) {
	if cfg.Redis == nil {
		return nil, errors.New("tasks: EnqueuerConfig.Redis is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rdb := redisconn.NewClient(cfg.Redis)
	return &Enqueuer{client: asynq.NewClientFromRedisClient(rdb), inspector: asynq.NewInspectorFromRedisClient(rdb), rdb: rdb, queue: cfg.Queue, now: cfg.Now}, nil
}

// Close releases the Redis connection.
func (e *Enqueuer) Close() error { return e.rdb.Close() }

// Queue answers the queue this Enqueuer writes to.
func (e *Enqueuer) Queue() string { return e.queue }

// Enqueue validates p and enqueues its cancellation. It answers the new
// task's info, or one of: a ValidationError (ErrInvalidPayload), a
// *WindowClosedError (ErrWindowClosed), an *AlreadyQueuedError
// (ErrAlreadyQueued) with the existing task's state, or a Redis error.
func (e *Enqueuer) Enqueue(ctx context.Context, p CancelRefund, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	now := e.now()
	task, err := NewTask(p, now, append([]asynq.Option{asynq.Queue(e.queue)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if closes := p.WindowClosesAt(); !now.Before(closes) {
		return nil, &WindowClosedError{OrderRef: p.OrderRef, ClosedAt: closes}
	}
	// The refund's record outlives asynq's copy of its task: a refund the
	// worker knows is already queued, whatever asynq still holds. Else the
	// refund joins its order's index (the worker indexes what it runs too).
	v, err := indexScript.Run(ctx, e.rdb, []string{keys.Refund(e.queue, p.OrderRef, p.RefundInitiatedAt), keys.Order(e.queue, p.OrderRef)},
		p.RefundInitiatedAt.Unix(), keys.Stamp(p.RefundInitiatedAt), (DefaultRetention + Window).Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: read the refund's record: %w", p.TaskID(), err)
	}
	if len(v) == 2 {
		return nil, e.alreadyQueued(v[0], []byte(v[1]))
	}
	info, err := e.client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil, e.alreadyQueued(p.TaskID(), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", p.TaskID(), err)
	}
	return info, nil
}

// indexScript: KEYS the refund's record, its order's index; ARGV the
// initiation's unix seconds and stamp, the index's expiry in ms. It
// answers {owner, record} if the worker has a record of the refund, else
// {} after adding the refund to the index (which the worker's records keep
// as long as theirs).
var indexScript = redis.NewScript(`
local v = redis.call("HMGET", KEYS[1], "owner", "record")
if v[1] then
	return {v[1], v[2] or ""}
end
redis.call("ZADD", KEYS[2], ARGV[1], ARGV[2])
if redis.call("PTTL", KEYS[2]) < 0 then
	redis.call("PEXPIRE", KEYS[2], ARGV[3])
end
return {}`)

func (e *Enqueuer) alreadyQueued(id string, record []byte) error {
	aq := &AlreadyQueuedError{TaskID: id}
	aq.Record, _ = DecodeResult(record)
	info, err := e.inspector.GetTaskInfo(e.queue, id)
	if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return fmt.Errorf("%w; reading its state: %v", aq, err)
	}
	aq.Info = info
	return aq
}

// Status answers the cancellation task of the order's refund initiated at
// initiatedAt (to the second).
func (e *Enqueuer) Status(orderRef string, initiatedAt time.Time) (*asynq.TaskInfo, error) {
	return e.inspector.GetTaskInfo(e.queue, TaskID(orderRef, initiatedAt))
}
