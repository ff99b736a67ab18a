package redisconn_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
)

// Three replicas on a redis-cluster:// REDIS_URL (six nodes: three
// primaries, three replicas) work through a CLUSTER FAILOVER of the queue's
// primary with 300 cancellations in flight: every task completes, and the
// sandbox's ledger shows every refund cancelled exactly once. The shared
// budget and deadline-first dispatch run too (TCO_RATE_LIMIT): every script
// of theirs keeps its keys in one slot, or the cluster would refuse it
// (CROSSSLOT).
func TestFleetSurvivesClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a six-node cluster and 300 refunds")
	}
	const n = 300
	c := redistest.StartCluster(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: c.URL, Queue: "refunds", Env: map[string]string{"TCO_RATE_LIMIT": "40"}})
	refs := fleettest.Refs("CL", n)
	f.Add(t, refs...)

	cancelled := func() int { return f.SB.Stats().Calls[rpcclient.MethodCancelRefund]["ok"] }
	testutil.Eventually(t, 60*time.Second, "a third cancelled", func() bool { return cancelled() >= n/3 })
	// The queue's keys ({refunds}) and refundd's own for it share a slot.
	oldP, newP := c.Failover(t, "asynq:{refunds}:pending")
	t.Logf("CLUSTER FAILOVER at %d cancelled: the queue's primary :%d → :%d", cancelled(), oldP, newP)
	if p, _ := c.Primary(t, "refundd:deadlinefirst:{refunds}:waiting"); p != newP {
		t.Fatalf("deadline-first's keys are on :%d, the queue on :%d", p, newP)
	}

	states := f.WaitFinished(t, 4*time.Minute, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	// Nothing beside them: no task lost, none doubled.
	if qi, err := f.Insp.GetQueueInfo(f.Queue); err != nil || qi.Size != n || qi.Completed != n {
		t.Fatalf("queue %+v %v, want %d completed and nothing else", qi, err, n)
	}
	okCalls := map[string]int{}
	for _, call := range f.SB.Ledger() {
		if call.Method == rpcclient.MethodCancelRefund && call.Outcome == "ok" {
			okCalls[call.OrderRef]++
		}
	}
	for _, ref := range refs {
		if okCalls[ref] != 1 {
			t.Errorf("%s cancelled %d times at the sandbox", ref, okCalls[ref])
		}
		if r, _ := f.SB.Refund(ref); r.Status != "CANCELED" {
			t.Errorf("%s: refund %s", ref, r.Status)
		}
	}
}
