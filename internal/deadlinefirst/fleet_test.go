package deadlinefirst_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
)

// Under a backlog, a replica with a budget of 5 calls/s calls 2Checkout in
// the order of the refunds' cut-offs — whatever order they were enqueued
// in — as the sandbox's ledger shows; a held task counts no retry (asynq's
// Inspector). One replica: its tasks holding turns meet at the budget in
// the order they came (across replicas, in any order: the overload
// benchmark runs three).
func TestCallsGoInCutoffOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet test; not with -short")
	}
	const n, slots = 16, 2
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t), Replicas: 1, Manual: true,
		Env: map[string]string{"TCO_RATE_LIMIT": "5", "DISPATCH_SLOTS": "2"}})
	refs := fleettest.Refs("EDF", n)
	// Refund i was initiated i minutes after the first: its cut-off comes
	// i minutes later. Enqueued in random order.
	first := time.Now().Add(-time.Hour).Truncate(time.Second)
	cutoffRank := map[string]int{}
	for i, ref := range refs {
		cutoffRank[ref] = i
	}
	shuffled := slices.Clone(refs)
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, ref := range shuffled {
		f.AddInitiated(t, first.Add(time.Duration(cutoffRank[ref])*time.Minute), ref)
	}
	f.StartReplicas(t)
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed: %v", got, n, states)
	}
	var order []int
	for _, c := range f.SB.Ledger() {
		if c.Method == "cancelRefund" {
			order = append(order, cutoffRank[c.OrderRef])
		}
	}
	// The first tasks to run take the free turns at once, in the queue's
	// order; from then on every call is one of the `slots` most urgent
	// left.
	for i := slots; i < len(order); i++ {
		sooner := 0
		for _, later := range order[i+1:] {
			if later < order[i] {
				sooner++
			}
		}
		if sooner >= slots {
			t.Fatalf("cancelRefund calls by cut-off rank %v: call %d (rank %d) went before %d more urgent ones; want fewer than %d",
				order, i, order[i], sooner, slots)
		}
	}
	t.Logf("cancelRefund calls by cut-off rank: %v", order)
	for _, ref := range refs {
		info, err := f.Status(ref)
		if err != nil || info.Retried != 0 {
			t.Fatalf("%s: retried %d (%v); holds must not count", ref, info.Retried, err)
		}
	}
}

// With no backlog a fresh task takes its turn at its first delivery: it is
// never held, and it makes exactly the calls it would without dispatch.
func TestNoBacklogNoHold(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet test; not with -short")
	}
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t), Replicas: 2,
		Env: map[string]string{"TCO_RATE_LIMIT": "50"}})
	for i, ref := range fleettest.Refs("FRESH", 5) {
		f.Add(t, ref)
		f.WaitFinished(t, 10*time.Second, ref)
		info, err := f.Status(ref)
		if err != nil || info.State != asynq.TaskStateCompleted || info.Retried != 0 {
			t.Fatalf("%s: %+v %v", ref, info, err)
		}
		if !strings.Contains(string(info.Result), `"attempts":1`) {
			t.Fatalf("%s: record %s, want one attempt", ref, info.Result)
		}
		calls := 0
		for _, c := range f.SB.Ledger() {
			if c.OrderRef == ref {
				calls++
			}
		}
		if calls != 1 {
			t.Fatalf("task %d made %d calls, want its one cancelRefund", i, calls)
		}
	}
	held := 0.0
	for _, base := range f.Ops() {
		v, _ := testutil.MetricValue(t, testutil.Metrics(t, base), `refundd_attempts_total{outcome="held"}`)
		held += v
	}
	if held != 0 {
		t.Fatalf("%v holds with no backlog", held)
	}
}
