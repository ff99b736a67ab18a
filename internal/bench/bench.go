// Package bench measures refundd beside the least a worker can do for the
// same job, in one run, on one Redis, against one no-op JSON-RPC server, and
// prints each figure beside its target (cmd/refundbench).
//
// The two pipelines are refundd itself (the daemon built from its
// environment: rpcclient, worker.Handler and its asynq servers, metrics, the
// ops server, JSON logs encoded and discarded) and a minimal pipeline (a
// plain asynq server whose handler makes one raw JSON-RPC POST and writes
// the answer as the result; same tasks, same task IDs, same retention).
// They take turns round by round so a noisy machine affects both alike.
//
// A round enqueues its tasks into a paused queue, unpauses it, and times the
// no-op server's view: from the first cancelRefund request's arrival to the
// last answer. Every task is then checked completed with asynq's Inspector.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"

	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// Options configures a benchmark run. Zero fields take the defaults written
// beside them (Short ones with Short).
type Options struct {
	// RedisURL is the Redis to use. Default: a redis-server from PATH of the
	// run's own, on a free port (its idle figures are then the workers' alone).
	RedisURL string
	// Out receives the table. Default os.Stdout.
	Out io.Writer
	// Progress, if set, receives a line per round.
	Progress io.Writer
	// Short runs small counts: a smoke test of the command, not a measurement.
	Short bool
	// Rounds per pipeline of each throughput figure: many short rounds, so
	// a burst of load elsewhere spoils few. Default 9 (Short 1).
	Rounds int
	// Tasks per round at Concurrency. Default 3000 (Short 200).
	Tasks int
	// Concurrency of the first throughput figure. Default 20.
	Concurrency int
	// HighTasks per round at concurrency 200 with 100 ms latency. Default
	// 12000 (Short 400): a round pays a fixed ~0.1 s while asynq fills its
	// 200 workers one dequeue at a time, which at 4000 tasks alone would cap
	// any asynq pipeline at ~1,905/s; 12000 measure the sustained rate.
	HighTasks int
	// Pickups: idle pickups timed for refundd with LowLatencyPoll; refundd
	// at its defaults and the minimal pipeline, which poll every 0.5–1.5 s,
	// get half as many each. Default 200 (Short 4).
	Pickups int
	// Idle is how long each idle Redis load is counted. Default 10s (Short
	// 300ms): an idle worker at its defaults polls about once a second.
	Idle time.Duration
	// Child, if set, answers a command that runs RunChild when ChildEnv is
	// "1" (usually the benchmark's own executable). The worker's peak RSS is
	// measured on it, at concurrency 200. Nil: RSS is not measured.
	Child func() *exec.Cmd
}

func (o Options) withDefaults() Options {
	def := func(v *int, long, short int) {
		if *v <= 0 {
			*v = long
			if o.Short {
				*v = short
			}
		}
	}
	def(&o.Rounds, 9, 1)
	def(&o.Tasks, 3000, 200)
	def(&o.Concurrency, 20, 20)
	def(&o.HighTasks, 12000, 400)
	def(&o.Pickups, 200, 4)
	if o.Idle <= 0 {
		o.Idle = 10 * time.Second
		if o.Short {
			o.Idle = 300 * time.Millisecond
		}
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// High concurrency figure's settings, and the ideal it is held to.
const (
	highConcurrency = 200
	highLatency     = 100 * time.Millisecond
)

// Report holds the figures of a run.
type Report struct {
	RedisKind    string
	Load         string // the machine's load average before the run
	Concurrency  int
	Refundd      []roundResult // per round at Concurrency
	Minimal      []roundResult
	RefunddHigh  []roundResult // at concurrency 200, 100 ms latency
	MinimalHigh  []roundResult
	ChildHigh    []float64       // refundd in a process of its own, same setting
	PickupR      []time.Duration // refundd at its defaults
	PickupLow    []time.Duration // refundd with WORKER_POLL_INTERVAL=LowLatencyPoll
	PickupM      []time.Duration
	IdleBase     idleLoad // Redis with no worker
	IdleRefundd  idleLoad // added by one idle refundd at its defaults
	IdleLow      idleLoad // added by one idle refundd with LowLatencyPoll
	IdleMinimal  idleLoad // added by one idle minimal pipeline
	Logins       int64
	Cancellation int64 // cancelRefund calls refundd made (in-process and child)
	PeakRSS      int64 // bytes; 0 if not measured
}

type bench struct {
	opts   Options
	redis  *redistest.Redis
	rc     *redis.Client
	rpc    *rpcServer
	client *asynq.Client
	insp   *asynq.Inspector
	queues []string
	round  int
	tmp    string // the own redis-server's directory
	// refunddCalls counts the cancellations refundd made, for logins per
	// 10,000 (the minimal pipeline never logs in).
	refunddCalls int64
}

// Run runs the benchmark and prints its table to opts.Out.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	b := &bench{opts: opts}
	defer b.close()
	rep := &Report{Load: loadAvg(), Concurrency: opts.Concurrency}
	if err := b.setup(); err != nil {
		return nil, err
	}
	rep.RedisKind = b.redis.Kind
	refundd := startRefundd(b.redis.URL, b.rpc.URL, nil)
	lowLatency := startRefundd(b.redis.URL, b.rpc.URL, map[string]string{"WORKER_POLL_INTERVAL": LowLatencyPoll.String()})
	minimal := startMinimal(b.redis.Opt, b.rpc.URL)

	var err error
	fmt.Fprintf(opts.Progress, "throughput at concurrency %d: %d rounds of %d tasks each\n", opts.Concurrency, opts.Rounds, opts.Tasks)
	if rep.Refundd, rep.Minimal, err = b.alternate(ctx, refundd, minimal, opts.Concurrency, opts.Tasks, opts.Rounds); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Progress, "throughput at concurrency %d, server latency %v\n", highConcurrency, highLatency)
	b.rpc.SetLatency(highLatency)
	if rep.RefunddHigh, rep.MinimalHigh, err = b.alternate(ctx, refundd, minimal, highConcurrency, opts.HighTasks, opts.Rounds); err != nil {
		return nil, err
	}
	if opts.Child != nil {
		fmt.Fprintln(opts.Progress, "refundd in a process of its own, for its peak RSS")
		if rep.ChildHigh, rep.PeakRSS, err = b.child(ctx, opts.HighTasks, max(opts.Rounds/2, 1)); err != nil {
			return nil, err
		}
	}
	b.rpc.SetLatency(0)
	fmt.Fprintln(opts.Progress, "idle: Redis load and pickup latency")
	if err := b.idle(ctx, refundd, lowLatency, minimal, rep); err != nil {
		return nil, err
	}
	rep.Logins, rep.Cancellation = b.rpc.logins.Load(), b.refunddCalls
	rep.Print(opts.Out)
	return rep, nil
}

