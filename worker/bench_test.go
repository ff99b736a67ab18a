package worker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// BenchmarkThroughput measures cancellations per second through the whole
// pipeline (real Redis, asynq, the handler, the client, the sandbox over
// loopback HTTP) beside a bare asynq server with a no-op handler on the
// same Redis in the same run, the ceiling of the queue layer.
//
//	go test ./worker -run '^$' -bench Throughput -benchtime 5000x
func BenchmarkThroughput(b *testing.B) {
	b.Run("bare-asynq-noop", func(b *testing.B) {
		benchQueue(b, func(*testing.B) worker.TaskHandler { return noopHandler{} }, nil)
	})
	b.Run("refundd", func(b *testing.B) {
		var sb *rpctest.Server
		benchQueue(b, func(b *testing.B) worker.TaskHandler {
			sb = rpctest.NewServer(rpctest.Config{})
			b.Cleanup(sb.Close)
			api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey})
			if err != nil {
				b.Fatal(err)
			}
			h, err := worker.NewHandler(worker.HandlerConfig{API: api})
			if err != nil {
				b.Fatal(err)
			}
			return h
		}, func(refs []string) {
			seed := make([]rpctest.Refund, len(refs))
			for i, r := range refs {
				seed[i] = rpctest.Refund{OrderRef: r}
			}
			_ = sb.Seed(seed...)
		})
		if st := sb.Stats(); st.Calls["cancelRefund"]["ok"] < b.N {
			b.Fatalf("only %d cancelled", st.Calls["cancelRefund"]["ok"])
		}
	})
}

// benchQueue enqueues b.N tasks, then times one server (concurrency 20)
// draining them.
func benchQueue(b *testing.B, handler func(*testing.B) worker.TaskHandler, seed func([]string)) {
	r := redistest.New(b)
	q := r.Queue(b)
	h := handler(b)
	refs := make([]string, b.N)
	for i := range refs {
		refs[i] = fmt.Sprintf("T%09d", i)
	}
	if seed != nil {
		seed(refs)
	}
	c := asynq.NewClient(r.Opt)
	defer c.Close()
	now := time.Now()
	for _, ref := range refs {
		task, err := tasks.NewTask(tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: now}, now, asynq.Queue(q), asynq.Retention(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Enqueue(task); err != nil {
			b.Fatal(err)
		}
	}
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 20}, h)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	var qi *asynq.QueueInfo
	testutil.Eventually(b, 10*time.Minute, "the queue to drain", func() bool {
		var err error
		qi, err = insp.GetQueueInfo(q)
		return err == nil && qi.Completed+qi.Archived >= b.N
	})
	elapsed := time.Since(start)
	if qi.Archived > 0 {
		b.Fatalf("%d archived", qi.Archived)
	}
	b.StopTimer()
	srv.Shutdown()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
}

// noopHandler does nothing: the queue layer's ceiling.
type noopHandler struct{}

func (noopHandler) ProcessTask(context.Context, *asynq.Task) error   { return nil }
func (noopHandler) RetryDelay(int, error, *asynq.Task) time.Duration { return 0 }
func (noopHandler) IsFailure(error) bool                             { return true }

// BenchmarkRetryLag measures what worker.LeadFor budgets: how late a task
// due at a whole second (as asynq stores retry times) starts on a server
// with the worker's default intervals (forwarder 1s, idle poll 200ms),
// concurrency 10, real Redis. It reports the worst and the median lag.
//
//	go test ./worker -run '^$' -bench RetryLag -benchtime 40x
func BenchmarkRetryLag(b *testing.B) {
	r := redistest.New(b)
	q := r.Queue(b)
	lags := make(chan time.Duration, b.N)
	srv := asynq.NewServer(r.Opt, asynq.Config{Concurrency: 10, Queues: map[string]int{q: 1},
		TaskCheckInterval: worker.DefaultTaskCheckInterval, DelayedTaskCheckInterval: worker.DefaultDelayedTaskCheckInterval,
		LogLevel: asynq.FatalLevel})
	if err := srv.Start(asynq.HandlerFunc(func(_ context.Context, t *asynq.Task) error {
		due, _ := time.Parse(time.RFC3339Nano, string(t.Payload()))
		lags <- time.Since(due)
		return nil
	})); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	client := asynq.NewClient(r.Opt)
	b.Cleanup(func() { _ = client.Close() })
	first := time.Now().Truncate(time.Second).Add(2 * time.Second)
	b.ResetTimer()
	for i := range b.N {
		due := first.Add(time.Duration(i%5) * time.Second)
		if _, err := client.Enqueue(asynq.NewTask("lag", []byte(due.Format(time.RFC3339Nano))), asynq.Queue(q), asynq.ProcessAt(due)); err != nil {
			b.Fatal(err)
		}
	}
	all := make([]time.Duration, 0, b.N)
	for range b.N {
		all = append(all, <-lags)
	}
	b.StopTimer()
	slices.Sort(all)
	b.ReportMetric(all[len(all)-1].Seconds(), "max-lag-s")
	b.ReportMetric(all[len(all)/2].Seconds(), "median-lag-s")
	b.ReportMetric(worker.DefaultLastRetryLead.Seconds(), "lead-s")
}
