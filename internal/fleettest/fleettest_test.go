package fleettest

import (
	"testing"
	"time"
)

func TestMaxInWindow(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	cases := []struct {
		name string
		ts   []time.Time
		want int
	}{
		{"none", nil, 0},
		{"one", at(0), 1},
		{"window is half-open", at(0, 1000), 1},
		{"just inside", at(0, 999), 2},
		{"densest later", at(0, 1500, 1600, 1700, 2499), 4},
	}
	for _, tc := range cases {
		if got, _ := MaxInWindow(tc.ts, time.Second); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
