// Package demo runs refundd's main job with no setup: an in-process Redis
// (miniredis), the in-process sandbox 2Checkout seeded with a mix of
// refunds, the real worker and ops server, and a producer enqueuing through
// the tasks package. It prints a live progress line and a summary.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Options configures a demo run.
type Options struct {
	// Orders is how many cancellable refunds to seed (the mix adds others). Default 40.
	Orders int
	// ExitWhenDone ends the demo when every task is finished.
	ExitWhenDone bool
	// OpsAddr is where the ops server listens. Default 127.0.0.1:8080.
	OpsAddr string
	// Out receives the progress line and the summary.
	Out io.Writer
	// Logger receives the service's logs (quiet by default).
	Logger *zap.Logger
	// OnListen, if set, is told the ops server's address.
	OnListen func(net.Addr)
}

// Summary counts how the demo's cancellations ended.
type Summary struct {
	Counts   map[string]int      // outcome → tasks (plus "rejected_at_enqueue")
	Examples map[string][]string // outcome → a few "order: reason" lines, distinct reasons
	shapes   map[string]bool
}

// Run runs the demo until it is done (ExitWhenDone) or ctx ends.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Orders <= 0 {
		opts.Orders = 40
	}
	if opts.OpsAddr == "" {
		opts.OpsAddr = "127.0.0.1:8080"
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	out := opts.Out
	fmt.Fprintln(out, "refundd demo: in-process Redis (miniredis) and sandbox 2Checkout. NOTHING IS DURABLE in this mode: stop it and everything is gone.")

	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.Start(); err != nil {
		return nil, fmt.Errorf("demo redis: %w", err)
	}
	defer mr.Close()

	secret := randomHex(16)
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: "DEMO", SecretKey: secret, Logger: opts.Logger.Named("sandbox")})
	defer sb.Close()
	now := time.Now()
	plan := seed(sb, now, opts.Orders)
	// Transient trouble, seeded so every run is alike: some 503s with
	// Retry-After, and answers lost after the refund was cancelled.
	half, tenth := 0.5, 0.1
	if err := sb.SetFaults(
		rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultStatus, Status: 503, RetryAfter: 1, Probability: &half, FirstN: 12},
		rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultApplyThenDrop, Probability: &tenth, FirstN: 30},
	); err != nil {
		return nil, err
	}

	dashPassword, apiToken := randomHex(8), randomHex(16)
	cfg, err := config.Load(func(name string) string {
		return map[string]string{
			"REDIS_URL": "redis://" + mr.Addr(), "TCO_API_URL": sb.RPCURL, "TCO_MERCHANT_CODE": "DEMO", "TCO_SECRET_KEY": secret,
			"OPS_ADDR": opts.OpsAddr, "WORKER_CONCURRENCY": "8", "SHUTDOWN_TIMEOUT": "5s",
			"DASHBOARD_USER": "demo", "DASHBOARD_PASSWORD": dashPassword, "API_TOKEN": apiToken,
		}[name]
	})
	if err != nil {
		return nil, err
	}
	// Short delays so the demo ends in seconds; the window rules are the real ones.
	policy := cfg.Policy()
	policy.BaseDelay, policy.MinDelay, policy.LastRetryLead = 300*time.Millisecond, 200*time.Millisecond, 2*time.Second
	listening := make(chan net.Addr, 1)
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: opts.Logger, Policy: &policy, OnListen: func(a net.Addr) { listening <- a }})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	// Wait for the ops server, so its URLs print before any work starts
	// (and from this goroutine only: out is not safe for concurrent use).
	var a net.Addr
	select {
	case a = <-listening:
	case err := <-done:
		return nil, fmt.Errorf("demo: refundd did not start: %w", err)
	}
	fmt.Fprintf(out, "dashboard (Asynqmon): http://%s/monitoring/   user demo, password %s\n", a, dashPassword)
	fmt.Fprintf(out, "producer API: curl -H 'Authorization: Bearer %s' http://%s/v1/cancellations/DEMO0001\n", apiToken, a)
	fmt.Fprintf(out, "metrics: http://%s/metrics   health: http://%s/readyz\n", a, a)
	if opts.OnListen != nil {
		opts.OnListen(a)
	}

	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: cfg.Redis, Queue: cfg.Queue})
	if err != nil {
		return nil, err
	}
	defer enq.Close()
	sum := &Summary{Counts: map[string]int{}, Examples: map[string][]string{}}
	queued := 0
	for _, p := range plan {
		_, err := enq.Enqueue(ctx, p)
		var wc *tasks.WindowClosedError
		switch {
		case errors.As(err, &wc):
			sum.add("rejected_at_enqueue", p.OrderRef, wc.Error())
		case err != nil:
			return nil, fmt.Errorf("enqueue %s: %w", p.OrderRef, err)
		default:
			queued++
		}
	}
	fmt.Fprintf(out, "producer: %d cancellations queued, %d refused at enqueue (window already closed)\n", queued, sum.Counts["rejected_at_enqueue"])

	insp := asynq.NewInspector(cfg.Redis)
	defer insp.Close()
	if err := waitDone(ctx, insp, cfg.Queue, queued, out); err != nil {
		return nil, err
	}
	if err := collect(insp, cfg.Queue, sum); err != nil {
		return nil, err
	}
	printSummary(out, sum, sb.Stats())
	if !opts.ExitWhenDone {
		fmt.Fprintln(out, "Still serving the dashboard, API and metrics above; press Ctrl-C to stop.")
		<-ctx.Done()
	}
	stop()
	return sum, <-done
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// seed fills the sandbox with a mix and answers what the producer will enqueue.
func seed(sb *rpctest.Server, now time.Time, n int) []tasks.CancelRefund {
	var plan []tasks.CancelRefund
	add := func(ref, status string, initiated time.Time, seedIt bool) {
		if seedIt {
			_ = sb.Seed(rpctest.Refund{OrderRef: ref, Status: status, InitiatedAt: initiated})
		}
		plan = append(plan, tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated, Reason: "demo", RequestedBy: "refundd-demo"})
	}
	for i := range n {
		add(fmt.Sprintf("DEMO%04d", i+1), rpctest.StatusPending, now.Add(-time.Duration(5+i%90)*time.Minute), true)
	}
	for i := range 3 { // someone cancelled these already
		add(fmt.Sprintf("DEMOCXL%d", i+1), rpctest.StatusCanceled, now.Add(-20*time.Minute), true)
	}
	for i := range 3 { // refunds already paid out: not cancellable
		add(fmt.Sprintf("DEMODONE%d", i+1), rpctest.StatusCompleted, now.Add(-30*time.Minute), true)
	}
	add("DEMOUNKNOWN1", "", now.Add(-10*time.Minute), false) // 2Checkout has no such order
	for i := range 3 {                                       // inside the window, past the worker's safety margin
		add(fmt.Sprintf("DEMOLATE%d", i+1), rpctest.StatusPending, now.Add(-2*time.Hour+30*time.Second), true)
	}
	for i := range 2 { // window long closed: the producer is refused
		add(fmt.Sprintf("DEMOOLD%d", i+1), rpctest.StatusPending, now.Add(-3*time.Hour), true)
	}
	return plan
}

