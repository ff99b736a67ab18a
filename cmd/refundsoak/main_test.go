package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestHelpExplains(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-help"}, &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, want := range []string{"redis-server", "-scenario", "-refunds", "SIGKILL", "go env GOMOD"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("-help does not mention %q:\n%s", want, errOut.String())
		}
	}
}

func TestBadFlagsAreErrorsNotPanics(t *testing.T) {
	for _, args := range [][]string{{"-scenario", "soak"}, {"-kills", "9"}, {"-refunds", "-3"}, {"extra"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestSmokeSoak runs the command's limits scenario at a tiny size: 60 refunds, one
// SIGKILL, one Redis restart. The killed replica's tasks come back only
// through asynq's recoverer, so it takes one to two minutes.
func TestSmokeSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak takes a minute or two (asynq's recoverer)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: redis-server is not on PATH")
		}
		t.Skip("redis-server not on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"-scenario", "limits", "-refunds", "60", "-kills", "1", "-timeout", "4m", "-q"}, &out, &errOut)
	if err != nil {
		t.Fatalf("soak: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	report := out.String()
	for _, want := range []string{"SIGKILL", "Redis restarted", "refunds lost (not CANCELED)", "false records", "longest stall, tasks pending"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "MISSED") || strings.Contains(report, "evidence kept") {
		t.Errorf("report:\n%s", report)
	}
}
