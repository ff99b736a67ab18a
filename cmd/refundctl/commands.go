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
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/tasks"
)

const usage = `Usage:
  refundctl enqueue --order-ref REF --initiated-at RFC3339 [--reason TEXT] [--requested-by NAME]
  refundctl enqueue --file FILE.jsonl      one payload per line; --file - reads stdin
  refundctl status ORDER_REF                          every cancellation of the order, newest refund first
  refundctl status --initiated-at RFC3339 ORDER_REF   the cancellation of that refund
  refundctl rerun --initiated-at RFC3339 ORDER_REF    try a finished (not cancelled) cancellation again, keeping its history
  refundctl help [COMMAND]

Common flags: --redis-url URL (default $REDIS_URL; TLS files: $REDIS_CA_FILE, $REDIS_CERT_FILE, $REDIS_KEY_FILE), --queue NAME (default $REFUND_QUEUE or refunds), --json
Payload line: {"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"…","requested_by":"…"}
Exit status: 0 done; 1 rejected or not found; 2 bad usage; 3 the queue is unavailable (nothing was decided: run it again)
`

// Exit statuses.
const (
	exitOK          = 0
	exitRejected    = 1
	exitUsage       = 2
	exitUnavailable = 3
)

// Results of one cancellation.
const (
	resultQueued        = "queued"
	resultAlreadyQueued = "already_queued"
	resultRejected      = "rejected"
	// resultUnavailable: Redis could not be reached; nothing was decided.
	resultUnavailable = "unavailable"
)

type env struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// cliError is a failure with its kind (usage, rejected, not_found,
// unavailable, interrupted, error) and exit status.
type cliError struct {
	Kind string `json:"kind"`
	Msg  string `json:"error"`
	code int
}

func (e *cliError) Error() string { return e.Msg }

func usageError(msg string) error { return &cliError{Kind: "usage", Msg: msg, code: exitUsage} }

// errReported: the failure was already printed; its status is in code.
type errReported struct{ code int }

func (e errReported) Error() string { return "reported" }

// errHelp: --help was asked; the command's usage was printed.
var errHelp = errors.New("help")

type common struct {
	redisURL, queue string
	json            bool
	redis           redisconn.Settings // the REDIS_*_FILE TLS files; the URL is redisURL
}

func (c *common) register(fs *flag.FlagSet, e env) {
	c.redis = redisconn.FromEnv(e.getenv)
	fs.StringVar(&c.redisURL, "redis-url", e.getenv("REDIS_URL"), "Redis URL (default $REDIS_URL)")
	q := e.getenv("REFUND_QUEUE")
	if q == "" {
		q = tasks.DefaultQueue
	}
	fs.StringVar(&c.queue, "queue", q, "queue (default $REFUND_QUEUE or refunds)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

func (c *common) enqueuer() (*tasks.Enqueuer, error) {
	opt, err := c.redisOpt()
	if err != nil {
		return nil, err
	}
	return tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: opt, Queue: c.queue})
}

// redisOpt reads --redis-url (REDIS_URL) and the REDIS_*_FILE variables
// through redisconn, as refundd does.
func (c *common) redisOpt() (asynq.RedisConnOpt, error) {
	if c.redisURL == "" {
		return nil, usageError("REDIS_URL is not set and --redis-url not given")
	}
	s := c.redis
	s.URL = c.redisURL
	opt, err := redisconn.Open(s)
	if err != nil {
		// redisconn's errors never show the password.
		return nil, usageError(err.Error() + " (--redis-url stands for REDIS_URL; a Redis URL is redis://, rediss://, redis-socket://, redis-sentinel://, redis-cluster:// or rediss-cluster://)")
	}
	return opt, nil
}

// reader is what status and rerun read and move: the queue's tasks and the
// refunds' records.
type reader struct {
	insp   *asynq.Inspector
	rc     redis.UniversalClient
	recs   *records.Store
	lookup *taskview.Lookup
}

func (r *reader) Close() error { return errors.Join(r.insp.Close(), r.rc.Close()) }

func (c *common) reader() (*reader, error) {
	opt, err := c.redisOpt()
	if err != nil {
		return nil, err
	}
	rc := redisconn.NewClient(opt)
	insp := asynq.NewInspectorFromRedisClient(rc)
	recs := records.New(rc, c.queue, 0)
	return &reader{insp: insp, rc: rc, recs: recs, lookup: taskview.NewLookup(insp, recs, c.queue)}, nil
}