func (b *bench) setup() error {
	if u := b.opts.RedisURL; u != "" {
		opt, err := redisconn.Parse(u)
		if err != nil {
			return fmt.Errorf("REDIS_URL %v", err) // never the password
		}
		b.redis = &redistest.Redis{URL: u, Opt: opt, Kind: "REDIS_URL (other clients' commands count too)"}
	} else {
		dir, err := os.MkdirTemp("", "refundbench-")
		if err != nil {
			return err
		}
		if b.redis, err = redistest.Launch(dir); err != nil {
			_ = os.RemoveAll(dir)
			return fmt.Errorf("no REDIS_URL, and %w", err)
		}
		b.redis.Kind = "redis-server of its own"
		b.tmp = dir
	}
	b.rc = b.redis.Client()
	if err := b.rc.Ping(context.Background()).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", config.RedactURL(b.redis.URL), err)
	}
	var err error
	if b.rpc, err = newRPCServer(); err != nil {
		return err
	}
	b.client = asynq.NewClient(b.redis.Opt)
	b.insp = asynq.NewInspector(b.redis.Opt)
	return nil
}

func (b *bench) close() {
	if b.insp != nil {
		for _, q := range b.queues { // DeleteQueue leaves completed tasks, counters, the pause mark
			_, _ = b.insp.DeleteAllCompletedTasks(q)
			_ = b.insp.DeleteQueue(q, true)
			b.deleteKeys("asynq:{" + q + "}:*")
			b.deleteKeys("refundd:*{" + q + "}*") // refundd's own for it: the window sweep's backlog
		}
		_ = b.insp.Close()
	}
	if b.client != nil {
		_ = b.client.Close()
	}
	if b.rpc != nil {
		_ = b.rpc.Close()
	}
	if b.rc != nil {
		_ = b.rc.Close()
	}
	if b.tmp != "" {
		b.redis.Stop()
		_ = os.RemoveAll(b.tmp)
	}
}

// deleteKeys deletes the keys matching pattern (only ever a queue of the
// run's own).
func (b *bench) deleteKeys(pattern string) {
	ctx := context.Background()
	it := b.rc.Scan(ctx, 0, pattern, 500).Iterator()
	var keys []string
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if len(keys) > 0 {
		_ = b.rc.Del(ctx, keys...).Err()
	}
}

// queue answers a new queue of the run's own, paused, deleted at the end.
func (b *bench) queue() (string, error) {
	var r [4]byte
	for i := range r {
		r[i] = byte(rand.N(256))
	}
	q := fmt.Sprintf("refundbench-%x", r)
	b.queues = append(b.queues, q)
	return q, b.insp.PauseQueue(q)
}

