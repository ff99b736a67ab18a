package vendorbudget_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

const tasksWindow = tasks.Window

// Three replicas sharing TCO_RATE_LIMIT=R keep the fleet's rate to
// 2Checkout, read from the sandbox's ledger, at most R·1.1 in every
// one-second window and at least 0.9·R overall, for over ten seconds. A
// burst of 2 allows R+1 in a second (GCRA: R+B−1) and lets a slot taken a
// little late (a busy CPU) be made up.
func TestFleetKeepsSharedRate(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet test; not with -short")
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
	if overall < 0.9*rate {
		t.Fatalf("the fleet made %.1f calls/s; want at least 90%% of %d/s", overall, rate)
	}
	t.Logf("%d calls in %v: %.2f/s, at most %d in any second (limit %d/s)", len(ts), span, overall, most, rate)
}

// One 429 with Retry-After: 3, seen by one replica, stops every replica's
// calls for 3 seconds: the ledger shows no call from anyone in that time,
// and work resumes after it.
func TestFleetPausesOn429(t *testing.T) {
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
	refs := fleettest.Refs("PAUSE", n)
	f.Add(t, refs...)
	// During the pause every replica is ready and its metrics show the pause.
	testutil.Eventually(t, 20*time.Second, "the 429", func() bool { return f.SB.Stats().Calls["cancelRefund"]["not_applied"] > 0 })
	testutil.Eventually(t, 2*time.Second, "every replica's metrics to show the pause", func() bool {
		ops := f.Ops()
		for _, base := range ops {
			if pauseSeconds(t, base) <= 0 {
				return false
			}
		}
		return len(ops) == 3
	})
	for _, base := range f.Ops() {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s/readyz answered %d during a pause", base, resp.StatusCode)
		}
	}
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != n {
		t.Fatalf("%d of %d completed; archived: %v", got, n, states[asynq.TaskStateArchived])
	}
	var t429 time.Time
	for _, c := range f.SB.Ledger() {
		if c.Fault == "status" {
			t429 = c.Time
		}
	}
	if t429.IsZero() {
		t.Fatal("no 429 in the ledger")
	}
	// Requests already past the gate when the 429 was answered may still
	// arrive just after it; none may start later within the 3 s.
	const inFlight = 100 * time.Millisecond
	var during, after int
	for _, ts := range f.CallTimes() {
		switch {
		case ts.After(t429.Add(inFlight)) && ts.Before(t429.Add(3*time.Second)):
			during++
		case !ts.Before(t429.Add(3 * time.Second)):
			after++
		}
	}
	if during > 0 {
		t.Fatalf("%d calls arrived within 3s after the 429 (at %s)", during, t429.Format(time.RFC3339Nano))
	}
	if after < n/2 {
		t.Fatalf("only %d calls after the pause; the test needs work left when the 429 came", after)
	}
}

// A task whose cut-off comes before the shared pause ends is not sent and
// takes no budget: it is archived at once under the window rule, and the
// ledger holds no call for it.
func TestPauseNeverSendsPastTheCutoff(t *testing.T) {
	if testing.Short() {
		t.Skip("a fleet test; not with -short")
	}
	r := redistest.New(t)
	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: r.Queue(t), Replicas: 2, Env: map[string]string{"TCO_RATE_LIMIT": "10"}})
	if err := f.SB.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: rpctest.FaultStatus, Status: 429, RetryAfter: 6, FirstN: 1}); err != nil {
		t.Fatal(err)
	}
	f.Add(t, "EARLY")
	testutil.Eventually(t, 20*time.Second, "the 429", func() bool { return f.SB.Stats().Calls["cancelRefund"]["not_applied"] > 0 })
	// Cut-off (window − WINDOW_SAFETY_MARGIN of 1m) in 3 to 4 s, inside the 6 s pause.
	initiated := time.Now().Add(-tasksWindow + time.Minute + 4*time.Second).Truncate(time.Second)
	f.AddInitiated(t, initiated, "LATE")
	states := f.WaitFinished(t, 20*time.Second, "LATE")
	if len(states[asynq.TaskStateArchived]) != 1 {
		t.Fatalf("LATE ended %v, want archived", states)
	}
	info, err := f.Status("LATE")
	if err != nil {
		t.Fatal(err)
	}
	// On the replica with a session the request itself is refused (not
	// started before its cut-off); on the other its login cannot get
	// budget within TCO_REQUEST_TIMEOUT and no retry fits. Either way the
	// window rule ends it.
	if !strings.HasPrefix(info.LastErr, "window closed at ") && !strings.HasPrefix(info.LastErr, "no retry fits before the window closes") {
		t.Fatalf("LATE's reason %q, want the window rule's", info.LastErr)
	}
	// The wait for budget never crosses the cut-off; a retry may still be
	// placed in the last slot before it (the window rule's last retry),
	// whose run archives the task as soon as the queue hands it over.
	if cutoff := initiated.Add(tasksWindow - time.Minute); info.LastFailedAt.After(cutoff.Add(10 * time.Second)) {
		t.Fatalf("LATE archived at %v, long after its cut-off %v: it waited for the pause instead of following the window rule; %s", info.LastFailedAt, cutoff, info.LastErr)
	}
	for _, c := range f.SB.Ledger() {
		if c.OrderRef == "LATE" {
			t.Fatalf("a request for LATE reached 2Checkout during the pause: %+v", c)
		}
	}
}

// pauseSeconds reads refundd_tco_pause_seconds from a replica's /metrics.
func pauseSeconds(t *testing.T, base string) float64 {
	t.Helper()
	v, ok := testutil.MetricValue(t, testutil.Metrics(t, base), "refundd_tco_pause_seconds")
	if !ok {
		t.Fatalf("%s/metrics has no refundd_tco_pause_seconds", base)
	}
	return v
}
