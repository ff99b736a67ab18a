package rpctest

import (
	"math"
	"testing"
)

func TestFaultMixIsAboutTwentyPercent(t *testing.T) {
	left := 1.0
	for _, r := range FaultMix() {
		if err := r.validate(); err != nil {
			t.Fatalf("rule %+v: %v", r, err)
		}
		left *= 1 - *r.Probability
	}
	if hit := 1 - left; math.Abs(hit-0.186) > 0.005 {
		t.Fatalf("the mix hits %.3f of calls, want about 0.186", hit)
	}
}
