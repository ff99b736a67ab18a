package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/webhook"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// hookReceiver is a completion-webhook endpoint: it answers 503 to the
// first failFirst requests, then verifies each signature and keeps the
// verified bodies by delivery ID.
type hookReceiver struct {
	secret    []byte
	failFirst int
	failed    chan struct{} // one per refused request

	mu   sync.Mutex
	seen int
	got  map[string][][]byte
	bad  int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen++; h.seen <= h.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		h.failed <- struct{}{}
		return
	}
	if webhook.Verify(h.secret, r.Header.Get(webhook.SignatureHeader), r.Header.Get(webhook.DeliveryHeader), body, time.Now(), 0) != nil {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h.got[r.Header.Get(webhook.DeliveryHeader)] = append(h.got[r.Header.Get(webhook.DeliveryHeader)], body)
}

func (h *hookReceiver) delivered() (map[string][][]byte, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][][]byte, len(h.got))
	for k, v := range h.got {
		out[k] = append([][]byte(nil), v...)
	}
	return out, h.bad
}

// TestCompletionWebhooks: every final state — completed or archived — is
// announced exactly once, signed, with the very record the task keeps;
// the receiver refuses the first deliveries and refundd restarts in
// between, and still none is lost or doubled.
func TestCompletionWebhooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	insp := asynq.NewInspector(f.redis.Opt)
	defer insp.Close()
	t.Cleanup(func() { _ = insp.DeleteQueue(webhook.QueueFor(f.queue), true) })

	const secret = "whsec-0123456789abcdef"
	rc := &hookReceiver{secret: []byte(secret), failFirst: 2, failed: make(chan struct{}, 10), got: map[string][][]byte{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	initiated := time.Now().UTC().Truncate(time.Second)
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "W1", RefundID: "R-W1", InitiatedAt: initiated})                                  // cancellable
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "W2", Status: "CANCELED", RefundID: "R-W2", InitiatedAt: initiated})              // someone else cancelled it
	want := map[string]string{"W1": tasks.OutcomeCancelled, "W2": tasks.OutcomeAlreadyCancelled, "W3": tasks.OutcomeRefused} // W3: no such order
	env := map[string]string{"NOTIFY_URL": hook.URL, "NOTIFY_SECRET": secret}
	stop := f.start(t, env)
	for ref := range want {
		if _, err := f.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-rc.failed:
	case <-time.After(20 * time.Second):
		t.Fatal("no notification attempted within 20s")
	}
	if err := stop(); err != nil { // the restart, with deliveries outstanding
		t.Fatal(err)
	}
	f.start(t, env)

	testutil.Eventually(t, 60*time.Second, "a verified notification for each final state", func() bool {
		got, _ := rc.delivered()
		return len(got) == len(want)
	})
	testutil.Eventually(t, 10*time.Second, "every notification task completed", func() bool {
		qi, err := insp.GetQueueInfo(webhook.QueueFor(f.queue))
		return err == nil && qi.Completed == len(want) && qi.Pending+qi.Active+qi.Retry+qi.Scheduled == 0
	})
	got, bad := rc.delivered()
	if bad > 0 {
		t.Errorf("%d deliveries failed verification", bad)
	}
	for ref, outcome := range want {
		id := tasks.TaskID(ref, initiated)
		bodies := got[id+"#1"] // the delivery ID: <task ID>#<run>
		if len(bodies) != 1 {
			t.Errorf("%s: %d deliveries, want exactly 1", id, len(bodies))
			continue
		}
		rec, err := tasks.DecodeResult(bodies[0])
		if err != nil || rec.Outcome != outcome || rec.OrderRef != ref {
			t.Errorf("%s: delivered %s (%v), want outcome %s", id, bodies[0], err, outcome)
		}
		info, err := insp.GetTaskInfo(f.queue, id)
		if err != nil || string(info.Result) != string(bodies[0]) {
			t.Errorf("%s: the task keeps %s (%v), the webhook said %s", id, info.Result, err, bodies[0])
		}
	}
}