// alternate runs rounds of n tasks on both pipelines at the given
// concurrency, taking turns (refundd first in odd rounds, second in even
// ones), and answers each round's cancellations per second.
func (b *bench) alternate(ctx context.Context, refundd, minimal startFunc, concurrency, n, rounds int) (r, m []roundResult, err error) {
	qr, err := b.queue()
	if err != nil {
		return nil, nil, err
	}
	qm, err := b.queue()
	if err != nil {
		return nil, nil, err
	}
	pr, err := refundd(qr, concurrency)
	if err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, pr.stop()) }()
	pm, err := minimal(qm, concurrency)
	if err != nil {
		return nil, nil, err
	}
	defer func() { err = errors.Join(err, pm.stop()) }()
	if !b.opts.Short { // warm both up: connections, sessions, caches
		if _, err := b.timedRound(ctx, qr, n/5); err != nil {
			return nil, nil, err
		}
		b.refunddCalls += int64(n / 5)
		if _, err := b.timedRound(ctx, qm, n/5); err != nil {
			return nil, nil, err
		}
	}
	for i := range rounds {
		order := []string{qr, qm}
		if i%2 == 1 {
			order = []string{qm, qr}
		}
		for _, q := range order {
			res, err := b.timedRound(ctx, q, n)
			if err != nil {
				return nil, nil, err
			}
			name := "minimal"
			if q == qr {
				name = "refundd"
				r = append(r, res)
				b.refunddCalls += int64(n)
			} else {
				m = append(m, res)
			}
			fmt.Fprintf(b.opts.Progress, "  round %d %-8s %8.0f/s  %4dµs CPU + %3dµs Redis CPU per cancellation\n",
				i+1, name, res.rate, res.cpu.Microseconds(), res.redisCPU.Microseconds())
		}
	}
	return r, m, nil
}

// timedRound enqueues n tasks into the paused queue q, unpauses it, and
// answers n over the time from the first request's arrival at the no-op
// server to the last answer. It then checks with the Inspector that every
// task of q completed.
func (b *bench) timedRound(ctx context.Context, q string, n int) (roundResult, error) {
	b.round++
	prefix := fmt.Sprintf("B%03d-", b.round)
	if err := b.enqueue(ctx, q, prefix, n); err != nil {
		return roundResult{}, err
	}
	done := b.rpc.expect(n)
	cpu0 := cpuTime()
	rs0, err := sampleRedis(ctx, b.rc)
	if err != nil {
		return roundResult{}, err
	}
	if err := b.insp.UnpauseQueue(q); err != nil {
		return roundResult{}, err
	}
	limit := 60*time.Second + time.Duration(n)*time.Millisecond
	select {
	case <-done:
	case <-time.After(limit):
		return roundResult{}, fmt.Errorf("queue %s: not all %d tasks reached the server within %v", q, n, limit)
	case <-ctx.Done():
		return roundResult{}, ctx.Err()
	}
	first, last := b.rpc.window()
	cpu1 := cpuTime()
	rs1, err := sampleRedis(ctx, b.rc)
	if err != nil {
		return roundResult{}, err
	}
	if err := b.insp.PauseQueue(q); err != nil {
		return roundResult{}, err
	}
	if err := b.settled(ctx, q); err != nil {
		return roundResult{}, err
	}
	return roundResult{
		rate:     float64(n) / last.Sub(first).Seconds(),
		cpu:      (cpu1 - cpu0) / time.Duration(n),
		redisCPU: time.Duration((rs1.cpu - rs0.cpu) * float64(time.Second) / float64(n)),
		commands: float64(rs1.calls-rs0.calls) / float64(n),
	}, nil
}

// roundResult is one round's figures: cancellations per second, the CPU
// time each cancellation cost this process (pipeline and no-op server) and
// Redis, and the Redis commands it cost (scripts' inner commands included;
// the other pipeline's idle polling meanwhile too, a few a second).
type roundResult struct {
	rate          float64
	cpu, redisCPU time.Duration
	commands      float64
}

