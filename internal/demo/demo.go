// Package demo runs refundd's main job with no setup: an in-process Redis
// (miniredis), the in-process sandbox 2Checkout seeded with a mix of
// refunds (a few issued through rpcclient.IssueRefund, as a back office
// would), the real worker and ops server, and a producer enqueuing through
// the tasks package. It prints a live progress line and a summary.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
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

// Run runs the demo until it is done (ExitWhenDone) or ctx ends. Its steps:
// start Redis and the sandbox (seeded, with transient faults), configure and
// start refundd, enqueue the cancellations as a producer would, wait for
// them to finish, and print the summary.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	opts = opts.withDefaults()
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
	plan, issue := seed(sb, time.Now(), opts.Orders)
	issued, err := issueRefunds(ctx, sb.RPCURL, secret, issue)
	if err != nil {
		return nil, err
	}
	plan = append(issued, plan...)
	seeding := sb.Stats() // the summary counts refundd's calls only
	if err := setFaults(sb); err != nil {
		return nil, err
	}

	cfg, creds, err := configure(mr.Addr(), sb.RPCURL, secret, opts.OpsAddr)
	if err != nil {
		return nil, err
	}
	rd, err := startRefundd(ctx, cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	defer rd.stop()
	creds.print(out, rd.addr)
	if opts.OnListen != nil {
		opts.OnListen(rd.addr)
	}

	sum, queued, err := produce(ctx, cfg, plan)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "producer: %d cancellations queued, %d refused at enqueue (window already closed)\n", queued, sum.Counts["rejected_at_enqueue"])

	if err := await(ctx, cfg, queued, sum, out); err != nil {
		return nil, err
	}
	printSummary(out, sum, since(sb.Stats(), seeding))
	if !opts.ExitWhenDone {
		fmt.Fprintln(out, "Still serving the dashboard, API and metrics above; press Ctrl-C to stop.")
		<-ctx.Done()
	}
	return sum, rd.stop()
}

func (o Options) withDefaults() Options {
	if o.Orders <= 0 {
		o.Orders = 40
	}
	if o.OpsAddr == "" {
		o.OpsAddr = "127.0.0.1:8080"
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// setFaults adds transient trouble, seeded so every run is alike: some 503s
// with Retry-After, and answers lost after the refund was cancelled.
func setFaults(sb *rpctest.Server) error {
	half, tenth := 0.5, 0.1
	return sb.SetFaults(
		rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultStatus, Status: 503, RetryAfter: 1, Probability: &half, FirstN: 12},
		rpctest.FaultRule{Method: rpcclient.MethodCancelRefund, Kind: rpctest.FaultApplyThenDrop, Probability: &tenth, FirstN: 30},
	)
}

// credentials are the ops server's, made up for this run.
type credentials struct{ dashPassword, apiToken string }

func (c credentials) print(out io.Writer, a net.Addr) {
	fmt.Fprintf(out, "dashboard (Asynqmon): http://%s/monitoring/   user demo, password %s\n", a, c.dashPassword)
	fmt.Fprintf(out, "producer API: curl -H 'Authorization: Bearer %s' http://%s/v1/cancellations/DEMO0001\n", c.apiToken, a)
	fmt.Fprintf(out, "metrics: http://%s/metrics   health: http://%s/readyz\n", a, a)
}

// configure answers refundd's configuration for the demo, through the same
// parser as the real daemon's environment.
func configure(redisAddr, rpcURL, secret, opsAddr string) (*config.Config, credentials, error) {
	creds := credentials{dashPassword: randomHex(8), apiToken: randomHex(16)}
	cfg, err := config.Load(func(name string) string {
		return map[string]string{
			"REDIS_URL": "redis://" + redisAddr, "TCO_API_URL": rpcURL, "TCO_MERCHANT_CODE": "DEMO", "TCO_SECRET_KEY": secret,
			"OPS_ADDR": opsAddr, "WORKER_CONCURRENCY": "8", "WORKER_POLL_INTERVAL": "50ms", "SHUTDOWN_TIMEOUT": "5s",
			"DASHBOARD_USER": "demo", "DASHBOARD_PASSWORD": creds.dashPassword, "API_TOKEN": creds.apiToken,
		}[name]
	})
	return cfg, creds, err
}

// running is a refundd started by startRefundd.
type running struct {
	addr net.Addr     // the ops server's
	stop func() error // ends it and answers Run's error; safe to call again
}

// startRefundd starts refundd with short retry delays (the window rules are
// the real ones) and waits until its ops server listens, so the URLs print
// before any work starts (and from Run's goroutine only: out is not safe for
// concurrent use).
func startRefundd(ctx context.Context, cfg *config.Config, log *zap.Logger) (*running, error) {
	policy := cfg.Policy()
	policy.BaseDelay, policy.MinDelay, policy.LastRetryLead = 300*time.Millisecond, 200*time.Millisecond, 2*time.Second
	listening := make(chan net.Addr, 1)
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, Policy: &policy, OnListen: func(a net.Addr) { listening <- a }})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	select {
	case a := <-listening:
		return &running{addr: a, stop: stop}, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("demo: refundd did not start: %w", err)
	}
}

