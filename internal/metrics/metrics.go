// Package metrics holds refundd's Prometheus metrics: asynq's queue metrics
// and the service's own (cancellations by outcome, 2Checkout requests by
// method and result, request latency, logins, window slack, and the fleet's
// shared 2Checkout budget: waits, refusals, the allowed rate, the answered
// share and outage state per method; the backlog's
// urgency as the window sweep sees it). Metrics is a worker.Observer, an
// rpcclient.RequestObserver and a vendorbudget.Observer.
package metrics

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/refundd/refund-canceller/internal/vendorbudget"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
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
	budgetWait    prometheus.Histogram
	budgetRefused *prometheus.CounterVec
	allowedRate   *prometheus.GaugeVec
	answered      *prometheus.GaugeVec
	outage        *prometheus.GaugeVec
	backlog       prometheus.Gauge
	earliest      prometheus.Gauge
	sweptAt       prometheus.Gauge
	atRisk        *prometheus.GaugeVec
	ops           opsMetrics // ops.go

	// Children of the hot vectors for known labels, each made at its first
	// use and then read without the hashing, locking and label checks of
	// WithLabelValues on every attempt and request.
	attemptsBy      children[prometheus.Counter]  // by index in outcomes
	cancellationsBy children[prometheus.Counter]  // by index in outcomes
	requestsBy      children[prometheus.Counter]  // by index in methods × classes
	latencyBy       children[prometheus.Observer] // by index in methods
}

// children caches the children of a vector by index.
type children[T any] struct {
	slots []atomic.Pointer[T]
	make  func(i int) T
}

func newChildren[T any](n int, mk func(i int) T) children[T] {
	return children[T]{slots: make([]atomic.Pointer[T], n), make: mk}
}

// at answers child i, made at its first use (two first uses at once make
// it twice: a vector answers the same child for the same labels).
func (c *children[T]) at(i int) T {
	if p := c.slots[i].Load(); p != nil {
		return *p
	}
	v := c.make(i)
	c.slots[i].Store(&v)
	return v
}

// Known labels of the cached children.
var (
	outcomes = append([]string{tasks.OutcomeRetry, tasks.OutcomeHeld}, tasks.FinalOutcomes...)
	methods  = []string{rpcclient.MethodLogin, rpcclient.MethodCancelRefund, rpcclient.MethodGetOrder, rpcclient.MethodIssueRefund}
)

// classes is the number of rpcclient.Class values.
const classes = int(rpcclient.ClassUnknown) + 1

// result is the result label of a request of the given class.
func result(class rpcclient.Class) string {
	if class == rpcclient.ClassNone {
		return "ok"
	}
	return class.String()
}

// New registers the service's metrics, asynq's queue metrics read through
// insp (if not nil), and the Go runtime's.
func New(insp *asynq.Inspector) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cancellations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_cancellations_total",
			Help: "Refund cancellation tasks finished, by outcome: cancelled, already_cancelled, refused, window_closed, invalid, superseded, unknown, duplicate.",
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_attempts_total",
			Help: "Handler runs, by outcome: a final outcome, retry, or held (waiting its turn under deadline-first dispatch: nothing sent, no retry counted).",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refundd_rpc_requests_total",
			Help: "Requests to 2Checkout, by JSON-RPC method and result: ok, transient, session, credentials, permanent, unknown (an error answer not recognised), not_started.",
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
	m.budgetWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "refundd_tco_budget_wait_seconds",
		Help:    "Time a request to 2Checkout waited for the fleet's shared budget (rate limit, throttle, outage hold) before it was sent.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.budgetRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "refundd_tco_budget_refused_total",
		Help: "Requests to 2Checkout held back by the fleet's shared budget, by reason: rate_limit, throttled and outage (the request waited), start_deadline, context and unavailable (it was not sent).",
	}, []string{"reason"})
	m.allowedRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "refundd_tco_allowed_rate",
		Help: "Requests per second the fleet may send to 2Checkout now, by method, as this replica last read the fleet's state: the adaptive throttle's rate while 2Checkout refuses the method's requests for load (429, 503 with Retry-After), else TCO_RATE_LIMIT; 0 when nothing limits it.",
	}, []string{"method"})
	m.answered = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "refundd_tco_answered_ratio",
		Help: "Share of the fleet's requests to 2Checkout answered over the last window (10s), by method; 1 when none were sent.",
	}, []string{"method"})
	m.outage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "refundd_tco_outage",
		Help: "1 while the fleet holds a method's requests because 2Checkout is unavailable for it (half of at least 20 requests in the window), probing with one request per TCO_OUTAGE_PROBE_INTERVAL; else 0.",
	}, []string{"method"})
	m.register(m.budgetWait, m.budgetRefused, m.allowedRate, m.answered, m.outage)
	for _, r := range []string{vendorbudget.ReasonRateLimit, vendorbudget.ReasonThrottled, vendorbudget.ReasonOutage, vendorbudget.ReasonStartDeadline, vendorbudget.ReasonContext, vendorbudget.ReasonUnavailable} {
		m.budgetRefused.WithLabelValues(r)
	}
	for _, method := range methods {
		m.allowedRate.WithLabelValues(method)
		m.answered.WithLabelValues(method).Set(1)
		m.outage.WithLabelValues(method)
	}
	m.backlog = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "refundd_backlog_tasks",
		Help: "Cancellations not finished (active, pending, scheduled, retry) at the last window sweep; every replica reports the queue's figure.",
	})
	m.earliest = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "refundd_backlog_earliest_cutoff_timestamp_seconds",
		Help: "The soonest cut-off (Unix time) among the cancellations not finished at the last window sweep; 0 when none.",
	})
	m.atRisk = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "refundd_backlog_at_risk",
		Help: "Cancellations not finished at the last window sweep whose cut-off comes within 5m or 15m (or has passed). Missed ones: refundd_cancellations_total{outcome=\"window_closed\"}.",
	}, []string{"within"})
	m.atRisk.WithLabelValues("5m")
	m.atRisk.WithLabelValues("15m")
	m.sweptAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "refundd_window_sweep_timestamp_seconds",
		Help: "When the fleet's last window sweep ended (Unix time), the one the backlog gauges come from; 0 before the first. Its age says whether anyone still sweeps.",
	})
	m.register(m.backlog, m.earliest, m.atRisk, m.sweptAt)
	m.registerOps()
	m.register(m.cancellations, m.attempts, m.requests, m.latency, m.logins, m.slack,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if insp != nil {
		m.register(asynqmetrics.NewQueueMetricsCollector(insp))
	}
	for _, o := range tasks.FinalOutcomes {
		m.cancellations.WithLabelValues(o) // present at zero from the start
	}
	m.attemptsBy = newChildren(len(outcomes), func(i int) prometheus.Counter { return m.attempts.WithLabelValues(outcomes[i]) })
	m.cancellationsBy = newChildren(len(outcomes), func(i int) prometheus.Counter { return m.cancellations.WithLabelValues(outcomes[i]) })
	m.requestsBy = newChildren(len(methods)*classes, func(i int) prometheus.Counter {
		return m.requests.WithLabelValues(methods[i/classes], result(rpcclient.Class(i%classes)))
	})
	m.latencyBy = newChildren(len(methods), func(i int) prometheus.Observer { return m.latency.WithLabelValues(methods[i]) })
	return m
}

