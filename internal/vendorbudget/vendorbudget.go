// Package vendorbudget is what refundd's replicas share, through Redis, about
// calling 2Checkout, so that a flaky or rate-limiting vendor slows the fleet
// by what it refuses and no more:
//
//   - a ceiling: TCO_RATE_LIMIT, the fleet's request rate at most (a GCRA
//     rate limit, github.com/go-redis/redis_rate), if configured;
//   - an adaptive throttle per method (throttle.go): the fleet's answers,
//     counted per second in Redis, say which requests 2Checkout refused for
//     load (429, or 503 with Retry-After). While more than 1−1/Headroom of
//     a method's requests in the window were refused, the fleet sends that
//     method at most Headroom × the rate 2Checkout accepted of it;
//   - an outage breaker per method (outage.go): once at least half of at
//     least OutageMin requests of a method in the window found 2Checkout
//     unavailable, the fleet holds that method's requests and lets one
//     real request of it through per ProbeInterval (half-open); the first
//     that gets an answer ends the outage.
//
// The throttle is the client-side adaptive throttling of Google's SRE book
// ("Handling Overload"), in rate form, rather than AIMD on the shared rate:
// it needs no starting rate when no ceiling is configured (the accepted rate
// is the measurement, so a vendor limiting at 20/s is met at 20·Headroom/s
// within one window, with a share of 429s of about 1−1/Headroom), it does
// not saw-tooth across the vendor's limit (each AIMD peak is a burst of
// 429s), and random refusals below the line cost their share and nothing
// more. (Capping at Headroom × the accepted rate on any refusal was tried:
// a cap measured while it binds grows by at most Headroom per window, and
// under 10% random refusals held the fleet to 1% of its fault-free rate.)
// Headroom 1.25 (SRE: K=2) keeps the refused share near 20% under a real
// limit: 2Checkout counts refused calls too. A Retry-After delays the task
// that got it (worker.Policy) and counts toward its method's refused share
// here; nothing pauses the fleet. The rate is judged per method (a limit on cancelRefund does not
// slow the getOrders that settle doubts), and TCO_RATE_LIMIT caps them all.
//
// No state a replica leaves in Redis outlives it by more than seconds: the
// per-second counts age out of the window, an outage lapses Lease after its
// last failing request (each failed probe renews it), and a probe's claim
// lasts ProbeInterval. Clocks: the counts and leases are read on Config.Now
// (every replica's clock, kept by NTP); the ceiling's GCRA on Redis' own.
//
// A *Gate is an rpcclient.Gate. It never lets a request wait past the start
// deadline of its context (rpcclient.WithStartDeadline): such a request fails
// at once with rpcclient.ErrStartDeadline and takes no budget. A request
// marked rpcclient.WithPriority is never held by the throttle or an outage,
// only by the ceiling, without queuing behind other requests. If Redis cannot be reached,
// Wait fails at once (the request is not sent, the caller retries as after
// any transient failure); it neither spins nor lets requests through
// unmetered.
package vendorbudget

