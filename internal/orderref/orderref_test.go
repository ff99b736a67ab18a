package orderref_test

import (
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
