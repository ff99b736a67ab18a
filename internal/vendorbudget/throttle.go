package vendorbudget

import (
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// The throttle's limits: below throttleMin requests in the window it does
// not judge; it never holds the fleet below minRate (so a vendor refusing
// everything is still asked, about once a second).
const (
	throttleMin = 10
	minRate     = 1.0
)

// allowed answers the fleet's allowed rate (0: none) and whether the
// throttle binds, from the window's sent and refused-for-load requests over
// span; was: it bound at the last read. It binds while the refused share is
// above 1−1/Headroom (once on, until it falls below half that, so that it
// does not flap at the line), and then allows Headroom × the accepted rate.
// The ceiling (Rate) caps either way.
func (g *Gate) allowed(sent, refused int, span time.Duration, was bool) (rate float64, throttled bool) {
	ceiling := float64(g.cfg.Rate)
	line := 1 - 1/g.cfg.Headroom
	if was {
		line /= 2
	}
	if sent < throttleMin || float64(refused) <= line*float64(sent)+1e-9 {
		return ceiling, false
	}
	rate = max(minRate, g.cfg.Headroom*float64(sent-refused)/span.Seconds())
	if ceiling > 0 && ceiling <= rate {
		return ceiling, false // the ceiling binds first
	}
	return rate, true
}

// limit is the GCRA limit for rate per second: redis_rate counts whole
// requests per period, so the period is 100s for a rate to 1/100 per second.
func (g *Gate) limit(rate float64) redis_rate.Limit {
	if rate == float64(int(rate)) {
		return redis_rate.Limit{Rate: int(rate), Burst: g.cfg.Burst, Period: time.Second}
	}
	return redis_rate.Limit{Rate: max(1, int(math.Round(rate*100))), Burst: g.cfg.Burst, Period: 100 * time.Second}
}
