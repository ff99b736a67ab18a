// Package metrics holds refundd's Prometheus metrics: asynq's queue metrics
// and the service's own (cancellations by outcome, 2Checkout requests by
// method and result, request latency, logins, window slack). Metrics is a
// worker.Observer and an rpcclient.RequestObserver.
package metrics

import (
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Metrics is refundd's registry and instruments.
type Metrics struct {
	reg           *prometheus.Registry
	all           []prometheus.Collector // everything registered, for tests to describe
	cancellations *prometheus.CounterVec
	attempts      *prometheus.CounterVec
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	slack         prometheus.Histogram
}

// New registers the service's metrics, asynq's queue metrics read through
// insp (if not nil), and the Go runtime's.
func New(insp *asynq.Inspector) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cancellations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_cancellations_total",
			Help: "Refund cancellation tasks finished, by outcome: cancelled, already_cancelled, refused, window_closed, invalid, superseded, unknown.",
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_attempts_total",
			Help: "Handler runs, by outcome (a final outcome, or retry).",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_rpc_requests_total",
			Help: "Requests to 2Checkout, by JSON-RPC method and result: ok, transient, session, credentials, permanent, not_started.",
		}, []string{"method", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "refundd_rpc_request_duration_seconds",
			Help:    "Duration of requests to 2Checkout, by JSON-RPC method.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"method"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_logins_total",
			Help: "Logins to 2Checkout, by result: ok, credentials, transient.",
		}, []string{"result"}),
		slack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "refundd_window_slack_seconds",
			Help:    "Time left before the refund's 2-hour window closes when its task finished (negative: after).",
			Buckets: []float64{-60, 0, 60, 300, 900, 1800, 3600, 5400, 7200},
		}),
	}
	m.register(m.cancellations, m.attempts, m.requests, m.latency, m.logins, m.slack,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if insp != nil {
		m.register(asynqmetrics.NewQueueMetricsCollector(insp))
	}
	for _, o := range tasks.FinalOutcomes {
		m.cancellations.WithLabelValues(o) // present at zero from the start
	}
	return m
}

func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.all = append(m.all, cs...)
}

// Attempted implements worker.Observer.
func (m *Metrics) Attempted(outcome string, slack time.Duration) {
	m.attempts.WithLabelValues(outcome).Inc()
	if outcome == worker.OutcomeRetry {
		return
	}
	m.cancellations.WithLabelValues(outcome).Inc()
	if outcome != worker.OutcomeInvalid {
		m.slack.Observe(slack.Seconds())
	}
}

// ObserveRequest implements rpcclient.RequestObserver.
func (m *Metrics) ObserveRequest(method string, class rpcclient.Class, took time.Duration) {
	result := class.String()
	if class == rpcclient.ClassNone {
		result = "ok"
	}
	m.requests.WithLabelValues(method, result).Inc()
	m.latency.WithLabelValues(method).Observe(took.Seconds())
	if method == rpcclient.MethodLogin {
		m.logins.WithLabelValues(result).Inc()
	}
}

// ReportReadiness exports ready (asked at every scrape) as the gauge
// refundd_ready: 1 while /readyz answers 200, 0 otherwise. The alert
// RefunddNotReady (deploy/prometheus/alerts.yml) reads it.
func (m *Metrics) ReportReadiness(ready func() bool) {
	m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "refundd_ready",
		Help: "1 while the replica is ready (its /readyz answers 200), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
