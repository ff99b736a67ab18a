package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/tasks"
)

// A producer enqueues the cancellation of a refund. Enqueuing the same
// refund again answers "already queued" with the existing task's state; a
// later refund on the same order is a cancellation of its own.
func ExampleEnqueuer_Enqueue() {
	m, err := miniredis.Run() // in production: tasks.RedisFromEnv(os.Getenv)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	initiated := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return initiated.Add(10 * time.Minute) } // in production: leave Now unset
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: asynq.RedisClientOpt{Addr: m.Addr()}, Now: clock})
	if err != nil {
		panic(err)
	}
	defer enq.Close()

	p := tasks.CancelRefund{
		OrderRef:          "73152889",
		RefundInitiatedAt: initiated,
		Reason:            "duplicate request",
		RequestedBy:       "support-tool",
	}
	info, err := enq.Enqueue(context.Background(), p)
	if err != nil {
		panic(err)
	}
	fmt.Println("queued", info.ID, "in", info.Queue)

	_, err = enq.Enqueue(context.Background(), p)
	var aq *tasks.AlreadyQueuedError
	if errors.As(err, &aq) {
		fmt.Println("already queued:", aq.TaskID, "state:", aq.State())
	}

	later := p
	later.RefundInitiatedAt = initiated.Add(5 * time.Minute)
	info, err = enq.Enqueue(context.Background(), later)
	if err != nil {
		panic(err)
	}
	fmt.Println("queued", info.ID)

	_, err = enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "73152890", RefundInitiatedAt: initiated.Add(-3 * time.Hour)})
	fmt.Println("too late:", errors.Is(err, tasks.ErrWindowClosed))
	// Output:
	// queued refund:cancel:73152889:20261125T100000Z in refunds
	// already queued: refund:cancel:73152889:20261125T100000Z state: pending
	// queued refund:cancel:73152889:20261125T100500Z
	// too late: true
}

// A producer using raw asynq gives its task the documented ID, so that
// refundd's "one task per refund" holds for it too.
func ExampleTaskID() {
	initiated := time.Date(2026, 11, 25, 11, 0, 0, 500_000_000, time.FixedZone("CET", 3600))
	fmt.Println(tasks.TaskID("73152889", initiated))
	// Output: refund:cancel:73152889:20261125T100000Z
}

// Validation names every bad field.
func ExampleCancelRefund_Validate() {
	err := tasks.CancelRefund{OrderRef: "not a ref"}.Validate(time.Now())
	fmt.Println(err)
	// Output: order_ref: must be 1-32 letters, digits, '-' or '_'; refund_initiated_at: is required (RFC 3339, e.g. 2026-11-25T10:00:00Z)
}
