package redisconn_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redisconn"
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
// (CROSSSLOT). They log in as the ACL user of redisconn.ACLRules (the
// default user off), the dashboard's cluster page answers, and no node's
// ACL LOG shows a refusal.
func TestFleetSurvivesClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a six-node cluster and 300 refunds")
	}
	const n = 300
	c := redistest.StartCluster(t, redistest.Server{
		ACL:  []string{"user default off", "user admin on >admin-pass ~* &* +@all", "user refundd on >refundd-pass " + redisconn.ACLRules},
		User: "admin", Password: "admin-pass",
	})
	refunddURL := strings.Replace(c.URL, "admin:admin-pass@", "refundd:refundd-pass@", 1)
	f := fleettest.Start(t, fleettest.Options{RedisURL: refunddURL, Queue: "refunds", Env: map[string]string{"TCO_RATE_LIMIT": "40"}})
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

	for _, path := range []string{"/readyz", "/monitoring/api/redis_info", "/monitoring/api/queues/refunds/completed_tasks"} {
		req, _ := http.NewRequest("GET", f.Ops()[0]+path, nil)
		if code, got := do(t, req); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, got)
		}
	}
	for _, p := range c.Ports() {
		n := c.Node(p)
		entries, err := n.Do(context.Background(), "ACL", "LOG").Slice()
		n.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("node :%d refused: %v", p, e)
		}
	}
}
