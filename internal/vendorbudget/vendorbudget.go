// Package vendorbudget is what refundd's replicas share, through Redis, about
// calling 2Checkout: one request budget for the whole fleet (a GCRA rate
// limit, github.com/go-redis/redis_rate); one pause, set by whichever
// replica 2Checkout answers 429 or 503 with a Retry-After and honoured by
// all; and one outage back-off: once several requests in a row, fleet-wide,
// find 2Checkout unavailable (rpcclient.Unavailable), the fleet sends one
// request — a probe — per ProbeInterval until one gets an answer.
//
// A *Gate is an rpcclient.Gate. It never lets a request wait past the start
// deadline of its context (rpcclient.WithStartDeadline): such a request fails
// at once with rpcclient.ErrStartDeadline and takes no budget. If Redis cannot
// be reached, Wait fails at once (the request is not sent, the caller retries
// as after any transient failure); it neither spins nor lets requests through
// unmetered.
package vendorbudget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/rpcclient"
)

// Config configures a Gate. The zero value of each optional field means the
// default written beside it (Rate's zero is no limit); a negative number is
// an error naming the field, except OutageAfter's, which turns the outage
// back-off off.
type Config struct {
	// Redis holds the shared state. Required. Every replica must use the
	// same Redis (and database) and the same Key. Build it with
	// ContextTimeoutEnabled (as redisconn does), so RedisTimeout bounds each
	// command even when Redis stops answering.
	Redis redis.UniversalClient
	// Key names the shared state: the limiter's key and Key+":pause".
	// Default "refundd:2co". Replicas calling 2Checkout as the same merchant
	// share one key.
	Key string
	// Rate is the fleet's request rate to 2Checkout, per second. 0: no limit
	// (the pause is still shared).
	Rate int
	// Burst is how many requests may go at once above the steady rate.
	// Default 1: requests are spaced 1/Rate apart, fleet-wide.
	Burst int
	// MaxPause caps a pause asked for with Retry-After. Default 5m.
	MaxPause time.Duration
	// OutageAfter: after this many requests in a row, fleet-wide, found
	// 2Checkout unavailable, the fleet backs off together: one request — a
	// probe — per ProbeInterval until one gets an answer (any answer: a
	// JSON-RPC error is an answer). Default 3; negative: never.
	OutageAfter int
	// ProbeInterval is the fleet's pace while 2Checkout is unavailable, and
	// so how late the fleet may notice its return. Default 1s.
	ProbeInterval time.Duration
	// RedisTimeout bounds each Redis command. Default 1s.
	RedisTimeout time.Duration
	// Logger logs pauses. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock start deadlines are read with. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told of waits, refusals and pauses (metrics).
	Observer Observer
}

// Defaults of Config.
const (
	DefaultKey           = "refundd:2co"
	DefaultBurst         = 1
	DefaultMaxPause      = 5 * time.Minute
	DefaultRedisTimeout  = time.Second
	DefaultOutageAfter   = 3
	DefaultProbeInterval = time.Second
)

// Reasons a request had to wait or was refused, as Observer.Refused hears them.
const (
	ReasonPaused        = "paused"         // a shared pause was on: the request waited
	ReasonOutage        = "outage"         // 2Checkout is unavailable and another request is the probe: the request waited
	ReasonRateLimit     = "rate_limit"     // the fleet's budget was spent: the request waited
	ReasonStartDeadline = "start_deadline" // it could not start before its start deadline: not sent
	ReasonContext       = "context"        // its context ended first: not sent
	ReasonUnavailable   = "unavailable"    // Redis could not be asked: not sent
)

// Observer is told what the Gate does. It must be safe for concurrent use.
type Observer interface {
	// Waited: a request for method got its budget after waiting d (0: at once).
	Waited(method string, d time.Duration)
	// Refused: a request for method had to wait, or was refused, for reason
	// (one of the Reason constants). A request is counted once per reason.
	Refused(method, reason string)
	// Paused: the shared pause, as this replica last saw it, lasts until until.
	Paused(until time.Time)
}

