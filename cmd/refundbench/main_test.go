package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/refundd/refund-canceller/internal/bench"
	"github.com/refundd/refund-canceller/internal/redistest"
)

// TestMain lets the test binary be the command's worker process, as the
// command's own binary is when -rss starts it.
func TestMain(m *testing.M) {
	if served, err := bench.ServeAsChild(); served {
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The command's smoke test: -short prints the whole table, each figure
// beside its target. The targets are not judged here (a loaded machine
// cannot promise them; docs/performance.md records a measured run).
func TestShortPrintsTheTable(t *testing.T) {
	if testing.Short() {
		t.Skip("the benchmark's smoke test runs both pipelines for ~20s; not with -short")
	}
	r := redistest.New(t)
	if r.Kind == "miniredis" {
		t.Skip("the benchmark needs a real Redis (INFO commandstats)")
	}
	var out bytes.Buffer
	env := map[string]string{"REDIS_URL": r.URL}
	if err := run(context.Background(), []string{"-short", "-q"}, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		"cancellations/s, concurrency 20", "refundd / minimal", "CPU µs per cancellation", "Redis commands per cancellation",
		"ideal 2000", "in a process of its own", "idle pickup p50 / p99", "WORKER_POLL_INTERVAL=50ms", "idle replica's Redis load",
		"logins per 10,000 cancellations", "peak RSS of refundd at concurrency 200",
	} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("the table has no row %q:\n%s", row, out.String())
		}
	}
	for _, target := range []string{"≤ 1.25 × minimal", "≥ 1900", "p99 ≤ 1.5s", "p99 ≤ 100ms", "≤ max(10, 2 × minimal)", "≤ 2", "≤ 60 MB"} {
		if !strings.Contains(out.String(), target) {
			t.Errorf("the table misses the target %q", target)
		}
	}
	if strings.Contains(out.String(), "not measured") {
		t.Errorf("a figure was not measured:\n%s", out.String())
	}
}

func TestBadFlag(t *testing.T) {
	if err := run(context.Background(), []string{"-rounds", "x"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("a bad flag was accepted")
	}
}
