package windowsweep_test

// An operator's Archive of a task the sweep moved back to pending (record
// "queued") stands.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// A raw producer's MaxRetry 0 task: its delivery claimed the refund and
// wrote "sending", then the process died; asynq's recoverer archives it
// with "asynq: task lease expired" (played here by a handler answering
// that error). The sweep runs it (AsynqsOwn): pending, record "queued".
// Before any worker takes it, an operator archives it from the dashboard
// to stop the cancellation. Its last error and last failure are the
// crash's, as when the sweep moved it (the record's queued_after): no
// failure of asynq's since, so the next sweep leaves it archived.
func TestOperatorArchiveOfASweptCrashedTaskStands(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	log := zaptest.NewLogger(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	store := records.New(rc, q, 0)
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })

	initiated := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	p := tasks.CancelRefund{OrderRef: "CRA1", RefundInitiatedAt: initiated}
	id := tasks.TaskID("CRA1", initiated)
	// The crashed delivery's claim and its "sending" record.
	c, err := store.Claim(context.Background(), p, id, "tok1")
	if err != nil || c.Owner != id {
		t.Fatalf("claim: %+v %v", c, err)
	}
	sending := &tasks.Result{Outcome: tasks.OutcomeSending, TaskID: id, OrderRef: "CRA1", RefundInitiatedAt: initiated, Run: 1, Attempts: 1, Sent: 1,
		Reason: "cancelRefund sent at ... has no recorded answer", WindowClosesAt: initiated.Add(2 * time.Hour)}
	if err := store.Write(context.Background(), c, sending, worker.DeliveryRunning, false); err != nil {
		t.Fatal(err)
	}
	payload := `{"order_ref":"CRA1","refund_initiated_at":"` + initiated.Format(time.RFC3339) + `"}`
	if _, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(payload)), asynq.TaskID(id), asynq.Queue(q), asynq.MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	// asynq archives it for the lease that expired (the recoverer's error).
	mux := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return errors.New(asynq.ErrLeaseExpired.Error()) })
	srv := asynq.NewServer(r.Opt, asynq.Config{Queues: map[string]int{q: 1}, Concurrency: 1, TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	info := testutil.WaitTask(t, insp, q, id, 20*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateArchived })
	srv.Shutdown()
	if !windowsweep.AsynqsOwn(info.LastErr) {
		t.Fatalf("set-up: last error %q", info.LastErr)
	}

	sw, err := windowsweep.New(windowsweep.Config{Redis: r.Opt, Queue: q, Interval: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Close() })
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err = insp.GetTaskInfo(q, id)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("set-up: the sweep should run the crashed task: %+v %v", info, err)
	}
	if e, _, _ := store.Get(context.Background(), "CRA1", initiated); e.Delivery != worker.DeliveryQueued {
		t.Fatalf("set-up: record delivery %q, want queued", e.Delivery)
	}
	// The operator archives it before any worker took it.
	if err := insp.ArchiveTask(q, id); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err = insp.GetTaskInfo(q, id)
	if err != nil {
		t.Fatal(err)
	}
	e, _, _ := store.Get(context.Background(), "CRA1", initiated)
	if info.State != asynq.TaskStateArchived {
		t.Fatalf("the sweep moved the task the operator archived back to %v (record delivery %q, last error %q): the operator's Archive did not stand", info.State, e.Delivery, info.LastErr)
	}
}
