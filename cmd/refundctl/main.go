// Command refundctl enqueues refund cancellations and shows their state:
//
//	refundctl enqueue --order-ref 73152889 --initiated-at 2026-11-25T10:00:00Z [--reason …]
//	refundctl enqueue --file cancellations.jsonl   (or --file - for stdin)
//	refundctl status 73152889                      (every cancellation of the order)
//	refundctl status --initiated-at 2026-11-25T10:00:00Z 73152889
//	refundctl rerun --initiated-at 2026-11-25T10:00:00Z 73152889
//
// It reads REDIS_URL (with REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE) and
// REFUND_QUEUE like refundd (or --redis-url, --queue);
// --json prints every answer, errors included, as JSON on stdout. Exit
// status: 0 success; 1 a cancellation was rejected (or none was found);
// 2 bad usage; 3 the queue is unavailable (Redis unreachable: nothing was
// decided, run it again).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// go-redis's own log lines would only repeat, in another format, the
	// errors refundctl reports.
	logging.RouteGlobal(zap.NewNop())
	code := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	asJSON := false
	for _, a := range args {
		asJSON = asJSON || a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true"
	}
	if len(args) == 0 {
		return report(usageError("no command given"), e, asJSON)
	}
	var err error
	switch args[0] {
	case "enqueue":
		err = enqueue(ctx, args[1:], e)
	case "status":
		err = status(args[1:], e)
	case "rerun":
		err = rerun(args[1:], e)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	default:
		err = usageError("unknown command " + args[0])
	}
	return report(err, e, asJSON)
}

// report prints err (as JSON on stdout with --json, else on stderr) and
// answers the exit status.
func report(err error, e env, asJSON bool) int {
	var ce *cliError
	var done errReported
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &done):
		return done.code
	case !errors.As(err, &ce):
		ce = &cliError{Kind: "error", Msg: err.Error(), code: exitRejected}
	}
	switch {
	case asJSON:
		b, _ := json.Marshal(ce)
		fmt.Fprintln(e.stdout, string(b))
	case ce.Kind == "usage":
		fmt.Fprintf(e.stderr, "refundctl: %s\n\n%s", ce.Msg, usage)
	default:
		fmt.Fprintln(e.stderr, "refundctl:", ce.Msg)
	}
	return ce.code
}
