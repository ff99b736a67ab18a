// Package keys names the Redis keys refundd keeps for a queue beside
// asynq's: one home for the layout that the worker's records
// (internal/records) and the producers' order index (tasks.Enqueuer)
// share. Every key carries the queue as its hash tag, like asynq's, so a
// queue's keys live in one Redis Cluster slot.
package keys

import "time"

// StampLayout writes a refund's initiation second in a key (as in its
// task ID: UTC, whole seconds).
const StampLayout = "20060102T150405Z"

// Stamp answers t as a key writes it.
func Stamp(t time.Time) string { return t.UTC().Format(StampLayout) }

// Refund answers the key of the record of order orderRef's refund
// initiated at initiated (a hash; see internal/records).
func Refund(queue, orderRef string, initiated time.Time) string {
	return "refundd:{" + queue + "}:refund:" + orderRef + ":" + Stamp(initiated)
}

// Order answers the key of the order's index: a sorted set of its
// refunds' initiation stamps, scored by their Unix seconds.
func Order(queue, orderRef string) string { return "refundd:{" + queue + "}:order:" + orderRef }
