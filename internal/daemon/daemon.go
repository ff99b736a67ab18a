// Package daemon assembles refundd: the 2Checkout client and the fleet's
// shared budget (vendorbudget), the worker and its WORKER_FETCHERS asynq
// servers, deadline-first dispatch, the window sweep, the completion
// webhooks' delivery server, and the ops HTTP server; it runs them together
// and shuts them down together. cmd/refundd and the demo both use it.
package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/deadlinefirst"
	"github.com/refundd/refund-canceller/internal/logging"
	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/internal/vendorbudget"
	"github.com/refundd/refund-canceller/internal/webhook"
	"github.com/refundd/refund-canceller/internal/windowsweep"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Options configures a Daemon.
type Options struct {
	Config *config.Config
	Logger *zap.Logger
	// Policy, if set, replaces the policy built from Config (the demo and
	// tests shorten delays).
	Policy *worker.Policy
	// OnListen, if set, is told the ops server's bound address.
	OnListen func(net.Addr)
}

// Daemon is a configured, not yet running refundd.
type Daemon struct {
	cfg      *config.Config
	log      *zap.Logger
	server   *worker.Server
	notify   *webhook.Server // delivers completion webhooks; nil without NOTIFY_URL
	sweep    *windowsweep.Sweeper
	turns    *deadlinefirst.Dispatcher // nil: deadline-first dispatch is off
	skew     *ops.ClockSkew            // nil: CLOCK_SKEW_MAX=0
	mux      *http.ServeMux
	running  atomic.Bool
	onListen func(net.Addr)
	closers  []func() error // what New opened, closed in reverse order
}

// New builds a Daemon from opts. If it fails, it closes what it opened.
func New(opts Options) (_ *Daemon, err error) {
	cfg, log := opts.Config, opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var closers []func() error
	defer func() {
		if err != nil {
			closeAll(closers)
		}
	}()
	insp := asynq.NewInspector(cfg.Redis)
	closers = append(closers, insp.Close)
	m := metrics.New(insp)
	rc := redisconn.NewClient(cfg.Redis)
	closers = append(closers, rc.Close)
	policy := cfg.Policy()
	if opts.Policy != nil {
		policy = *opts.Policy
		if policy.LastRetryLead == 0 { // the lead WORKER_POLL_INTERVAL needs
			policy.LastRetryLead = cfg.Policy().LastRetryLead
		}
	}
	policy, err = policy.WithDefaults()
	if err != nil {
		return nil, err
	}
	// The fleet shares one budget per merchant account: every replica of
	// every queue that calls 2Checkout as this merchant.
	outageMin := 0 // the default
	if cfg.OutageProbe == 0 {
		outageMin = -1
	}
	// The merchant is the key's hash tag: the budget's keys share one
	// Redis Cluster slot, as each of its scripts needs.
	gate, err := vendorbudget.New(vendorbudget.Config{Redis: rc, Key: "refundd:2co:{" + cfg.MerchantCode + "}",
		Rate: cfg.RateLimit, Burst: cfg.RateBurst, OutageMin: outageMin, ProbeInterval: cfg.OutageProbe,
		Logger: log.Named("budget"), Observer: m})
	if err != nil {
		return nil, err
	}
	api, err := rpcclient.New(rpcclient.Config{
		URL: cfg.APIURL, AllowHTTP: cfg.AllowHTTP, MerchantCode: cfg.MerchantCode, SecretKey: cfg.SecretKey, HashAlgo: cfg.HashAlgo,
		RootCAs: cfg.RootCAs, RequestTimeout: cfg.RequestTimeout, Logger: log.Named("rpcclient"), Observer: m, Gate: gate,
	})
	if err != nil {
		return nil, err
	}
	var notifier worker.Notifier
	var notifyServer *webhook.Server
	if cfg.NotifyURL != "" {
		n := webhook.NewNotifier(cfg.Redis, webhook.QueueFor(cfg.Queue), cfg.NotifyMaxAge, nil)
		closers = append(closers, n.Close)
		deliverer, err := webhook.NewDeliverer(webhook.Config{URL: cfg.NotifyURL, Secret: []byte(cfg.NotifySecret.Reveal()), MaxAge: cfg.NotifyMaxAge,
			Logger: log.Named("webhook")})
		if err != nil {
			return nil, err
		}
		notifier, notifyServer = n, deliverer.NewServer(cfg.Redis, webhook.QueueFor(cfg.Queue), 0)
	}
	recs := records.New(rc, cfg.Queue, cfg.OutcomeRetention)
	var turns *deadlinefirst.Dispatcher
	var hturns worker.Turns
	if n := cfg.Turns(); n > 0 {
		turns, err = deadlinefirst.New(deadlinefirst.Config{Redis: rc, Runner: records.Mover{Inspector: insp, Store: recs}, Queue: cfg.Queue, Slots: n, Logger: log.Named("deadlinefirst")})
		if err != nil {
			return nil, err
		}
		hturns = turns
	}
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: recs, Policy: policy, UnknownErrorAttempts: cfg.UnknownAttempts,
		Logger: log.Named("worker"), Observer: m, Notifier: notifier, Turns: hturns})
	if err != nil {
		return nil, err
	}
	srv, err := worker.NewServer(worker.ServerConfig{
		Redis: cfg.Redis, Queue: cfg.Queue, Concurrency: cfg.Concurrency, Fetchers: cfg.Fetchers, TaskCheckInterval: cfg.PollInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, Logger: logging.ForAsynq(log),
	}, h)
	if err != nil {
		return nil, err
	}
	sweep, err := windowsweep.New(windowsweep.Config{Redis: cfg.Redis, Queue: cfg.Queue, Policy: policy, Interval: cfg.SweepInterval,
		Logger: log.Named("windowsweep"), OnSweep: func(r windowsweep.Report) {
			m.ObserveBacklog(r.SweptAt, r.Backlog.Tasks, r.Backlog.Earliest, r.Backlog.AtRisk5m, r.Backlog.AtRisk15m)
		}})
	if err != nil {
		return nil, err
	}
	closers = append(closers, sweep.Close)
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: cfg.Redis, Queue: cfg.Queue})
	if err != nil {
		return nil, err
	}
	closers = append(closers, enq.Close)
	failures := ops.NewFailureLimit(ops.FailureLimitConfig{Failures: cfg.AuthFailures, Refill: cfg.AuthFailureRefill, Logger: log.Named("auth"), Observer: m})
	lookup := taskview.NewLookup(insp, recs, cfg.Queue)
	dash := ops.NewDashboard(ops.DashboardConfig{Redis: cfg.Redis, User: cfg.DashboardUser, Password: cfg.DashboardPassword.Reveal(),
		ReadOnly: cfg.DashboardReadOnly, Loopback: cfg.OpsLoopback(), PrometheusURL: cfg.PrometheusURL, Queue: cfg.Queue, Failures: failures,
		Orders: lookup})
	closers = append(closers, dash.Close)
	d := &Daemon{cfg: cfg, log: log, server: srv, notify: notifyServer, sweep: sweep, turns: turns, mux: http.NewServeMux(), onListen: opts.OnListen, closers: closers}
	d.mux.Handle("GET /metrics", m.Handler())
	dash.Register(d.mux)
	ops.NewAPI(enq, lookup, cfg.APIToken.Reveal(), log.Named("api")).
		Limit(ops.APILimits{Failures: failures, EnqueueRate: cfg.EnqueueRate, Observer: m}).Register(d.mux)
	switch {
	case cfg.DashboardUser == "" && !cfg.OpsLoopback():
		log.Warn("the dashboard is refused (403): set DASHBOARD_USER and DASHBOARD_PASSWORD to serve it on a non-loopback OPS_ADDR")
	case cfg.DashboardUser == "":
		log.Info("the dashboard is read-only: set DASHBOARD_USER and DASHBOARD_PASSWORD to change tasks and queues from it")
	}
	var skewErr func() error
	if cfg.ClockSkewMax > 0 {
		d.skew, err = ops.NewClockSkew(ops.SkewConfig{Max: cfg.ClockSkewMax, Logger: log.Named("clock"), Observer: m,
			RedisTime: func(ctx context.Context) (time.Time, error) { return rc.Time(ctx).Result() }})
		if err != nil {
			return nil, err
		}
		skewErr = d.skew.Err
	}
	health := ops.NewHealth(ops.Checks{
		Redis:         redisconn.NewWriteProbe(rc, cfg.Queue, 0, nil).Check,
		WorkerRunning: d.running.Load,
		LoginFailure: func() error {
			if err := api.LoginFailure(); rpcclient.Classify(err) == rpcclient.ClassCredentials {
				return fmt.Errorf("2Checkout refuses our credentials: %w", err)
			}
			return nil
		},
		ClockSkew: skewErr,
	})
	health.Register(d.mux)
	m.ReportReadiness(func() bool { return health.Ready(context.Background()) })
	return d, nil
}

