package worker

import (
	"context"
	"time"
)

// Turns decides, when the fleet cannot call 2Checkout for every due task at
// once, which task calls next: the one whose cut-off comes first
// (deadline-first dispatch; internal/deadlinefirst shares the order
// through Redis). The handler asks for a turn before an attempt's first
// call and gives it back when the attempt's calls are done; a task that
// is not given one is held: it retries, uncounted, when its turn comes
// (or by HeldUntil).
type Turns interface {
	// Take asks for taskID's turn; cutoff is the task's cut-off. An error
	// (Redis unreachable) lets the attempt go on without a turn.
	Take(ctx context.Context, taskID string, cutoff time.Time) (Turn, error)
}

// Turn is what Take answers: a turn (Release set), or a hold.
type Turn struct {
	// Release gives the turn back. nil: the task is held.
	Release func()
	// HeldUntil: a held task runs again by then at the latest (no later
	// than its cut-off), sooner when its turn comes.
	HeldUntil time.Time
	// Ahead counts the waiting tasks whose cut-offs come sooner.
	Ahead int
}

// Granted reports whether the task has its turn.
func (t Turn) Granted() bool { return t.Release != nil }
