package vendorbudget_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/deadlinefirst"
	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/vendorbudget"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// Three replicas sharing TCO_RATE_LIMIT=R keep the fleet's rate to
// 2Checkout, read from the sandbox's ledger, at most R·1.1 in every
// one-second window, for over ten seconds. A burst of 2 allows R+1 in a
// second (GCRA: R+B−1). How close to R the fleet gets is a speed figure
// (logged; BenchmarkFleetUnderVendorRateLimit measures the like), not
// asserted here: a loaded CPU takes slots late.
func TestFleetKeepsSharedRate(t *testing.T) {
	if testing.Short() {
		t.Skip("over ten seconds of load")
	}
	const rate, n = 20, 230 // 230 cancellations + 3 logins at 20/s: about 11.6s
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t),
		Env: map[string]string{"TCO_RATE_LIMIT": "20", "TCO_RATE_BURST": "2"}})
	refs := fleettest.Refs("RATE", n)
	f.Add(t, refs...)
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	ts := f.CallTimes()
	span := ts[len(ts)-1].Sub(ts[0])
	if span < 10*time.Second {
		t.Fatalf("the run lasted %v; the test needs at least 10s of load", span)
	}
	most, at := fleettest.MaxInWindow(ts, time.Second)
	if float64(most) > rate*1.1 {
		t.Fatalf("%d calls in the second from %s; the shared limit is %d/s (+10%%)", most, at.Format(time.RFC3339Nano), rate)
	}
	overall := float64(len(ts)-1) / span.Seconds()
	t.Logf("%d calls in %v: %.2f/s, at most %d in any second (limit %d/s)", len(ts), span, overall, most, rate)
}

// One 429 with Retry-After: 3 delays the task that got it — its next call
// comes no sooner than 3 s later — and nobody else: the other replicas'
// calls go on meanwhile (no fleet-wide pause).
func TestFleetA429DelaysOnlyItsTask(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet test; not with -short")
	}
	const n = 80
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t),
		Env: map[string]string{"TCO_RATE_LIMIT": "40"}})
	if err := f.SB.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: rpctest.FaultStatus, Status: 429, RetryAfter: 3, FirstN: 1}); err != nil {
		t.Fatal(err)
	}
	refs := fleettest.Refs("ONE429", n)
	f.Add(t, refs...)
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	var hit rpctest.Call
	for _, c := range f.SB.Ledger() {
		if c.Fault == rpctest.FaultStatus {
			hit = c
		}
	}
	if hit.Time.IsZero() {
		t.Fatal("no 429 in the ledger")
	}
	var others, own int
	for _, c := range f.SB.Ledger() {
		if !c.Time.After(hit.Time) || c.Method == "login" {
			continue
		}
		if c.OrderRef == hit.OrderRef {
			own++
			if c.Time.Before(hit.Time.Add(3 * time.Second)) {
				t.Fatalf("%s's next call %v after its 429, before the 3s it asked", hit.OrderRef, c.Time.Sub(hit.Time))
			}
		} else if c.Time.Before(hit.Time.Add(3 * time.Second)) {
			others++
		}
	}
	if own == 0 {
		t.Fatalf("%s was not called again after its 429", hit.OrderRef)
	}
	if others < 10 {
		t.Fatalf("only %d calls of other tasks in the 3s after one task's 429; a 429 must not pause the fleet", others)
	}
}