import (
	"errors"
	"fmt"
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
// default written beside it (Rate's zero is no ceiling); a negative number
// is an error naming the field, except OutageMin's, which turns the outage
// breaker off.
type Config struct {
	// Redis holds the shared state. Required. Every replica must use the
	// same Redis (and database) and the same Key. Build it with
	// ContextTimeoutEnabled (as redisconn does), so RedisTimeout bounds each
	// command even when Redis stops answering.
	Redis redis.UniversalClient
	// Key names the shared state: the ceiling's GCRA key, Key+":window"
	// (the counts) and Key+":outage". Default "refundd:2co". Replicas
	// calling 2Checkout as the same merchant share one key.
	Key string
	// Rate is the fleet's request rate to 2Checkout at most, per second
	// (TCO_RATE_LIMIT). 0: no ceiling (the throttle still applies).
	Rate int
	// Burst is how many requests may go at once above the steady rate
	// (the ceiling's or the throttle's). Default 1: requests are spaced
	// 1/rate apart, fleet-wide.
	Burst int
	// Headroom is the throttle's K: while 2Checkout refuses requests of a
	// method for load, the fleet sends that method at most Headroom × the
	// rate 2Checkout accepts of it. Default 1.25; at least 1.
	Headroom float64
	// Window is how far back the fleet's answers are counted, for the
	// throttle and the outage breaker. Default 10s; whole seconds.
	Window time.Duration
	// OutageMin and OutageRatio: a method is out once at least OutageMin of
	// its requests in the window were sent and at least OutageRatio of them
	// found 2Checkout unavailable. Defaults 20 and 0.5; OutageMin negative:
	// no outage breaker.
	OutageMin   int
	OutageRatio float64
	// ProbeInterval is how often, fleet-wide, one request of a method that
	// is out goes through to find out whether it works again. Default 1s.
	ProbeInterval time.Duration
	// Lease is how long an outage lasts after its last failing request
	// unless a request renews it; so also how long one outlives a fleet
	// that stopped. Default 5s.
	Lease time.Duration
	// Sync is how often a busy replica adds its counts to the fleet's and
	// reads the fleet's state (one Redis script); an idle one asks nothing.
	// Default 250ms.
	Sync time.Duration
	// RedisTimeout bounds each Redis command. Default 1s.
	RedisTimeout time.Duration
	// Logger logs outages and throttling. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock of the counts, the leases and start deadlines.
	// Default time.Now.
	Now func() time.Time
	// Observer, if set, is told of waits, refusals and the fleet's state
	// (metrics).
	Observer Observer
}

// Defaults of Config.
const (
	DefaultKey           = "refundd:2co"
	DefaultBurst         = 1
	DefaultHeadroom      = 1.25
	DefaultWindow        = 10 * time.Second
	DefaultOutageMin     = 20
	DefaultOutageRatio   = 0.5
	DefaultProbeInterval = time.Second
	DefaultLease         = 5 * time.Second
	DefaultSync          = 250 * time.Millisecond
	DefaultRedisTimeout  = time.Second
)

// Reasons a request had to wait or was refused, as Observer.Refused hears them.
const (
	ReasonThrottled     = "throttled"      // 2Checkout refuses requests for load: the fleet's throttle held it
	ReasonOutage        = "outage"         // its method is out and another request is the probe: the request waited
	ReasonRateLimit     = "rate_limit"     // the ceiling (TCO_RATE_LIMIT) was spent: the request waited
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
	// Fleet: the fleet's state, as this replica read it last.
	Fleet(s FleetState)
}

// FleetState is the fleet's view of 2Checkout over the window.
type FleetState struct {
	// Rate is the ceiling (Config.Rate); 0: none.
	Rate float64
	// Methods holds each method requested in the window.
	Methods map[string]MethodState
}

// MethodState is one method's requests in the window.
type MethodState struct {
	Sent        int // requests answered or failed
	Unavailable int // found 2Checkout unavailable (no answer, 408, 5xx, not JSON-RPC)
	Refused     int // refused for load (429, or 503 with Retry-After)
	Out         bool
	// Throttled: some were refused for load, and the method may be sent
	// at Rate per second at most, fleet-wide.
	Throttled bool
	Rate      float64
}

// Answered is the share of requests answered (1 when none were sent).
func (m MethodState) Answered() float64 {
	if m.Sent == 0 {
		return 1
	}
	return float64(m.Sent-m.Unavailable-m.Refused) / float64(m.Sent)
}

// Gate is the fleet's shared budget of requests to 2Checkout. It is an
// rpcclient.Gate and is safe for concurrent use.
type Gate struct {
	cfg                  Config
	limiter              *redis_rate.Limiter
	windowKey, outageKey string
	// poller lets one goroutine of this process at a time poll a spent
	// budget, so waiters do not hammer Redis; the others queue behind it.
	poller chan struct{}

	view    atomic.Pointer[view] // the fleet's state as last read
	syncing atomic.Bool          // a sync is in flight
	mu      sync.Mutex
	counts  map[string]*[3]int64 // this replica's answers since the last sync, by method: sent, unavailable, refused
	flush   *time.Timer          // set while counts wait for a sync
	// probes: the probe claim (its end, ms) of each request this process
	// let through as its method's probe, by the request's context (the
	// client gives Wait and Done the same one), until Done.
	probes sync.Map
}

// New validates cfg and returns a Gate.
func New(cfg Config) (*Gate, error) {
	if cfg.Redis == nil {
		return nil, errors.New("vendorbudget: Config.Redis is required")
	}
	if cfg.Rate < 0 { // 0 is no ceiling, not a default
		return nil, fmt.Errorf("vendorbudget: Config.Rate %d: must not be negative", cfg.Rate)
	}
	if cfg.OutageMin == 0 { // negative turns the breaker off
		cfg.OutageMin = DefaultOutageMin
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	switch {
	case cfg.Headroom == 0:
		cfg.Headroom = DefaultHeadroom
	case !(cfg.Headroom >= 1):
		return nil, fmt.Errorf("vendorbudget: Config.Headroom %v: must be at least 1", cfg.Headroom)
	}
	switch {
	case cfg.OutageRatio == 0:
		cfg.OutageRatio = DefaultOutageRatio
	case !(cfg.OutageRatio > 0 && cfg.OutageRatio <= 1):
		return nil, fmt.Errorf("vendorbudget: Config.OutageRatio %v: must be above 0 and at most 1", cfg.OutageRatio)
	}
	for _, err := range []error{
		defaults.Fill("Burst", &cfg.Burst, DefaultBurst),
		defaults.Fill("Window", &cfg.Window, DefaultWindow),
		defaults.Fill("ProbeInterval", &cfg.ProbeInterval, DefaultProbeInterval),
		defaults.Fill("Lease", &cfg.Lease, DefaultLease),
		defaults.Fill("Sync", &cfg.Sync, DefaultSync),
		defaults.Fill("RedisTimeout", &cfg.RedisTimeout, DefaultRedisTimeout),
	} {
		if err != nil {
			return nil, fmt.Errorf("vendorbudget: Config.%w", err)
		}
	}
	if cfg.Window < time.Second {
		return nil, fmt.Errorf("vendorbudget: Config.Window %v: must be at least 1s", cfg.Window)
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
		windowKey: cfg.Key + ":window",
		outageKey: cfg.Key + ":outage",
		poller:    make(chan struct{}, 1),
		counts:    map[string]*[3]int64{},
	}, nil
}

var _ rpcclient.Gate = (*Gate)(nil)
