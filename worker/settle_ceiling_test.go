package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/vendorbudget"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// Reads that settle an outcome keep to the ceiling (TCO_RATE_LIMIT) but
// are not starved by it: ten tasks past their cut-off, each with a cancel
// that may have applied, settle at once through one real gate whose
// ceiling (2/s) admits fewer reads than that in one RequestTimeout (2 s).
// Each waits its slot and ends window_closed, confirmed with getOrder —
// none ends unknown without 2Checkout asked. (Found by review: the wait
// came out of the request's own timeout.)
func TestSettlingReadsWaitForTheCeiling(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the ceiling in real time (about 5 s)")
	}
	r := redistest.New(t)
	rdb := r.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	gate, err := vendorbudget.New(vendorbudget.Config{Redis: rdb, Key: r.Queue(t) + ":2co", Rate: 2, OutageMin: -1})
	if err != nil {
		t.Fatal(err)
	}
	clock := rpctest.NewClock(t0)
	srv := rpctest.NewServer(rpctest.Config{Now: clock.Now})
	t.Cleanup(srv.Close)
	api, err := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: clock.Now, RequestTimeout: 2 * time.Second, Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	mem := newFakeMemory()
	h, err := NewHandler(HandlerConfig{API: api, Memory: mem, Now: clock.Now, Policy: Policy{RequestTimeout: 2 * time.Second, Rand: func() float64 { return 0.5 }}})
	if err != nil {
		t.Fatal(err)
	}
	initiated := t0.Add(-2 * time.Hour) // past its cut-off: the delivery settles
	const n = 10
	outcomes, reasons := make([]string, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		ref := fmt.Sprintf("S%d", i)
		_ = srv.Seed(rpctest.Refund{OrderRef: ref, InitiatedAt: initiated})
		p := tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: initiated}
		// A delivery that ended mid-call: the record says sending.
		mem.seed(p, p.TaskID(), &tasks.Result{Outcome: tasks.OutcomeSending, TaskID: p.TaskID(), OrderRef: ref, RefundInitiatedAt: initiated,
			Run: 1, Attempts: 1, Sent: 1, Reason: "cancelRefund sent at … has no recorded answer"})
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, TaskID: p.TaskID(), MaxRetry: tasks.DefaultMaxRetry, Payload: payload(ref, initiated)})
			if res != nil {
				outcomes[i], reasons[i] = res.Outcome, res.Reason
			}
		}()
	}
	wg.Wait()
	for i, o := range outcomes {
		if o != tasks.OutcomeWindowClosed {
			t.Errorf("task %d: %s (%s); want window_closed, confirmed by getOrder", i, o, reasons[i])
		}
	}
	if n := len(srv.Ledger()); n != 11 { // one login, ten getOrders
		t.Errorf("%d calls; want 11", n)
	}
}