// Gate is the fleet's shared budget of requests to 2Checkout. It is an
// rpcclient.Gate and is safe for concurrent use.
type Gate struct {
	cfg      Config
	limiter  *redis_rate.Limiter
	limit    redis_rate.Limit
	pauseKey string
	// The outage back-off: the streak of unavailable answers, and the key
	// whose life is the time until the next probe.
	streakKey, outageKey string
	// slow lets one goroutine of this process at a time poll a spent
	// budget, so waiters do not hammer Redis; the others queue behind it.
	slow chan struct{}
	// local holds budget taken ahead, at most maxBatch requests' worth.
	local    batch
	maxBatch int
	// The shared pause as last read from Redis, in time since epoch (a
	// monotonic clock): when it was read and when it ends.
	epoch      time.Time
	pauseAsked atomic.Int64
	pauseEnds  atomic.Int64
	readDone   atomic.Pointer[chan struct{}] // set while a request reads the state for the process; closed when it ends
	// The outage back-off as last read (or set): the fleet's streak of
	// unavailable answers, and when the next probe may go.
	streak     atomic.Int64
	outageEnds atomic.Int64
	probe      atomic.Pointer[func(context.Context) error]
}

// probing marks the context of the gate's own probe.
type probing struct{}

// SetProbe gives the gate a request that shows whether 2Checkout answers
// and changes nothing there (refundd: rpcclient.Client.Probe, a login).
// While 2Checkout is unavailable the gate sends it, once per ProbeInterval
// for the fleet, instead of letting a cancellation find out (a failed
// cancelRefund may have been applied, and costs its task a getOrder later).
// Without one, the first request after each interval is the probe.
func (g *Gate) SetProbe(probe func(context.Context) error) { g.probe.Store(&probe) }

// outageRecheck: while 2Checkout is unavailable, a waiting request looks
// this often whether a probe (of any replica) has ended the back-off.
// probeTimeout bounds the gate's probe, at least.
const (
	outageRecheck = 50 * time.Millisecond
	probeTimeout  = 5 * time.Second
)

// pauseRecheck: a replica reads the shared pause and outage state from
// Redis about this often, one request at a time (freshState), so another
// replica's pause reaches its requests within 2·pauseRecheck plus a round
// trip, without a read per request.
const pauseRecheck = 20 * time.Millisecond

