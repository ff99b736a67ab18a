package clip_test

import (
	"testing"
	"unicode/utf8"

	"github.com/refundd/refund-canceller/internal/clip"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"abcd", 0, "…"},
		{"aÜb", 2, "a…"},  // Ü is 2 bytes: not cut in half
		{"aÜb", 3, "aÜ…"}, // the whole rune fits
		{"ÜÜ", 1, "…"},
	} {
		got := clip.String(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("String(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
