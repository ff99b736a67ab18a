package rpcclient_test

import (
	"context"
	"fmt"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// Cancel a refund and tell what a failure means.
func ExampleClient_CancelRefund() {
	sandbox := rpctest.NewServer(rpctest.Config{MerchantCode: "MYCODE", SecretKey: "s3cret"}) // in production: the real endpoint
	defer sandbox.Close()
	_ = sandbox.Seed(rpctest.Refund{OrderRef: "73152889", RefundID: "R-1", InitiatedAt: time.Now().Add(-time.Hour)})

	client, err := rpcclient.New(rpcclient.Config{
		URL:          sandbox.RPCURL, // default rpcclient.DefaultURL
		MerchantCode: "MYCODE",
		SecretKey:    "s3cret", // read from a secret store; it never prints
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	id, err := client.CancelRefund(ctx, "73152889", nil)
	fmt.Println(id, err)

	_, err = client.CancelRefund(ctx, "73152889", nil)
	fmt.Println(rpcclient.Classify(err), rpcclient.IsName(err, rpcclient.NameRefundNotCancellable))
	// Output:
	// R-1 <nil>
	// permanent true
}
