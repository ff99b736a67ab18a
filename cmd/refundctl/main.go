// Command refundctl enqueues refund cancellations and shows their state:
//
//	refundctl enqueue --order-ref 73152889 --initiated-at 2026-11-25T10:00:00Z [--reason …]
//	refundctl enqueue --file cancellations.jsonl   (or --file - for stdin)
//	refundctl status 73152889
//
// It reads REDIS_URL and REFUND_QUEUE like refundd (or --redis-url, --queue);
// --json prints machine-readable output. Exit status: 0 success, 1 a
// cancellation was rejected or failed, 2 bad usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "enqueue":
		err = enqueue(ctx, args[1:], e)
	case "status":
		err = status(args[1:], e)
	case "-h", "--help", "help":
		fmt.Fprint(e.stdout, usage)
		return 0
	default:
		err = usageError("unknown command " + args[0])
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "refundctl: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, errReported):
		return 1
	default:
		fmt.Fprintln(e.stderr, "refundctl:", err)
		return 1
	}
}
