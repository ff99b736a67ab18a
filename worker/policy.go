package worker

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// Policy is the cancellation window and the retry schedule. Its methods are
// pure functions of their arguments (and of Rand), so they are tested with
// any clock.
//
//	initiated ─────── retries ─────── last retry ─ cut-off ── close
//	                                   (Lead)     (Margin)   (+Window)
type Policy struct {
	// Window is how long after initiation 2Checkout accepts a cancellation.
	// Default tasks.Window (2h); tests shorten it.
	Window time.Duration
	// SafetyMargin: no request is started later than Window − SafetyMargin
	// after initiation (the cut-off), for clock skew and transit. Default 1m.
	SafetyMargin time.Duration
	// RequestTimeout bounds one request: a request started just before the
	// cut-off may run until cut-off + RequestTimeout. Default 15s.
	RequestTimeout time.Duration
	// BaseDelay and MaxDelay shape the exponential backoff: the n-th retry
	// waits a random time (full jitter) up to min(MaxDelay, BaseDelay·2ⁿ⁻¹),
	// at least MinDelay. Defaults 2s, 5m, 1s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	MinDelay  time.Duration
	// RetryAfterMax bounds how long a server's Retry-After is honoured: a
	// longer wait is cut to this (a vendor asking for a day must not end a
	// task with two hours left). Default MaxDelay.
	RetryAfterMax time.Duration
	// LastRetryLead: no retry is placed at or after cut-off − LastRetryLead,
	// so the queue has time to hand a due retry to a worker before the
	// cut-off. It is what the queue needs, not a round number: see LeadFor.
	// Default LeadFor(DefaultDelayedTaskCheckInterval, DefaultTaskCheckInterval).
	LastRetryLead time.Duration
	// Rand answers a float in [0,1) for the jitter. Default math/rand/v2.
	Rand func() float64
}

// Defaults of Policy.
const (
	DefaultSafetyMargin   = time.Minute
	DefaultRequestTimeout = 15 * time.Second
	DefaultBaseDelay      = 2 * time.Second
	DefaultMaxDelay       = 5 * time.Minute
	DefaultMinDelay       = time.Second
)

// DefaultLastRetryLead is the lead the default server needs (see LeadFor).
var DefaultLastRetryLead = LeadFor(DefaultDelayedTaskCheckInterval, DefaultTaskCheckInterval)

// LeadFor answers how long before its time a retry must be due so that a
// worker starts it in time, for a server with the given intervals: asynq's
// forwarder moves due retries to pending every delayedCheck; an idle worker
// looks for pending tasks every taskCheck/2 + rand(taskCheck), at most
// 1.5 × taskCheck; 500ms more covers Redis round trips and a busy scheduler.
// With the defaults (1s, 1s) the lead is 3s
// (go test ./worker -run '^$' -bench RetryLag -benchtime 40x measures the lag).
func LeadFor(delayedCheck, taskCheck time.Duration) time.Duration {
	return delayedCheck + taskCheck*3/2 + 500*time.Millisecond
}

// WithDefaults validates p and answers it with its zero fields filled in.
func (p Policy) WithDefaults() (Policy, error) {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Window", &p.Window, tasks.Window},
		{"SafetyMargin", &p.SafetyMargin, DefaultSafetyMargin},
		{"RequestTimeout", &p.RequestTimeout, DefaultRequestTimeout},
		{"BaseDelay", &p.BaseDelay, DefaultBaseDelay},
		{"MaxDelay", &p.MaxDelay, DefaultMaxDelay},
		{"MinDelay", &p.MinDelay, DefaultMinDelay},
		{"RetryAfterMax", &p.RetryAfterMax, 0}, // MaxDelay, below
		{"LastRetryLead", &p.LastRetryLead, DefaultLastRetryLead},
	} {
		if err := defaults.Fill(d.name, d.v, d.def); err != nil {
			return p, fmt.Errorf("policy: %w", err)
		}
	}
	if p.RetryAfterMax == 0 {
		p.RetryAfterMax = p.MaxDelay
	}
	if p.MaxDelay < p.BaseDelay {
		return p, fmt.Errorf("policy: MaxDelay %v is shorter than BaseDelay %v", p.MaxDelay, p.BaseDelay)
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p, nil
}

// Closes answers when the refund's cancellation window closes.
func (p Policy) Closes(initiatedAt time.Time) time.Time { return initiatedAt.Add(p.Window) }

// Cutoff answers the last instant a request may start: close − SafetyMargin.
func (p Policy) Cutoff(initiatedAt time.Time) time.Time {
	return initiatedAt.Add(p.Window - p.SafetyMargin)
}

// Next answers when to retry after attempt number attempt (1 for the first)
// failed with err at now, or ok=false when no retry fits before the cut-off.
//
//   - A retry waits the jittered backoff, at least MinDelay, and at least the
//     server's Retry-After cut to RetryAfterMax.
//   - Retry times are whole seconds, rounded up: asynq keeps retry times in
//     whole seconds and hands a task over once the second it is stored
//     under has begun, so a time with a fraction would run up to a second
//     early — sooner than Retry-After.
//   - No retry is placed at or after cutoff − LastRetryLead. When the wait
//     would cross that, the retry is placed in the last whole second before
//     it: one more attempt inside the window is worth more than the
//     vendor's requested pause (even a Retry-After is cut short for it).
//   - ok=false only when not even MinDelay fits: then no retry can run
//     before the cut-off.
func (p Policy) Next(now time.Time, attempt int, cutoff time.Time, err error) (at time.Time, ok bool) {
	if p.LastChance(now, cutoff) {
		return time.Time{}, false
	}
	last := p.LastRetryAt(cutoff)
	wait := p.MinDelay
	if ra, has := rpcclient.RetryAfter(err); has {
		wait = max(wait, min(ra, p.RetryAfterMax))
	}
	delay := max(time.Duration(p.Rand()*float64(p.backoff(attempt))), wait)
	if at = ceilSecond(now.Add(delay)); at.After(last) {
		at = last
	}
	return at, true
}

// LastChance reports whether an attempt at now is the task's last before
// its cut-off: no retry would fit after it (Next answers ok=false).
func (p Policy) LastChance(now, cutoff time.Time) bool {
	return ceilSecond(now.Add(p.MinDelay)).After(p.LastRetryAt(cutoff))
}

// LastRetryAt answers the last instant a retry may be due at: the last
// whole second before cutoff − LastRetryLead (Next places none later).
func (p Policy) LastRetryAt(cutoff time.Time) time.Time {
	return lastSlot(cutoff.Add(-p.LastRetryLead))
}

// OrdinaryDeadline answers the start deadline of the requests of an
// attempt that is not the last chance: from it on an attempt would be the
// last chance (LastChance), so a request held past it — by the fleet's
// throttle, say — would take that chance's place. Before it, Next still
// places the last chance.
func (p Policy) OrdinaryDeadline(cutoff time.Time) time.Time {
	return p.LastRetryAt(cutoff).Add(-p.MinDelay + time.Nanosecond)
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if s := t.Truncate(time.Second); s.Before(t) {
		return s.Add(time.Second)
	}
	return t
}

// lastSlot answers the last whole second strictly before t.
func lastSlot(t time.Time) time.Time {
	s := t.Truncate(time.Second)
	if s.Equal(t) {
		s = s.Add(-time.Second)
	}
	return s
}

// backoff answers min(MaxDelay, BaseDelay·2^(attempt−1)) without overflow.
func (p Policy) backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := p.BaseDelay
	for i := 1; i < attempt && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}
