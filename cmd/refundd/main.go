// Command refundd is the refund-cancellation worker: it takes refund:cancel
// tasks from Redis and cancels each refund through 2Checkout's JSON-RPC API
// within its 2-hour window. `refundd demo` runs the whole job in-process
// with no setup. Configuration is the environment: see `refundd --help`.
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

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/internal/demo"
	"github.com/refundd/refund-canceller/internal/logging"
)

const usage = `refundd cancels 2Checkout refunds queued as asynq tasks.

Usage:
  refundd            run the worker (configured by the environment below)
  refundd demo       run everything in-process with no setup (nothing is durable)
      --exit-when-done   end when every task has finished (for scripts)
      --orders N         cancellable refunds to seed (default 40)
      --ops-addr ADDR    ops server address (default 127.0.0.1:8080)
  refundd --help     this text

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "refundd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage, config.Usage())
			return nil
		case "demo":
			return runDemo(ctx, args[1:], getenv, stdout)
		default:
			return fmt.Errorf("unknown argument %q (see refundd --help)", args[0])
		}
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	logging.RouteGlobal(log)
	log.Info("configuration", zap.Any("effective", cfg.Effective(getenv)))
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("refundd demo", flag.ContinueOnError)
	exit := fs.Bool("exit-when-done", false, "end when every task has finished")
	orders := fs.Int("orders", 40, "cancellable refunds to seed")
	addr := fs.String("ops-addr", "127.0.0.1:8080", "ops server address")
	fs.SetOutput(stdout)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil // the usage went to stdout
	} else if err != nil {
		return err
	}
	level := getenv("LOG_LEVEL")
	if level == "" {
		level = "error" // keep the progress line readable
	}
	log, err := logging.New(level, "console")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	logging.RouteGlobal(log)
	_, err = demo.Run(ctx, demo.Options{Orders: *orders, ExitWhenDone: *exit, OpsAddr: *addr, Out: stdout, Logger: log})
	return err
}
