// Package taskview is the one view of a cancellation task that people and
// programs read: `refundctl status` prints it and the producer API's
// GET /v1/cancellations/{order_ref} answers it. It decides which of asynq's
// task fields mean something in which state.
package taskview

import (
	"encoding/json"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/tasks"
)

// View is a cancellation task as shown. Times are RFC 3339 in UTC.
type View struct {
	TaskID   string `json:"task_id"`
	OrderRef string `json:"order_ref,omitempty"`
	Queue    string `json:"queue"`
	State    string `json:"state"`
	Retried  int    `json:"retried"`
	// LastError is why the last attempt failed (for an archived task: why
	// it ended).
	LastError    string `json:"last_error,omitempty"`
	LastFailedAt string `json:"last_failed_at,omitempty"`
	// NextProcessAt is set only while a retry or a scheduled run is due.
	NextProcessAt  string `json:"next_process_at,omitempty"`
	WindowClosesAt string `json:"window_closes_at,omitempty"`
	// Payload and Result are the task's JSON, left out if not JSON.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Result is the task's record (tasks.Result): on every final state, and
	// while it retries, what its attempts learned so far.
	Result *tasks.Result `json:"result,omitempty"`
}

// Of answers the view of a task.
func Of(info *asynq.TaskInfo) View {
	v := View{TaskID: info.ID, Queue: info.Queue, State: info.State.String(), Retried: info.Retried, LastError: info.LastErr,
		LastFailedAt: timeString(info.LastFailedAt)}
	if p, err := tasks.Decode(info.Payload); err == nil {
		v.OrderRef = p.OrderRef
		v.WindowClosesAt = timeString(p.WindowClosesAt())
	}
	if info.State == asynq.TaskStateRetry || info.State == asynq.TaskStateScheduled {
		v.NextProcessAt = timeString(info.NextProcessAt)
	}
	if len(info.Payload) > 0 && json.Valid(info.Payload) {
		v.Payload = info.Payload
	}
	if r, err := tasks.DecodeResult(info.Result); err == nil {
		v.Result = r
	}
	return v
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
