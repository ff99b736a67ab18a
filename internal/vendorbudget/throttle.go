package vendorbudget

import (
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// minRate: the throttle never holds a method below it, so a vendor
// refusing everything is still asked, about once a second.
const minRate = 1.0

// throttleMin: below this many requests of a method in the window the
// throttle does not judge it.
const throttleMin = 10

// allowed answers a method's allowed rate and whether the throttle binds,
// from its requests sent and refused for load in the window, over span;
// was: it bound at the last read. It binds while the refused share is above
// 1−1/Headroom — once on, until the share falls to half that, so that it
// does not flap at the line it holds the fleet to — at Headroom × the
// accepted rate.
func (g *Gate) allowed(sent, refused int, span time.Duration, was bool) (rate float64, throttled bool) {
	line := 1 - 1/g.cfg.Headroom
	if was {
		line /= 2
	}
	if sent < throttleMin || float64(refused) <= line*float64(sent)+1e-9 {
		return 0, false
	}
	return max(minRate, g.cfg.Headroom*float64(sent-refused)/span.Seconds()), true
}

// limit is the GCRA limit for rate per second: redis_rate counts whole
// requests per period, so the period is 100s for a rate to 1/100 per second.
func (g *Gate) limit(rate float64) redis_rate.Limit {
	if rate == float64(int(rate)) {
		return redis_rate.Limit{Rate: int(rate), Burst: g.cfg.Burst, Period: time.Second}
	}
	return redis_rate.Limit{Rate: max(1, int(math.Round(rate*100))), Burst: g.cfg.Burst, Period: 100 * time.Second}
}
