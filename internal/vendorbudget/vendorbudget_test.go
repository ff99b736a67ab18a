package vendorbudget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
)

func TestWaitRefusal(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		d        time.Duration
		start    time.Time
		hasStart bool
		ctxEnd   time.Time
		hasCtx   bool
		want     error
	}{
		{"no deadlines", time.Hour, time.Time{}, false, time.Time{}, false, nil},
		{"starts just before the start deadline", time.Second, now.Add(time.Second + 1), true, time.Time{}, false, nil},
		{"would start at the start deadline", time.Second, now.Add(time.Second), true, time.Time{}, false, rpcclient.ErrStartDeadline},
		{"would start after the start deadline", 3 * time.Second, now.Add(time.Second), true, time.Time{}, false, rpcclient.ErrStartDeadline},
		{"start deadline already passed", 0, now.Add(-time.Second), true, time.Time{}, false, rpcclient.ErrStartDeadline},
		{"context ends first", time.Second, now.Add(time.Hour), true, now.Add(time.Second), true, context.DeadlineExceeded},
		{"context ends later", time.Second, now.Add(time.Hour), true, now.Add(time.Second + 1), true, nil},
		{"start deadline wins over the context", 5 * time.Second, now.Add(time.Second), true, now.Add(2 * time.Second), true, rpcclient.ErrStartDeadline},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := waitRefusal(now, tc.d, tc.start, tc.hasStart, tc.ctxEnd, tc.hasCtx); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// counts is an Observer that counts.
type counts struct {
	mu      sync.Mutex
	refused map[string]int
	waited  int
	fleet   FleetState
}

func (c *counts) Waited(string, time.Duration) { c.mu.Lock(); c.waited++; c.mu.Unlock() }
func (c *counts) Refused(_, reason string) {
	c.mu.Lock()
	if c.refused == nil {
		c.refused = map[string]int{}
	}
	c.refused[reason]++
	c.mu.Unlock()
}
func (c *counts) Fleet(s FleetState)    { c.mu.Lock(); c.fleet = s; c.mu.Unlock() }
func (c *counts) get(reason string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.refused[reason] }
func (c *counts) lastFleet() FleetState { c.mu.Lock(); defer c.mu.Unlock(); return c.fleet }
func (c *counts) waits() int            { c.mu.Lock(); defer c.mu.Unlock(); return c.waited }

// testKey answers a key of the test's own, deleted when it ends.
func testKey(t *testing.T, rc redis.UniversalClient) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	key := "test-budget-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		rc.Del(context.Background(), "rate:"+key, "rate:"+key+":cancelRefund", "rate:"+key+":getOrder", "rate:"+key+":login", key+":window", key+":outage")
	})
	return key
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newGates(t *testing.T, n int, cfg Config) ([]*Gate, []*counts) {
	t.Helper()
	r := redistest.New(t)
	rc := r.Client()
	t.Cleanup(func() { rc.Close() })
	cfg.Redis, cfg.Key = rc, testKey(t, rc)
	var gs []*Gate
	var cs []*counts
	for range n {
		c := &counts{}
		cfg.Observer = c
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		gs, cs = append(gs, g), append(cs, c)
	}
	return gs, cs
}

func within(d time.Duration) context.Context {
	return rpcclient.WithStartDeadline(context.Background(), time.Now().Add(d))
}

// withinOn is within on the clock c.
func withinOn(c *clock, d time.Duration) context.Context {
	return rpcclient.WithStartDeadline(context.Background(), c.Now().Add(d))
}

// resync makes g read the fleet's state (adding its counts) now.
func resync(t *testing.T, g *Gate) *view {
	t.Helper()
	v, err := g.sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// answers tells g of n requests of method ending with err.
func answers(g *Gate, method string, n int, err error) {
	for range n {
		g.Done(context.Background(), method, err)
	}
}

var (
	tooMany     = &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 429, RetryAfter: 3 * time.Second}
	unavailable = &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 503}
	dropped     = &rpcclient.TransportError{Method: "cancelRefund", Err: errors.New("connection reset")}
	rpcRefusal  = &rpcclient.APIError{Method: "cancelRefund", Code: 300, Name: rpcclient.NameRefundNotCancellable}
)