// add counts one task and keeps up to three examples of distinct reasons.
func (s *Summary) add(outcome, orderRef, reason string) {
	s.Counts[outcome]++
	shape := strings.ReplaceAll(reason, orderRef, "#")
	if s.shapes == nil {
		s.shapes = map[string]bool{}
	}
	if len(s.Examples[outcome]) < 3 && !s.shapes[outcome+shape] {
		s.shapes[outcome+shape] = true
		s.Examples[outcome] = append(s.Examples[outcome], orderRef+": "+reason)
	}
}

func waitDone(ctx context.Context, insp *asynq.Inspector, queue string, total int, out io.Writer) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// On a terminal the line redraws in place; elsewhere each change is a line.
	tty, last := false, ""
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	for {
		qi, err := insp.GetQueueInfo(queue)
		if err == nil {
			line := fmt.Sprintf("progress: %d/%d finished · pending %d · active %d · retry %d · completed %d · archived %d",
				qi.Completed+qi.Archived, total, qi.Pending, qi.Active, qi.Retry, qi.Completed, qi.Archived)
			if line != last && tty {
				fmt.Fprint(out, "\r", line, "  ")
			} else if line != last {
				fmt.Fprintln(out, line)
			}
			last = line
			if qi.Completed+qi.Archived >= total {
				if tty {
					fmt.Fprintln(out)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func collect(insp *asynq.Inspector, queue string, sum *Summary) error {
	for page := 1; ; page++ {
		infos, err := insp.ListCompletedTasks(queue, asynq.Page(page), asynq.PageSize(100))
		if err != nil {
			return err
		}
		for _, ti := range infos {
			var r worker.Result
			_ = json.Unmarshal(ti.Result, &r)
			reason := fmt.Sprintf("refund %s, %d attempt(s)", r.RefundID, r.Attempts)
			if r.Confirmed {
				reason += ", confirmed with getOrder"
			}
			sum.add(r.Outcome, r.OrderRef, reason)
		}
		if len(infos) < 100 {
			break
		}
	}
	for page := 1; ; page++ {
		infos, err := insp.ListArchivedTasks(queue, asynq.Page(page), asynq.PageSize(100))
		if err != nil {
			return err
		}
		for _, ti := range infos {
			p, _ := tasks.Decode(ti.Payload)
			outcome := archivedOutcome(ti.LastErr)
			if r := (worker.Result{}); json.Unmarshal(ti.Result, &r) == nil && r.Final() {
				outcome = r.Outcome // the handler's own record
			}
			sum.add(outcome, p.OrderRef, ti.LastErr)
		}
		if len(infos) < 100 {
			break
		}
	}
	return nil
}

// archivedOutcome names an archived task's outcome from its reason.
func archivedOutcome(reason string) string {
	switch {
	case strings.HasPrefix(reason, "window closed"), strings.HasPrefix(reason, "no retry fits"):
		return worker.OutcomeWindowClosed
	case strings.HasPrefix(reason, "invalid payload"):
		return worker.OutcomeInvalid
	}
	return worker.OutcomeRefused
}

func printSummary(out io.Writer, s *Summary, st rpctest.Stats) {
	order := []string{worker.OutcomeCancelled, worker.OutcomeAlreadyCancelled, worker.OutcomeRefused, worker.OutcomeWindowClosed, worker.OutcomeInvalid,
		worker.OutcomeSuperseded, worker.OutcomeUnknown, "rejected_at_enqueue"}
	seen := map[string]bool{}
	for _, o := range order {
		seen[o] = true
	}
	for o := range s.Counts {
		if !seen[o] {
			order = append(order, o)
		}
	}
	sort.SliceStable(order[6:], func(i, j int) bool { return order[6+i] < order[6+j] })
	fmt.Fprintln(out, "\nSummary")
	fmt.Fprintf(out, "  %-22s %5s  %s\n", "outcome", "count", "examples")
	for _, o := range order {
		if s.Counts[o] == 0 {
			continue
		}
		ex := s.Examples[o]
		fmt.Fprintf(out, "  %-22s %5d  %s\n", o, s.Counts[o], ex[0])
		for _, e := range ex[1:] {
			fmt.Fprintf(out, "  %-22s %5s  %s\n", "", "", e)
		}
	}
	calls := 0
	for _, byOutcome := range st.Calls[rpcclient.MethodCancelRefund] {
		calls += byOutcome
	}
	fmt.Fprintf(out, "  2Checkout sandbox: %d logins, %d cancelRefund calls\n", st.Logins, calls)
}
