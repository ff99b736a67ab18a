package worker

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func mustPolicy(t *testing.T, p Policy) Policy {
	t.Helper()
	p, err := p.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCutoff(t *testing.T) {
	p := mustPolicy(t, Policy{})
	if got := p.Cutoff(t0); !got.Equal(t0.Add(119 * time.Minute)) {
		t.Fatalf("cutoff %v", got)
	}
	if got := p.Closes(t0); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("closes %v", got)
	}
	// A margin larger than the window puts the cut-off before initiation.
	p = mustPolicy(t, Policy{Window: time.Minute, SafetyMargin: time.Hour})
	if got := p.Cutoff(t0); !got.Before(t0) {
		t.Fatalf("cutoff %v", got)
	}
}

func TestPolicyNext(t *testing.T) {
	retryAfter := func(d time.Duration) error {
		return &rpcclient.APIError{Name: rpcclient.NameHTTPStatus, HTTPStatus: 429, RetryAfter: d}
	}
	plain := errors.New("boom")
	cutoff := t0.Add(time.Hour)
	lead := 2 * time.Second
	last := cutoff.Add(-lead - time.Second) // the last whole second before cut-off − lead
	frac := 400 * time.Millisecond          // a now that is not a whole second
	cases := []struct {
		name    string
		now     time.Time
		attempt int
		rand    float64
		err     error
		wantOK  bool
		wantAt  time.Time
	}{
		{"first retry, max jitter, rounded up", t0, 1, 0.999999, plain, true, t0.Add(2 * time.Second)},
		{"first retry, zero jitter floors at MinDelay", t0, 1, 0, plain, true, t0.Add(time.Second)},
		{"MinDelay from a fraction rounds up", t0.Add(frac), 1, 0, plain, true, t0.Add(2 * time.Second)},
		{"attempt 0 treated as 1", t0, 0, 0.5, plain, true, t0.Add(time.Second)},
		{"attempt 5: base·16 = 32s", t0, 5, 0.5, plain, true, t0.Add(16 * time.Second)},
		{"attempt 1000 capped at MaxDelay", t0, 1000, 0.5, plain, true, t0.Add(150 * time.Second)},
		{"Retry-After beats jitter", t0, 1, 0.5, retryAfter(30 * time.Second), true, t0.Add(30 * time.Second)},
		{"Retry-After 3s from a fraction: never sooner on the wire", t0.Add(frac), 1, 0, retryAfter(3 * time.Second), true, t0.Add(4 * time.Second)},
		{"Retry-After 100000s cut to RetryAfterMax", t0, 1, 0, retryAfter(100000 * time.Second), true, t0.Add(5 * time.Minute)},
		{"Retry-After 3000s cut to RetryAfterMax", t0, 1, 0, retryAfter(3000 * time.Second), true, t0.Add(5 * time.Minute)},
		{"Retry-After crossing the cut-off: last retry just before it", cutoff.Add(-time.Minute), 1, 0.5, retryAfter(2 * time.Minute), true, last},
		{"Retry-After 3s fourteen seconds before the cut-off", cutoff.Add(-14 * time.Second), 1, 0, retryAfter(3 * time.Second), true, cutoff.Add(-11 * time.Second)},
		{"delay crosses: last retry just inside", cutoff.Add(-30 * time.Second), 1000, 0.9, plain, true, last},
		{"cut-off exactly now", cutoff, 1, 0.5, plain, false, time.Time{}},
		{"one ns after cut-off", cutoff.Add(time.Nanosecond), 1, 0.5, plain, false, time.Time{}},
		{"one ns before cut-off", cutoff.Add(-time.Nanosecond), 1, 0.5, plain, false, time.Time{}},
		{"MinDelay lands on the last slot: fits", last.Add(-time.Second), 1, 0, plain, true, last},
		{"MinDelay lands on cut-off − lead: no fit", cutoff.Add(-lead - time.Second), 1, 0, plain, false, time.Time{}},
		{"MinDelay one ns past the last slot: no fit", last.Add(-time.Second + time.Nanosecond), 1, 0, plain, false, time.Time{}},
		{"Retry-After huge, one slot left", last.Add(-time.Second), 1, 0, retryAfter(time.Hour), true, last},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, Policy{LastRetryLead: lead, Rand: func() float64 { return tc.rand }})
			at, ok := p.Next(tc.now, tc.attempt, cutoff, tc.err)
			if ok != tc.wantOK || !at.Equal(tc.wantAt) {
				t.Fatalf("Next = %v %v, want %v %v", at, ok, tc.wantAt, tc.wantOK)
			}
		})
	}
}

