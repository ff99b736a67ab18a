package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/tasks"
)

const usage = `Usage:
  refundctl enqueue --order-ref REF --initiated-at RFC3339 [--reason TEXT] [--requested-by NAME]
  refundctl enqueue --file FILE.jsonl      one payload per line; --file - reads stdin
  refundctl status ORDER_REF

Common flags: --redis-url URL (default $REDIS_URL), --queue NAME (default $REFUND_QUEUE or refunds), --json
Payload line: {"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"…","requested_by":"…"}
`

type env struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

type usageError string

func (u usageError) Error() string { return string(u) }

// errReported: the failure was already printed.
var errReported = errors.New("reported")

type common struct {
	redisURL, queue string
	json            bool
}

func (c *common) register(fs *flag.FlagSet, e env) {
	fs.StringVar(&c.redisURL, "redis-url", e.getenv("REDIS_URL"), "Redis URL (default $REDIS_URL)")
	q := e.getenv("REFUND_QUEUE")
	if q == "" {
		q = tasks.DefaultQueue
	}
	fs.StringVar(&c.queue, "queue", q, "queue (default $REFUND_QUEUE or refunds)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

func (c *common) enqueuer() (*tasks.Enqueuer, error) {
	if c.redisURL == "" {
		return nil, usageError("REDIS_URL is not set and --redis-url not given")
	}
	opt, err := redisconn.Parse(c.redisURL)
	if err != nil {
		return nil, usageError("--redis-url " + config.RedactURL(c.redisURL) + " " + err.Error())
	}
	return tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: opt, Queue: c.queue})
}

// parseFlags parses args allowing flags after positional arguments
// ("status 73152889 --json"); the positionals are left in fs.Args().
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError(err.Error())
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// lineResult is the answer for one cancellation.
type lineResult struct {
	Line           int    `json:"line,omitempty"`
	OrderRef       string `json:"order_ref,omitempty"`
	Result         string `json:"result"` // queued | already_queued | rejected
	TaskID         string `json:"task_id,omitempty"`
	State          string `json:"state,omitempty"`
	WindowClosesAt string `json:"window_closes_at,omitempty"`
	Reason         string `json:"reason,omitempty"`
}

func enqueue(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	var c common
	c.register(fs, e)
	ref := fs.String("order-ref", "", "order reference")
	initiated := fs.String("initiated-at", "", "refund initiation time, RFC 3339")
	reason := fs.String("reason", "", "reason (optional)")
	by := fs.String("requested-by", "refundctl", "who asks (optional)")
	file := fs.String("file", "", "JSONL file of payloads, - for stdin")
	if rest, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("unexpected argument " + rest[0])
	}
	if (*file == "") == (*ref == "") {
		return usageError("give either --order-ref (with --initiated-at) or --file")
	}
	enq, err := c.enqueuer()
	if err != nil {
		return err
	}
	defer enq.Close()

	if *file == "" {
		p := tasks.CancelRefund{OrderRef: *ref, Reason: *reason, RequestedBy: *by}
		if *initiated == "" {
			return usageError("--initiated-at is required with --order-ref")
		}
		t, err := time.Parse(time.RFC3339, *initiated)
		if err != nil {
			return usageError("--initiated-at must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
		}
		p.RefundInitiatedAt = t
		r := enqueueOne(ctx, enq, p)
		printResult(e.stdout, c.json, r)
		if r.Result == "rejected" {
			return errReported
		}
		return nil
	}

	in := e.stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	return enqueueBulk(ctx, enq, in, e, c.json)
}

func enqueueOne(ctx context.Context, enq *tasks.Enqueuer, p tasks.CancelRefund) lineResult {
	r := lineResult{OrderRef: p.OrderRef, TaskID: tasks.TaskID(p.OrderRef)}
	info, err := enq.Enqueue(ctx, p)
	var aq *tasks.AlreadyQueuedError
	switch {
	case err == nil:
		r.Result, r.State = "queued", info.State.String()
		r.WindowClosesAt = p.WindowClosesAt().UTC().Format(time.RFC3339)
	case errors.As(err, &aq):
		r.Result, r.State = "already_queued", aq.State()
	default:
		r.Result, r.Reason, r.TaskID = "rejected", err.Error(), ""
	}
	return r
}

