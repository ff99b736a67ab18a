// Command refundsoak is the soak of issue 23 with real processes: its own
// redis-server (append-only, restarted mid-run), refundd replicas built
// from ./cmd/refundd and run as child processes (SIGKILLed and replaced
// mid-run), the sandbox 2Checkout in-process as the independent witness.
// It prints each figure beside its target and exits 1 if any is missed.
// The logic is in internal/soak; see docs/replicas.md ("The soak").
//
//	go run ./cmd/refundsoak                      # both scenarios, several minutes
//	go run ./cmd/refundsoak -scenario limits -refunds 500 -kills 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/refundd/refund-canceller/internal/soak"
)

// errMissed: the soak ran and a figure missed its target.
var errMissed = errors.New("a target was missed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "refundsoak:", err)
		os.Exit(1)
	}
}

const usage = `refundsoak proves liveness and correctness of refundd under kills, with
real processes, and prints each figure beside its target ("met"/"MISSED");
it exits 1 if any target is missed.

Run it from inside the repository (it builds ./cmd/refundd with go build,
finding the module root with "go env GOMOD"). It needs redis-server on PATH:
it starts its own on a free loopback port in a temp dir (appendonly yes,
no snapshots) and never touches any other Redis. The temp dir (Redis
files, replica logs, per-second series) is removed at the end unless a
target is missed, -keep is given, or the soak fails (not on Ctrl-C); its
path is printed.

Scenarios:
  mix     10,000 refunds, 2 replicas, 3 SIGKILLs (at 15%, 35%, 55% of
          refunds cancelled, each replaced at once) and a Redis restart (at
          45%): first with no vendor fault, then (new queue and merchant)
          with the 20% fault mix. Throughput of the mix run to 99%
          cancelled must be ≥ 60% of the fault-free run's: the runs differ
          only in the vendor's faults.
  limits  5,000 refunds, 2 replicas, TCO_RATE_LIMIT=400 TCO_RATE_BURST=20
          DISPATCH_SLOTS=20, the mix, the same kills and Redis restart. The
          longest stretch with tasks pending and none finishing must be
          under 60 s.
Every run: 0 refunds lost, cancelled twice, cancelled late, 0 false records,
every task completed or archived within -timeout. Judged only from the
sandbox's ledger and refund states and asynq's Inspector.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("refundsoak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var o soak.Options
	fs.StringVar(&o.Plan.Scenario, "scenario", "all", "mix, limits or all")
	fs.IntVar(&o.Plan.Refunds, "refunds", 0, "refunds of every run (default: mix 10000, limits 5000)")
	fs.IntVar(&o.Plan.Kills, "kills", soak.MaxKills, fmt.Sprintf("SIGKILLs in each disrupted run, 0 to %d", soak.MaxKills))
	fs.BoolVar(&o.Plan.RedisRestart, "redis-restart", true, "restart Redis once in each disrupted run")
	fs.DurationVar(&o.Plan.Latency, "latency", soak.DefaultLatency, "the sandbox's answer time, plus up to half as much at random (negative: none)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "time limit of each run from its replicas' start (default 10m)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir even when every target is met")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -help)", fs.Args())
	}
	o.Out = stdout
	if !*quiet {
		o.Progress = stderr
	}
	res, err := soak.Run(ctx, o)
	if err != nil {
		return err
	}
	if len(res.Missed) > 0 {
		return fmt.Errorf("%w: %d figures", errMissed, len(res.Missed))
	}
	return nil
}
