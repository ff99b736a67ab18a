// Package daemon assembles refundd: the 2Checkout client, the worker and its
// asynq server, and the ops HTTP server; it runs them together and shuts
// them down together. cmd/refundd and the demo both use it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/internal/ops"
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
	api      *rpcclient.Client
	handler  *worker.Handler
	server   *worker.Servers
	redis    redis.UniversalClient
	mux      *http.ServeMux
	running  atomic.Bool
	onListen func(net.Addr)
	closers  []func() error
}

// New builds a Daemon from opts.
func New(opts Options) (*Daemon, error) {
	cfg, log := opts.Config, opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	insp := asynq.NewInspector(cfg.Redis)
	m := metrics.New(insp)
	api, err := rpcclient.New(rpcclient.Config{
		URL: cfg.APIURL, AllowHTTP: cfg.AllowHTTP, MerchantCode: cfg.MerchantCode, SecretKey: cfg.SecretKey, HashAlgo: cfg.HashAlgo,
		RootCAs: cfg.RootCAs, RequestTimeout: cfg.RequestTimeout, Logger: log.Named("rpcclient"), Observer: m,
	})
	if err != nil {
		return nil, err
	}
	policy := cfg.Policy()
	if opts.Policy != nil {
		policy = *opts.Policy
	}
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Policy: policy, Logger: log.Named("worker"), Observer: m})
	if err != nil {
		return nil, err
	}
	srv, err := worker.NewServers(worker.ServerConfig{
		Redis: cfg.Redis, Queue: cfg.Queue, Concurrency: cfg.Concurrency, ShutdownTimeout: cfg.ShutdownTimeout, Logger: log,
	}, h)
	if err != nil {
		return nil, err
	}
	rc, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("daemon: unexpected Redis client type")
	}
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: cfg.Redis, Queue: cfg.Queue})
	if err != nil {
		return nil, err
	}
	dash := ops.NewDashboard(ops.DashboardConfig{Redis: cfg.Redis, User: cfg.DashboardUser, Password: cfg.DashboardPassword.Reveal(),
		ReadOnly: cfg.DashboardReadOnly, Loopback: cfg.OpsLoopback()})
	d := &Daemon{cfg: cfg, log: log, api: api, handler: h, server: srv, redis: rc, mux: http.NewServeMux(), onListen: opts.OnListen,
		closers: []func() error{insp.Close, enq.Close, dash.Close}}
	d.mux.Handle("GET /metrics", m.Handler())
	dash.Register(d.mux)
	ops.NewAPI(enq, cfg.APIToken.Reveal(), log.Named("api")).Register(d.mux)
	if cfg.DashboardUser == "" && !cfg.OpsLoopback() {
		log.Warn("the dashboard is refused (403): set DASHBOARD_USER and DASHBOARD_PASSWORD to serve it on a non-loopback OPS_ADDR")
	}
	ops.NewHealth(ops.Checks{
		Redis:         func(ctx context.Context) error { return rc.Ping(ctx).Err() },
		WorkerRunning: d.running.Load,
		LoginFailure: func() error {
			if err := api.LoginFailure(); rpcclient.Classify(err) == rpcclient.ClassCredentials {
				return fmt.Errorf("2Checkout refuses our credentials: %w", err)
			}
			return nil
		},
	}).Register(d.mux)
	return d, nil
}

func (d *Daemon) close() {
	for _, c := range d.closers {
		_ = c()
	}
	_ = d.redis.Close()
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
	hs := &http.Server{Handler: d.mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	if err := d.server.Start(d.handler); err != nil {
		_ = hs.Close()
		return fmt.Errorf("start worker: %w", err)
	}
	d.running.Store(true)
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
