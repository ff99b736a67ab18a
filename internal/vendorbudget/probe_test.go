package vendorbudget

// An outage's probe claim is given back whenever the request that holds it
// is not sent, so that a real request probes the method at once, not a
// ProbeInterval later.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// cancelRefundOut answers a Gate on now whose fleet holds cancelRefund
// (out: 20 unavailable answers), and a client on clock c through it to a
// sandbox holding refunds P1 and P2.
func cancelRefundOut(t *testing.T, c *clock, now func() time.Time) (*Gate, *rpcclient.Client, *rpctest.Server) {
	t.Helper()
	gs, _ := newGates(t, 1, Config{Now: now})
	g := gs[0]
	answers(g, "cancelRefund", 20, unavailable)
	resync(t, g)
	sb := rpctest.NewServer(rpctest.Config{Now: c.Now})
	t.Cleanup(sb.Close)
	_ = sb.Seed(rpctest.Refund{OrderRef: "P1", InitiatedAt: c.Now().Add(-time.Hour)}, rpctest.Refund{OrderRef: "P2", InitiatedAt: c.Now().Add(-time.Hour)})
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: c.Now, RequestTimeout: time.Second, Gate: g})
	if err != nil {
		t.Fatal(err)
	}
	return g, api, sb
}

// A cancel admitted as the probe but stopped by its caller's check
// (rpcclient.CancelRefund's before: a retry finding its refund already
// settled) sends nothing.
func TestProbeStoppedByItsCheckGivesTheClaimBack(t *testing.T) {
	c := newClock()
	_, api, sb := cancelRefundOut(t, c, c.Now)
	// A retry's cancel: the Gate lets it go as the probe; its check (the
	// worker's getOrder: the refund was settled meanwhile) stops it.
	stopped := errors.New("the check stopped the cancel")
	if _, err := api.CancelRefund(withinOn(c, time.Minute), "P1", func(context.Context) error { return stopped }); !errors.Is(err, stopped) {
		t.Fatalf("first cancel: %v", err)
	}
	// Another retry's cancel, 100 ms later (it may wait 100 ms): nothing
	// probes cancelRefund now, so it should be the probe.
	c.Advance(100 * time.Millisecond)
	_, err := api.CancelRefund(withinOn(c, 100*time.Millisecond), "P2", nil)
	sent := 0
	for _, call := range sb.Ledger() {
		if call.Method == rpcclient.MethodCancelRefund {
			sent++
		}
	}
	if sent == 0 {
		t.Fatalf("second cancel: %v, %d cancelRefund sent: the stopped cancel's probe claim (nothing sent) holds every cancel for the ProbeInterval (%v)", err, sent, DefaultProbeInterval)
	}
}

// A request the Gate let through as an outage's probe whose start deadline
// passes during the Gate's own last Redis round trips (Wait granted, no
// sleep after the last look at the deadline): the client answers
// ErrStartDeadline (rpcclient.gateWait's check) and tells Done it was not
// sent, so the probe claim is given back and the request's entry deleted.
// (Found by a third hostile review.)
func TestProbeGrantedPastItsStartDeadlineGivesTheClaimBack(t *testing.T) {
	c := newClock()
	var armed atomic.Bool
	// The Gate's clock: while armed, each read is 1 ms after the one
	// before (the Gate's Redis round trips take time); the client's clock
	// is the same clock, read without advancing it.
	gateNow := func() time.Time {
		if armed.Load() {
			c.Advance(time.Millisecond)
		}
		return c.Now()
	}
	g, api, sb := cancelRefundOut(t, c, gateNow)
	// Log in first (not under test).
	if _, err := api.GetOrder(rpcclient.WithPriority(context.Background()), "P2"); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	ctx := withinOn(c, time.Millisecond)
	_, err := api.CancelRefund(ctx, "P1", nil)
	armed.Store(false)
	if !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("set-up: first cancel: %v; want ErrStartDeadline (granted by the Gate, late for its start deadline)", err)
	}
	leaked := 0
	g.probes.Range(func(any, any) bool { leaked++; return true })
	// Another cancel, 100 ms later: nothing was sent, so it should probe.
	c.Advance(100 * time.Millisecond)
	_, err2 := api.CancelRefund(withinOn(c, 100*time.Millisecond), "P2", nil)
	sent := 0
	for _, call := range sb.Ledger() {
		if call.Method == rpcclient.MethodCancelRefund {
			sent++
		}
	}
	if leaked != 0 || sent == 0 {
		t.Fatalf("the first cancel was granted as the probe but not sent (ErrStartDeadline, no Done): %d probe map entr(ies) left behind; second cancel: %v, %d cancelRefund sent (the probe claim holds every cancel for the ProbeInterval %v)",
			leaked, err2, sent, DefaultProbeInterval)
	}
}

// A cancel let through as the probe whose before hook panics (asynq
// recovers a handler's panic; the process goes on): Done is told it was
// not sent, so the probe map forgets the request's ctx and the claim is
// given back.
func TestProbeWhoseBeforeHookPanicsLeavesNoEntry(t *testing.T) {
	c := newClock()
	g, api, _ := cancelRefundOut(t, c, c.Now)
	func() {
		defer func() { _ = recover() }()
		_, _ = api.CancelRefund(withinOn(c, time.Minute), "P1", func(context.Context) error { panic("before hook") })
	}()
	leaked := 0
	g.probes.Range(func(any, any) bool { leaked++; return true })
	if leaked != 0 {
		t.Fatalf("%d probe map entr(ies) left behind by a request whose before hook panicked (Done never called)", leaked)
	}
}