// settled waits until nothing of q is pending, active or retrying, and fails
// if any task did not complete.
func (b *bench) settled(ctx context.Context, q string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		qi, err := b.insp.GetQueueInfo(q)
		if err != nil {
			return err
		}
		if qi.Archived+qi.Retry > 0 {
			return fmt.Errorf("queue %s: %d archived, %d retrying: every task should complete", q, qi.Archived, qi.Retry)
		}
		if qi.Pending+qi.Active+qi.Scheduled == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue %s: %d pending, %d active 30s after the last answer", q, qi.Pending, qi.Active)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// enqueue adds n cancellations to q from 8 goroutines.
func (b *bench) enqueue(ctx context.Context, q, prefix string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := b.enqueueOne(ctx, q, fmt.Sprintf("%s%06d", prefix, i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (b *bench) enqueueOne(ctx context.Context, q, ref string) error {
	now := time.Now()
	// An hour's retention, not a week's: on a shared REDIS_URL nothing stays long.
	t, err := tasks.NewTask(tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: now, RequestedBy: "refundbench"}, now,
		asynq.Queue(q), asynq.Retention(time.Hour))
	if err != nil {
		return err
	}
	_, err = b.client.EnqueueContext(ctx, t)
	return err
}

// child runs refundd in a process of its own at concurrency 200 for rounds
// rounds of n tasks, and answers their rates and its peak RSS.
func (b *bench) child(ctx context.Context, n, rounds int) (rates []float64, rss int64, err error) {
	q, err := b.queue()
	if err != nil {
		return nil, 0, err
	}
	cmd := b.opts.Child()
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	for k, v := range workerEnv(b.redis.URL, b.rpc.URL, q, highConcurrency) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start the worker process: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	for range rounds {
		res, err := b.timedRound(ctx, q, n)
		if err != nil {
			return nil, 0, err
		}
		rates = append(rates, res.rate)
		b.refunddCalls += int64(n)
		fmt.Fprintf(b.opts.Progress, "  round    refundd (own process) %8.0f/s\n", res.rate)
	}
	if rss, err = peakRSS(cmd.Process); err != nil {
		return nil, 0, err
	}
	if err := terminate(cmd.Process); err != nil {
		return nil, 0, err
	}
	select {
	case err = <-exited:
		stopped = true
	case <-time.After(30 * time.Second):
		return nil, 0, errors.New("the worker process did not stop within 30s of SIGTERM")
	}
	if err != nil {
		return nil, 0, fmt.Errorf("the worker process: %w", err)
	}
	return rates, rss, nil
}

// idle counts the Redis load of no worker, of an idle minimal pipeline, of
// an idle refundd beside it, and of an idle low-latency refundd beside
// those; then times pickups on all three at once.
func (b *bench) idle(ctx context.Context, refundd, lowLatency, minimal startFunc, rep *Report) (err error) {
	settle := min(time.Second, b.opts.Idle)
	count := func() (idleLoad, error) {
		time.Sleep(settle) // let start-up traffic pass
		a, err := sampleRedis(ctx, b.rc)
		if err != nil {
			return idleLoad{}, err
		}
		time.Sleep(b.opts.Idle)
		z, err := sampleRedis(ctx, b.rc)
		return loadBetween(a, z), err
	}
	if rep.IdleBase, err = count(); err != nil {
		return err
	}
	qm, err := b.queue()
	if err != nil {
		return err
	}
	qr, err := b.queue()
	if err != nil {
		return err
	}
	ql, err := b.queue()
	if err != nil {
		return err
	}
	for _, q := range []string{qm, qr, ql} {
		if err := b.insp.UnpauseQueue(q); err != nil {
			return err
		}
	}
	pm, err := minimal(qm, b.opts.Concurrency)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pm.stop()) }()
	withM, err := count()
	if err != nil {
		return err
	}
	pr, err := refundd(qr, b.opts.Concurrency)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pr.stop()) }()
	both, err := count()
	if err != nil {
		return err
	}
	pl, err := lowLatency(ql, b.opts.Concurrency)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, pl.stop()) }()
	all, err := count()
	if err != nil {
		return err
	}
	rep.IdleMinimal, rep.IdleRefundd, rep.IdleLow = withM.minus(rep.IdleBase), both.minus(withM), all.minus(both)

	var wg sync.WaitGroup
	var errR, errL, errM error
	wg.Go(func() { rep.PickupR, errR = b.pickups(ctx, qr, "PR", max(b.opts.Pickups/2, 2)) })
	wg.Go(func() { rep.PickupLow, errL = b.pickups(ctx, ql, "PL", b.opts.Pickups) })
	wg.Go(func() { rep.PickupM, errM = b.pickups(ctx, qm, "PM", max(b.opts.Pickups/2, 2)) })
	wg.Wait()
	b.refunddCalls += int64(len(rep.PickupR) + len(rep.PickupLow))
	return errors.Join(errR, errL, errM)
}

// pickups enqueues n tasks one at a time into the idle queue q, each after a
// random pause (so it lands anywhere in the worker's poll cycle), and
// answers each one's time from enqueue to its request at the server.
func (b *bench) pickups(ctx context.Context, q, prefix string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rand.N(300 * time.Millisecond)):
		}
		ref := fmt.Sprintf("%s%05d", prefix, i)
		arrived := b.rpc.watch(ref)
		start := time.Now()
		if err := b.enqueueOne(ctx, q, ref); err != nil {
			return nil, err
		}
		select {
		case at := <-arrived:
			out = append(out, at.Sub(start))
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("queue %s: task %s not picked up within 30s", q, ref)
		}
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// median and spread of xs.
func summary(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
