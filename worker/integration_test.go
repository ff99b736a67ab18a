package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// stack is the real worker server on a queue of the test's own, against
// real Redis and an in-process sandbox.
type stack struct {
	redis  *redistest.Redis
	queue  string
	sb     *rpctest.Server
	enq    *tasks.Enqueuer
	client *asynq.Client // for tasks the Enqueuer would refuse
	insp   *asynq.Inspector
	recs   *records.Store
}

// stackOptions varies a stack; zero values take the defaults beside them.
type stackOptions struct {
	Concurrency int            // default 5
	Policy      *worker.Policy // default: the real window with short retry delays
	Secret      string         // the key the worker logs in with; default the sandbox's
	// DocumentedOnly starts the sandbox speaking only what 2Checkout documents.
	DocumentedOnly bool
	// Notifier, if set, is handed every final record.
	Notifier worker.Notifier
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.Concurrency == 0 {
		o.Concurrency = 5
	}
	if o.Policy == nil {
		o.Policy = &worker.Policy{BaseDelay: 100 * time.Millisecond, MinDelay: 50 * time.Millisecond}
	}
	if o.Secret == "" {
		o.Secret = rpctest.DefaultSecretKey
	}
	r := redistest.New(t)
	q := r.Queue(t)
	sb := rpctest.NewServer(rpctest.Config{Window: o.Policy.Window, DocumentedOnly: o.DocumentedOnly})
	t.Cleanup(sb.Close)
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpcclient.Secret(o.Secret),
		RequestTimeout: time.Second, CredentialsBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	recs := records.New(rc, q, 0)
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: recs, Logger: log, Policy: *o.Policy, Notifier: o.Notifier})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: o.Concurrency, Logger: log, ShutdownTimeout: 5 * time.Second,
		TaskCheckInterval: 50 * time.Millisecond}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = enq.Close() })
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })
	return &stack{redis: r, queue: q, sb: sb, enq: enq, client: client, insp: insp, recs: recs}
}

// waitFinished polls the task until it is completed or archived.
func (s *stack) waitFinished(t *testing.T, id string) *asynq.TaskInfo {
	t.Helper()
	return s.waitState(t, id, 20*time.Second, finished)
}

