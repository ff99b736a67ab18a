package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// opsMetrics are the ops server's: what it refuses, and the clock's skew.
type opsMetrics struct {
	refused *prometheus.CounterVec
	skew    prometheus.Gauge
}

func (m *Metrics) registerOps() {
	m.ops.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "refundd_ops_refused_total",
		Help: "Requests the ops server refused, by reason: auth_failed (401: wrong or missing credentials), auth_throttled (429: the address is past its failed attempts), enqueue_rate (429: past API_ENQUEUE_RATE).",
	}, []string{"reason"})
	for _, r := range []string{"auth_failed", "auth_throttled", "enqueue_rate"} {
		m.ops.refused.WithLabelValues(r) // present at zero from the start
	}
	m.ops.skew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "refundd_clock_skew_seconds",
		Help: "This replica's clock minus Redis's (TIME), at the last measurement; beyond CLOCK_SKEW_MAX either way the replica is not ready.",
	})
	m.register(m.ops.refused, m.ops.skew)
}

// OpsRefused implements ops.Observer.
func (m *Metrics) OpsRefused(reason string) { m.ops.refused.WithLabelValues(reason).Inc() }

// ObserveClockSkew implements ops.SkewObserver.
func (m *Metrics) ObserveClockSkew(d time.Duration) { m.ops.skew.Set(d.Seconds()) }
