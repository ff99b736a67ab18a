package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// flakyNotifier refuses the first fail calls for each task, then keeps
// what it is handed.
type flakyNotifier struct {
	fail int

	mu    sync.Mutex
	calls map[string]int
	got   map[string][][]byte
}

func (n *flakyNotifier) Notify(_ context.Context, id string, record []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.calls[id]++; n.calls[id] <= n.fail {
		return errors.New("redis: connection refused")
	}
	n.got[id] = append(n.got[id], record)
	return nil
}

func (n *flakyNotifier) records(id string) [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]byte(nil), n.got[id]...)
}

// A final state whose announcement could not be queued is not changed by
// the retries that announce it: the recorded outcome stands (no second
// question to 2Checkout, no new verdict), the record announced is the one
// the task keeps, whatever the task's MaxRetry (1: the producer's small
// one; the default, whose retries asynq counts).
func TestFailedAnnouncementKeepsTheOutcome(t *testing.T) {
	t.Parallel()
	for _, maxRetry := range []int{1, tasks.DefaultMaxRetry} {
		t.Run(fmt.Sprint("MaxRetry ", maxRetry), func(t *testing.T) { t.Parallel(); failedAnnouncement(t, maxRetry) })
	}
}

func failedAnnouncement(t *testing.T, maxRetry int) {
	n := &flakyNotifier{fail: 2, calls: map[string]int{}, got: map[string][][]byte{}}
	s := startStack(t, stackOptions{Notifier: n, DocumentedOnly: true})
	initiated := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
	_ = s.sb.Seed(rpctest.Refund{OrderRef: "NF1", InitiatedAt: initiated})
	// NF2: no such order, in words the documented-only sandbox does not name:
	// unknown, and it stays unknown through the announcing retries.
	cases := map[string]string{"NF1": tasks.OutcomeCancelled, "NF2": tasks.OutcomeUnknown}
	for ref := range cases {
		task, err := tasks.NewTask(tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated}, time.Now(), asynq.Queue(s.queue), asynq.MaxRetry(maxRetry))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range cases {
		id := tasks.TaskID(ref, initiated)
		info := s.waitFinished(t, id)
		res := result(t, info)
		got := n.records(id + "#1")
		if res.Outcome != want || len(got) != 1 || string(got[0]) != string(info.Result) {
			t.Errorf("%s: %v outcome %s, announced %q; want %s announced once as kept", ref, info.State, res.Outcome, got, want)
		}
	}
	if calls := len(s.cancelCalls()); calls != 2 {
		t.Errorf("%d cancelRefund calls, want 2: the retries that announce must not ask again", calls)
	}
}
