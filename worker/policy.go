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
	// LastRetryLead: when the next delay would cross the cut-off, the last
	// retry is placed this long before it, so the queue has time to hand it
	// to a worker. Default 10s.
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
	DefaultLastRetryLead  = 10 * time.Second
)

// withDefaults validates p and fills in its zero fields.
func (p Policy) withDefaults() (Policy, error) {
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
		{"LastRetryLead", &p.LastRetryLead, DefaultLastRetryLead},
	} {
		if err := defaults.Fill(d.name, d.v, d.def); err != nil {
			return p, fmt.Errorf("policy: %w", err)
		}
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
// failed with err at now, or ok=false when no retry fits before cutoff. A
// retry is never placed at or after cutoff − LastRetryLead, and never sooner
// than the server's Retry-After.
func (p Policy) Next(now time.Time, attempt int, cutoff time.Time, err error) (at time.Time, ok bool) {
	last := cutoff.Add(-p.LastRetryLead)
	earliest := p.MinDelay
	if ra, has := rpcclient.RetryAfter(err); has && ra > earliest {
		earliest = ra
	}
	if !now.Add(earliest).Before(last) {
		return time.Time{}, false
	}
	delay := time.Duration(p.Rand() * float64(p.backoff(attempt)))
	if delay < earliest {
		delay = earliest
	}
	if at = now.Add(delay); at.Before(last) {
		return at, true
	}
	return last.Add(-time.Nanosecond), true // the last retry, just inside
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
