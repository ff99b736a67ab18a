package soak

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Options configures Run.
type Options struct {
	Plan Plan
	// Timeout bounds each run from its replicas' start; tasks not finished
	// by then count as not terminal. Default 10 minutes.
	Timeout time.Duration
	// Keep keeps the temp dir (Redis files, replica logs, series) even
	// when every target is met; it is always kept when one is missed or
	// the soak fails, and removed after Ctrl-C (ctx cancelled).
	Keep bool
	// Out receives the report; Progress, if set, a line per step.
	Out, Progress io.Writer
}

// Result is what Run found.
type Result struct {
	// Missed names the figures that missed their targets.
	Missed []string
	// Dir is the kept temp dir ("" if removed).
	Dir string
}

// Run runs the soak the plan asks for and prints each figure beside its
// target. It answers an error only when the soak itself could not run
// (no redis-server, a build failure, Ctrl-C); missed targets are in
// Result.Missed.
func Run(ctx context.Context, o Options) (res Result, err error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	specs, err := o.Plan.runs()
	if err != nil {
		return res, err
	}
	dir, err := mkTemp()
	if err != nil {
		return res, err
	}
	defer func() {
		// Kept for a reader when something went wrong; not after Ctrl-C.
		if o.Keep || len(res.Missed) > 0 || (err != nil && ctx.Err() == nil) {
			res.Dir = dir
			fmt.Fprintf(o.Out, "\nevidence kept in %s: refundd-*.log (the replicas' logs), redis/redis.log, series-*.txt (per second: ledger outcomes, queue), ledger-*.jsonl\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	e, stop, err := setUp(ctx, dir, o)
	if err != nil {
		return res, err
	}
	defer stop()
	rep := &report{w: o.Out}
	judged, err := runAll(ctx, e, specs, rep)
	if err != nil {
		return res, err
	}
	summarize(rep, judged)
	res.Missed = rep.missed
	return res, nil
}

// setUp starts the soak's Redis and builds refundd.
func setUp(ctx context.Context, dir string, o Options) (env, func(), error) {
	rdir := filepath.Join(dir, "redis")
	if err := os.Mkdir(rdir, 0o700); err != nil {
		return env{}, nil, fmt.Errorf("redis dir: %w", err)
	}
	e := env{dir: dir, timeout: o.Timeout, progress: o.Progress}
	e.logf("building ./cmd/refundd")
	bin, err := buildReplica(ctx, dir)
	if err != nil {
		return env{}, nil, err
	}
	e.bin = bin
	if e.redis, err = startRedis(ctx, rdir); err != nil {
		return env{}, nil, err
	}
	e.logf("redis-server on %s (appendonly, files in %s)", e.redis.Addr(), rdir)
	return e, e.redis.Stop, nil
}

// judgedRun is a run's evidence and figures.
type judgedRun struct {
	ev *evidence
	f  figures
}

// runAll executes each run and prints its figures as it ends.
func runAll(ctx context.Context, e env, specs []runSpec, rep *report) ([]judgedRun, error) {
	var out []judgedRun
	for _, spec := range specs {
		ev, err := execute(ctx, e, spec)
		if err != nil {
			return out, err
		}
		f := judge(ev)
		printRun(rep, ev, f)
		if path, err := dump(e.dir, ev); err == nil {
			e.logf("%s/%s: per-second series in %s", spec.Scenario, spec.Name, path)
		}
		out = append(out, judgedRun{ev: ev, f: f})
	}
	return out, nil
}

// printRun prints one run's figures beside their targets.
func printRun(rep *report, ev *evidence, f figures) {
	rep.header(ev, f)
	fmt.Fprintf(rep.w, "  %-46s %10s   %-6s %s\n", "figure", "value", "target", "verdict")
	rep.section = ev.Spec.Scenario + "/" + ev.Spec.Name + ": "
	rep.row("cancels/s, first call to 90% cancelled", rate(f.Rate90), "", true)
	rep.row("cancels/s, first call to 99% cancelled", rate(f.Rate99), "", true)
	rep.row("cancels/s, first call to the last refund", rate(f.RateAll), "", true)
	rep.row("calls per refund (all methods)", fmt.Sprintf("%.2f", float64(f.Calls)/float64(max(f.Refunds, 1))), "", true)
	rep.row("  of them cancelRefund, getOrder, login", fmt.Sprintf("%.2f %.2f %.2f", float64(f.Cancels)/float64(max(f.Refunds, 1)),
		float64(f.GetOrders)/float64(max(f.Refunds, 1)), float64(f.Logins)/float64(max(f.Refunds, 1))), "", true)
	before := len(rep.missed)
	rep.correctness(f)
	if ev.Spec.StallTarget {
		rep.row("longest stall, tasks pending, none finish, s", fmt.Sprintf("%.0f", f.PendingStall.Len.Seconds()), "< 60",
			f.PendingStall.Len < time.Minute)
		rep.row("longest stall, any unfinished, none finish, s", fmt.Sprintf("%.0f", f.AnyStall.Len.Seconds()), "", true)
	}
	if len(rep.missed) > before {
		rep.details(ev, f)
	}
	rep.slowest(ev, 5)
	if len(rep.missed) > before {
		for _, l := range ev.Logs {
			fmt.Fprintf(rep.w, "   replica log: %s\n", l)
		}
	}
}

// summarize prints the figures that compare runs: the mix's throughput
// against the fault-free run's.
func summarize(rep *report, runs []judgedRun) {
	var clean, mix *figures
	for i := range runs {
		s := runs[i].ev.Spec
		if s.Scenario != "mix" {
			continue
		}
		if !s.Mix {
			clean = &runs[i].f
		} else {
			mix = &runs[i].f
		}
	}
	if clean == nil || mix == nil {
		return
	}
	fmt.Fprintln(rep.w)
	rep.section = ""
	ratio := 100 * mix.Rate99 / clean.Rate99
	rep.row("mix: 20% mix / fault-free, cancels/s to 99%, %", fmt.Sprintf("%.1f", ratio), "≥ 60", ratio >= 60)
}