// New validates cfg and returns a Gate.
func New(cfg Config) (*Gate, error) {
	if cfg.Redis == nil {
		return nil, errors.New("vendorbudget: Config.Redis is required")
	}
	if cfg.Rate < 0 { // 0 is no limit, not a default
		return nil, fmt.Errorf("vendorbudget: Config.Rate %d: must not be negative", cfg.Rate)
	}
	if cfg.OutageAfter == 0 { // negative turns the outage back-off off
		cfg.OutageAfter = DefaultOutageAfter
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	for _, err := range []error{
		defaults.Fill("Burst", &cfg.Burst, DefaultBurst),
		defaults.Fill("MaxPause", &cfg.MaxPause, DefaultMaxPause),
		defaults.Fill("ProbeInterval", &cfg.ProbeInterval, DefaultProbeInterval),
		defaults.Fill("RedisTimeout", &cfg.RedisTimeout, DefaultRedisTimeout),
	} {
		if err != nil {
			return nil, fmt.Errorf("vendorbudget: Config.%w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Gate{
		cfg:       cfg,
		limiter:   redis_rate.NewLimiter(cfg.Redis),
		limit:     redis_rate.Limit{Rate: cfg.Rate, Burst: cfg.Burst, Period: time.Second},
		pauseKey:  cfg.Key + ":pause",
		streakKey: cfg.Key + ":outage:streak",
		outageKey: cfg.Key + ":outage",
		slow:      make(chan struct{}, 1),
		maxBatch:  max(1, min(cfg.Burst, int(float64(cfg.Rate)*batchTTL.Seconds()))),
		epoch:     time.Now().Add(-2 * pauseRecheck), // the first requests read the pause
	}, nil
}

// Limited reports whether the Gate enforces a rate (Rate > 0).
func (g *Gate) Limited() bool { return g.cfg.Rate > 0 }

// Wait implements rpcclient.Gate: it answers nil once the request may be
// sent and its budget is taken, rpcclient.ErrStartDeadline (at once, without
// taking budget) if that cannot happen before the start deadline, the
// context's error if it ends first, or an error naming Redis if Redis cannot
// be asked.
func (g *Gate) Wait(ctx context.Context, method string) error {
	start := time.Now()  // wall clock: a duration for the histogram
	var counted []string // reasons already counted for this request
	refused := func(reason string) { g.refused(method, reason, &counted) }
	queued := false
	for {
		wait, reason, err := g.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				refused(ReasonContext)
				return ctx.Err()
			}
			refused(ReasonUnavailable)
			return fmt.Errorf("shared budget in Redis: %w", err)
		}
		if wait <= 0 {
			if g.cfg.Observer != nil {
				g.cfg.Observer.Waited(method, time.Since(start))
			}
			return nil
		}
		refused(reason)
		// No jitter: with one poller per process (slow), the first to wake
		// takes the slot; a late one would waste it (GCRA does not bank
		// unused time beyond Burst).
		if err := g.mayWait(ctx, wait); err != nil {
			refused(reasonOf(err))
			return err
		}
		if !queued && ctx.Value(probing{}) == nil { // the probe's caller may be the poller
			// One poller per process: the others wait their turn here,
			// never past their start deadline.
			if err := g.sleep(ctx, g.slow, 0); err != nil {
				refused(reasonOf(err))
				return err
			}
			queued = true
			defer func() { <-g.slow }()
			continue // the budget may have come while queuing
		}
		if err := g.sleep(ctx, nil, wait); err != nil {
			refused(reasonOf(err))
			return err
		}
	}
}

// refused tells the observer, once per request and reason (counted holds
// the reasons told), that a request was held back.
func (g *Gate) refused(method, reason string, counted *[]string) {
	if g.cfg.Observer == nil || slices.Contains(*counted, reason) {
		return
	}
	*counted = append(*counted, reason)
	g.cfg.Observer.Refused(method, reason)
}

// freshState makes sure the fleet's pause and outage state g holds is
// recent: one request at a time reads it from Redis once it is
// pauseRecheck old (no storm of reads each time it ages); while that read
// is in flight the others go on with the last one, unless it is
// 2·pauseRecheck old: then they wait for the read (or, if none is in
// flight, read it themselves). No request goes on a read older than that.
func (g *Gate) freshState(ctx context.Context, redisCtx func() context.Context) error {
	if g.stateAge() < pauseRecheck {
		return nil
	}
	done := make(chan struct{})
	if g.readDone.CompareAndSwap(nil, &done) {
		var err error
		if g.stateAge() >= pauseRecheck { // another read may have ended meanwhile
			err = g.readState(redisCtx())
		}
		g.readDone.Store(nil)
		close(done)
		return err
	}
	if g.stateAge() < 2*pauseRecheck {
		return nil // being read; meanwhile the last read is recent enough
	}
	if p := g.readDone.Load(); p != nil {
		asked := g.pauseAsked.Load()
		select {
		case <-*p:
		case <-ctx.Done():
			return ctx.Err()
		}
		if g.pauseAsked.Load() != asked {
			return nil // read while this request waited: as fresh as it gets
		}
	}
	return g.readState(redisCtx())
}

// stateAge answers how long ago the last read of the fleet's state began.
func (g *Gate) stateAge() time.Duration {
	return time.Since(g.epoch) - time.Duration(g.pauseAsked.Load())
}

// readState reads the fleet's pause and outage state from Redis into g.
func (g *Gate) readState(ctx context.Context) error {
	now := time.Since(g.epoch)
	st, err := stateScript.Run(ctx, g.cfg.Redis, []string{g.pauseKey, g.outageKey, g.streakKey}).Int64Slice()
	if err != nil {
		return err
	}
	g.pauseAsked.Store(int64(now))
	g.pauseEnds.Store(int64(now + time.Duration(max(st[0], 0))*time.Millisecond))
	g.outageEnds.Store(int64(now + time.Duration(max(st[1], 0))*time.Millisecond))
	g.streak.Store(st[2])
	return nil
}

// next asks Redis whether a request may go now: wait 0 means yes, and the
// budget is taken; otherwise wait is how long until it might, and reason why.
// Most calls need no Redis round trip (no rate, or budget batched here, and
// the pause read lately), and pay for no Redis context either.
func (g *Gate) next(ctx context.Context) (wait time.Duration, reason string, err error) {
	now := time.Since(g.epoch)
	var rctx context.Context
	var cancel context.CancelFunc
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	redisCtx := func() context.Context {
		if rctx == nil {
			rctx, cancel = context.WithTimeout(ctx, g.cfg.RedisTimeout)
		}
		return rctx
	}
	if err := g.freshState(ctx, redisCtx); err != nil {
		return 0, "", err
	}
	if left := time.Duration(g.pauseEnds.Load()) - now; left > 0 {
		g.local.drop()
		g.observePause(left)
		return left, ReasonPaused, nil
	}
	if g.outage() && ctx.Value(probing{}) == nil {
		// 2Checkout is unavailable: one request per ProbeInterval, fleet-wide.
		g.local.drop()
		if left := time.Duration(g.outageEnds.Load()) - now; left > 0 {
			// Look again soon: the probe's answer may end the back-off.
			return min(left, outageRecheck), ReasonOutage, nil
		}
		pttl, err := probeScript.Run(redisCtx(), g.cfg.Redis, []string{g.outageKey}, g.cfg.ProbeInterval.Milliseconds()).Int64()
		if err != nil {
			return 0, "", err
		}
		if pttl > 0 { // another request is the probe
			g.outageEnds.Store(int64(now + time.Duration(pttl)*time.Millisecond))
			return min(time.Duration(pttl)*time.Millisecond, outageRecheck), ReasonOutage, nil
		}
		g.outageEnds.Store(int64(now + g.cfg.ProbeInterval))
		if p := g.probe.Load(); p != nil {
			// The gate's probe goes instead of this request, which asks
			// again once the probe has its answer (Done sets the state).
			// Its own context: no caller's deadline or cancellation.
			pctx, cancel := context.WithTimeout(context.WithValue(context.Background(), probing{}, true), max(g.cfg.ProbeInterval, probeTimeout))
			_ = (*p)(pctx)
			cancel()
			g.pauseAsked.Store(int64(time.Since(g.epoch))) // the state is fresh: Done set it
			return time.Millisecond, ReasonOutage, nil
		}
		// This request is the probe; it still takes its budget below.
	}
	if g.cfg.Rate == 0 || g.local.take(time.Now()) {
		return 0, "", nil
	}
	var res *redis_rate.Result
	if want := g.local.want(g.maxBatch); want > 1 {
		res, err = g.limiter.AllowAtMost(redisCtx(), g.cfg.Key, g.limit, want)
	} else {
		// AllowAtMost compares a float with 1: with Burst 1 rounding can
		// refuse the one request the GCRA allows, again and again.
		res, err = g.limiter.Allow(redisCtx(), g.cfg.Key, g.limit)
	}
	if err != nil {
		return 0, "", err
	}
	if res.Allowed > 0 {
		g.local.keep(res.Allowed-1, time.Now())
		return 0, "", nil
	}
	return max(res.RetryAfter, time.Millisecond), ReasonRateLimit, nil
}

// batchTTL is how long budget taken from Redis for this process's next
// requests stays usable. Requests go at most batchTTL after their budget
// was taken, so in any second the fleet sends at most Rate·(1+batchTTL/1s)
// + Burst requests.
const batchTTL = 50 * time.Millisecond

// batch is budget this process took from Redis ahead of need, as the GCRA
// allows up to Burst at once: when the limit is far above the load, most
// requests take their budget here without a round trip to Redis. It takes
// as much as its recent demand, so it does not take budget other replicas
// could use.
type batch struct {
	mu       sync.Mutex
	tokens   int
	expires  time.Time
	winStart time.Time
	inWin    int // requests asked for since winStart
	lastWin  int // requests asked for in the window of batchTTL before
}

// take counts a request and answers whether it got budget held here.
func (b *batch) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.winStart); d >= batchTTL {
		b.lastWin = 0
		if d < 2*batchTTL {
			b.lastWin = b.inWin
		}
		b.inWin, b.winStart = 0, now
	}
	b.inWin++
	if b.tokens > 0 && now.Before(b.expires) {
		b.tokens--
		return true
	}
	b.tokens = 0
	return false
}

