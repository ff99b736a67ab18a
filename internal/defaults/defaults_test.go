package defaults_test

import (
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/defaults"
)

func TestFill(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
		err      string
	}{
		{0, time.Minute, ""},
		{time.Second, time.Second, ""},
		{time.Nanosecond, time.Nanosecond, ""},
		{-time.Nanosecond, -time.Nanosecond, "Timeout -1ns: must not be negative"},
	} {
		v := tc.in
		err := defaults.Fill("Timeout", &v, time.Minute)
		if v != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("Fill(%v) = %v, %v; want %v, %q", tc.in, v, err, tc.want, tc.err)
		}
	}
	n := int64(0)
	if err := defaults.Fill("MaxBytes", &n, 1<<20); err != nil || n != 1<<20 {
		t.Errorf("int64: %d, %v", n, err)
	}
}