// parseFlags parses args allowing flags after positional arguments
// ("status 73152889 --json"); it answers the positionals. For --help it
// prints the command's usage to stdout and answers errHelp.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "%s\nFlags of %s:\n", usage, fs.Name())
			fs.PrintDefaults()
			return nil, errHelp
		} else if err != nil {
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
	Result         string `json:"result"` // queued | already_queued | rejected | unavailable
	TaskID         string `json:"task_id,omitempty"`
	State          string `json:"state,omitempty"`
	WindowClosesAt string `json:"window_closes_at,omitempty"`
	Reason         string `json:"reason,omitempty"`
}

// exitCode answers the exit status for a set of results.
func exitCode(counts map[string]int) int {
	switch {
	case counts[resultUnavailable] > 0:
		return exitUnavailable
	case counts[resultRejected] > 0:
		return exitRejected
	}
	return exitOK
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
	if rest, err := parseFlags(fs, args, e.stdout); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("unexpected argument " + rest[0])
	}
	if (*file == "") == (*ref == "") {
		return usageError("give either --order-ref (with --initiated-at) or --file")
	}
	var p tasks.CancelRefund
	if *file == "" {
		if *initiated == "" {
			return usageError("--initiated-at is required with --order-ref")
		}
		t, err := time.Parse(time.RFC3339, *initiated)
		if err != nil {
			return usageError("--initiated-at must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
		}
		p = tasks.CancelRefund{OrderRef: *ref, RefundInitiatedAt: t, Reason: *reason, RequestedBy: *by}
	}
	var in io.Reader = e.stdin
	if *file != "" && *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return usageError(err.Error())
		}
		defer f.Close()
		in = f
	}
	enq, err := c.enqueuer()
	if err != nil {
		return err
	}
	defer enq.Close()

	if *file == "" {
		r := enqueueOne(ctx, enq, p)
		printResult(e.stdout, c.json, r)
		if code := exitCode(map[string]int{r.Result: 1}); code != exitOK {
			return errReported{code}
		}
		return nil
	}
	return enqueueBulk(ctx, enq, in, e, c.json)
}

func enqueueOne(ctx context.Context, enq *tasks.Enqueuer, p tasks.CancelRefund) lineResult {
	r := lineResult{OrderRef: p.OrderRef, TaskID: p.TaskID()}
	info, err := enq.Enqueue(ctx, p)
	var aq *tasks.AlreadyQueuedError
	switch {
	case err == nil:
		r.Result, r.TaskID, r.State = resultQueued, info.ID, info.State.String()
		r.WindowClosesAt = p.WindowClosesAt().UTC().Format(time.RFC3339)
	case errors.As(err, &aq):
		r.Result, r.TaskID, r.State = resultAlreadyQueued, aq.TaskID, aq.State()
	case errors.Is(err, tasks.ErrInvalidPayload) || errors.Is(err, tasks.ErrWindowClosed):
		r.Result, r.Reason = resultRejected, err.Error()
	default:
		r.Result, r.Reason = resultUnavailable, "the queue is unavailable, nothing was decided: "+err.Error()
	}
	return r
}

// maxLine is the longest line read: one payload.
const maxLine = tasks.MaxPayloadBytes

// readLine reads one line of at most maxLine bytes. A longer line is read
// to its end and answered with tooLong, so the next line starts cleanly.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return line, tooLong, err
		}
		if !tooLong {
			if len(line)+len(chunk) > maxLine {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if !isPrefix {
			return line, tooLong, nil
		}
	}
}