func TestRateLimitSharedAndNoBudgetWhenLate(t *testing.T) {
	gs, cs := newGates(t, 2, Config{Rate: 2, Burst: 1})
	if err := gs[0].Wait(context.Background(), "login"); err != nil {
		t.Fatal(err)
	}
	// The other replica's budget is the same: its next request must wait
	// about 500ms, so with 100ms to its start deadline it is refused.
	t0 := time.Now()
	if err := gs[1].Wait(within(100*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("late request: %v, want ErrStartDeadline", err)
	}
	if cs[1].get(ReasonRateLimit) != 1 || cs[1].get(ReasonStartDeadline) != 1 || cs[1].waits() != 0 {
		t.Fatalf("refusals %v, waits %d", cs[1].refused, cs[1].waits())
	}
	// The refused request took no budget: one with time enough gets the
	// next slot, 500ms after the first, not 1s.
	if err := gs[1].Wait(within(900*time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("request with time enough: %v", err)
	}
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Fatalf("second request went after %v; the shared rate of 2/s allows one per 500ms", took)
	}
}

func TestConcurrentWaitersEachGetOneSlot(t *testing.T) {
	gs, cs := newGates(t, 3, Config{Rate: 20, Burst: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- gs[i%3].Wait(within(5*time.Second), "cancelRefund")
		}()
	}
	t0 := time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// 30 requests at 20/s with a burst of 1 need at least 29/20 s.
	if took := time.Since(t0); took < 1400*time.Millisecond {
		t.Fatalf("30 requests went in %v; the shared limit of 20/s needs 1.45s", took)
	}
	if cs[0].waits()+cs[1].waits()+cs[2].waits() != 30 {
		t.Fatal("not every request was observed")
	}
}

// The throttle's rule, on a method's counts in the window: it binds only
// while the share refused for load is above 1−1/Headroom (20% at 1.25),
// and then allows Headroom × the accepted rate (never below minRate); once
// on, it stays on down to half that share.
func TestThrottleRule(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sent, refused int
		span          time.Duration
		was           bool
		rate          float64
		throttled     bool
	}{
		{"nothing refused", 1000, 0, 10 * time.Second, false, 0, false},
		{"random refusals below the line cost nothing", 1000, 95, 10 * time.Second, false, 0, false},
		{"at the line", 1000, 200, 10 * time.Second, false, 0, false},
		{"a vendor limit: 20/s accepted of 100/s", 1000, 800, 10 * time.Second, false, 25, true},
		{"hysteresis: still on at 15%", 1000, 150, 10 * time.Second, true, 1.25 * 85, true},
		{"hysteresis: off at 10%", 1000, 100, 10 * time.Second, true, 0, false},
		{"a short span counts its own length", 100, 80, 2 * time.Second, false, 12.5, true},
		{"too few to judge", 9, 9, time.Second, false, 0, false},
		{"everything refused: still asked at the floor", 50, 50, 10 * time.Second, false, minRate, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Gate{cfg: Config{Headroom: DefaultHeadroom}}
			rate, on := g.allowed(tc.sent, tc.refused, tc.span, tc.was)
			if on != tc.throttled || math.Abs(rate-tc.rate) > 1e-9 {
				t.Fatalf("allowed = %v %v, want %v %v", rate, on, tc.rate, tc.throttled)
			}
		})
	}
}

