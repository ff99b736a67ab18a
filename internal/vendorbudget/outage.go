package vendorbudget

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
)

// claimScript answers, for method ARGV[1] at ARGV[2] ms: {0, out, probe}
// if it is out and the probe's claim (its end, ms) is held by another
// request, or lapsed less than ARGV[4] ms ago (the caller's grace); {1, 0,
// 0} if it is not out; {2, out, probe} if the caller is now the probe,
// until ARGV[3] ms from now.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local till = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "0")
if till <= now then return {1, 0, 0} end
local probe = tonumber(redis.call("HGET", KEYS[1], ARGV[1] .. "|p") or "0")
if probe + tonumber(ARGV[4]) > now then return {0, till, probe} end
probe = now + tonumber(ARGV[3])
redis.call("HSET", KEYS[1], ARGV[1] .. "|p", probe)
return {2, till, probe}
`)

// endScript ends method ARGV[1]'s outage (KEYS[2]) and forgets its counts
// in the window (KEYS[1]), so that the failures that declared it do not
// declare it again. Answers 1 if it was out.
var endScript = redis.NewScript(`
local was = redis.call("HDEL", KEYS[2], ARGV[1], ARGV[1] .. "|p")
local mid = "|" .. ARGV[1] .. "|"
for _, f in ipairs(redis.call("HKEYS", KEYS[1])) do
  if string.find(f, mid, 1, true) then redis.call("HDEL", KEYS[1], f) end
end
return was
`)

// renewScript extends method ARGV[1]'s outage to ARGV[3] ms if it is still
// out at ARGV[2] ms.
var renewScript = redis.NewScript(`
local till = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "0")
if till > tonumber(ARGV[2]) then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
  redis.call("PEXPIRE", KEYS[1], 4 * (tonumber(ARGV[3]) - tonumber(ARGV[2])))
end
return 0
`)

// releaseScript gives method ARGV[1]'s probe claim back if it is still the
// one that ended at ARGV[2] ms: its request was not sent.
var releaseScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], ARGV[1] .. "|p") == ARGV[2] then
  redis.call("HDEL", KEYS[1], ARGV[1] .. "|p")
  return 1
end
return 0
`)

// release gives back the probe claim (ending at claim, ms) of a request of
// method that was not sent (its caller stopped it, or its wait ended): the
// next request probes now, not a ProbeInterval later.
func (g *Gate) release(ctx context.Context, method string, claim int64) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RedisTimeout)
	defer cancel()
	if err := releaseScript.Run(rctx, g.cfg.Redis, []string{g.outageKey}, method, claim).Err(); err != nil {
		g.cfg.Logger.Warn("could not give back an outage's probe claim; it lapses by itself", zap.String("method", method), zap.Error(err))
		return
	}
	if v := g.view.Load(); v != nil && v.methods[method].probeUntil.Equal(time.UnixMilli(claim)) {
		g.view.CompareAndSwap(v, v.with(method, func(m *methodView) { m.probeUntil = time.Time{} }))
	}
}

// hold answers how long a request of method must wait while the method is
// out (0: it may go — the method is not out, or this request is now its
// probe: probe, the claim's end in ms, is then set). A request marked
// rpcclient.WithProbeLast (a task's first cancel) may claim the probe only
// one ProbeInterval after the last claim lapsed, others at once: a task whose cancel failed already probes again
// rather than a new task each time, so an outage of N probes leaves a few
// tasks to check their refunds after it, not N.
func (g *Gate) hold(ctx context.Context, v *view, method string) (wait time.Duration, probe int64, err error) {
	now := g.cfg.Now()
	m, out := v.out(method, now)
	if !out {
		return 0, 0, nil
	}
	var grace time.Duration
	if rpcclient.ProbeLast(ctx) {
		grace = g.cfg.ProbeInterval
	}
	if free := m.probeUntil.Add(grace); free.After(now) { // another request is (or may be) the probe: look again soon
		return min(free.Sub(now), g.cfg.Sync), 0, nil
	}
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	res, err := claimScript.Run(rctx, g.cfg.Redis, []string{g.outageKey}, method, now.UnixMilli(), g.cfg.ProbeInterval.Milliseconds(), grace.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, 0, err
	}
	g.view.CompareAndSwap(v, v.with(method, func(m *methodView) {
		m.outUntil, m.probeUntil = time.UnixMilli(res[1]), time.UnixMilli(res[2])
		m.Out = res[0] != 1
	}))
	switch res[0] {
	case 0:
		return min(time.UnixMilli(res[2]).Add(grace).Sub(now), g.cfg.Sync), 0, nil
	case 2:
		g.cfg.Logger.Debug("probing a method that is out with a request", zap.String("method", method))
		return 0, res[2], nil
	}
	return 0, 0, nil
}

// answered tells the fleet how a request of a method that is out (as this
// replica last read it) ended: an answer ends the outage, no answer renews
// it for Lease.
func (g *Gate) answered(ctx context.Context, method string, unavailable bool) {
	v := g.view.Load()
	if v == nil {
		return
	}
	now := g.cfg.Now()
	if _, out := v.out(method, now); !out {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RedisTimeout)
	defer cancel()
	if unavailable {
		if err := renewScript.Run(rctx, g.cfg.Redis, []string{g.outageKey}, method, now.UnixMilli(), now.Add(g.cfg.Lease).UnixMilli()).Err(); err != nil {
			g.cfg.Logger.Warn("could not renew an outage in Redis; it lapses by itself", zap.String("method", method), zap.Error(err))
		}
		return
	}
	was, err := endScript.Run(rctx, g.cfg.Redis, []string{g.windowKey, g.outageKey}, method).Int64()
	if err != nil {
		g.cfg.Logger.Warn("2Checkout answers again, but the outage could not be ended in Redis; it lapses by itself", zap.String("method", method), zap.Error(err))
		return
	}
	g.view.CompareAndSwap(v, v.with(method, func(m *methodView) {
		m.outUntil, m.probeUntil, m.Out = time.Time{}, time.Time{}, false
	}))
	if was > 0 {
		g.cfg.Logger.Info("2Checkout answers a method again: its outage is over", zap.String("method", method))
	}
}
