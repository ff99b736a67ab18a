package vendorbudget

import (
	"context"
	"maps"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// view is the fleet's state as a replica last read it (sync).
type view struct {
	at      time.Time // on Config.Now, when it was read
	methods map[string]methodView
}

type methodView struct {
	MethodState
	outUntil, probeUntil time.Time // the outage's lease and the probe's claim, if any
}

// out reports whether method is out at now.
func (v *view) out(method string, now time.Time) (methodView, bool) {
	m, ok := v.methods[method]
	return m, ok && m.outUntil.After(now)
}

// with answers a copy of v with method's entry changed by f.
func (v *view) with(method string, f func(*methodView)) *view {
	c := *v
	c.methods = maps.Clone(v.methods)
	m := c.methods[method]
	f(&m)
	c.methods[method] = m
	return &c
}

// Kinds of answers counted per method and second, in the order of
// Gate.counts.
const (
	kindSent = iota
	kindUnavailable
	kindRefused
)

// syncScript adds a replica's counts to the fleet's (KEYS[1], a hash of
// "<second>|<method>|<kind>" → count), drops the seconds older than the
// window, declares an outage (KEYS[2], a hash of method → lease end in ms,
// and "<method>|p" → probe claim end) for each method whose share of
// unavailable answers crossed the line, and answers when the fleet's
// counting began (ms: the first count since the hash was last empty), then
// per method: name, sent, unavailable, refused, outage end,
// probe end.
//
// ARGV: now (ms), window (s), outage min (0: off), outage ratio, lease
// (ms), then per method: name, sent, unavailable, refused.
var syncScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local sec = math.floor(now / 1000)
local window = tonumber(ARGV[2])
local first = sec - window + 1
local omin, oratio, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local kinds = {"s", "u", "r"}
local wrote = false
for i = 6, #ARGV, 4 do
  for k = 1, 3 do
    local n = tonumber(ARGV[i + k])
    if n > 0 then
      redis.call("HINCRBY", KEYS[1], sec .. "|" .. ARGV[i] .. "|" .. kinds[k], n)
      wrote = true
    end
  end
end
if wrote then
  redis.call("HSETNX", KEYS[1], "first", now)
  redis.call("PEXPIRE", KEYS[1], (window + 2) * 1000)
end
local sums, order, oldest = {}, {}, now
local flat = redis.call("HGETALL", KEYS[1])
for i = 1, #flat, 2 do
  local s, m, kind = string.match(flat[i], "^(%d+)|(.+)|(%a)$")
  s = tonumber(s)
  if flat[i] == "first" then
    oldest = math.min(oldest, tonumber(flat[i + 1]))
  elseif s == nil or s < first then
    redis.call("HDEL", KEYS[1], flat[i])
  else
    if sums[m] == nil then
      sums[m] = {s = 0, u = 0, r = 0}
      table.insert(order, m)
    end
    sums[m][kind] = sums[m][kind] + tonumber(flat[i + 1])
  end
end
local outs = {}
local o = redis.call("HGETALL", KEYS[2])
for i = 1, #o, 2 do
  outs[o[i]] = tonumber(o[i + 1])
  if not string.find(o[i], "|p", 1, true) and sums[o[i]] == nil then
    sums[o[i]] = {s = 0, u = 0, r = 0}
    table.insert(order, o[i])
  end
end
local out = {oldest}
for _, m in ipairs(order) do
  local c = sums[m]
  local till = outs[m] or 0
  if omin > 0 and till <= now and c.s >= omin and c.u >= oratio * c.s then
    till = now + lease
    redis.call("HSET", KEYS[2], m, till)
    redis.call("PEXPIRE", KEYS[2], 4 * lease)
  end
  for _, v in ipairs({m, c.s, c.u, c.r, till, outs[m .. "|p"] or 0}) do table.insert(out, v) end
end
return out
`)

// state answers the fleet's state, read from Redis (sync) when the last
// read is Sync old: one read at a time per process; meanwhile the others
// go on with the last one.
func (g *Gate) state(ctx context.Context) (*view, error) {
	v := g.view.Load()
	if v != nil && g.cfg.Now().Sub(v.at) < g.cfg.Sync {
		return v, nil
	}
	if g.syncing.CompareAndSwap(false, true) {
		defer g.syncing.Store(false)
	} else if v != nil {
		return v, nil
	} // else the first read: this request does its own

	rctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	return g.sync(rctx)
}

// sync adds this replica's counts to the fleet's and reads the fleet's
// state into g.view.
func (g *Gate) sync(ctx context.Context) (*view, error) {
	g.mu.Lock()
	counts := g.counts
	g.counts = map[string]*[3]int64{}
	if g.flush != nil {
		g.flush.Stop()
		g.flush = nil
	}
	g.mu.Unlock()
	now := g.cfg.Now()
	omin := max(g.cfg.OutageMin, 0)
	args := []any{now.UnixMilli(), int(g.cfg.Window / time.Second), omin, g.cfg.OutageRatio, g.cfg.Lease.Milliseconds()}
	for m, c := range counts {
		args = append(args, m, c[kindSent], c[kindUnavailable], c[kindRefused])
	}
	res, err := syncScript.Run(ctx, g.cfg.Redis, []string{g.windowKey, g.outageKey}, args...).Slice()
	if err != nil {
		g.mu.Lock() // keep the counts for the next sync
		for m, c := range counts {
			g.add(m, c[kindSent], c[kindUnavailable], c[kindRefused])
		}
		g.mu.Unlock()
		return nil, err
	}
	last := g.view.Load()
	if last == nil {
		last = &view{}
	}
	v := &view{at: now, methods: map[string]methodView{}}
	span := min(max(now.Sub(time.UnixMilli(int64(toInt(res[0])))), g.cfg.Sync), g.cfg.Window)
	for i := 1; i+5 < len(res); i += 6 {
		name, _ := res[i].(string)
		m := methodView{MethodState: MethodState{Sent: toInt(res[i+1]), Unavailable: toInt(res[i+2]), Refused: toInt(res[i+3])},
			outUntil: time.UnixMilli(int64(toInt(res[i+4]))), probeUntil: time.UnixMilli(int64(toInt(res[i+5])))}
		m.Out = m.outUntil.After(now)
		m.Rate, m.Throttled = g.allowed(m.Sent, m.Refused, span, last.methods[name].Throttled)
		v.methods[name] = m
	}
	g.view.Store(v)
	g.report(last, v)
	return v, nil
}

// add counts answers of method to sync later; g.mu held.
func (g *Gate) add(method string, sent, unavailable, refused int64) {
	c := g.counts[method]
	if c == nil {
		c = new([3]int64)
		g.counts[method] = c
	}
	c[kindSent] += sent
	c[kindUnavailable] += unavailable
	c[kindRefused] += refused
}

// count adds one answer of method, and makes sure it reaches the fleet
// within Sync even if no request follows.
func (g *Gate) count(method string, unavailable, refused bool) {
	b := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.add(method, 1, b(unavailable), b(refused))
	g.scheduleFlush()
}

// scheduleFlush makes sure a sync runs within Sync; g.mu held.
func (g *Gate) scheduleFlush() {
	if g.flush == nil {
		g.flush = time.AfterFunc(g.cfg.Sync, g.flushCounts)
	}
}

// flushCounts syncs the counts waiting in g, unless a sync is in flight:
// then it looks again a Sync later.
func (g *Gate) flushCounts() {
	if !g.syncing.CompareAndSwap(false, true) {
		g.mu.Lock()
		g.flush = nil
		if len(g.counts) > 0 {
			g.scheduleFlush()
		}
		g.mu.Unlock()
		return
	}
	defer g.syncing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RedisTimeout)
	defer cancel()
	if _, err := g.sync(ctx); err != nil {
		g.cfg.Logger.Debug("could not share 2Checkout's answers with the fleet; the next sync tries again", zap.Error(err))
		g.mu.Lock()
		g.scheduleFlush()
		g.mu.Unlock()
	}
}

// report tells the observer and the log what changed.
func (g *Gate) report(last, v *view) {
	if g.cfg.Observer != nil {
		s := FleetState{Rate: float64(g.cfg.Rate), Methods: make(map[string]MethodState, len(v.methods))}
		for name, m := range v.methods {
			s.Methods[name] = m.MethodState
		}
		g.cfg.Observer.Fleet(s)
	}
	for name, m := range v.methods {
		if was := last.methods[name].Throttled; m.Throttled != was {
			if m.Throttled {
				g.cfg.Logger.Warn("2Checkout refuses requests for load: the fleet throttles the method", zap.String("method", name), zap.Float64("rate", m.Rate))
			} else {
				g.cfg.Logger.Info("2Checkout refused none of the method's requests for a window: its throttle is off", zap.String("method", name))
			}
		}
		if m.Out && !last.methods[name].Out {
			g.cfg.Logger.Warn("2Checkout is unavailable for a method: the fleet holds its requests and sends one per probe interval until one is answered",
				zap.String("method", name), zap.Int("sent", m.Sent), zap.Int("unavailable", m.Unavailable), zap.Duration("probe_interval", g.cfg.ProbeInterval))
		}
	}
}

// toInt reads an integer of a script's answer.
func toInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(n)
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return 0
}