// enqueueBulk enqueues one payload per line. Every line gets its own result
// and the summary always prints; once the queue is unavailable the rest of
// the payloads are still checked but not sent.
func enqueueBulk(ctx context.Context, enq *tasks.Enqueuer, in io.Reader, e env, asJSON bool) error {
	br := bufio.NewReaderSize(in, 64<<10)
	counts := map[string]int{}
	var failed []lineResult
	var stopped error
	line := 0
	unavailable := false
	for {
		if ctx.Err() != nil {
			stopped = &cliError{Kind: "interrupted", Msg: fmt.Sprintf("interrupted after line %d: the lines after it were not read", line), code: exitRejected}
			break
		}
		raw, tooLong, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			stopped = &cliError{Kind: "error", Msg: fmt.Sprintf("reading line %d: %v", line+1, err), code: exitRejected}
			break
		}
		line++
		text := strings.TrimSpace(string(raw))
		if !tooLong && (text == "" || strings.HasPrefix(text, "#")) {
			continue
		}
		var r lineResult
		if tooLong {
			r = lineResult{Result: resultRejected, Reason: fmt.Sprintf("payload: the line is longer than %d bytes", maxLine)}
		} else if p, err := tasks.DecodeStrict([]byte(text)); err != nil {
			r = lineResult{Result: resultRejected, Reason: err.Error(), OrderRef: p.OrderRef}
		} else if unavailable {
			r = lineResult{Result: resultUnavailable, OrderRef: p.OrderRef, Reason: "not sent: the queue was unavailable"}
		} else {
			r = enqueueOne(ctx, enq, p)
			unavailable = r.Result == resultUnavailable
		}
		r.Line = line
		counts[r.Result]++
		if asJSON {
			printResult(e.stdout, true, r)
		} else if r.Result == resultRejected || r.Result == resultUnavailable {
			failed = append(failed, r)
		}
		if total := line; !asJSON && total%100 == 0 {
			fmt.Fprintf(e.stderr, "\r%d lines…", total)
		}
	}
	summary := struct {
		Lines         int `json:"lines"`
		Queued        int `json:"queued"`
		AlreadyQueued int `json:"already_queued"`
		Rejected      int `json:"rejected"`
		Unavailable   int `json:"unavailable"`
	}{line, counts[resultQueued], counts[resultAlreadyQueued], counts[resultRejected], counts[resultUnavailable]}
	if asJSON {
		b, _ := json.Marshal(map[string]any{"summary": summary})
		fmt.Fprintln(e.stdout, string(b))
	} else {
		fmt.Fprintf(e.stdout, "\rqueued %d, already queued %d, rejected %d, unavailable %d (%d lines)\n",
			summary.Queued, summary.AlreadyQueued, summary.Rejected, summary.Unavailable, summary.Lines)
		for _, r := range failed {
			fmt.Fprintf(e.stdout, "  line %d %s %s: %s\n", r.Line, r.Result, r.OrderRef, r.Reason)
		}
	}
	if stopped != nil {
		return stopped
	}
	if code := exitCode(counts); code != exitOK {
		return errReported{code}
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
	case resultQueued:
		fmt.Fprintf(w, "queued %s (window closes %s)\n", r.TaskID, r.WindowClosesAt)
	case resultAlreadyQueued:
		fmt.Fprintf(w, "already queued: %s is %s\n", r.TaskID, r.State)
	default:
		fmt.Fprintf(w, "%s %s: %s\n", r.Result, r.OrderRef, r.Reason)
	}
}

func status(args []string, e env) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var c common
	c.register(fs, e)
	initiatedAt := fs.String("initiated-at", "", "the refund's initiation time, RFC 3339 (without it: every refund of the order)")
	rest, err := parseFlags(fs, args, e.stdout)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("status takes one order reference")
	}
	var initiated time.Time
	if *initiatedAt != "" {
		if initiated, err = time.Parse(time.RFC3339, *initiatedAt); err != nil {
			return usageError("--initiated-at must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
		}
	}
	rd, err := c.reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	ctx := context.Background()
	if *initiatedAt == "" {
		views, err := rd.lookup.Order(ctx, rest[0])
		if err != nil {
			return lookupError(err, fmt.Sprintf("no cancellation of order %s in queue %s", rest[0], c.queue))
		}
		if c.json {
			b, _ := json.MarshalIndent(taskview.OrderView{OrderRef: rest[0], Cancellations: views}, "", "  ")
			fmt.Fprintln(e.stdout, string(b))
			return nil
		}
		for _, v := range views {
			fmt.Fprintln(e.stdout, oneLine(v))
		}
		return nil
	}
	v, err := rd.lookup.Refund(ctx, rest[0], initiated)
	if err != nil {
		return lookupError(err, fmt.Sprintf("no cancellation task %s in queue %s", tasks.TaskID(rest[0], initiated), c.queue))
	}
	if c.json {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	printView(e.stdout, v)
	return nil
}

func lookupError(err error, notFound string) error {
	if errors.Is(err, taskview.ErrNotFound) {
		return &cliError{Kind: "not_found", Msg: notFound, code: exitRejected}
	}
	return &cliError{Kind: "unavailable", Msg: "the queue is unavailable: " + err.Error(), code: exitUnavailable}
}

// oneLine is one cancellation of an order's list:
// "<initiated> <state> <outcome> <task ID> [refund <id>] [: reason]".
func oneLine(v taskview.View) string {
	outcome := v.Outcome
	if outcome == "" {
		outcome = "-"
	}
	line := fmt.Sprintf("%s  %-9s %-17s %s", v.RefundInitiatedAt, v.State, outcome, v.TaskID)
	if v.Result != nil && v.Result.RefundID != "" {
		line += "  refund " + v.Result.RefundID
	}
	return line
}

func printView(w io.Writer, v taskview.View) {
	fmt.Fprintf(w, "task:     %s (queue %s)\nstate:    %s\nretried:  %d\n", v.TaskID, v.Queue, v.State, v.Retried)
	if v.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", v.LastError)
	}
	if v.LastFailedAt != "" {
		fmt.Fprintf(w, "last failed at: %s\n", v.LastFailedAt)
	}
	if v.NextProcessAt != "" {
		fmt.Fprintf(w, "next try: %s\n", v.NextProcessAt)
	}
	if v.WindowClosesAt != "" {
		fmt.Fprintf(w, "window closes: %s\n", v.WindowClosesAt)
	}
	if len(v.Payload) > 0 {
		fmt.Fprintf(w, "payload:  %s\n", v.Payload)
	}
	if r := v.Result; r != nil {
		fmt.Fprintf(w, "outcome:  %s (run %d, %d attempt(s))\n", r.Outcome, r.Run, r.Attempts)
		if r.RefundID != "" {
			fmt.Fprintf(w, "refund:   %s\n", r.RefundID)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "reason:   %s\n", r.Reason)
		}
		b, _ := json.Marshal(r)
		fmt.Fprintf(w, "result:   %s\n", b)
	}
	for _, r := range v.EarlierRuns {
		fmt.Fprintf(w, "run %d:    %s: %s\n", r.Run, r.Outcome, r.Reason)
	}
}

