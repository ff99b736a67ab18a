package worker

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// ErrFenced: a record write came from a delivery that is no longer the
// refund's latest (another delivery of the task claimed it since), or the
// record is final already. Nothing was written.
var ErrFenced = errors.New("refund record: this delivery may no longer write it")

// TerminalError ends a task: asynq archives it at once (it matches
// asynq.SkipRetry) with Reason as its last error.
type TerminalError struct {
	Outcome string // a final tasks.Outcome… other than cancelled and already_cancelled
	Reason  string
}

func (e *TerminalError) Error() string { return e.Reason }

// Is makes errors.Is(err, asynq.SkipRetry) true, so asynq archives the task.
func (e *TerminalError) Is(target error) bool { return target == asynq.SkipRetry }

// RetryError asks for a retry at At; RetryDelay reads it.
type RetryError struct {
	At    time.Time
	Cause error
	// Uncounted: the retry must not count against the task's MaxRetry
	// (IsFailure answers false): a producer's small MaxRetry must not
	// archive a task while a retry still fits in its window.
	Uncounted bool
	// Held: nothing was sent; the task waits for its turn (Turns). Such a
	// retry is always Uncounted and NothingSent.
	Held bool
	// NothingSent: the run sent nothing about the refund: the record adds
	// no attempt.
	NothingSent bool
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry at %s)", e.Cause, e.At.UTC().Format(time.RFC3339))
}
func (e *RetryError) Unwrap() error { return e.Cause }

func itoa(n int) string { return strconv.Itoa(n) }
