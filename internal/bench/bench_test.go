package bench_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/refundd/refund-canceller/internal/bench"
	"github.com/refundd/refund-canceller/internal/redistest"
)

// TestMain lets the test binary be the benchmark's worker process, as
// cmd/refundbench's own binary is.
func TestMain(m *testing.M) {
	if served, err := bench.ServeAsChild(); served {
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A smoke test of the command: small counts, every figure printed, targets
// not judged (a loaded 2-core machine cannot promise them).
func TestShortRunPrintsEveryFigure(t *testing.T) {
	r := redistest.New(t)
	if r.Kind == "miniredis" {
		t.Skip("the benchmark needs a real Redis (INFO commandstats)")
	}
	var out bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Options{
		RedisURL: r.URL, Short: true, Out: &out,
		Child: func() *exec.Cmd { return exec.Command(os.Args[0], "-test.run=^$") },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"cancellations/s, concurrency 20", "refundd / minimal", "concurrency 200, 100ms latency", "ideal 2000",
		"in a process of its own", "idle pickup p50 / p99", "Redis load", "logins per 10,000 cancellations",
		"peak RSS of refundd", "≥ 0.95", "≥ 1900", "p99 ≤ 100ms", "≤ 2", "≤ 60 MB",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table misses %q:\n%s", want, out.String())
		}
	}
	if len(rep.Refundd) == 0 || len(rep.Minimal) == 0 || len(rep.RefunddHigh) == 0 || len(rep.PickupR) == 0 || rep.PeakRSS == 0 || rep.Logins == 0 {
		t.Errorf("figures missing: %+v", rep)
	}
	t.Log("\n" + out.String())
}