// want answers how much budget to ask Redis for: the recent demand (this
// window's or the last one's), from 1 to most.
func (b *batch) want(most int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(1, min(max(b.lastWin, b.inWin), most))
}

// keep holds n more requests' budget until now+batchTTL.
func (b *batch) keep(n int, now time.Time) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.tokens, b.expires = b.tokens+n, now.Add(batchTTL)
	b.mu.Unlock()
}

// drop forgets held budget (a pause began).
func (b *batch) drop() {
	b.mu.Lock()
	b.tokens = 0
	b.mu.Unlock()
}

// mayWait answers nil if a request may wait d from now: it would still start
// before its start deadline and before its context's deadline.
func (g *Gate) mayWait(ctx context.Context, d time.Duration) error {
	sd, hasStart := rpcclient.StartDeadline(ctx)
	cd, hasCtx := ctx.Deadline()
	return waitRefusal(g.cfg.Now(), d, sd, hasStart, cd, hasCtx)
}

// waitRefusal is the rule for a request that must wait d from now:
// rpcclient.ErrStartDeadline if it would start at or after its start
// deadline, context.DeadlineExceeded if its context would end first, nil if
// it may wait.
func waitRefusal(now time.Time, d time.Duration, startDeadline time.Time, hasStart bool, ctxDeadline time.Time, hasCtx bool) error {
	at := now.Add(d)
	if hasStart && !at.Before(startDeadline) {
		return rpcclient.ErrStartDeadline
	}
	if hasCtx && !at.Before(ctxDeadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// sleep waits d, or for a slot of sem if sem is set; never past the start
// deadline (ErrStartDeadline) nor the context (its error).
func (g *Gate) sleep(ctx context.Context, sem chan struct{}, d time.Duration) error {
	var deadline <-chan time.Time
	if sd, ok := rpcclient.StartDeadline(ctx); ok {
		t := time.NewTimer(sd.Sub(g.cfg.Now()))
		defer t.Stop()
		deadline = t.C
	}
	var done <-chan time.Time
	if sem == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		done = t.C
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-done:
		return nil
	case <-deadline:
		return rpcclient.ErrStartDeadline
	case <-ctx.Done():
		return ctx.Err()
	}
}

func reasonOf(err error) string {
	if errors.Is(err, rpcclient.ErrStartDeadline) {
		return ReasonStartDeadline
	}
	return ReasonContext
}

// stateScript answers the shared pause's and the outage back-off's
// remaining lives (ms; 0 or less when off) and the streak of unavailable
// answers.
var stateScript = redis.NewScript(`
return {redis.call("PTTL", KEYS[1]), redis.call("PTTL", KEYS[2]), tonumber(redis.call("GET", KEYS[3]) or "0")}
`)

// probeScript makes the caller the outage probe for ARGV[1] ms unless
// another request is: it answers 0 if the caller is, else the time (ms)
// until the next probe may go.
var probeScript = redis.NewScript(`
if redis.call("SET", KEYS[1], "probe", "NX", "PX", ARGV[1]) then
  return 0
end
return math.max(redis.call("PTTL", KEYS[1]), 1)
`)

// unavailableScript counts an unavailable answer in the fleet's streak
// (which lapses after ARGV[3] ms without one) and, once it reaches ARGV[1],
// holds the next probe back ARGV[2] ms from now. It answers the streak.
var unavailableScript = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call("SET", KEYS[2], "backoff", "PX", ARGV[2])
end
return n
`)

// outage reports whether the fleet is in the outage back-off, as last read.
func (g *Gate) outage() bool {
	return g.cfg.OutageAfter > 0 && g.streak.Load() >= int64(g.cfg.OutageAfter)
}

// Done implements rpcclient.Gate: a 429 or 503 with a Retry-After pauses
// the fleet (Pause); an unavailable answer counts toward the outage
// back-off; any answer ends it.
func (g *Gate) Done(ctx context.Context, method string, err error) {
	if d, ok := rpcclient.PauseAsked(err); ok {
		g.Pause(ctx, method, d)
	}
	if g.cfg.OutageAfter < 0 {
		return
	}
	if !rpcclient.Unavailable(err) && g.streak.Load() == 0 {
		return // the common case: no write
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RedisTimeout)
	defer cancel()
	if !rpcclient.Unavailable(err) {
		if derr := g.cfg.Redis.Del(rctx, g.streakKey, g.outageKey).Err(); derr != nil {
			g.cfg.Logger.Warn("2Checkout answers again, but the fleet's outage back-off could not be ended; it lapses by itself", zap.Error(derr))
			return
		}
		if g.outage() {
			g.cfg.Logger.Info("2Checkout answers again: the fleet's outage back-off is over", zap.String("method", method))
		}
		g.streak.Store(0)
		g.outageEnds.Store(0)
		return
	}
	lapse := max(10*g.cfg.ProbeInterval, 10*time.Second)
	n, rerr := unavailableScript.Run(rctx, g.cfg.Redis, []string{g.streakKey, g.outageKey}, g.cfg.OutageAfter,
		g.cfg.ProbeInterval.Milliseconds(), lapse.Milliseconds()).Int64()
	if rerr != nil {
		g.cfg.Logger.Warn("could not share 2Checkout's unavailability with the fleet", zap.String("method", method), zap.Error(rerr))
		return
	}
	g.streak.Store(n)
	if n >= int64(g.cfg.OutageAfter) {
		g.outageEnds.Store(int64(time.Since(g.epoch) + g.cfg.ProbeInterval))
		g.local.drop()
		if n == int64(g.cfg.OutageAfter) {
			g.cfg.Logger.Warn("2Checkout is unavailable: the fleet sends one request per probe interval until it answers",
				zap.String("method", method), zap.Int64("unavailable_in_a_row", n), zap.Duration("probe_interval", g.cfg.ProbeInterval), zap.Error(err))
		}
	}
}

// pauseScript sets the pause key to last ARGV[1] ms unless it already lasts
// longer, and answers how long it lasts now.
var pauseScript = redis.NewScript(`
local ttl = redis.call("PTTL", KEYS[1])
local want = tonumber(ARGV[1])
if ttl < want then
  redis.call("SET", KEYS[1], ARGV[2], "PX", want)
  return want
end
return ttl
`)

// Pause makes every replica send no request for d (at most MaxPause),
// unless a longer pause is already on. Done calls it for a Retry-After.
func (g *Gate) Pause(ctx context.Context, method string, d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, g.cfg.MaxPause)
	// The caller's context may be about to end; the pause must still be set.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RedisTimeout)
	defer cancel()
	ms, err := pauseScript.Run(rctx, g.cfg.Redis, []string{g.pauseKey}, d.Milliseconds(), method).Int64()
	if err != nil {
		g.cfg.Logger.Warn("2Checkout asked for a pause that could not be shared with the fleet", zap.String("method", method),
			zap.Duration("retry_after", d), zap.Error(err))
		return
	}
	now := time.Since(g.epoch)
	g.pauseAsked.Store(int64(now))
	g.pauseEnds.Store(int64(now + time.Duration(ms)*time.Millisecond))
	g.local.drop()
	g.observePause(time.Duration(ms) * time.Millisecond)
	g.cfg.Logger.Warn("2Checkout asked to slow down: every replica pauses its requests", zap.String("method", method),
		zap.Duration("retry_after", d), zap.Duration("pause", time.Duration(ms)*time.Millisecond))
}

func (g *Gate) observePause(d time.Duration) {
	if g.cfg.Observer != nil {
		g.cfg.Observer.Paused(time.Now().Add(d))
	}
}

var _ rpcclient.Gate = (*Gate)(nil)
