package rpcclient_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// recordingGate records what the client asks and tells; refuse, if set,
// answers Wait.
type recordingGate struct {
	mu     sync.Mutex
	waits  []string
	pauses []time.Duration
	sent   func() int // ledger length when Wait is called
	seen   []int
	refuse error
	during func() // run inside Wait, e.g. to move the clock
}

func (g *recordingGate) Wait(ctx context.Context, method string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waits = append(g.waits, method)
	if g.sent != nil {
		g.seen = append(g.seen, g.sent())
	}
	if g.during != nil {
		g.during()
	}
	return g.refuse
}

func (g *recordingGate) Pause(_ context.Context, _ string, d time.Duration) {
	g.mu.Lock()
	g.pauses = append(g.pauses, d)
	g.mu.Unlock()
}

func TestGateAskedBeforeEveryRequest(t *testing.T) {
	g := &recordingGate{}
	f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
	g.sent = func() int { return len(f.srv.Ledger()) }
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	if _, err := f.client.CancelRefund(context.Background(), "A1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.GetOrder(context.Background(), "A1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"login", "cancelRefund", "getOrder"}
	if len(g.waits) != len(want) {
		t.Fatalf("gate asked for %v, want %v", g.waits, want)
	}
	for i := range want {
		// Asked before the request reached the server: the ledger held i calls.
		if g.waits[i] != want[i] || g.seen[i] != i {
			t.Fatalf("gate asked for %v with ledger lengths %v, want %v before each request", g.waits, g.seen, want)
		}
	}
}

func TestGateRefusalSendsNothing(t *testing.T) {
	cases := []struct {
		name      string
		refuse    error
		wantClass rpcclient.Class
		gateError bool
	}{
		{"start deadline", rpcclient.ErrStartDeadline, rpcclient.ClassNotStarted, false},
		{"gate unavailable", errors.New("redis: connection refused"), rpcclient.ClassTransient, true},
		{"context ended", context.DeadlineExceeded, rpcclient.ClassTransient, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &recordingGate{refuse: tc.refuse}
			f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
			_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
			_, err := f.client.CancelRefund(context.Background(), "A1")
			if !errors.Is(err, tc.refuse) || rpcclient.Classify(err) != tc.wantClass {
				t.Fatalf("err %v (class %v), want %v of class %v", err, rpcclient.Classify(err), tc.refuse, tc.wantClass)
			}
			var ge *rpcclient.GateError
			if errors.As(err, &ge) != tc.gateError {
				t.Fatalf("err %T %v: GateError %v, want %v", err, err, !tc.gateError, tc.gateError)
			}
			if n := len(f.srv.Ledger()); n != 0 {
				t.Fatalf("%d requests reached the server past a refusing gate", n)
			}
		})
	}
}

func TestGateToldOfRetryAfter(t *testing.T) {
	cases := []struct {
		rule rpctest.FaultRule
		want []time.Duration
	}{
		{rpctest.FaultRule{Kind: "status", Status: 429, RetryAfter: 3}, []time.Duration{3 * time.Second}},
		{rpctest.FaultRule{Kind: "status", Status: 503, RetryAfter: 7}, []time.Duration{7 * time.Second}},
		{rpctest.FaultRule{Kind: "status", Status: 429}, nil},                // no Retry-After: the task's own backoff only
		{rpctest.FaultRule{Kind: "status", Status: 500, RetryAfter: 3}, nil}, // not a request to slow down
	}
	for _, tc := range cases {
		t.Run(tc.rule.Kind, func(t *testing.T) {
			g := &recordingGate{}
			f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
			_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
			tc.rule.Method = "cancelRefund"
			_ = f.srv.SetFaults(tc.rule)
			_, _ = f.client.CancelRefund(context.Background(), "A1")
			if len(g.pauses) != len(tc.want) || (len(tc.want) == 1 && g.pauses[0] != tc.want[0]) {
				t.Fatalf("%d %d: pauses %v, want %v", tc.rule.Status, tc.rule.RetryAfter, g.pauses, tc.want)
			}
		})
	}
}

// A gate that lets a request through only after its start deadline (a slow
// or careless one) still cannot make the client send it.
func TestNoRequestStartsLateWhateverTheGate(t *testing.T) {
	g := &recordingGate{}
	f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	if _, err := f.client.GetOrder(context.Background(), "A1"); err != nil { // logged in
		t.Fatal(err)
	}
	g.during = func() { f.clock.Advance(2 * time.Second) }
	ctx := rpcclient.WithStartDeadline(context.Background(), f.clock.Now().Add(time.Second))
	if _, err := f.client.CancelRefund(ctx, "A1"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("request past its start deadline: %v, want ErrStartDeadline", err)
	}
	for _, c := range f.srv.Ledger() {
		if c.Method == "cancelRefund" {
			t.Fatal("cancelRefund was sent after its start deadline")
		}
	}
}
