package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the figures are held to (issues #13 and #24).
const (
	TargetHigh      = 1900 // cancellations/s at concurrency 200, 100 ms latency
	IdealHigh       = highConcurrency * int(time.Second/highLatency)
	TargetPickupP99 = 1500 * time.Millisecond // at refundd's defaults
	// TargetPickupP99Low is the idle pickup p99 with WORKER_POLL_INTERVAL
	// set to LowLatencyPoll, the setting docs/performance.md documents.
	TargetPickupP99Low = 100 * time.Millisecond
	LowLatencyPoll     = 50 * time.Millisecond
	// An idle replica at its defaults costs Redis at most
	// max(TargetIdleFloor, TargetIdleFactor × the minimal pipeline's)
	// commands/s.
	TargetIdleFloor  = 10.0
	TargetIdleFactor = 2.0
	// Redis commands per cancellation: at most TargetCommandsFactor × the
	// minimal pipeline's.
	TargetCommandsFactor = 1.25
	TargetLoginsPer10    = 2
	TargetRSS            = 60 << 20
)

// Print writes the report's table to w: each figure (median of the rounds,
// with their spread) beside its target.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "refundbench: %d CPUs, %s, load average before the run %s\n", runtime.NumCPU(), r.RedisKind, r.Load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	row("figure", "refundd", "minimal", "target", "")
	row("------", "-------", "-------", "------", "")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}

	row(fmt.Sprintf("cancellations/s, concurrency %d, instant answers", r.Concurrency), rates(rateOf(r.Refundd)), rates(rateOf(r.Minimal)), "", "")
	ratios := make([]float64, min(len(r.Refundd), len(r.Minimal)))
	for i := range ratios {
		ratios[i] = r.Refundd[i].rate / r.Minimal[i].rate
	}
	q, qlo, qhi := summary(ratios)
	row("  refundd / minimal, round by round", fmt.Sprintf("%.2f (%.2f–%.2f)", q, qlo, qhi), "", "report", "")
	row("  CPU µs per cancellation: this process (pipeline + no-op server)", cpus(r.Refundd, false), cpus(r.Minimal, false), "", "")
	row("  CPU µs per cancellation: Redis", cpus(r.Refundd, true), cpus(r.Minimal, true), "", "")
	row("  minimal / refundd, CPU per cancellation (process + Redis)", fmt.Sprintf("%.2f", cpuRatio(r.Minimal, r.Refundd)), "",
		"report", "(what the ratio is when the CPU is the limit)")
	cr, _, _ := summary(commandsOf(r.Refundd))
	cm, _, _ := summary(commandsOf(r.Minimal))
	row("  Redis commands per cancellation", perCancellation(commandsOf(r.Refundd)), perCancellation(commandsOf(r.Minimal)),
		fmt.Sprintf("≤ %.2f × minimal = %.1f", TargetCommandsFactor, TargetCommandsFactor*cm), verdict(cm > 0 && cr <= TargetCommandsFactor*cm))

	h, _, _ := summary(rateOf(r.RefunddHigh))
	row(fmt.Sprintf("cancellations/s, concurrency %d, %v latency (ideal %d)", highConcurrency, highLatency, IdealHigh),
		rates(rateOf(r.RefunddHigh)), rates(rateOf(r.MinimalHigh)), fmt.Sprintf("≥ %d", TargetHigh), verdict(h >= TargetHigh))
	if len(r.ChildHigh) > 0 {
		c, _, _ := summary(r.ChildHigh)
		row("  the same, refundd in a process of its own", rates(r.ChildHigh), "", fmt.Sprintf("≥ %d", TargetHigh), verdict(c >= TargetHigh))
	}

	p99 := percentile(r.PickupR, .99)
	row("idle pickup p50 / p99 (enqueue → request at server), defaults", pickups(r.PickupR), pickups(r.PickupM),
		fmt.Sprintf("p99 ≤ %v", TargetPickupP99), verdict(len(r.PickupR) > 0 && p99 <= TargetPickupP99))
	p99 = percentile(r.PickupLow, .99)
	row(fmt.Sprintf("  the same, WORKER_POLL_INTERVAL=%v", LowLatencyPoll), pickups(r.PickupLow), "",
		fmt.Sprintf("p99 ≤ %v", TargetPickupP99Low), verdict(len(r.PickupLow) > 0 && p99 <= TargetPickupP99Low))
	idleMax := max(TargetIdleFloor, TargetIdleFactor*r.IdleMinimal.commands)
	row(fmt.Sprintf("idle replica's Redis load: commands/s, CPU (Redis alone: %.1f/s, %.2f ms/s)", r.IdleBase.commands, r.IdleBase.cpuMS),
		load(r.IdleRefundd), load(r.IdleMinimal), fmt.Sprintf("≤ max(%.0f, %.0f × minimal) = %.1f/s", TargetIdleFloor, TargetIdleFactor, idleMax),
		verdict(r.IdleRefundd.commands <= idleMax))
	row(fmt.Sprintf("  the same, WORKER_POLL_INTERVAL=%v", LowLatencyPoll), load(r.IdleLow), "", "report", "")

	per := 0.0
	if r.Cancellation > 0 {
		per = float64(r.Logins) * 10000 / float64(r.Cancellation)
	}
	row("logins per 10,000 cancellations", fmt.Sprintf("%.2f (%d in %d)", per, r.Logins, r.Cancellation), "0 (none)",
		fmt.Sprintf("≤ %d", TargetLoginsPer10), verdict(per <= TargetLoginsPer10))
	if r.PeakRSS > 0 {
		row(fmt.Sprintf("peak RSS of refundd at concurrency %d (own process, VmHWM)", highConcurrency),
			fmt.Sprintf("%.1f MB", float64(r.PeakRSS)/(1<<20)), "", fmt.Sprintf("≤ %d MB", TargetRSS>>20), verdict(r.PeakRSS <= TargetRSS))
	} else {
		row("peak RSS of refundd", "not measured", "", fmt.Sprintf("≤ %d MB", TargetRSS>>20), "")
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "rates: median (min–max) of the rounds; MB = 2^20 bytes")
}

// cpuRatio answers median CPU per cancellation (process + Redis) of a over
// that of b: the throughput ratio b/a would have on a CPU-bound machine.
func cpuRatio(a, b []roundResult) float64 {
	total := func(rs []roundResult) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = float64(r.cpu + r.redisCPU)
		}
		m, _, _ := summary(xs)
		return m
	}
	if tb := total(b); tb > 0 {
		return total(a) / tb
	}
	return 0
}

func commandsOf(rs []roundResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.commands
	}
	return out
}

func perCancellation(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	m, lo, hi := summary(xs)
	return fmt.Sprintf("%.1f (%.1f–%.1f)", m, lo, hi)
}

func rateOf(rs []roundResult) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.rate
	}
	return out
}

func cpus(rs []roundResult, redis bool) string {
	us := make([]float64, len(rs))
	for i, r := range rs {
		us[i] = float64(r.cpu.Microseconds())
		if redis {
			us[i] = float64(r.redisCPU.Microseconds())
		}
	}
	return rates(us)
}

func rates(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	m, lo, hi := summary(xs)
	if len(xs) == 1 {
		return fmt.Sprintf("%.0f", m)
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", m, lo, hi)
}

func pickups(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("%s / %s ms (n=%d)", ms(percentile(ds, .5)), ms(percentile(ds, .99)), len(ds))
}

func load(l idleLoad) string {
	return fmt.Sprintf("%.1f/s, %.2f ms/s", l.commands, l.cpuMS)
}
