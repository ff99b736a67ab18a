// Command refundbench measures refundd beside a minimal asynq pipeline doing
// the same job, on one Redis, against one no-op JSON-RPC server, and prints
// each figure beside its target. See internal/bench and
// docs/performance.md.
//
//	go run ./cmd/refundbench            # REDIS_URL, else a redis-server of its own
//	go run ./cmd/refundbench -short     # a smoke test: small counts
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/refundd/refund-canceller/internal/bench"
)

func main() {
	if served, err := bench.ServeAsChild(); served {
		if err != nil {
			fmt.Fprintln(os.Stderr, "refundbench worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "refundbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o := bench.Options{Out: stdout, RedisURL: getenv("REDIS_URL")}
	fs := flag.NewFlagSet("refundbench", flag.ContinueOnError)
	fs.BoolVar(&o.Short, "short", false, "small counts: a smoke test of the command, not a measurement")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds per pipeline of each throughput figure (default 9)")
	fs.IntVar(&o.Tasks, "tasks", 0, "tasks per round at -concurrency (default 3000)")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "concurrency of the first throughput figure (default 20)")
	fs.IntVar(&o.HighTasks, "high-tasks", 0, "tasks per round at concurrency 200, 100 ms latency (default 12000)")
	fs.IntVar(&o.Pickups, "pickups", 0, "idle pickups timed (default 200)")
	fs.DurationVar(&o.Idle, "idle", 0, "how long idle Redis load is counted (default 5s)")
	rss := fs.Bool("rss", true, "measure refundd's peak RSS in a process of its own")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*quiet {
		o.Progress = os.Stderr
	}
	if *rss {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.Child = func() *exec.Cmd { return exec.Command(self) }
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	_, err := bench.Run(ctx, o)
	return err
}
