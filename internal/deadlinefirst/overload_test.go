package deadlinefirst_test

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/worker"
)

// The overload scenario of BenchmarkOverload; flags after -args change it:
//
//	go test ./internal/deadlinefirst -run '^$' -bench Overload -benchtime 1x -args -overload.seeds 1,2,3
var (
	overloadSeeds  = flag.String("overload.seeds", "1,2,3", "seeds of the scenario, comma-separated: one run each")
	overloadTasks  = flag.Int("overload.tasks", 2000, "cancellations enqueued")
	overloadRate   = flag.Int("overload.rate", 18, "the fleet's shared budget, requests/s (TCO_RATE_LIMIT)")
	overloadBurst  = flag.Int("overload.burst", 5, "the budget's burst (TCO_RATE_BURST)")
	overloadOutage = flag.Duration("overload.outage", 20*time.Second, "how long 2Checkout answers every call 503 at the start")
	overloadMethod = flag.String("overload.method", "", "the method the outage hits (e.g. cancelRefund: login and getOrder answer); empty: every method")
	overloadFrom   = flag.Duration("overload.from", 60*time.Second, "the earliest cut-off, from the start")
	overloadTo     = flag.Duration("overload.to", 120*time.Second, "the latest cut-off, from the start")
)

// scenario is one seeded overload: cut-offs, and the order of enqueueing.
type scenario struct {
	seed    uint64
	refs    []string    // in the order they are enqueued
	cutoffs []time.Time // of refs
}

func newScenario(seed uint64, n int, start time.Time, from, to time.Duration) scenario {
	rng := rand.New(rand.NewPCG(seed, 0x2c0))
	s := scenario{seed: seed}
	for i := range n {
		s.refs = append(s.refs, fmt.Sprintf("OVL%d-%05d", seed, i))
		// Whole seconds: a refund's initiation is kept to the second.
		s.cutoffs = append(s.cutoffs, start.Add(from+time.Duration(rng.Int64N(int64(to-from)))).Truncate(time.Second))
	}
	return s
}

// optimum answers how many of cutoffs an offline schedule can meet at best
// when unit jobs are served by a budget of rate per second with a burst,
// starting at from (a GCRA budget unused until then: burst requests at
// once, then one per 1/rate): earliest cut-off first, skipping the jobs
// already past (optimal for unit jobs on one resource: Jackson's rule,
// with skipping as in Moore–Hodgson). A job is met if its request starts
// before its cut-off.
func optimum(cutoffs []time.Time, from time.Time, rate float64, burst int) int {
	sorted := slices.Clone(cutoffs)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	met, k := 0, 0
	for _, c := range sorted {
		slot := from.Add(time.Duration(float64(max(0, k-burst+1)) / rate * float64(time.Second)))
		if slot.Before(c) {
			met++
			k++
		}
	}
	return met
}

func TestOptimum(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	at := func(d ...time.Duration) []time.Time {
		var ts []time.Time
		for _, x := range d {
			ts = append(ts, t0.Add(x))
		}
		return ts
	}
	s := time.Second
	cases := []struct {
		name    string
		cutoffs []time.Time
		rate    float64
		burst   int
		want    int
	}{
		{"none", nil, 1, 1, 0},
		{"all fit", at(s, 2*s, 3*s), 1, 1, 3},             // slots at 0, 1s, 2s
		{"a slot at the cut-off is late", at(0), 1, 1, 0}, // must start before it
		{"just before the cut-off", at(1), 1, 1, 1},       // 1ns of slack
		{"the late are skipped, not served", at(s/2, s/2, 3*s), 1, 1, 2},
		{"order of input does not matter", at(3*s, s/2, s/2), 1, 1, 2},
		{"faster rate", at(s/2, s/2, s/2), 4, 1, 2},               // slots at 0, 250ms, 500ms (late)
		{"one slot per tie", at(2*s, 2*s, 2*s, 2*s), 1, 1, 2},     // slots 0, 1s; 2s is late
		{"a burst at the start", at(s/2, s/2, s/2, s/2), 1, 3, 3}, // 0, 0, 0, then 1s (late)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := optimum(tc.cutoffs, t0, tc.rate, tc.burst); got != tc.want {
				t.Fatalf("optimum = %d, want %d", got, tc.want)
			}
		})
	}
}

// outcome is one dispatch's result on one scenario.
type outcome struct {
	met, missed int
	// after the recovery: the calls, and of them the getOrders and logins
	calls, getOrders, logins int
}

