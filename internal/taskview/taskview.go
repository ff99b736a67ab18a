// Package taskview is the one view of a cancellation that people and
// programs read: `refundctl status` prints it and the producer API's
// GET /v1/cancellations/{order_ref} answers it. It joins what asynq holds
// of the task (its state, while asynq keeps it) with the refund's record
// (internal/records: the outcome, for OUTCOME_RETENTION), and decides which
// of asynq's task fields mean something in which state. Lookup finds one
// refund's cancellation, or every cancellation of an order.
package taskview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/tasks"
)

// StateGone is a View's State when asynq no longer holds the task (its
// retention or the archive's cap ended it, or it was deleted): the
// refund's record still tells its outcome.
const StateGone = "gone"

// View is a cancellation as shown. Times are RFC 3339 in UTC.
type View struct {
	TaskID            string `json:"task_id"`
	OrderRef          string `json:"order_ref,omitempty"`
	RefundInitiatedAt string `json:"refund_initiated_at,omitempty"`
	Queue             string `json:"queue"`
	// State is asynq's state of the task, or StateGone.
	State string `json:"state"`
	// Outcome is the record's outcome (final or not), if there is one.
	Outcome string `json:"outcome,omitempty"`
	Retried int    `json:"retried"`
	// LastError is why the last attempt failed (for an archived task: why
	// it ended).
	LastError    string `json:"last_error,omitempty"`
	LastFailedAt string `json:"last_failed_at,omitempty"`
	// NextProcessAt is set only while a retry or a scheduled run is due.
	NextProcessAt  string `json:"next_process_at,omitempty"`
	WindowClosesAt string `json:"window_closes_at,omitempty"`
	// Payload and Result are the task's JSON, left out if not JSON.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Result is the refund's record (tasks.Result): on every final state,
	// and while it retries, what its attempts learned so far.
	Result *tasks.Result `json:"result,omitempty"`
	// EarlierRuns are the final records of the refund's earlier runs (an
	// operator tried again: refundctl rerun), oldest first.
	EarlierRuns []*tasks.Result `json:"earlier_runs,omitempty"`
}

// Of answers the view of a task.
func Of(info *asynq.TaskInfo) View {
	v := View{TaskID: info.ID, Queue: info.Queue, State: info.State.String(), Retried: info.Retried, LastError: info.LastErr,
		LastFailedAt: timeString(info.LastFailedAt)}
	if p, err := tasks.Decode(info.Payload); err == nil {
		v.OrderRef, v.RefundInitiatedAt = p.OrderRef, timeString(p.RefundInitiatedAt)
		v.WindowClosesAt = timeString(p.WindowClosesAt())
	}
	if info.State == asynq.TaskStateRetry || info.State == asynq.TaskStateScheduled {
		v.NextProcessAt = timeString(info.NextProcessAt)
	}
	if len(info.Payload) > 0 && json.Valid(info.Payload) {
		v.Payload = info.Payload
	}
	if r, err := tasks.DecodeResult(info.Result); err == nil {
		v.Result, v.Outcome = r, r.Outcome
	}
	return v
}

// OrderView is every cancellation of one order, newest refund first: the
// answer of GET /v1/cancellations/{ref} without refund_initiated_at, and of
// refundctl status ORDER_REF --json.
type OrderView struct {
	OrderRef      string `json:"order_ref"`
	Cancellations []View `json:"cancellations"`
}

// ErrNotFound: neither asynq nor the records know the cancellation.
var ErrNotFound = errors.New("no such cancellation")

// Lookup finds cancellations in one queue.
type Lookup struct {
	insp  *asynq.Inspector
	recs  *records.Store
	queue string
}

// NewLookup answers a Lookup of queue's cancellations.
func NewLookup(insp *asynq.Inspector, recs *records.Store, queue string) *Lookup {
	return &Lookup{insp: insp, recs: recs, queue: queue}
}

// Refund answers the cancellation of orderRef's refund initiated at
// initiated (to the second), or ErrNotFound.
func (l *Lookup) Refund(ctx context.Context, orderRef string, initiated time.Time) (View, error) {
	e, known, err := l.recs.Get(ctx, orderRef, initiated)
	if err != nil {
		return View{}, err
	}
	id := tasks.TaskID(orderRef, initiated)
	if known {
		id = e.Owner // a raw producer's task may own it under another ID
	}
	var v View
	info, err := l.insp.GetTaskInfo(l.queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		if !known {
			return View{}, ErrNotFound
		}
		v = View{TaskID: id, Queue: l.queue, State: StateGone}
	case err != nil:
		return View{}, fmt.Errorf("read task %s: %w", id, err)
	default:
		v = Of(info)
	}
	v.OrderRef, v.RefundInitiatedAt = orderRef, timeString(initiated.Truncate(time.Second))
	v.WindowClosesAt = timeString(initiated.Truncate(time.Second).Add(tasks.Window))
	if e.Record != nil {
		v.Result, v.Outcome = e.Record, e.Record.Outcome
	}
	v.EarlierRuns = e.Earlier
	return v, nil
}

// Order answers every cancellation of the order that the records or the
// producers' index know of, newest refund first, or ErrNotFound. It costs
// what the order has: the index, then one record and one task per refund.
func (l *Lookup) Order(ctx context.Context, orderRef string) ([]View, error) {
	times, err := l.recs.Order(ctx, orderRef)
	if err != nil {
		return nil, err
	}
	sort.Slice(times, func(i, j int) bool { return times[i].After(times[j]) })
	out := make([]View, 0, len(times))
	for _, t := range times {
		v, err := l.Refund(ctx, orderRef, t)
		if errors.Is(err, ErrNotFound) {
			continue // indexed at enqueue, and gone from asynq before it ran
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
