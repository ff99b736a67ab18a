package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Three refunds on one order, one after the other (cancelled, refused,
// cancelled), each through refundctl and a real worker: `status ORDER`
// lists the three, newest first, in text and as the API's JSON object; an
// order nobody asked about is not found (exit 1). Then an operator tries
// the refused one again (rerun): its earlier run stays in the record, and
// the new run is the task's.
func TestOrderStatusAndRerun(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	q := r.Queue(t)
	sb := rpctest.NewServer(rpctest.Config{})
	t.Cleanup(sb.Close)
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: records.New(rc, q, 0)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 2}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })

	now := time.Now().UTC().Truncate(time.Second)
	refunds := []struct {
		at      time.Time
		status  string
		outcome string
	}{
		{now.Add(-30 * time.Minute), rpctest.StatusPending, tasks.OutcomeCancelled},
		{now.Add(-20 * time.Minute), "COMPLETED", tasks.OutcomeRefused},
		{now.Add(-10 * time.Minute), rpctest.StatusPending, tasks.OutcomeCancelled},
	}
	for _, rf := range refunds {
		if err := sb.Seed(rpctest.Refund{OrderRef: "O1", Status: rf.status, InitiatedAt: rf.at}); err != nil {
			t.Fatal(err)
		}
		if code, out, _ := ctl(t, r, q, "", "enqueue", "--order-ref", "O1", "--initiated-at", rf.at.Format(time.RFC3339)); code != 0 {
			t.Fatalf("enqueue: %d %q", code, out)
		}
		testutil.WaitTask(t, insp, q, tasks.TaskID("O1", rf.at), 20*time.Second, func(i *asynq.TaskInfo) bool {
			return i.State == asynq.TaskStateCompleted || i.State == asynq.TaskStateArchived
		})
	}

	code, out, _ := ctl(t, r, q, "", "status", "O1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("status O1: %d %q", code, out)
	}
	for i, line := range lines {
		rf := refunds[2-i] // newest first
		if !strings.HasPrefix(line, rf.at.Format(time.RFC3339)) || !strings.Contains(line, " "+rf.outcome+" ") || !strings.Contains(line, tasks.TaskID("O1", rf.at)) {
			t.Errorf("line %d %q: want the refund of %v, %s", i, line, rf.at, rf.outcome)
		}
	}
	code, out, _ = ctl(t, r, q, "", "status", "--json", "O1")
	var ov taskview.OrderView
	if code != 0 || json.Unmarshal([]byte(out), &ov) != nil || ov.OrderRef != "O1" || len(ov.Cancellations) != 3 ||
		ov.Cancellations[0].Outcome != tasks.OutcomeCancelled || ov.Cancellations[1].Outcome != tasks.OutcomeRefused || ov.Cancellations[1].State != "archived" {
		t.Fatalf("status --json O1: %d %q", code, out)
	}
	if code, _, errOut := ctl(t, r, q, "", "status", "NOPE"); code != 1 || !strings.Contains(errOut, "no cancellation of order NOPE") {
		t.Fatalf("unknown order: %d %q", code, errOut)
	}

	// Try the refused one again: refused again (the order still shows
	// refund 3 as its own now: the newer refund is left alone).
	refused := refunds[1].at.Format(time.RFC3339)
	if code, out, errOut := ctl(t, r, q, "", "rerun", "--initiated-at", refunds[0].at.Format(time.RFC3339), "O1"); code != 1 || !strings.Contains(errOut, "cancelled") {
		t.Fatalf("rerun of a cancelled refund: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := ctl(t, r, q, "", "rerun", "--initiated-at", refused, "O1"); code != 0 || !strings.Contains(out, "run 2") {
		t.Fatalf("rerun: %d %q %q", code, out, errOut)
	}
	testutil.Eventually(t, 20*time.Second, "run 2 ends", func() bool {
		code, out, _ := ctl(t, r, q, "", "status", "--json", "--initiated-at", refused, "O1")
		var v taskview.View
		return code == 0 && json.Unmarshal([]byte(out), &v) == nil && v.Result != nil && v.Result.Run == 2 && v.Result.Final() && len(v.EarlierRuns) == 1 &&
			v.EarlierRuns[0].Outcome == tasks.OutcomeRefused && v.EarlierRuns[0].Run == 1
	})
}
