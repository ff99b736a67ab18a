package worker

import (
	"context"

	"github.com/refundd/refund-canceller/tasks"
)

// Memory is the refund's record, the handler's only memory of what
// happened before (internal/records keeps it in Redis). Nothing a producer
// sets — headers, payload fields, task options — and none of asynq's
// counters are read as such.
type Memory interface {
	// Claim makes taskID the refund's owner if no task owns it yet, and,
	// for the owner, fences the delivery (token) and answers the record.
	Claim(ctx context.Context, p tasks.CancelRefund, taskID, token string) (Claim, error)
	// Write writes the owner delivery's record, unless a later delivery
	// claimed the refund since or the record is final (ErrFenced).
	// delivery says how the delivery ends (Delivery…); announced, for a
	// final record, that it needs no announcement.
	Write(ctx context.Context, c Claim, r *tasks.Result, delivery string, announced bool) error
	// Announced marks r's final record announced.
	Announced(ctx context.Context, r *tasks.Result) error
}

// Claim is what a delivery learns when it claims its refund.
type Claim struct {
	// Owner is the task that owns the refund: the claiming task, or (a
	// duplicate) another.
	Owner string
	// Token fences this delivery's writes.
	Token string
	// Record is the refund's record; nil before the first write.
	Record *tasks.Result
	// Run numbers the refund's runs: 1, then one more each time an
	// operator asks to try again.
	Run int
	// Announced: the current run's final record was announced (or needed
	// no announcement).
	Announced bool
}

// How a delivery ended, as the record keeps it: the window sweep and the
// deadline-first wake judge an archived task by it.
const (
	// DeliveryRunning: a delivery claimed the refund and has not said how
	// it ended (it runs, or it crashed, was shut down or timed out).
	DeliveryRunning = "running"
	// DeliveryDone: the handler ended the delivery; asynq keeps the task
	// where the handler asked.
	DeliveryDone = "done"
	// DeliveryParked: the handler asked for a retry that asynq's retry
	// counter turns into an archive (MaxRetry used up): archived by the
	// counter, not by the handler's word nor an operator's, and due again
	// at the record's NextAttemptAt.
	DeliveryParked = "parked"
	// DeliveryQueued: the window sweep or the deadline-first wake moved the
	// task from the archive to pending and no delivery has claimed the
	// refund since: archived now, it was an operator's Archive.
	DeliveryQueued = "queued"
)

// Notifier queues the announcement of a final record (the webhook). It
// must be idempotent per id; the handler passes DeliveryID.
type Notifier interface {
	Notify(ctx context.Context, id string, record []byte) error
}

// DeliveryID names the announcement of one run of a refund's
// cancellation: "<task ID>#<run>". A new run is announced anew.
func DeliveryID(r *tasks.Result) string {
	return r.TaskID + "#" + itoa(r.Run)
}
