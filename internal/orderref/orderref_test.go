package orderref_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/refundd/refund-canceller/internal/orderref"
)

func TestValid(t *testing.T) {
	for ref, want := range map[string]bool{
		"73152889":              true,
		"A-b_9":                 true,
		strings.Repeat("7", 32): true,
		strings.Repeat("7", 33): false,
		"":                      false,
		"7315 2889":             false,
		"73152889\n":            false,
		"7315:2889":             false,
		"Ü1":                    false,
		"../admin":              false,
	} {
		if got := orderref.Valid(ref); got != want {
			t.Errorf("Valid(%q) = %v, want %v", ref, got, want)
		}
	}
}

// FuzzValid holds Valid to the rule as a regular expression says it.
func FuzzValid(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	for _, s := range []string{"73152889", "A-b_9", "", "a\n", "Ü1", strings.Repeat("z", 33), "[", "`", "@", "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if got, want := orderref.Valid(ref), re.MatchString(ref); got != want {
			t.Fatalf("Valid(%q) = %v, the rule says %v", ref, got, want)
		}
	})
}
