package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// waitState polls the task until done says so.
func (s *stack) waitState(t *testing.T, id string, within time.Duration, done func(*asynq.TaskInfo) bool) *asynq.TaskInfo {
	t.Helper()
	return testutil.WaitTask(t, s.insp, s.queue, id, within, done)
}

func finished(i *asynq.TaskInfo) bool {
	return i.State == asynq.TaskStateCompleted || i.State == asynq.TaskStateArchived
}

// Rule 3: a task whose window closed while it sat in the queue is archived
// in one handler run, with no call to 2Checkout and no retry burnt.
func TestExpiredTaskArchivedAtOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Policy: &worker.Policy{}})
	initiated := time.Now().Add(-2*time.Hour - time.Minute)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "X1", InitiatedAt: initiated})
	task, err := tasks.NewTask(tasks.CancelRefund{OrderRef: "X1", RefundInitiatedAt: initiated}, time.Now(), asynq.Queue(s.queue))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Enqueue(task); err != nil { // a producer that skipped the Enqueuer's check
		t.Fatal(err)
	}
	info := s.waitState(t, tasks.TaskID("X1", initiated), 10*time.Second, finished)
	want := "window closed at " + initiated.Add(2*time.Hour).UTC().Format(time.RFC3339)
	if info.State != asynq.TaskStateArchived || !strings.HasPrefix(info.LastErr, want) || info.Retried != 0 {
		t.Fatalf("%v %q retried %d", info.State, info.LastErr, info.Retried)
	}
	for _, call := range s.sb.Ledger() {
		if call.Method == "cancelRefund" {
			t.Fatalf("2Checkout was called: %+v", call)
		}
	}
}

// Rules 1 and 2: behind a 503 that never ends, the task is retried until the
// cut-off, then archived, and no call reaches 2Checkout after the cut-off.
// The rule itself (never give up while a retry fits) is proven with an
// injected clock (TestNoRequestAfterCutoff, TestPolicyNextProperty); here,
// in real time on a possibly busy machine, every bound comes from the
// policy, none from how punctual asynq's forwarder happens to be.
func TestPermanent503RetriedUntilCutoff(t *testing.T) {
	t.Parallel()
	policy := worker.Policy{Window: 8 * time.Second, SafetyMargin: 2 * time.Second,
		BaseDelay: 300 * time.Millisecond, MaxDelay: time.Second, MinDelay: 200 * time.Millisecond, RequestTimeout: time.Second}
	s := startStack(t, stackOptions{Policy: &policy})
	initiated := time.Now()
	p, _ := policy.WithDefaults()
	cutoff := p.Cutoff(initiated)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "F503", InitiatedAt: initiated})
	_ = s.sb.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503})
	task, _ := tasks.NewTask(tasks.CancelRefund{OrderRef: "F503", RefundInitiatedAt: initiated}, time.Now(), asynq.Queue(s.queue))
	if _, err := s.client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	info := s.waitState(t, tasks.TaskID("F503", initiated), 60*time.Second, finished)
	if info.State != asynq.TaskStateArchived {
		t.Fatalf("%v %q", info.State, info.LastErr)
	}
	var calls []time.Time
	for _, call := range s.sb.Ledger() {
		if call.Method != "cancelRefund" {
			continue
		}
		calls = append(calls, call.Time)
		// The client checks the cut-off before it sends (proven to the
		// nanosecond with an injected clock in TestNoRequestAfterCutoff); the
		// sandbox sees the call a transit later, always inside the window.
		if !call.Time.Before(p.Closes(initiated)) {
			t.Fatalf("call at %v outside the window (cut-off %v)", call.Time, cutoff)
		}
	}
	if len(calls) < 2 {
		t.Fatalf("%d calls", len(calls))
	}
	last := calls[len(calls)-1]
	switch {
	case strings.HasPrefix(info.LastErr, "no retry fits before the window closes at"):
		// The handler gave up itself: at that moment not even MinDelay fitted
		// before cut-off − lead. Its last call came at most a request (and a
		// rounding second) before that decision.
		earliest := cutoff.Add(-p.LastRetryLead - p.MinDelay - time.Second - p.RequestTimeout)
		if last.Before(earliest) {
			t.Fatalf("the task gave up early: last call %v before the cut-off (bound %v)", cutoff.Sub(last), cutoff.Sub(earliest))
		}
	case strings.HasPrefix(info.LastErr, "window closed at"):
		// The queue handed the last retry over after the cut-off (a busy
		// machine): that run archived the task without a call.
		if runs := info.Retried + 1; len(calls) != runs-1 {
			t.Fatalf("%d calls in %d runs: the late run called 2Checkout", len(calls), runs)
		}
	default:
		t.Fatalf("archived for %q", info.LastErr)
	}
	t.Logf("%d calls, the last %v before the cut-off; archived: %s", len(calls), cutoff.Sub(last), info.LastErr)
}

// Rule 5: bad credentials leave tasks retrying within their windows, not archived.
func TestBadCredentialsKeepRetrying(t *testing.T) {
	t.Parallel()
	policy := worker.Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: 200 * time.Millisecond, MinDelay: 50 * time.Millisecond}
	s := startStack(t, stackOptions{Policy: &policy, Secret: "not-the-key"})
	initiated := time.Now()
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "C1", InitiatedAt: initiated})
	task, _ := tasks.NewTask(tasks.CancelRefund{OrderRef: "C1", RefundInitiatedAt: initiated}, time.Now(), asynq.Queue(s.queue))
	if _, err := s.client.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	info := s.waitState(t, tasks.TaskID("C1", initiated), 15*time.Second, func(i *asynq.TaskInfo) bool { return i.Retried >= 3 || finished(i) })
	if finished(info) || !strings.Contains(info.LastErr, "AUTHENTICATION_FAILED") {
		t.Fatalf("%v %q", info.State, info.LastErr)
	}
	if st := s.sb.Stats(); st.Calls["cancelRefund"] != nil || st.Calls["login"]["AUTHENTICATION_FAILED"] < 3 {
		t.Fatalf("stats %+v", st)
	}
}
