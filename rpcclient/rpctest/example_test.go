package rpctest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// Start a sandbox, seed a refund, inject a fault, and read the ledger.
func ExampleNewServer() {
	clock := rpctest.NewClock(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	srv := rpctest.NewServer(rpctest.Config{Now: clock.Now})
	defer srv.Close()
	_ = srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: clock.Now()})
	_ = srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503, FirstN: 1})

	c, _ := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, Now: clock.Now})
	_, err := c.CancelRefund(context.Background(), "A1", nil)
	fmt.Println(rpcclient.Classify(err))
	_, err = c.CancelRefund(context.Background(), "A1", nil)
	fmt.Println(err)

	clock.Advance(2 * time.Hour) // tests move time instead of waiting for it
	r, _ := srv.Refund("A1")
	fmt.Println(r.Status)
	for _, call := range srv.Ledger() {
		fmt.Println(strings.TrimSpace(call.Method + " " + call.Outcome + " " + call.Fault))
	}
	// Output:
	// transient
	// <nil>
	// CANCELED
	// login ok
	// cancelRefund not_applied status
	// cancelRefund ok
}
