package rpcclient_test

import (
	"context"
	"errors"
	"fmt"
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
	done   []error
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

func (g *recordingGate) Done(_ context.Context, _ string, err error) {
	g.mu.Lock()
	g.done = append(g.done, err)
	g.mu.Unlock()
}

func TestGateAskedBeforeEveryRequest(t *testing.T) {
	g := &recordingGate{}
	f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
	g.sent = func() int { return len(f.srv.Ledger()) }
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	if _, err := f.client.CancelRefund(context.Background(), "A1", nil); err != nil {
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
			_, err := f.client.CancelRefund(context.Background(), "A1", nil)
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

func TestGateToldHowEachRequestEnded(t *testing.T) {
	cases := []struct {
		rule        rpctest.FaultRule
		pause       time.Duration // SlowDownAsked of the cancelRefund's error; 0: none
		unavailable bool
	}{
		{rpctest.FaultRule{Kind: "status", Status: 429, RetryAfter: 3}, 3 * time.Second, true},
		{rpctest.FaultRule{Kind: "status", Status: 503, RetryAfter: 7}, 7 * time.Second, true},
		{rpctest.FaultRule{Kind: "status", Status: 429}, 0, true},                // no Retry-After: no pause asked
		{rpctest.FaultRule{Kind: "status", Status: 500, RetryAfter: 3}, 0, true}, // not a request to slow down
		{rpctest.FaultRule{Kind: "status", Status: 404}, 0, false},               // a proxy's answer, not an outage
		{rpctest.FaultRule{Kind: "malformed"}, 0, true},
		{rpctest.FaultRule{Kind: "drop"}, 0, true},
		{rpctest.FaultRule{Kind: "rpc_error", Code: 300, Message: "Refund cannot be canceled"}, 0, false}, // it answered
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %d", tc.rule.Kind, tc.rule.Status), func(t *testing.T) {
			g := &recordingGate{}
			f := newFixture(t, func(c *rpcclient.Config) { c.Gate = g })
			_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
			tc.rule.Method = "cancelRefund"
			_ = f.srv.SetFaults(tc.rule)
			_, cerr := f.client.CancelRefund(context.Background(), "A1", nil)
			// Told once per request it let through (login, then cancelRefund),
			// with the error the client answers.
			if len(g.done) != 2 || g.done[0] != nil || g.done[1] != cerr {
				t.Fatalf("told %v, want [<nil> %v]", g.done, cerr)
			}
			if d, ok := rpcclient.SlowDownAsked(cerr); d != tc.pause || ok != (tc.pause > 0) {
				t.Fatalf("SlowDownAsked(%v) = %v %v, want %v", cerr, d, ok, tc.pause)
			}
			if got := rpcclient.Unavailable(cerr); got != tc.unavailable {
				t.Fatalf("Unavailable(%v) = %v, want %v", cerr, got, tc.unavailable)
			}
		})
	}
}

func TestUnavailableNeverForRequestsNotSentOrCancelled(t *testing.T) {
	for _, err := range []error{nil, rpcclient.ErrStartDeadline, &rpcclient.GateError{Method: "cancelRefund", Err: context.Canceled},
		&rpcclient.TransportError{Method: "cancelRefund", Err: context.Canceled, NotSent: true},
		&rpcclient.TransportError{Method: "cancelRefund", Err: fmt.Errorf("post: %w", context.Canceled)}} { // its caller cancelled it
		if rpcclient.Unavailable(err) {
			t.Errorf("Unavailable(%v) = true for a request that was never sent", err)
		}
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
	if _, err := f.client.CancelRefund(ctx, "A1", nil); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("request past its start deadline: %v, want ErrStartDeadline", err)
	}
	for _, c := range f.srv.Ledger() {
		if c.Method == "cancelRefund" {
			t.Fatal("cancelRefund was sent after its start deadline")
		}
	}
}

func TestWithPriority(t *testing.T) {
	ctx := context.Background()
	if rpcclient.Priority(ctx) {
		t.Fatal("a plain context has priority")
	}
	p := rpcclient.WithPriority(rpcclient.WithStartDeadline(ctx, time.Now()))
	if !rpcclient.Priority(p) {
		t.Fatal("WithPriority's context has no priority")
	}
	if _, ok := rpcclient.StartDeadline(p); !ok {
		t.Fatal("WithPriority lost the start deadline")
	}
}