// rerun opens a new run of a finished cancellation that did not cancel
// the refund (refused, unknown, window closed, superseded): the record
// keeps the earlier run, the old task is deleted and the task enqueued
// again under the same ID; its outcome is announced anew.
func rerun(args []string, e env) error {
	fs := flag.NewFlagSet("rerun", flag.ContinueOnError)
	var c common
	c.register(fs, e)
	initiatedAt := fs.String("initiated-at", "", "the refund's initiation time, RFC 3339")
	rest, err := parseFlags(fs, args, e.stdout)
	if err != nil {
		return err
	}
	if len(rest) != 1 || *initiatedAt == "" {
		return usageError("rerun takes one order reference and --initiated-at")
	}
	initiated, err := time.Parse(time.RFC3339, *initiatedAt)
	if err != nil {
		return usageError("--initiated-at must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
	}
	rd, err := c.reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	ctx := context.Background()
	p := tasks.CancelRefund{OrderRef: rest[0], RefundInitiatedAt: initiated}
	e0, known, err := rd.recs.Get(ctx, p.OrderRef, initiated)
	switch {
	case err != nil:
		return &cliError{Kind: "unavailable", Msg: "the queue is unavailable: " + err.Error(), code: exitUnavailable}
	case !known:
		return &cliError{Kind: "not_found", Msg: "no record of " + p.TaskID() + ": nothing to try again (enqueue it)", code: exitRejected}
	}
	if info, err := rd.insp.GetTaskInfo(c.queue, e0.Owner); err == nil {
		if info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived {
			return &cliError{Kind: "rejected", Msg: fmt.Sprintf("task %s is %s: its cancellation has not ended", e0.Owner, info.State), code: exitRejected}
		}
	}
	next, err := rd.recs.Rerun(ctx, p.OrderRef, initiated)
	if errors.Is(err, records.ErrNotFinal) || errors.Is(err, records.ErrCancelled) || errors.Is(err, records.ErrUnannounced) {
		return &cliError{Kind: "rejected", Msg: err.Error(), code: exitRejected}
	}
	if err != nil {
		return &cliError{Kind: "unavailable", Msg: "the queue is unavailable: " + err.Error(), code: exitUnavailable}
	}
	if err := rd.insp.DeleteTask(c.queue, e0.Owner); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return &cliError{Kind: "unavailable", Msg: "run " + fmt.Sprint(next.Run) + " is open but the old task could not be deleted: " + err.Error() + "; run it again", code: exitUnavailable}
	}
	// The owner's ID: a raw producer's task keeps its own.
	task, err := tasks.NewTask(p, time.Now(), asynq.Queue(c.queue))
	if err == nil && e0.Owner != p.TaskID() {
		task = asynq.NewTask(task.Type(), task.Payload(), asynq.TaskID(e0.Owner), asynq.Queue(c.queue), asynq.MaxRetry(tasks.DefaultMaxRetry),
			asynq.Timeout(tasks.DefaultTimeout), asynq.Retention(tasks.DefaultRetention))
	}
	if err == nil {
		client := asynq.NewClientFromRedisClient(rd.rc)
		_, err = client.EnqueueContext(ctx, task)
	}
	if err != nil {
		return &cliError{Kind: "unavailable", Msg: fmt.Sprintf("run %d is open but the task could not be enqueued: %v; enqueue it again with the same payload", next.Run, err), code: exitUnavailable}
	}
	if c.json {
		b, _ := json.Marshal(map[string]any{"result": "rerun", "task_id": e0.Owner, "run": next.Run})
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	fmt.Fprintf(e.stdout, "rerun: %s run %d queued\n", e0.Owner, next.Run)
	return nil
}
