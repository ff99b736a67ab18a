package taskview_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// countHook counts the commands a client sends (a pipeline's each).
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// An order's lookup costs what the order has, not what the queue holds:
// with 100,000 other tasks in the queue, listing an order of three refunds
// (one of them known only to its record: asynq forgot its task) sends the
// same few commands as in an empty queue. TASKVIEW_OTHERS overrides the
// count.
func TestLookupCostsWhatTheOrderHas(t *testing.T) {
	if testing.Short() {
		t.Skip("enqueues 100,000 tasks: not with -short")
	}
	others := 100_000
	if v := os.Getenv("TASKVIEW_OTHERS"); v != "" {
		others, _ = strconv.Atoi(v)
	}
	r := redistest.New(t)
	q := r.Queue(t)
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	recs := records.New(rc, q, 0)
	var ats []time.Time
	for i := range 3 {
		at := now.Add(-time.Duration(30-10*i) * time.Minute)
		ats = append(ats, at)
		p := tasks.CancelRefund{OrderRef: "L1", RefundInitiatedAt: at}
		if _, err := enq.Enqueue(ctx, p); err != nil {
			t.Fatal(err)
		}
		c, err := recs.Claim(ctx, p, p.TaskID(), "tok")
		if err != nil {
			t.Fatal(err)
		}
		rec := &tasks.Result{Outcome: tasks.OutcomeCancelled, TaskID: p.TaskID(), OrderRef: "L1", RefundInitiatedAt: at, Run: 1, Attempts: 1, Sent: 1}
		if err := recs.Write(ctx, c, rec, worker.DeliveryDone, true); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspectorFromRedisClient(rc)
	if err := insp.DeleteTask(q, tasks.TaskID("L1", ats[0])); err != nil { // asynq forgot it; the record did not
		t.Fatal(err)
	}
	cost := func() int64 {
		hook := &countHook{}
		c := redis.NewClient(&redis.Options{Addr: rc.Options().Addr, Username: rc.Options().Username, Password: rc.Options().Password, DB: rc.Options().DB})
		defer c.Close()
		c.AddHook(hook)
		l := taskview.NewLookup(asynq.NewInspectorFromRedisClient(c), records.New(c, q, 0), q)
		views, err := l.Order(ctx, "L1")
		if err != nil || len(views) != 3 || views[0].RefundInitiatedAt != ats[2].Format(time.RFC3339) || views[2].State != taskview.StateGone {
			t.Fatalf("order L1: %+v %v", views, err)
		}
		return hook.n.Load()
	}
	before := cost()
	client := asynq.NewClientFromRedisClient(rc)
	for i := range others {
		if _, err := client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(`{}`)), asynq.Queue(q), asynq.TaskID(fmt.Sprint("other-", i))); err != nil {
			t.Fatal(err)
		}
	}
	after := cost()
	t.Logf("order of 3 refunds: %d Redis commands in an empty queue, %d with %d other tasks", before, after, others)
	// The index, then per refund its record and asynq's task (a queue
	// check and a script; the first run of the script loads it).
	if after > before || after > 1+3*5 {
		t.Fatalf("lookup cost %d commands with %d other tasks, %d without; want no more, at most 16", after, others, before)
	}
}
