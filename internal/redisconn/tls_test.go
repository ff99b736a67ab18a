package redisconn_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/rpcclient"
)

// A TLS-only Redis whose certificate a private CA (made here) signed, and
// which asks for a client certificate: refused without REDIS_CA_FILE (the
// system's roots do not know the CA), without the client certificate, and
// in plain text; with them, two replicas cancel a few refunds.
func TestTLSWithPrivateCA(t *testing.T) {
	ca := redistest.NewCA(t)
	r := redistest.StartWith(t, redistest.Server{CA: ca, ClientAuth: true})
	cert, key := ca.Issue(t, "refundd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plain := "redis" + strings.TrimPrefix(r.URL, "rediss")
	for name, tc := range map[string]struct {
		s    redisconn.Settings
		want string
	}{
		"no REDIS_CA_FILE": {redisconn.Settings{URL: r.URL, CertFile: cert, KeyFile: key}, "certificate signed by unknown authority"},
		"no client cert":   {redisconn.Settings{URL: r.URL, CAFile: ca.File}, ""},
		"plain text":       {redisconn.Settings{URL: plain}, ""},
		"another CA":       {redisconn.Settings{URL: r.URL, CAFile: redistest.NewCA(t).File, CertFile: cert, KeyFile: key}, "certificate signed by unknown authority"},
	} {
		t.Run(name, func(t *testing.T) {
			opt, err := redisconn.Open(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			c := redisconn.NewClient(opt)
			defer c.Close()
			err = c.Ping(ctx).Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PING: %v, want a refusal %q", err, tc.want)
			}
		})
	}

	f := fleettest.Start(t, fleettest.Options{RedisURL: r.URL, Queue: "refunds", Replicas: 2,
		Env: map[string]string{"REDIS_CA_FILE": ca.File, "REDIS_CERT_FILE": cert, "REDIS_KEY_FILE": key}})
	refs := fleettest.Refs("TLS", 5)
	f.Add(t, refs...)
	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != len(refs) {
		t.Fatalf("%d of %d completed: %v", got, len(refs), states)
	}
	ok := map[string]int{}
	for _, c := range f.SB.Ledger() {
		if c.Method == rpcclient.MethodCancelRefund && c.Outcome == "ok" {
			ok[c.OrderRef]++
		}
	}
	for _, ref := range refs {
		if ok[ref] != 1 {
			t.Errorf("%s cancelled %d times", ref, ok[ref])
		}
	}
}
