package demo

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDemoRunsToItsSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	sum, err := Run(ctx, Options{Orders: 20, ExitWhenDone: true, OpsAddr: "127.0.0.1:0", Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	c := sum.Counts
	// 20 cancellable (some after transient faults; a lost answer ends
	// already_cancelled), 3 already cancelled, 3 completed + 1 unknown
	// refused, 3 past the safety margin, 2 refused at enqueue.
	if c["cancelled"]+c["already_cancelled"] != 23 || c["already_cancelled"] < 3 || c["refused"] != 4 || c["window_closed"] != 3 || c["rejected_at_enqueue"] != 2 {
		t.Fatalf("counts %v\n%s", c, out.String())
	}
	for _, want := range []string{"NOTHING IS DURABLE", "Summary", "2Checkout refused: 20004 REFUND_NOT_CANCELLABLE", "window closed at"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output misses %q", want)
		}
	}
	// One session for every worker; the demo's bursts of faults can make
	// the fleet probe 2Checkout, which is a login too.
	if m := regexp.MustCompile(`(\d+) logins`).FindStringSubmatch(out.String()); m == nil || m[1] == "0" || len(m[1]) > 1 || m[1] > "3" {
		t.Errorf("logins: %v, want 1 to 3", m)
	}
}