func (d *Daemon) close() { closeAll(d.closers) }

func closeAll(closers []func() error) {
	for i := len(closers) - 1; i >= 0; i-- {
		_ = closers[i]()
	}
}

// Run starts the worker and the ops server and blocks until ctx ends; then
// it stops taking tasks, lets running ones finish (or go back to pending
// after ShutdownTimeout), and closes the ops server.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	ln, err := net.Listen("tcp", d.cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("OPS_ADDR %s: %w", d.cfg.OpsAddr, err)
	}
	hs := ops.NewServer(ops.ServerConfig{Handler: d.mux, AllowedHosts: d.cfg.OpsAllowedHosts})
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	if err := d.server.Start(); err != nil {
		_ = hs.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	if d.notify != nil {
		if err := d.notify.Start(); err != nil {
			d.server.Shutdown()
			_ = hs.Close()
			return fmt.Errorf("start webhook delivery: %w", err)
		}
		defer d.notify.Shutdown()
	}
	d.running.Store(true)
	// The background loops: the window sweep, deadline-first's tick, and
	// the clock's skew against Redis.
	loopCtx, stopLoops := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	loops.Go(func() { d.sweep.Run(loopCtx) })
	if d.turns != nil {
		loops.Go(func() { d.turns.Run(loopCtx) })
	}
	if d.skew != nil {
		loops.Go(func() { d.skew.Run(loopCtx) })
	}
	defer func() { stopLoops(); loops.Wait() }()
	d.log.Info("refundd running", zap.String("queue", d.cfg.Queue), zap.Int("concurrency", d.cfg.Concurrency),
		zap.String("ops", "http://"+ln.Addr().String()))
	if d.onListen != nil {
		d.onListen(ln.Addr())
	}

	select {
	case <-ctx.Done():
	case err = <-httpErr:
		err = fmt.Errorf("ops server: %w", err)
	}
	d.log.Info("shutting down: no new tasks; running tasks finish or go back to pending", zap.Duration("timeout", d.cfg.ShutdownTimeout))
	d.server.Shutdown()
	d.running.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if herr := hs.Shutdown(sctx); herr != nil && err == nil {
		err = herr
	}
	d.log.Info("refundd stopped")
	return err
}
