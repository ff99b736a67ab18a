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

// A producer enqueues the cancellation of a refund. Enqueuing the same order
// again answers "already queued" with the existing task's state.
func ExampleEnqueuer_Enqueue() {
	m, err := miniredis.Run() // in production: asynq.ParseRedisURI(os.Getenv("REDIS_URL"))
	if err != nil {
		panic(err)
	}
	defer m.Close()
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: asynq.RedisClientOpt{Addr: m.Addr()}})
	if err != nil {
		panic(err)
	}
	defer enq.Close()

	p := tasks.CancelRefund{
		OrderRef:          "73152889",
		RefundInitiatedAt: time.Now().Add(-10 * time.Minute),
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
		fmt.Println("already queued, state:", aq.State())
	}

	_, err = enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "73152890", RefundInitiatedAt: time.Now().Add(-3 * time.Hour)})
	fmt.Println("too late:", errors.Is(err, tasks.ErrWindowClosed))
	// Output:
	// queued refund:cancel:73152889 in refunds
	// already queued, state: pending
	// too late: true
}

// Validation names every bad field.
func ExampleCancelRefund_Validate() {
	err := tasks.CancelRefund{OrderRef: "not a ref"}.Validate(time.Now())
	fmt.Println(err)
	// Output: order_ref: must be 1-32 letters, digits, '-' or '_'; refund_initiated_at: is required (RFC 3339, e.g. 2026-11-25T10:00:00Z)
}
