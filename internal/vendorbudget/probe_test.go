package vendorbudget

// A cancel admitted as an outage's probe but stopped by its caller's check
// (rpcclient.CancelRefund's before: a retry finding its refund already
// settled) sends nothing: its probe claim is given back, so a real request
// probes the method at once, not a ProbeInterval later.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

func TestProbeStoppedByItsCheckGivesTheClaimBack(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 1, Config{Now: c.Now})
	g := gs[0]
	answers(g, "cancelRefund", 20, unavailable) // cancelRefund is out
	resync(t, g)
	sb := rpctest.NewServer(rpctest.Config{Now: c.Now})
	t.Cleanup(sb.Close)
	_ = sb.Seed(rpctest.Refund{OrderRef: "P1", InitiatedAt: c.Now().Add(-time.Hour)}, rpctest.Refund{OrderRef: "P2", InitiatedAt: c.Now().Add(-time.Hour)})
	api, err := rpcclient.New(rpcclient.Config{URL: sb.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: c.Now, RequestTimeout: time.Second, Gate: g})
	if err != nil {
		t.Fatal(err)
	}
	// A retry's cancel: the Gate lets it go as the probe; its check (the
	// worker's getOrder: the refund was settled meanwhile) stops it.
	stopped := errors.New("the check stopped the cancel")
	if _, err := api.CancelRefund(withinOn(c, time.Minute), "P1", func(context.Context) error { return stopped }); !errors.Is(err, stopped) {
		t.Fatalf("first cancel: %v", err)
	}
	// Another retry's cancel, 100 ms later (it may wait 100 ms): nothing
	// probes cancelRefund now, so it should be the probe.
	c.Advance(100 * time.Millisecond)
	_, err = api.CancelRefund(withinOn(c, 100*time.Millisecond), "P2", nil)
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