// An outage of cancelRefund alone (login and getOrder answer) is seen and
// held per method: while it lasts the fleet sends about one cancelRefund
// per probe interval — a real one, not a login — and the first that works
// restarts the fleet. Every refund is cancelled once.
func TestFleetCancelRefundOutageIsProbedWithACancel(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet under an outage: seconds of real time")
	}
	const n = 150
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t), Replicas: 2, Manual: true})
	if err := f.SB.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: rpctest.FaultStatus, Status: 503}); err != nil {
		t.Fatal(err)
	}
	refs := fleettest.Refs("OUT", n)
	f.Add(t, refs...)
	f.StartReplicas(t)
	// Wait for both replicas to see the outage, then for a few probes.
	testutil.Eventually(t, 30*time.Second, "every replica to report cancelRefund out", func() bool {
		ops := f.Ops()
		for _, base := range ops {
			if v, ok := testutil.MetricValue(t, testutil.Metrics(t, base), `refundd_tco_outage{method="cancelRefund"}`); !ok || v != 1 {
				return false
			}
		}
		return len(ops) == 2
	})
	out := time.Now()
	cancels := func(after time.Time) (n int) {
		for _, c := range f.SB.Ledger() {
			if c.Method == "cancelRefund" && c.Time.After(after) {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 30*time.Second, "4 probes", func() bool { return cancels(out) >= 4 })
	probes, span := cancels(out), time.Since(out)
	if err := f.SB.SetFaults(); err != nil {
		t.Fatal(err)
	}
	// About one probe per second (the default interval), with requests
	// that had passed the gate when the outage began arriving late.
	if limit := span.Seconds() + 6; float64(probes) > limit {
		t.Fatalf("%d cancelRefund calls in the %v of the outage after every replica saw it; want about one a second", probes, span)
	}
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	applied := map[string]int{}
	for _, c := range f.SB.Ledger() {
		if c.Method == "cancelRefund" && c.Outcome == "ok" {
			applied[c.OrderRef]++
		}
	}
	for ref, k := range applied {
		if k != 1 {
			t.Fatalf("%s cancelled %d times", ref, k)
		}
	}
}

// Liveness: a replica killed while it held every deadline-first turn, an
// outage of cancelRefund it declared, the probe it claimed and the counts
// that declared it, leaves state that lapses in seconds (turns: Lease 6s
// after their last renewal; the probe's claim: 1s; the outage: a failing
// probe renews it, a working one ends it). A fleet started beside that
// state cancels every refund, as the sandbox's ledger shows.
func TestFleetProgressesPastWhatTheDeadLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out leases in real time: seconds")
	}
	const n = 60
	r := redistest.New(t)
	q := r.Queue(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: q, Replicas: 2, Manual: true, MerchantCode: "DEAD",
		Env: map[string]string{"TCO_RATE_LIMIT": "20", "DISPATCH_SLOTS": "5"}})
	rc := r.Client()
	defer rc.Close()
	ctx := context.Background()
	now := time.Now()
	key := "refundd:2co:{DEAD}" // as internal/daemon names it
	t.Cleanup(func() { rc.Del(ctx, key+":window", key+":outage") })
	// What the dead replica left, as its last renewals wrote it.
	turns := deadlinefirst.Keys(q)[1]
	for i := range 5 {
		rc.ZAdd(ctx, turns, redis.Z{Score: float64(now.Add(deadlinefirst.DefaultLease).UnixMilli()), Member: fmt.Sprintf("dead-%d", i)})
	}
	sec := strconv.FormatInt(now.Unix(), 10)
	rc.HSet(ctx, key+":window", "first", now.UnixMilli(), sec+"|cancelRefund|s", 30, sec+"|cancelRefund|u", 30)
	rc.HSet(ctx, key+":outage", "cancelRefund", now.Add(vendorbudget.DefaultLease).UnixMilli(),
		"cancelRefund|p", now.Add(vendorbudget.DefaultProbeInterval).UnixMilli())
	refs := fleettest.Refs("DEAD", n)
	f.Add(t, refs...)
	f.StartReplicas(t)
	states := f.WaitFinished(t, 90*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	cancelled := map[string]bool{}
	var first time.Time
	for _, c := range f.SB.Ledger() {
		if c.Method == "cancelRefund" && c.Outcome == "ok" {
			cancelled[c.OrderRef] = true
			if first.IsZero() || c.Time.Before(first) {
				first = c.Time
			}
		}
	}
	// The fleet honoured what it found (the test is not vacuous): no
	// cancel went before the dead probe's claim ended.
	if first.Before(now.Add(vendorbudget.DefaultProbeInterval)) {
		t.Fatalf("a cancelRefund at %v, before the dead replica's probe claim ended (%v): the planted state was not seen",
			first.Sub(now), vendorbudget.DefaultProbeInterval)
	}
	if len(cancelled) != n {
		t.Fatalf("the ledger shows %d of %d refunds cancelled", len(cancelled), n)
	}
	// A probe's answer ended the dead replica's outage (it was seen).
	if out, err := rc.HExists(ctx, key+":outage", "cancelRefund").Result(); err != nil || out {
		t.Fatalf("the dead replica's outage is still in Redis after the run (%v): the fleet never saw it", err)
	}
	if left, err := rc.ZCard(ctx, turns).Result(); err != nil || left != 0 {
		t.Fatalf("turns left after the run: %d %v", left, err)
	}
}
