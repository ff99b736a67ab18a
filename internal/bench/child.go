package bench

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/internal/logging"
)

// ChildEnv, set to "1" in a process's environment, marks it as the worker
// the benchmark started to measure refundd's memory in a process of its
// own: its main calls RunChild instead of the benchmark.
const ChildEnv = "REFUNDBENCH_WORKER"

// ServeAsChild runs this process as the benchmark's worker (RunChild from
// the environment, until SIGINT or SIGTERM) if ChildEnv asks it to, and
// answers whether it did. cmd/refundbench's main and the test binaries'
// TestMain call it first, and exit when it answers true.
func ServeAsChild() (served bool, err error) {
	if os.Getenv(ChildEnv) != "1" {
		return false, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return true, RunChild(ctx, os.Getenv)
}

// RunChild runs the daemon configured by getenv until ctx ends: the
// configuration, logger and daemon cmd/refundd builds, without its routing
// of other libraries' logs and its effective-configuration line.
func RunChild(ctx context.Context, getenv func(string) string) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
