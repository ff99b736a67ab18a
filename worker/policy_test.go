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
	p, err := p.withDefaults()
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
	last := cutoff.Add(-DefaultLastRetryLead)
	cases := []struct {
		name    string
		now     time.Time
		attempt int
		rand    float64
		err     error
		wantOK  bool
		wantAt  time.Time
	}{
		{"first retry, max jitter", t0, 1, 0.999999, plain, true, t0.Add(time.Duration(0.999999 * float64(2*time.Second)))},
		{"first retry, zero jitter floors at MinDelay", t0, 1, 0, plain, true, t0.Add(time.Second)},
		{"attempt 0 treated as 1", t0, 0, 0.5, plain, true, t0.Add(time.Second)},
		{"attempt 5: base·16 = 32s", t0, 5, 0.5, plain, true, t0.Add(16 * time.Second)},
		{"attempt 1000 capped at MaxDelay", t0, 1000, 0.5, plain, true, t0.Add(150 * time.Second)},
		{"Retry-After beats jitter", t0, 1, 0.5, retryAfter(30 * time.Second), true, t0.Add(30 * time.Second)},
		{"Retry-After longer than the window left", cutoff.Add(-time.Minute), 1, 0.5, retryAfter(2 * time.Minute), false, time.Time{}},
		{"delay crosses: last retry just inside", cutoff.Add(-30 * time.Second), 1000, 0.9, plain, true, last.Add(-time.Nanosecond)},
		{"cut-off exactly now", cutoff, 1, 0.5, plain, false, time.Time{}},
		{"one ns after cut-off", cutoff.Add(time.Nanosecond), 1, 0.5, plain, false, time.Time{}},
		{"one ns before cut-off", cutoff.Add(-time.Nanosecond), 1, 0.5, plain, false, time.Time{}},
		{"MinDelay just fits before last", last.Add(-time.Second - time.Nanosecond), 1, 0, plain, true, last.Add(-time.Nanosecond)},
		{"MinDelay lands on last: no fit", last.Add(-time.Second), 1, 0, plain, false, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, Policy{Rand: func() float64 { return tc.rand }})
			at, ok := p.Next(tc.now, tc.attempt, cutoff, tc.err)
			if ok != tc.wantOK || !at.Equal(tc.wantAt) {
				t.Fatalf("Next = %v %v, want %v %v", at, ok, tc.wantAt, tc.wantOK)
			}
		})
	}
}

// Property: whatever the inputs, a scheduled retry is after now, no sooner
// than Retry-After, and before the cut-off minus the lead.
func TestPolicyNextProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 100000 {
		p := mustPolicy(t, Policy{
			Window:        time.Duration(rng.Int64N(int64(3 * time.Hour))),
			SafetyMargin:  time.Duration(rng.Int64N(int64(10 * time.Minute))),
			BaseDelay:     time.Duration(1 + rng.Int64N(int64(10*time.Second))),
			MaxDelay:      time.Duration(int64(10*time.Second) + rng.Int64N(int64(10*time.Minute))),
			LastRetryLead: time.Duration(rng.Int64N(int64(30 * time.Second))),
			Rand:          rng.Float64,
		})
		initiated := t0.Add(-time.Duration(rng.Int64N(int64(4 * time.Hour))))
		cutoff := p.Cutoff(initiated)
		var ra time.Duration
		var err error = errors.New("x")
		if rng.IntN(3) == 0 {
			ra = time.Duration(rng.Int64N(int64(20 * time.Minute)))
			err = &rpcclient.APIError{Name: rpcclient.NameHTTPStatus, HTTPStatus: 503, RetryAfter: ra}
		}
		attempt := rng.IntN(2000)
		at, ok := p.Next(t0, attempt, cutoff, err)
		if !ok {
			continue
		}
		if !at.After(t0) || at.Before(t0.Add(ra)) || !at.Before(cutoff.Add(-p.LastRetryLead)) {
			t.Fatalf("case %d: retry at %v (now %v, cutoff %v, lead %v, retry-after %v)", i, at, t0, cutoff, p.LastRetryLead, ra)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, p := range []Policy{{SafetyMargin: -1}, {BaseDelay: time.Minute, MaxDelay: time.Second}, {Window: -time.Hour}} {
		if _, err := p.withDefaults(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