func TestPipeline(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	ctx := context.Background()
	initiated := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	_ = s.sb.Seed(
		rpctest.Refund{OrderRef: "P-OK", RefundID: "R-OK", InitiatedAt: initiated},
		rpctest.Refund{OrderRef: "P-DONE", Status: "COMPLETED", InitiatedAt: initiated},
		rpctest.Refund{OrderRef: "P-FLAKY", RefundID: "R-FLAKY", InitiatedAt: initiated},
	)
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "apply_then_drop", FirstN: 1, Probability: nil})

	t.Run("ambiguous first call ends already_cancelled", func(t *testing.T) {
		if _, err := s.enq.Enqueue(ctx, tasks.CancelRefund{OrderRef: "P-FLAKY", RefundInitiatedAt: initiated}); err != nil {
			t.Fatal(err)
		}
		info := s.waitFinished(t, tasks.TaskID("P-FLAKY", initiated))
		var res tasks.Result
		if err := json.Unmarshal(info.Result, &res); err != nil || info.State != asynq.TaskStateCompleted {
			t.Fatalf("%v %s %v", info.State, info.Result, err)
		}
		if res.Outcome != "already_cancelled" || !res.Confirmed || res.Attempts != 2 || res.RefundID != "R-FLAKY" {
			t.Fatalf("result %+v", res)
		}
	})

	t.Run("completed with its result", func(t *testing.T) {
		if _, err := s.enq.Enqueue(ctx, tasks.CancelRefund{OrderRef: "P-OK", RefundInitiatedAt: initiated, Reason: "duplicate"}); err != nil {
			t.Fatal(err)
		}
		info := s.waitFinished(t, tasks.TaskID("P-OK", initiated))
		if info.State != asynq.TaskStateCompleted {
			t.Fatalf("state %v: %s", info.State, info.LastErr)
		}
		var res map[string]any
		if err := json.Unmarshal(info.Result, &res); err != nil {
			t.Fatal(err)
		}
		if res["outcome"] != "cancelled" || res["refund_id"] != "R-OK" || res["attempts"] != 1.0 ||
			res["window_closes_at"] != initiated.Add(2*time.Hour).Format(time.RFC3339) || res["finished_at"] == nil {
			t.Fatalf("result %v", res)
		}
		if r, _ := s.sb.Refund("P-OK"); r.Status != "CANCELED" {
			t.Fatalf("sandbox says %s", r.Status)
		}
		_, err := s.enq.Enqueue(ctx, tasks.CancelRefund{OrderRef: "P-OK", RefundInitiatedAt: initiated})
		var aq *tasks.AlreadyQueuedError
		if !errors.As(err, &aq) || aq.State() != "completed" {
			t.Fatalf("duplicate: %v", err)
		}
	})

	t.Run("permanent refusal archived with its reason", func(t *testing.T) {
		if _, err := s.enq.Enqueue(ctx, tasks.CancelRefund{OrderRef: "P-DONE", RefundInitiatedAt: initiated}); err != nil {
			t.Fatal(err)
		}
		info := s.waitFinished(t, tasks.TaskID("P-DONE", initiated))
		if info.State != asynq.TaskStateArchived || !strings.HasPrefix(info.LastErr, "2Checkout refused: 20004 REFUND_NOT_CANCELLABLE: ") {
			t.Fatalf("%v %q", info.State, info.LastErr)
		}
	})

	t.Run("bad payload archived without a call", func(t *testing.T) {
		before := len(s.sb.Ledger())
		_, err := s.client.Enqueue(asynq.NewTask(tasks.TypeCancelRefund, []byte(`{"order_ref":"P-BAD","refund_initiated_at":"soon"}`)),
			asynq.Queue(s.queue), asynq.TaskID("bad-1"), asynq.MaxRetry(100))
		if err != nil {
			t.Fatal(err)
		}
		info := s.waitFinished(t, "bad-1")
		if info.State != asynq.TaskStateArchived || info.LastErr != `invalid payload: refund_initiated_at: must be an RFC 3339 time string, e.g. 2026-11-25T10:00:00Z, got "soon"` || info.Retried != 0 {
			t.Fatalf("%v %q retried %d", info.State, info.LastErr, info.Retried)
		}
		if len(s.sb.Ledger()) != before {
			t.Fatal("a bad payload reached 2Checkout")
		}
	})
}

// 1,000 cancellations through one worker share one session: at most 2 logins.
func TestThousandCancellationsTwoLogins(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Concurrency: 20})
	ctx := context.Background()
	initiated := time.Now().Add(-5 * time.Minute)
	const n = 1000
	refs := make([]rpctest.Refund, n)
	for i := range refs {
		refs[i] = rpctest.Refund{OrderRef: fmt.Sprintf("K%05d", i), InitiatedAt: initiated}
	}
	_ = s.sb.Seed(refs...)
	for _, r := range refs {
		if _, err := s.enq.Enqueue(ctx, tasks.CancelRefund{OrderRef: r.OrderRef, RefundInitiatedAt: initiated}); err != nil {
			t.Fatal(err)
		}
	}
	var qi *asynq.QueueInfo
	testutil.Eventually(t, 60*time.Second, "1,000 tasks to finish", func() bool {
		var err error
		qi, err = s.insp.GetQueueInfo(s.queue)
		return err == nil && qi.Completed+qi.Archived == n
	})
	if qi.Archived != 0 {
		t.Fatalf("%d archived", qi.Archived)
	}
	st := s.sb.Stats()
	if st.Logins > 2 || st.Calls["cancelRefund"]["ok"] != n {
		t.Fatalf("logins %d, cancels %v", st.Logins, st.Calls["cancelRefund"])
	}
}