func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.all = append(m.all, cs...)
}

// Attempted implements worker.Observer.
func (m *Metrics) Attempted(outcome string, slack time.Duration) {
	i := slices.Index(outcomes, outcome)
	if i >= 0 {
		m.attemptsBy.at(i).Inc()
	} else {
		m.attempts.WithLabelValues(outcome).Inc()
	}
	if !tasks.IsFinal(outcome) {
		return
	}
	if i >= 0 {
		m.cancellationsBy.at(i).Inc()
	} else {
		m.cancellations.WithLabelValues(outcome).Inc()
	}
	if outcome != tasks.OutcomeInvalid {
		m.slack.Observe(slack.Seconds())
	}
}

// ObserveRequest implements rpcclient.RequestObserver.
func (m *Metrics) ObserveRequest(method string, class rpcclient.Class, took time.Duration) {
	if i := slices.Index(methods, method); i >= 0 && class >= 0 && int(class) < classes {
		m.requestsBy.at(i*classes + int(class)).Inc()
		m.latencyBy.at(i).Observe(took.Seconds())
	} else {
		m.requests.WithLabelValues(method, result(class)).Inc()
		m.latency.WithLabelValues(method).Observe(took.Seconds())
	}
	if method == rpcclient.MethodLogin {
		m.logins.WithLabelValues(result(class)).Inc()
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

// ObserveBacklog sets the backlog gauges from a window sweep's count: when
// the sweep ended, tasks not finished, the soonest cut-off (zero: none),
// and how many are at risk within 5 and 15 minutes.
func (m *Metrics) ObserveBacklog(sweptAt time.Time, tasks int, earliest time.Time, atRisk5m, atRisk15m int) {
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixMilli()) / 1000
	}
	m.sweptAt.Set(unix(sweptAt))
	m.backlog.Set(float64(tasks))
	m.earliest.Set(unix(earliest))
	m.atRisk.WithLabelValues("5m").Set(float64(atRisk5m))
	m.atRisk.WithLabelValues("15m").Set(float64(atRisk15m))
}

// Waited implements vendorbudget.Observer.
func (m *Metrics) Waited(_ string, d time.Duration) { m.budgetWait.Observe(d.Seconds()) }

// Refused implements vendorbudget.Observer.
func (m *Metrics) Refused(_, reason string) { m.budgetRefused.WithLabelValues(reason).Inc() }

// Fleet implements vendorbudget.Observer: per method the fleet's allowed
// rate, the answered share and the outage state. A method not in s was not
// requested in the window: fully answered, not out, at the ceiling.
func (m *Metrics) Fleet(s vendorbudget.FleetState) {
	for _, method := range methods {
		if _, ok := s.Methods[method]; !ok {
			m.allowedRate.WithLabelValues(method).Set(s.Rate)
			m.answered.WithLabelValues(method).Set(1)
			m.outage.WithLabelValues(method).Set(0)
		}
	}
	for method, st := range s.Methods {
		rate := s.Rate
		if st.Throttled && (rate == 0 || st.Rate < rate) {
			rate = st.Rate
		}
		m.allowedRate.WithLabelValues(method).Set(rate)
		m.answered.WithLabelValues(method).Set(st.Answered())
		m.outage.WithLabelValues(method).Set(b2f(st.Out))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