// produce enqueues the plan through the tasks package, as a producer would,
// and answers how many were queued; those refused (window already closed)
// start the summary.
func produce(ctx context.Context, cfg *config.Config, plan []tasks.CancelRefund) (*Summary, int, error) {
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: cfg.Redis, Queue: cfg.Queue})
	if err != nil {
		return nil, 0, err
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
			return nil, 0, fmt.Errorf("enqueue %s: %w", p.OrderRef, err)
		default:
			queued++
		}
	}
	return sum, queued, nil
}

// await shows progress until the queued tasks have all finished, then adds
// each one's outcome to sum, from asynq's own records.
func await(ctx context.Context, cfg *config.Config, queued int, sum *Summary, out io.Writer) error {
	insp := asynq.NewInspector(cfg.Redis)
	defer insp.Close()
	if err := waitDone(ctx, insp, cfg.Queue, queued, out); err != nil {
		return err
	}
	return collect(insp, cfg.Queue, sum)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// issuedByAPI is how many of the cancellable refunds are issued through
// rpcclient.IssueRefund rather than seeded.
const issuedByAPI = 3

// seed fills the sandbox with a mix and answers what the producer will
// enqueue, and the complete orders (no refund yet) whose refunds
// issueRefunds makes.
func seed(sb *rpctest.Server, now time.Time, n int) (plan []tasks.CancelRefund, issue []string) {
	add := func(ref, status string, initiated time.Time, seedIt bool) {
		if seedIt {
			_ = sb.Seed(rpctest.Refund{OrderRef: ref, Status: status, InitiatedAt: initiated})
		}
		plan = append(plan, tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated, Reason: "demo", RequestedBy: "refundd-demo"})
	}
	for i := range n {
		ref := fmt.Sprintf("DEMO%04d", i+1)
		if i < issuedByAPI {
			_ = sb.Seed(rpctest.Refund{OrderRef: ref, Status: rpctest.StatusNone})
			issue = append(issue, ref)
			continue
		}
		add(ref, rpctest.StatusPending, now.Add(-time.Duration(5+i%90)*time.Minute), true)
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
	return plan, issue
}

// issueRefunds refunds each order in full through the 2Checkout client, as a
// back office would, and answers a cancellation for each refund, initiated
// when 2Checkout says it was.
func issueRefunds(ctx context.Context, rpcURL, secret string, refs []string) ([]tasks.CancelRefund, error) {
	api, err := rpcclient.New(rpcclient.Config{URL: rpcURL, MerchantCode: "DEMO", SecretKey: rpcclient.Secret(secret)})
	if err != nil {
		return nil, err
	}
	var plan []tasks.CancelRefund
	for _, ref := range refs {
		if err := api.IssueRefund(ctx, ref, 0, "demo", "customer request"); err != nil {
			return nil, fmt.Errorf("demo: issue refund %s: %w", ref, err)
		}
		o, err := api.GetOrder(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("demo: read refund %s: %w", ref, err)
		}
		initiated, err := time.Parse(time.RFC3339Nano, o.RefundInitiatedAt)
		if err != nil {
			return nil, fmt.Errorf("demo: refund %s initiated at %q: %w", ref, o.RefundInitiatedAt, err)
		}
		plan = append(plan, tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated, Reason: "demo", RequestedBy: "refundd-demo"})
	}
	return plan, nil
}

// since answers the logins and calls made after before.
func since(now, before rpctest.Stats) rpctest.Stats {
	d := rpctest.Stats{Logins: now.Logins - before.Logins, Calls: map[string]map[string]int{}}
	for method, byOutcome := range now.Calls {
		d.Calls[method] = map[string]int{}
		for outcome, n := range byOutcome {
			d.Calls[method][outcome] = n - before.Calls[method][outcome]
		}
	}
	return d
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

// collect adds every finished task to sum, read from its record
// (tasks.DecodeResult): completed and archived tasks alike keep one.
func collect(insp *asynq.Inspector, queue string, sum *Summary) error {
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListCompletedTasks, insp.ListArchivedTasks} {
		for page := 1; ; page++ {
			infos, err := list(queue, asynq.Page(page), asynq.PageSize(100))
			if err != nil {
				return err
			}
			for _, ti := range infos {
				r, err := tasks.DecodeResult(ti.Result)
				if err != nil || !r.Final() {
					sum.add("no_record", ti.ID, ti.LastErr) // archived by hand or by asynq itself
					continue
				}
				reason := r.Reason
				if r.Cancelled() {
					reason = fmt.Sprintf("refund %s, %d attempt(s)", r.RefundID, r.Attempts)
					if r.Confirmed {
						reason += ", confirmed with getOrder"
					}
				}
				sum.add(r.Outcome, r.OrderRef, reason)
			}
			if len(infos) < 100 {
				break
			}
		}
	}
	return nil
}

func printSummary(out io.Writer, s *Summary, st rpctest.Stats) {
	order := append(slices.Clone(tasks.FinalOutcomes), "rejected_at_enqueue")
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