func TestPolicyDefaults(t *testing.T) {
	p := mustPolicy(t, Policy{MaxDelay: 7 * time.Minute})
	if p.RetryAfterMax != 7*time.Minute {
		t.Fatalf("RetryAfterMax %v, want MaxDelay", p.RetryAfterMax)
	}
	if p.LastRetryLead != LeadFor(DefaultDelayedTaskCheckInterval, DefaultTaskCheckInterval) || p.LastRetryLead >= 5*time.Second {
		t.Fatalf("LastRetryLead %v", p.LastRetryLead)
	}
}

// Property: whatever the inputs, a scheduled retry is a whole second after
// now, before cut-off − lead, no sooner than MinDelay, and no sooner than the
// (bounded) Retry-After unless it is the last slot before the cut-off; and
// Next gives up only when not even MinDelay fits.
func TestPolicyNextProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		p := mustPolicy(t, Policy{
			Window:        time.Duration(1 + rng.Int64N(int64(3*time.Hour))),
			SafetyMargin:  time.Duration(rng.Int64N(int64(10 * time.Minute))),
			BaseDelay:     time.Duration(1 + rng.Int64N(int64(10*time.Second))),
			MaxDelay:      time.Duration(int64(10*time.Second) + rng.Int64N(int64(10*time.Minute))),
			MinDelay:      time.Duration(1 + rng.Int64N(int64(3*time.Second))),
			RetryAfterMax: time.Duration(rng.Int64N(int64(30 * time.Minute))),
			LastRetryLead: time.Duration(rng.Int64N(int64(30 * time.Second))),
			Rand:          rng.Float64,
		})
		now := t0.Add(time.Duration(rng.Int64N(int64(time.Second))))
		initiated := now.Add(-time.Duration(rng.Int64N(int64(4 * time.Hour))))
		cutoff := p.Cutoff(initiated)
		last := cutoff.Add(-p.LastRetryLead)
		var ra time.Duration
		var err error = errors.New("x")
		if rng.IntN(2) == 0 {
			ra = time.Duration(rng.Int64N(int64(30 * time.Hour)))
			err = &rpcclient.APIError{Name: rpcclient.NameHTTPStatus, HTTPStatus: 503, RetryAfter: ra}
		}
		honoured := min(ra, p.RetryAfterMax)
		attempt := rng.IntN(2000)
		at, ok := p.Next(now, attempt, cutoff, err)
		fits := ceilSecond(now.Add(p.MinDelay)).Before(last)
		if ok != fits {
			t.Fatalf("case %d: ok=%v but a retry at now+MinDelay fits=%v (now %v, cut-off %v, lead %v)", i, ok, fits, now, cutoff, p.LastRetryLead)
		}
		if !ok {
			continue
		}
		lastSlot := !at.Add(time.Second).Before(last)
		switch {
		case at.Truncate(time.Second) != at:
			t.Fatalf("case %d: retry at %v is not a whole second", i, at)
		case at.Before(now.Add(p.MinDelay)) || !at.Before(last):
			t.Fatalf("case %d: retry at %v outside [now+MinDelay %v, cut-off − lead %v)", i, at, now.Add(p.MinDelay), last)
		case at.Before(now.Add(honoured)) && !lastSlot:
			t.Fatalf("case %d: retry at %v sooner than Retry-After %v (bounded %v) and not the last slot", i, at, ra, honoured)
		case at.After(ceilSecond(now.Add(max(p.MaxDelay, honoured)))):
			t.Fatalf("case %d: retry at %v later than the bounds allow", i, at)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, p := range []Policy{{SafetyMargin: -1}, {BaseDelay: time.Minute, MaxDelay: time.Second}, {Window: -time.Hour}} {
		if _, err := p.WithDefaults(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// An ordinary attempt's start deadline is the instant attempts become the
// last chance: before it, Next still places a retry (the last chance);
// from it on, LastChance holds.
func TestOrdinaryDeadlineIsWhereTheLastChanceBegins(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		p := mustPolicy(t, Policy{
			MinDelay:      time.Duration(1 + rng.Int64N(int64(3*time.Second))),
			LastRetryLead: time.Duration(rng.Int64N(int64(30 * time.Second))),
		})
		cutoff := t0.Add(time.Duration(rng.Int64N(int64(time.Minute))))
		dl := p.OrdinaryDeadline(cutoff)
		for _, now := range []time.Time{dl.Add(-time.Nanosecond), dl, dl.Add(time.Duration(rng.Int64N(int64(2*time.Second))) - time.Second)} {
			_, ok := p.Next(now, 1, cutoff, nil)
			if last := p.LastChance(now, cutoff); last == now.Before(dl) || ok == last {
				t.Fatalf("%+v cut-off %v: at %v (deadline %v) LastChance %v, Next ok %v", p, cutoff, now, dl, last, ok)
			}
		}
	}
}
