package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
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
	// Info is the existing task; nil if it vanished between the conflict and
	// the lookup (it finished and its retention ran out).
	Info *asynq.TaskInfo
}

func (e *AlreadyQueuedError) Error() string {
	if e.Info == nil {
		return fmt.Sprintf("already queued: task %s", e.TaskID)
	}
	return fmt.Sprintf("already queued: task %s is %s", e.TaskID, e.Info.State)
}

// Is makes errors.Is(err, ErrAlreadyQueued) true.
func (e *AlreadyQueuedError) Is(target error) bool { return target == ErrAlreadyQueued }

// State answers the existing task's state, or "unknown".
func (e *AlreadyQueuedError) State() string {
	if e.Info == nil {
		return "unknown"
	}
	return e.Info.State.String()
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
	return &Enqueuer{client: asynq.NewClient(cfg.Redis), inspector: asynq.NewInspector(cfg.Redis), queue: cfg.Queue, now: cfg.Now}, nil
}

// Close releases the Redis connections.
func (e *Enqueuer) Close() error {
	return errors.Join(e.client.Close(), e.inspector.Close())
}

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
	info, err := e.client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil, e.alreadyQueued(p.TaskID())
	}
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", p.TaskID(), err)
	}
	return info, nil
}

func (e *Enqueuer) alreadyQueued(id string) error {
	info, err := e.inspector.GetTaskInfo(e.queue, id)
	if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("%w; reading its state: %v", &AlreadyQueuedError{TaskID: id}, err)
	}
	return &AlreadyQueuedError{TaskID: id, Info: info}
}

// Status answers the cancellation task of the order's refund initiated at
// initiatedAt (to the second).
func (e *Enqueuer) Status(orderRef string, initiatedAt time.Time) (*asynq.TaskInfo, error) {
	return e.inspector.GetTaskInfo(e.queue, TaskID(orderRef, initiatedAt))
}
