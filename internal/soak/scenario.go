package soak

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// replicaBase is every replica's environment besides what a run adds
// (Redis, sandbox, queue, merchant): internal/fleettest's, with the
// concurrency, request timeout and retry curve of the fault benchmarks.
var replicaBase = map[string]string{
	"OPS_ADDR": "127.0.0.1:0", "WORKER_CONCURRENCY": "20", "WORKER_POLL_INTERVAL": "50ms", "SHUTDOWN_TIMEOUT": "3s",
	"RETRY_BASE_DELAY": "200ms", "RETRY_MAX_DELAY": "2s", "RETRY_AFTER_MAX": "10s", "TCO_REQUEST_TIMEOUT": "2s",
	"LOG_FORMAT": "json",
}

// limitsEnv is the limits scenario's vendor budget: the fleet's ceiling,
// burst and deadline-first dispatch.
var limitsEnv = map[string]string{"TCO_RATE_LIMIT": "400", "TCO_RATE_BURST": "20", "DISPATCH_SLOTS": "20"}

// Default fractions of a run's refunds cancelled (in the sandbox) at
// which the disruptions happen.
var (
	killAt         = []float64{0.15, 0.35, 0.55}
	redisRestartAt = 0.45
)

// MaxKills is the most SIGKILLs a run can be asked for.
var MaxKills = len(killAt)

// runSpec is one run: its own queue and merchant (so its own sandbox and
// vendor budget) on the soak's Redis.
type runSpec struct {
	Scenario string
	Name     string // e.g. "fault-free", "20% mix"
	Prefix   string // order references' prefix and the merchant code
	Refunds  int
	Replicas int
	Env      map[string]string // added to replicaBase
	Faults   []rpctest.FaultRule
	Mix      bool // Faults hold the 20% mix (beside the latency)
	Events   []plannedEvent
	// StallTarget: the run is judged on its longest stretch with tasks
	// pending and none finishing (the limits scenario).
	StallTarget bool
}

// plannedEvent is a disruption due when At of the run's refunds are
// cancelled.
type plannedEvent struct {
	At    float64
	Kind  string // eventKill or eventRedisRestart
	Index int    // the replica killed (mod the fleet's size)
}

const (
	eventKill         = "SIGKILL replica"
	eventRedisRestart = "restart Redis"
)

// disruptions answers kills SIGKILLs (alternating replicas) and, if
// restart, one Redis restart, ordered by when they are due.
func disruptions(kills int, restart bool) []plannedEvent {
	var evs []plannedEvent
	for i := range min(kills, len(killAt)) {
		evs = append(evs, plannedEvent{At: killAt[i], Kind: eventKill, Index: i})
	}
	if restart {
		evs = append(evs, plannedEvent{At: redisRestartAt, Kind: eventRedisRestart})
	}
	slices.SortStableFunc(evs, func(a, b plannedEvent) int { return cmp.Compare(a.At, b.At) })
	return evs
}

// Plan says what the soak runs.
type Plan struct {
	// Scenario is "mix", "limits" or "all".
	Scenario string
	// Refunds overrides each run's refunds (0: mix 10,000, limits 5,000).
	Refunds int
	// Kills is the SIGKILLs of each disrupted run (0 to MaxKills).
	Kills int
	// RedisRestart: restart Redis once in each disrupted run.
	RedisRestart bool
	// Latency is the sandbox's answer time for every call, every run
	// (plus up to half as much again, at random): a remote API's, not a
	// loopback's (default DefaultLatency; negative: none).
	Latency time.Duration
}

// DefaultLatency is the sandbox's answer time in the soak: 2Checkout's
// calls take 100 ms or more, and at loopback speed the fault-free run of
// 10,000 refunds would last a few seconds, shorter than one chain of
// retries (Retry-After 2–3 s, a 2 s hang), so the ratio would measure the
// retry curve rather than the fleet's pace.
const DefaultLatency = 100 * time.Millisecond

// runs answers the runs of p, in order.
func (p Plan) runs() ([]runSpec, error) {
	if p.Refunds < 0 {
		return nil, fmt.Errorf("refunds %d: want 0 (the default) or more", p.Refunds)
	}
	if p.Kills < 0 || p.Kills > MaxKills {
		return nil, fmt.Errorf("kills %d: want 0 to %d", p.Kills, MaxKills)
	}
	n := func(def int) int {
		if p.Refunds > 0 {
			return p.Refunds
		}
		return def
	}
	evs := disruptions(p.Kills, p.RedisRestart)
	var latency []rpctest.FaultRule
	switch l := cmp.Or(p.Latency, DefaultLatency); {
	case l > 0:
		latency = []rpctest.FaultRule{{Kind: rpctest.FaultLatency, Latency: rpctest.Duration(l), Jitter: rpctest.Duration(l / 2)}}
	}
	mixed := append(slices.Clone(latency), rpctest.FaultMix()...)
	mix := []runSpec{
		// The same disruptions in both runs: the ratio is what the vendor's
		// faults cost, the one thing the runs differ in ("the same without
		// faults", issue 23).
		{Scenario: "mix", Name: "fault-free", Prefix: "MIXCLEAN", Refunds: n(10000), Replicas: 2, Faults: latency, Events: evs},
		{Scenario: "mix", Name: "20% mix", Prefix: "MIXFAULT", Refunds: n(10000), Replicas: 2, Faults: mixed, Mix: true, Events: evs},
	}
	limits := []runSpec{
		{Scenario: "limits", Name: "20% mix, vendor budget", Prefix: "LIMITS", Refunds: n(5000), Replicas: 2, Env: limitsEnv,
			Faults: mixed, Mix: true, Events: evs, StallTarget: true},
	}
	switch p.Scenario {
	case "mix":
		return mix, nil
	case "limits":
		return limits, nil
	case "all", "":
		return append(mix, limits...), nil
	}
	return nil, fmt.Errorf("scenario %q: want mix, limits or all", p.Scenario)
}
