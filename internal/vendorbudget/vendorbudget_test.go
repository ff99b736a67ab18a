package vendorbudget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/redistest"
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
	until   time.Time
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
func (c *counts) Paused(until time.Time) { c.mu.Lock(); c.until = until; c.mu.Unlock() }
func (c *counts) get(reason string) int  { c.mu.Lock(); defer c.mu.Unlock(); return c.refused[reason] }

// testKey answers a key of the test's own, deleted when it ends.
func testKey(t *testing.T, rc redis.UniversalClient) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	key := "test-budget-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { rc.Del(context.Background(), "rate:"+key, key+":pause") })
	return key
}

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

func TestRateLimitSharedAndNoBudgetWhenLate(t *testing.T) {
	gs, cs := newGates(t, 2, Config{Rate: 2, Burst: 1})
	if err := gs[0].Wait(context.Background(), "login"); err != nil {
		t.Fatal(err)
	}
	// The other replica's budget is the same: its next request must wait
	// about 500ms, so with 100ms to its start deadline it is refused at once.
	t0 := time.Now()
	if err := gs[1].Wait(within(100*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("late request: %v, want ErrStartDeadline", err)
	}
	if took := time.Since(t0); took > 90*time.Millisecond {
		t.Fatalf("the late request waited %v before being refused; it should not wait at all", took)
	}
	if cs[1].get(ReasonRateLimit) != 1 || cs[1].get(ReasonStartDeadline) != 1 {
		t.Fatalf("refusals %v", cs[1].refused)
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

func TestPauseSharedCappedAndNeverShortened(t *testing.T) {
	gs, cs := newGates(t, 2, Config{MaxPause: 2 * time.Second})
	gs[0].Pause(context.Background(), "cancelRefund", time.Hour) // capped at MaxPause
	pttl := gs[0].cfg.Redis.PTTL(context.Background(), gs[0].pauseKey).Val()
	if pttl <= time.Second || pttl > 2*time.Second {
		t.Fatalf("pause lasts %v, want MaxPause 2s", pttl)
	}
	gs[1].Pause(context.Background(), "cancelRefund", 100*time.Millisecond) // shorter: ignored
	if p := gs[1].cfg.Redis.PTTL(context.Background(), gs[1].pauseKey).Val(); p <= time.Second {
		t.Fatalf("a shorter pause shortened the shared one to %v", p)
	}
	// The other replica honours it: a request due within 500ms is refused at once.
	if err := gs[1].Wait(within(500*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("request during the pause: %v, want ErrStartDeadline", err)
	}
	if cs[1].get(ReasonPaused) != 1 || cs[1].until.Before(time.Now().Add(time.Second)) {
		t.Fatalf("observer: refused %v, paused until %v", cs[1].refused, cs[1].until)
	}
}

func TestWaitOutlastsPause(t *testing.T) {
	gs, cs := newGates(t, 2, Config{Rate: 1000})
	gs[0].Pause(context.Background(), "cancelRefund", 300*time.Millisecond)
	t0 := time.Now()
	if err := gs[1].Wait(within(5*time.Second), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 250*time.Millisecond {
		t.Fatalf("the request went %v into a 300ms pause", took)
	}
	if cs[1].waited != 1 || cs[1].get(ReasonPaused) != 1 {
		t.Fatalf("observer: waited %d, refused %v", cs[1].waited, cs[1].refused)
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
	if cs[0].waited+cs[1].waited+cs[2].waited != 30 {
		t.Fatal("not every request was observed")
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
			t0 := time.Now()
			err = g.Wait(within(time.Minute), "cancelRefund")
			if err == nil || errors.Is(err, rpcclient.ErrStartDeadline) {
				t.Fatalf("Wait with Redis unreachable: %v, want an error naming Redis", err)
			}
			if took := time.Since(t0); took > 5*time.Second {
				t.Fatalf("Wait took %v; it must fail at once", took)
			}
			if c.get(ReasonUnavailable) != 1 || c.waited != 0 {
				t.Fatalf("observer: %v waited %d", c.refused, c.waited)
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
		{Config{Redis: rc, MaxPause: -time.Second}, "vendorbudget: Config.MaxPause -1s: must not be negative"},
		{Config{Redis: rc, ProbeInterval: -time.Second}, "vendorbudget: Config.ProbeInterval -1s: must not be negative"},
		{Config{Redis: rc, RedisTimeout: -time.Millisecond}, "vendorbudget: Config.RedisTimeout -1ms: must not be negative"},
	} {
		if _, err := New(tc.cfg); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
	g, err := New(Config{Redis: rc, OutageAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c := g.cfg; c.OutageAfter != -1 || c.Burst != DefaultBurst || c.MaxPause != DefaultMaxPause || c.ProbeInterval != DefaultProbeInterval ||
		c.RedisTimeout != DefaultRedisTimeout || c.Key != DefaultKey {
		t.Errorf("defaults: %+v", c)
	}
}

// scriptCalls counts the Lua scripts a client runs: the reads of the
// shared pause and outage state (at most one per pauseRecheck) if state,
// else all the others.
type scriptCalls struct {
	state bool
	n     atomic.Int64
}

func (*scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && (cmd.Args()[1] == stateScript.Hash()) == s.state {
			s.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (*scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// With a limit far above the load, a replica takes budget from Redis in
// batches (up to Burst, at most batchTTL's worth of the rate): most requests
// cost no round trip for the limit. The loop asks as fast as it can, so the
// limit is far above any machine's pace: at 100,000/s a fast VM's loop
// emptied the GCRA's burst, which then granted 4–17 a script (200–300).
func TestBatchesWhenFarBelowTheLimit(t *testing.T) {
	gs, _ := newGates(t, 1, Config{Rate: 100_000_000, Burst: 100})
	calls := &scriptCalls{}
	gs[0].cfg.Redis.AddHook(calls)
	for range 1000 {
		if err := gs[0].Wait(context.Background(), "cancelRefund"); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.n.Load(); n > 100 {
		t.Fatalf("%d limiter scripts for 1000 requests; batching should need far fewer", n)
	}
}

// Batches never let the fleet exceed its rate by more than batchTTL's worth
// plus the burst: three gates hammering a limit of 200/s with a burst of 10
// grant at most 200·1.05+10 in any second.
func TestBatchesKeepTheLimit(t *testing.T) {
	const rate, burst = 200, 10
	gs, _ := newGates(t, 3, Config{Rate: rate, Burst: burst})
	var mu sync.Mutex
	var grants []time.Time
	stop := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := gs[i%3].Wait(within(time.Second), "cancelRefund"); err != nil {
					continue // refused near its start deadline: no budget taken
				}
				mu.Lock()
				grants = append(grants, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i, j := 0, 0; i < len(grants); i++ {
		for j < len(grants) && grants[j].Before(grants[i].Add(time.Second)) {
			j++
		}
		most = max(most, j-i)
	}
	if limit := int(rate*(1+batchTTL.Seconds())) + burst; most > limit {
		t.Fatalf("%d grants in one second; at most %d allowed", most, limit)
	}
	if len(grants) < rate*2 {
		t.Fatalf("only %d grants in 2.5s at %d/s", len(grants), rate)
	}
}

// unavailable is what the client answers for a 503 without Retry-After.
var unavailable = &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 503}

func TestOutageBackoffIsFleetWideAndEndsAtTheFirstAnswer(t *testing.T) {
	gs, cs := newGates(t, 2, Config{OutageAfter: 3, ProbeInterval: 300 * time.Millisecond})
	ctx := context.Background()
	// Two unavailable answers in a row, on two replicas: below the streak,
	// requests still go at once.
	gs[0].Done(ctx, "cancelRefund", unavailable)
	gs[1].Done(ctx, "cancelRefund", unavailable)
	if err := gs[1].Wait(within(50*time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("below the streak: %v", err)
	}
	// The third trips the back-off for the whole fleet: the other replica
	// (reading Redis within pauseRecheck) may not send within 50ms.
	gs[0].Done(ctx, "cancelRefund", unavailable)
	gs[1].forgetRedis()
	if err := gs[1].Wait(within(50*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("during the back-off: %v, want ErrStartDeadline", err)
	}
	if cs[1].get(ReasonOutage) == 0 {
		t.Fatalf("observer: refused %v, want an outage wait", cs[1].refused)
	}
	// After ProbeInterval exactly one request — the probe — goes; a second
	// one waits for the probe's answer or the next interval.
	start := time.Now()
	if err := gs[1].Wait(within(2*time.Second), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the probe went after %v, inside the 300ms back-off", took)
	}
	if err := gs[0].Wait(within(100*time.Millisecond), "cancelRefund"); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("a second request beside the probe: %v, want ErrStartDeadline", err)
	}
	// The probe gets an answer (a JSON-RPC error is one): every replica sends again.
	gs[1].Done(ctx, "cancelRefund", &rpcclient.APIError{Method: "cancelRefund", Code: 300, Name: "ERROR_300", Message: "no"})
	gs[0].forgetRedis()
	if err := gs[0].Wait(within(50*time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("after the answer: %v", err)
	}
	if n := gs[0].cfg.Redis.Exists(ctx, gs[0].streakKey, gs[0].outageKey).Val(); n != 0 {
		t.Fatalf("%d outage keys left after the answer", n)
	}
}

func TestOutageBackoffOff(t *testing.T) {
	gs, _ := newGates(t, 1, Config{OutageAfter: -1})
	for range 5 {
		gs[0].Done(context.Background(), "cancelRefund", unavailable)
	}
	if err := gs[0].Wait(within(50*time.Millisecond), "cancelRefund"); err != nil {
		t.Fatalf("OutageAfter -1: %v", err)
	}
}

// forgetRedis makes the gate's next request read the shared state from
// Redis instead of its cache (at most pauseRecheck old).
func (g *Gate) forgetRedis() { g.pauseAsked.Store(-int64(time.Hour)) }

// With a probe, no request of the callers' is spent finding out whether
// 2Checkout is back: the gate sends its probe once per interval, and the
// waiting request goes after the first probe that gets an answer.
func TestProbeFindsOutInsteadOfARequest(t *testing.T) {
	gs, cs := newGates(t, 1, Config{OutageAfter: 1, ProbeInterval: 200 * time.Millisecond})
	g := gs[0]
	var probes atomic.Int32
	var sent []string
	g.SetProbe(func(ctx context.Context) error {
		n := probes.Add(1)
		if err := g.Wait(ctx, "login"); err != nil { // the probe's own request passes the back-off
			return err
		}
		sent = append(sent, "login")
		var err error
		if n == 1 {
			err = unavailable // still down at the first probe
		}
		g.Done(ctx, "login", err)
		return err
	})
	g.Done(context.Background(), "cancelRefund", unavailable) // OutageAfter 1: the back-off is on
	start := time.Now()
	if err := g.Wait(within(5*time.Second), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
	if probes.Load() != 2 || len(sent) != 2 {
		t.Fatalf("%d probes, %d sent; want 2 (one failed, one answered) before the request", probes.Load(), len(sent))
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("the second probe went %v after the first; the interval is 200ms", took)
	}
	if cs[0].get(ReasonOutage) != 1 {
		t.Fatalf("observer: refused %v, want the request counted once as waiting for the outage", cs[0].refused)
	}
}

// The probe's own request waits for the budget like any other, even while
// the request that sent it holds this process's place at the budget: no
// deadlock (with a budget of 2/s, spent just before).
func TestProbeWaitsForBudgetBesideItsCaller(t *testing.T) {
	gs, _ := newGates(t, 1, Config{Rate: 2, Burst: 1, OutageAfter: 1, ProbeInterval: 100 * time.Millisecond})
	g := gs[0]
	g.SetProbe(func(ctx context.Context) error {
		if err := g.Wait(ctx, "login"); err != nil {
			return err
		}
		g.Done(ctx, "login", nil) // 2Checkout answers
		return nil
	})
	if err := g.Wait(within(time.Second), "cancelRefund"); err != nil { // the budget is spent for 500ms
		t.Fatal(err)
	}
	g.Done(context.Background(), "cancelRefund", unavailable)
	start := time.Now()
	if err := g.Wait(within(10*time.Second), "cancelRefund"); err != nil {
		t.Fatal(err)
	}
	// The probe's slot at 500ms, this request's at 1s; a deadlock would
	// last the probe's timeout (5s).
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the request went after %v: the probe waited on its own caller", took)
	}
}

// Many requests at once read the fleet's state once per pauseRecheck
// between them, not each (a storm of reads every 20 ms under load).
func TestOneStateReadAtATime(t *testing.T) {
	gs, _ := newGates(t, 1, Config{})
	reads := &scriptCalls{state: true}
	gs[0].cfg.Redis.AddHook(reads)
	const workers, spell = 20, 300 * time.Millisecond
	start := time.Now()
	var wg sync.WaitGroup
	var requests atomic.Int64
	for range workers {
		wg.Go(func() {
			for time.Since(start) < spell {
				if err := gs[0].Wait(context.Background(), "cancelRefund"); err != nil {
					t.Error(err)
					return
				}
				requests.Add(1)
			}
		})
	}
	wg.Wait()
	// One read per pauseRecheck (and a few that found no read in flight to wait for).
	if n, most := reads.n.Load(), int64(time.Since(start)/pauseRecheck)+5; n > most {
		t.Fatalf("%d state reads for %d requests in %v: want at most %d", n, requests.Load(), time.Since(start).Round(time.Millisecond), most)
	}
}