func enqueueBulk(ctx context.Context, enq *tasks.Enqueuer, in io.Reader, e env, asJSON bool) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), tasks.MaxPayloadBytes*2)
	counts := map[string]int{}
	var rejected []lineResult
	line := 0
	for sc.Scan() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		var r lineResult
		if p, err := tasks.DecodeStrict([]byte(text)); err != nil {
			r = lineResult{Result: "rejected", Reason: err.Error(), OrderRef: p.OrderRef}
		} else {
			r = enqueueOne(ctx, enq, p)
		}
		r.Line = line
		counts[r.Result]++
		if r.Result == "rejected" {
			rejected = append(rejected, r)
		}
		if asJSON {
			printResult(e.stdout, true, r)
		} else if total := counts["queued"] + counts["already_queued"] + counts["rejected"]; total%100 == 0 {
			fmt.Fprintf(e.stderr, "\r%d processed…", total)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	if !asJSON {
		fmt.Fprintf(e.stdout, "\rqueued %d, already queued %d, rejected %d\n", counts["queued"], counts["already_queued"], counts["rejected"])
		for _, r := range rejected {
			fmt.Fprintf(e.stdout, "  line %d %s: %s\n", r.Line, r.OrderRef, r.Reason)
		}
	}
	if len(rejected) > 0 {
		return errReported
	}
	return nil
}

func printResult(w io.Writer, asJSON bool, r lineResult) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
		return
	}
	switch r.Result {
	case "queued":
		fmt.Fprintf(w, "queued %s (window closes %s)\n", r.TaskID, r.WindowClosesAt)
	case "already_queued":
		fmt.Fprintf(w, "already queued: %s is %s\n", r.TaskID, r.State)
	default:
		fmt.Fprintf(w, "rejected %s: %s\n", r.OrderRef, r.Reason)
	}
}

// statusView is what `refundctl status` prints.
type statusView struct {
	TaskID        string          `json:"task_id"`
	Queue         string          `json:"queue"`
	State         string          `json:"state"`
	Retried       int             `json:"retried"`
	LastError     string          `json:"last_error,omitempty"`
	LastFailedAt  *time.Time      `json:"last_failed_at,omitempty"`
	NextProcessAt *time.Time      `json:"next_process_at,omitempty"`
	Payload       json.RawMessage `json:"payload"`
	Result        json.RawMessage `json:"result,omitempty"`
}

func status(args []string, e env) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var c common
	c.register(fs, e)
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("status takes one order reference")
	}
	enq, err := c.enqueuer()
	if err != nil {
		return err
	}
	defer enq.Close()
	info, err := enq.Status(rest[0])
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return fmt.Errorf("no cancellation task for order %s in queue %s", rest[0], c.queue)
	}
	if err != nil {
		return err
	}
	v := statusView{TaskID: info.ID, Queue: info.Queue, State: info.State.String(), Retried: info.Retried, LastError: info.LastErr,
		Payload: json.RawMessage(info.Payload)}
	if !info.LastFailedAt.IsZero() {
		v.LastFailedAt = &info.LastFailedAt
	}
	if !info.NextProcessAt.IsZero() {
		v.NextProcessAt = &info.NextProcessAt
	}
	if len(info.Result) > 0 && json.Valid(info.Result) {
		v.Result = info.Result
	}
	if c.json {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	fmt.Fprintf(e.stdout, "task:     %s (queue %s)\nstate:    %s\nretried:  %d\n", v.TaskID, v.Queue, v.State, v.Retried)
	if v.LastError != "" {
		fmt.Fprintf(e.stdout, "last error: %s\n", v.LastError)
	}
	if v.NextProcessAt != nil && (v.State == "retry" || v.State == "scheduled") {
		fmt.Fprintf(e.stdout, "next try: %s\n", v.NextProcessAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(e.stdout, "payload:  %s\n", v.Payload)
	if v.Result != nil {
		fmt.Fprintf(e.stdout, "result:   %s\n", v.Result)
	}
	return nil
}