// runOverload runs the scenario once per dispatch — "0" for plain FIFO, ""
// for deadline-first's default DISPATCH_SLOTS — side by side: a fleet of
// three replicas each, with its own sandbox and budget, on one Redis. It
// answers how many refunds each sandbox shows cancelled, and when
// 2Checkout recovered.
func runOverload(tb testing.TB, r *redistest.Redis, sc scenario, p params, dispatches ...string) ([]outcome, time.Time) {
	var fleets []*fleettest.Fleet
	for _, turns := range dispatches {
		f := fleettest.Start(tb, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(tb), Manual: true, MerchantCode: fmt.Sprintf("OVL%s%d", turns, sc.seed),
			Env: map[string]string{"TCO_RATE_LIMIT": strconv.Itoa(p.rate), "TCO_RATE_BURST": strconv.Itoa(p.burst), "DISPATCH_SLOTS": turns,
				"WORKER_CONCURRENCY": "20", "TCO_OUTAGE_PROBE_INTERVAL": "250ms", "WINDOW_SWEEP_INTERVAL": "5s"}})
		for i, ref := range sc.refs {
			// The cut-off is the window's close less the safety margin.
			f.AddInitiated(tb, sc.cutoffs[i].Add(-2*time.Hour+worker.DefaultSafetyMargin), ref)
		}
		if err := f.SB.SetFaults(rpctest.FaultRule{Method: *overloadMethod, Kind: "status", Status: 503}); err != nil {
			tb.Fatal(err)
		}
		fleets = append(fleets, f)
	}
	for _, f := range fleets {
		f.StartReplicas(tb)
	}
	time.Sleep(p.outage) // the scenario's clock: 2Checkout is down this long
	for _, f := range fleets {
		if err := f.SB.SetFaults(); err != nil {
			tb.Fatal(err)
		}
	}
	recovered := time.Now()
	// No request starts after the last cut-off; one started just before it
	// ends within the request timeout (5s).
	time.Sleep(time.Until(slices.MaxFunc(sc.cutoffs, func(a, b time.Time) int { return a.Compare(b) }).Add(6 * time.Second)))
	var out []outcome
	for k, f := range fleets {
		var o outcome
		for _, ref := range sc.refs {
			if rf, ok := f.SB.Refund(ref); ok && rf.Status == "CANCELED" {
				o.met++
			}
		}
		o.missed = len(sc.refs) - o.met
		// Where the budget went after the recovery, for the reader of -v.
		spent := map[string]int{}
		before := 0
		var resumed time.Time // the first cancel answered after the recovery
		perSec := map[int]int{}
		for _, c := range f.SB.Ledger() {
			if c.Time.Before(recovered) {
				before++
				continue
			}
			spent[c.Method+" "+c.Outcome]++
			o.calls++
			switch c.Method {
			case "getOrder":
				o.getOrders++
			case "login":
				o.logins++
			}
			perSec[int(c.Time.Sub(recovered)/(10*time.Second))]++
			if c.Method == "cancelRefund" && c.Outcome == "ok" && resumed.IsZero() {
				resumed = c.Time
			}
		}
		out = append(out, o)
		tb.Logf("DISPATCH_SLOTS=%q seed %d: %d calls during the outage; after it: %v; first cancel %v after the recovery; calls per 10s after it: %v",
			dispatches[k], sc.seed, before, spent, resumed.Sub(recovered), perSec)
	}
	return out, recovered
}

// params is an overload scenario's shape.
type params struct {
	seeds                  []uint64
	tasks                  int
	rate, burst            int
	outage                 time.Duration
	cutoffsFrom, cutoffsTo time.Duration // the cut-offs are spread over [from, to) after the start
}

// row is one seed's result.
type row struct {
	seed                    uint64
	tasks                   int
	optimum, edf, fifo, gap int // missed; gap = edf − optimum
}

// overload runs every seed of p, FIFO and deadline-first side by side, and
// prints the table to out.
func overload(tb testing.TB, p params, out io.Writer) []row {
	r := redistest.New(tb)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "seed\ttasks\toptimum missed\tdeadline-first missed\tFIFO missed\tdeadline-first − optimum\ttarget ≤ 1%% of tasks\tmet\tcalls per cancel after the recovery (getOrders, logins)\t\n")
	var rows []row
	for _, seed := range p.seeds {
		sc := newScenario(seed, p.tasks, time.Now(), p.cutoffsFrom, p.cutoffsTo)
		res, recovered := runOverload(tb, r, sc, p, "", "0")
		edf, fifo := res[0], res[1]
		rw := row{seed: seed, tasks: len(sc.refs), optimum: len(sc.refs) - optimum(sc.cutoffs, recovered, float64(p.rate), p.burst), edf: edf.missed, fifo: fifo.missed}
		rw.gap = rw.edf - rw.optimum
		ok := "yes"
		if rw.gap > rw.tasks/100 {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%+d (%.2f%%)\t%d\t%s\t%.3f (%d, %d)\t\n", seed, rw.tasks, rw.optimum, rw.edf, rw.fifo, rw.gap,
			float64(rw.gap)/float64(rw.tasks)*100, rw.tasks/100, ok, float64(edf.calls)/float64(max(1, edf.met)), edf.getOrders, edf.logins)
		rows = append(rows, rw)
	}
	_ = tw.Flush()
	return rows
}

// BenchmarkOverload runs the overload scenario against real Redis
// and the sandbox: cancellations enqueued in random order, cut-offs spread
// over the next one to two minutes, 2Checkout answering 503 to every call
// for the first 20 s, then recovering under a shared budget that cannot
// serve them all. For each seed, plain FIFO and deadline-first dispatch run
// the same scenario side by side (two fleets of three replicas, each with
// its own sandbox and budget), and the offline optimum is computed from the
// scenario and the moment 2Checkout recovered. It prints one table.
func BenchmarkOverload(b *testing.B) {
	if b.N > 1 {
		b.Skip("one run is the measurement: use -benchtime 1x")
	}
	p := params{tasks: *overloadTasks, rate: *overloadRate, burst: *overloadBurst, outage: *overloadOutage, cutoffsFrom: *overloadFrom, cutoffsTo: *overloadTo}
	for _, s := range strings.Split(*overloadSeeds, ",") {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			b.Fatalf("-overload.seeds: %v", err)
		}
		p.seeds = append(p.seeds, n)
	}
	worst := 0.0
	for _, rw := range overload(b, p, os.Stdout) {
		seed := strconv.FormatUint(rw.seed, 10)
		b.ReportMetric(float64(rw.edf), "edf-missed/seed"+seed)
		b.ReportMetric(float64(rw.fifo), "fifo-missed/seed"+seed)
		b.ReportMetric(float64(rw.optimum), "optimum-missed/seed"+seed)
		worst = max(worst, float64(rw.gap)/float64(rw.tasks)*100)
	}
	b.ReportMetric(worst, "worst-gap-%")
}