// One replica's 429s throttle the method fleet-wide, at once: another
// replica, reading the fleet's counts, allows Headroom × the accepted rate
// and holds requests above it (reason throttled), with no pause anywhere;
// other methods are not throttled. Once the 429s leave the window (a
// replica that died, or a vendor that recovered), the throttle is off.
func TestThrottleIsFleetWideAndAgesOut(t *testing.T) {
	c := newClock()
	gs, cs := newGates(t, 2, Config{Now: c.Now})
	answers(gs[0], "cancelRefund", 100, nil)
	answers(gs[0], "cancelRefund", 1, tooMany)
	answers(gs[0], "login", 10, nil)
	if m := resync(t, gs[0]).methods["cancelRefund"]; m.Throttled {
		t.Fatalf("one 429 in 101 answers: %+v; want no throttle", m)
	}
	c.Advance(2 * time.Second)
	answers(gs[0], "cancelRefund", 199, tooMany)
	resync(t, gs[0])
	v := resync(t, gs[1])
	// 100 accepted in the 2s since counting began: 50/s; allowed 62.5/s.
	if m := v.methods["cancelRefund"]; !m.Throttled || math.Abs(m.Rate-62.5) > 1e-9 || v.methods["login"].Throttled {
		t.Fatalf("after 200 429s: %+v; want cancelRefund throttled at 62.5/s, login not", v.methods)
	}
	if f := cs[1].lastFleet(); f.Methods["cancelRefund"].Rate != 62.5 || f.Methods["cancelRefund"].Refused != 200 || f.Methods["cancelRefund"].Sent != 300 {
		t.Fatalf("observer heard %+v", f)
	}
	// The GCRA at 62.5/s with a burst of 1: the second request at once
	// would have to wait 16ms; with 5ms to its start deadline it is refused.
	if err := gs[1].Wait(withinOn(c, time.Minute), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
	if err := gs[1].Wait(withinOn(c, 5*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("a request above the throttled rate: %v, want ErrStartDeadline", err)
	}
	if cs[1].get(ReasonThrottled) != 1 {
		t.Fatalf("refusals %v", cs[1].refused)
	}
	for range 3 {
		if err := gs[1].Wait(withinOn(c, 5*time.Millisecond), "login"); err != nil {
			t.Fatalf("a login beside a throttled cancelRefund: %v", err)
		}
	}
	c.Advance(DefaultWindow)
	if m := resync(t, gs[1]).methods["cancelRefund"]; m.Throttled {
		t.Fatalf("a window later: %+v; want no throttle", m)
	}
}

// Refusals of a method not throttled reach the fleet at once, not a Sync
// later: the replica that got one syncs in Done.
func TestRefusalsSyncAtOnce(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 2, Config{Now: c.Now})
	answers(gs[0], "cancelRefund", 8, nil)
	answers(gs[0], "cancelRefund", 5, tooMany)
	if m := resync(t, gs[1]).methods["cancelRefund"]; !m.Throttled || m.Refused < 3 {
		t.Fatalf("the other replica sees %+v; want the refusals and the throttle", m)
	}
}

// Outage is per method and judged on a share over the window: at least
// half of at least OutageMin requests unavailable. While cancelRefund is
// out, logins go on; one cancelRefund per ProbeInterval goes through as
// the probe (on any replica), the others wait; the probe's failure renews
// the outage, and the first answer ends it for the fleet.
func TestOutageIsPerMethodAndProbedWithTheFailingMethod(t *testing.T) {
	c := newClock()
	gs, cs := newGates(t, 2, Config{Now: c.Now})
	answers(gs[0], "cancelRefund", 9, nil)
	answers(gs[0], "cancelRefund", 10, unavailable)
	answers(gs[0], "login", 30, nil)
	if v := resync(t, gs[0]); v.methods["cancelRefund"].Out {
		t.Fatal("out after 10 failures of 19: fewer than OutageMin requests")
	}
	answers(gs[0], "cancelRefund", 1, dropped)
	if v := resync(t, gs[0]); !v.methods["cancelRefund"].Out || v.methods["login"].Out {
		t.Fatalf("after 11 failures of 20: %+v; want cancelRefund out, login not", v.methods)
	}
	resync(t, gs[1])
	if err := gs[1].Wait(withinOn(c, time.Minute), "login"); err != nil {
		t.Fatalf("a login while cancelRefund is out: %v", err)
	}
	// The first cancelRefund is the probe; the next, on either replica, waits.
	if err := gs[1].Wait(withinOn(c, time.Minute), "cancelRefund"); err != nil {
		t.Fatalf("the probe: %v", err)
	}
	for _, g := range gs {
		if err := g.Wait(withinOn(c, 5*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
			t.Fatalf("a cancelRefund beside the probe: %v, want held until its start deadline", err)
		}
	}
	if cs[0].get(ReasonOutage) != 1 || cs[1].get(ReasonOutage) != 1 {
		t.Fatalf("refusals %v %v", cs[0].refused, cs[1].refused)
	}
	// The probe fails: the outage is renewed past its first lease.
	c.Advance(DefaultLease - time.Second)
	gs[1].Done(context.Background(), "cancelRefund", dropped)
	c.Advance(2 * time.Second)
	if v := resync(t, gs[0]); !v.methods["cancelRefund"].Out {
		t.Fatal("a failed probe did not renew the outage")
	}
	// The next probe (the claim lapsed after ProbeInterval) is answered —
	// even a JSON-RPC error is an answer — and the outage is over.
	if err := gs[0].Wait(withinOn(c, time.Minute), "cancelRefund"); err != nil {
		t.Fatalf("the second probe: %v", err)
	}
	gs[0].Done(context.Background(), "cancelRefund", rpcRefusal)
	if v := resync(t, gs[1]); v.methods["cancelRefund"].Out {
		t.Fatal("still out after an answer")
	}
	for range 5 {
		if err := gs[1].Wait(withinOn(c, 5*time.Millisecond), "cancelRefund"); err != nil {
			t.Fatalf("after the outage: %v", err)
		}
	}
}

// Liveness: what a replica that died leaves in Redis — an outage it
// declared, a probe it claimed and never answered, counts that throttle —
// holds the fleet for at most Lease (and the window), on the clock, not
// until someone cleans up.
func TestStateOfTheDeadLapses(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 2, Config{Now: c.Now})
	dead, alive := gs[0], gs[1]
	answers(dead, "cancelRefund", 20, unavailable)
	answers(dead, "getOrder", 80, tooMany)
	answers(dead, "getOrder", 20, nil) // throttled
	resync(t, dead)
	if err := dead.Wait(withinOn(c, time.Minute), "cancelRefund"); err != nil { // it claims the probe, then dies
		t.Fatal(err)
	}
	resync(t, alive)
	if err := alive.Wait(withinOn(c, 5*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("beside the dead replica's probe: %v, want held", err)
	}
	// The probe's claim lapses after ProbeInterval: the next is the probe.
	c.Advance(DefaultProbeInterval)
	if err := alive.Wait(withinOn(c, time.Minute), "cancelRefund"); err != nil {
		t.Fatalf("after the dead probe's claim lapsed: %v", err)
	}
	// Nobody renews the outage, and its counts age out: after the window,
	// nothing the dead replica left holds a request.
	c.Advance(DefaultWindow)
	v := resync(t, alive)
	if v.methods["cancelRefund"].Out || v.methods["getOrder"].Throttled {
		t.Fatalf("a window after the replica died: %+v", v.methods)
	}
	for range 3 {
		if err := alive.Wait(withinOn(c, 5*time.Millisecond), "cancelRefund"); err != nil {
			t.Fatal(err)
		}
	}
	outs, err := alive.cfg.Redis.HGetAll(context.Background(), alive.outageKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range outs {
		if n, _ := strconv.ParseInt(v, 10, 64); time.UnixMilli(n).After(c.Now()) {
			t.Fatalf("%s lasts until %v, past now (%v)", k, time.UnixMilli(n), c.Now())
		}
	}
}

// A request marked WithPriority (a last chance, a settling read) goes while
// its method is out and the fleet is throttled — asking Redis only for the
// ceiling — but the ceiling (TCO_RATE_LIMIT) holds it like any other.
func TestPriorityIsNeverHeld(t *testing.T) {
	c := newClock()
	calls := &scriptCalls{}
	gs, cs := newGates(t, 1, Config{Now: c.Now, Rate: 1, Burst: 4})
	g := gs[0]
	answers(g, "cancelRefund", 20, unavailable)
	answers(g, "getOrder", 100, tooMany)
	resync(t, g)
	_ = g.Wait(withinOn(c, time.Minute), "cancelRefund") // the probe
	g.cfg.Redis.(*redis.Client).AddHook(calls)
	before := cs[0].waits()
	for _, m := range []string{"cancelRefund", "getOrder", "getOrder"} {
		if err := g.Wait(rpcclient.WithPriority(withinOn(c, time.Millisecond)), m); err != nil {
			t.Fatalf("priority %s: %v", m, err)
		}
	}
	if n := calls.n.Load(); n != 3 || cs[0].waits() != before+3 {
		t.Fatalf("priority requests ran %d Redis commands, %d waits; want 3 (the ceiling's) and 3", n, cs[0].waits()-before)
	}
	// The same request without priority is held.
	if err := g.Wait(withinOn(c, time.Millisecond), "cancelRefund"); err == nil {
		t.Fatal("a request without priority went while its method is out")
	}
	// The ceiling's burst is spent (the probe and three): the next priority
	// request would wait about a second for it, past its start deadline.
	if err := g.Wait(rpcclient.WithPriority(withinOn(c, time.Millisecond)), "getOrder"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("a priority request past the spent ceiling: %v; want ErrStartDeadline", err)
	}
}

// A busy replica reads the fleet's state once per Sync, not per request:
// with the clock still, a hundred requests cost no Redis command (no
// ceiling, no throttle); a Sync later, one.
func TestOneSyncPerInterval(t *testing.T) {
	c := newClock()
	calls := &scriptCalls{}
	gs, _ := newGates(t, 1, Config{Now: c.Now})
	resync(t, gs[0])
	gs[0].cfg.Redis.(*redis.Client).AddHook(calls)
	for range 100 {
		if err := gs[0].Wait(context.Background(), "cancelRefund"); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.n.Load(); n != 0 {
		t.Fatalf("100 requests within one Sync ran %d Redis commands; want 0", n)
	}
	c.Advance(DefaultSync)
	_ = gs[0].Wait(context.Background(), "cancelRefund")
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("a Sync later: %d Redis commands; want 1", n)
	}
}

// Answers of requests that never left (refused by the gate, cancelled by
// their caller, past their start deadline) are not counted.
func TestNotSentIsNotCounted(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 1, Config{Now: c.Now})
	for _, err := range []error{rpcclient.ErrStartDeadline, &rpcclient.TransportError{Method: "cancelRefund", Err: errors.New("x"), NotSent: true},
		&rpcclient.TransportError{Method: "cancelRefund", Err: context.Canceled}} {
		gs[0].Done(context.Background(), "cancelRefund", err)
	}
	gs[0].Done(context.Background(), "cancelRefund", dropped)
	if m := resync(t, gs[0]).methods["cancelRefund"]; m.Sent != 1 || m.Unavailable != 1 {
		t.Fatalf("counted %+v; want the one dropped request", m)
	}
}

func TestRedisUnreachable(t *testing.T) {
	cases := map[string]func(t *testing.T) string{
		"refused": func(t *testing.T) string {
			r := redistest.Start(t)
			r.Stop()
			return r.URL
		},
		"never answers": func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
				}
			}()
			return "redis://" + ln.Addr().String()
		},
	}
	for name, addr := range cases {
		t.Run(name, func(t *testing.T) {
			opt, err := redis.ParseURL(addr(t))
			if err != nil {
				t.Fatal(err)
			}
			opt.MaxRetries, opt.ContextTimeoutEnabled = -1, true
			rc := redis.NewClient(opt)
			defer rc.Close()
			c := &counts{}
			g, err := New(Config{Redis: rc, Rate: 10, RedisTimeout: 200 * time.Millisecond, Observer: c})
			if err != nil {
				t.Fatal(err)
			}
			err = g.Wait(within(time.Minute), "cancelRefund")
			if err == nil || errors.Is(err, rpcclient.ErrStartDeadline) {
				t.Fatalf("Wait with Redis unreachable: %v, want an error naming Redis", err)
			}
			if c.get(ReasonUnavailable) != 1 || c.waits() != 0 {
				t.Fatalf("observer: %v waited %d", c.refused, c.waits())
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "vendorbudget: Config.Redis is required"},
		{Config{Redis: rc, Rate: -1}, "vendorbudget: Config.Rate -1: must not be negative"},
		{Config{Redis: rc, Burst: -1}, "vendorbudget: Config.Burst -1: must not be negative"},
		{Config{Redis: rc, Headroom: 0.5}, "vendorbudget: Config.Headroom 0.5: must be at least 1"},
		{Config{Redis: rc, OutageRatio: 1.5}, "vendorbudget: Config.OutageRatio 1.5: must be above 0 and at most 1"},
		{Config{Redis: rc, Window: 500 * time.Millisecond}, "vendorbudget: Config.Window 500ms: must be at least 1s"},
		{Config{Redis: rc, Lease: -time.Second}, "vendorbudget: Config.Lease -1s: must not be negative"},
		{Config{Redis: rc, ProbeInterval: -time.Second}, "vendorbudget: Config.ProbeInterval -1s: must not be negative"},
		{Config{Redis: rc, RedisTimeout: -time.Millisecond}, "vendorbudget: Config.RedisTimeout -1ms: must not be negative"},
	} {
		if _, err := New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
	g, err := New(Config{Redis: rc, OutageMin: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c := g.cfg; c.OutageMin != -1 || c.Burst != DefaultBurst || c.Headroom != DefaultHeadroom || c.Window != DefaultWindow ||
		c.OutageRatio != DefaultOutageRatio || c.ProbeInterval != DefaultProbeInterval || c.Lease != DefaultLease || c.Sync != DefaultSync ||
		c.RedisTimeout != DefaultRedisTimeout || c.Key != DefaultKey {
		t.Errorf("defaults: %+v", c)
	}
}

// With the outage breaker off, no share of failures holds a request.
func TestOutageBreakerOff(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 1, Config{Now: c.Now, OutageMin: -1})
	answers(gs[0], "cancelRefund", 50, unavailable)
	if v := resync(t, gs[0]); v.methods["cancelRefund"].Out {
		t.Fatal("out with the breaker off")
	}
	if err := gs[0].Wait(withinOn(c, time.Millisecond), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
}

// scriptCalls counts the commands a client sends.
type scriptCalls struct{ n atomic.Int64 }

func (*scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (s *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		s.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// A replica's last answers reach the fleet within Sync even when no request
// follows them (a replica going idle).
func TestCountsReachTheFleetWithoutAnotherRequest(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 2, Config{Now: c.Now, Sync: 10 * time.Millisecond})
	answers(gs[0], "getOrder", 3, nil)
	testutil.Eventually(t, 10*time.Second, "the other replica to see 3 getOrders", func() bool {
		return resync(t, gs[1]).methods["getOrder"].Sent == 3
	})
}

// While a method is out, a request marked rpcclient.WithProbeLast (a
// task's first cancel, whose failure would cost its task a check) claims
// the probe only one ProbeInterval after the last claim lapsed; others (a
// retry's cancel, a login) at once — so a failed probe does not leave a
// new task to check its refund after the outage each time, and the outage
// is still probed when only first cancels come.
func TestFirstCancelsProbeLast(t *testing.T) {
	c := newClock()
	gs, _ := newGates(t, 1, Config{Now: c.Now})
	g := gs[0]
	last := func(d time.Duration) context.Context { return rpcclient.WithProbeLast(withinOn(c, d)) }
	answers(g, "cancelRefund", 20, unavailable)
	resync(t, g)
	if err := g.Wait(withinOn(c, time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("the first probe: %v", err)
	}
	g.Done(context.Background(), "cancelRefund", unavailable)
	c.Advance(DefaultProbeInterval) // the claim lapses
	resync(t, g)
	if err := g.Wait(last(time.Millisecond), "cancelRefund"); err == nil {
		t.Fatal("a first cancel probed as soon as the claim lapsed")
	}
	if err := g.Wait(withinOn(c, time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("a retry's cancel at the lapse: %v; want it to probe", err)
	}
	g.Done(context.Background(), "cancelRefund", unavailable)
	c.Advance(2 * DefaultProbeInterval) // no retry came: a first cancel probes
	resync(t, g)
	if err := g.Wait(last(time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("a first cancel a full interval after the lapse: %v; want it to probe", err)
	}
}
