package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/tasks"
)

// ServerConfig configures the asynq servers that run a Handler. A zero
// optional field means the default written beside it; a negative one is an
// error.
type ServerConfig struct {
	// Redis is the queue's Redis. Required.
	Redis asynq.RedisConnOpt
	// Queue to process. Default tasks.DefaultQueue.
	Queue string
	// Concurrency is how many tasks run at once. Default 10.
	Concurrency int
	// Fetchers is how many asynq servers share Concurrency. One asynq
	// server takes tasks off the queue one Redis round trip at a time, so
	// with very fast tasks that one loop, not the workers, bounds
	// throughput; each further server adds a loop. Every task still runs on
	// one worker of one server, the workers add up to Concurrency, and
	// Shutdown stops them together. Each server polls an empty queue on its
	// own, so an idle replica's Redis load grows with Fetchers. Default 1;
	// at most Concurrency.
	Fetchers int
	// ShutdownTimeout: on shutdown, running tasks get this long to finish
	// before they go back to pending (no retry counted). Default 30s, longer
	// than one request.
	ShutdownTimeout time.Duration
	// TaskCheckInterval: how long an idle worker waits before looking for new
	// tasks (asynq sleeps half of it plus a random part of it, so up to 1.5x).
	// Default 1s, asynq's own: a task on a quiet queue starts within 1.5s,
	// for about one dequeue script a second per Fetcher. 50ms starts it
	// within ~100ms for about 20 a second (docs/performance.md).
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval: how often due retries are moved to pending.
	// Default 1s (asynq's is 5s), so retries placed just before the cut-off
	// run in time.
	DelayedTaskCheckInterval time.Duration
	// Logger receives asynq's own logs. Default zap.NewNop().
	Logger *zap.Logger
	// BaseContext, if set, is the parent of every task's context.
	BaseContext func() context.Context
}

// Defaults of ServerConfig.
const (
	DefaultConcurrency              = 10
	DefaultShutdownTimeout          = 30 * time.Second
	DefaultTaskCheckInterval        = time.Second
	DefaultDelayedTaskCheckInterval = time.Second
	DefaultFetchers                 = 1

	// extraForwardInterval is how often a Fetcher beyond the first moves
	// due retries to pending: the first one does it every
	// DelayedTaskCheckInterval, for the whole queue.
	extraForwardInterval = 5 * time.Second
)

// TaskHandler is what a Server runs: an asynq.Handler that also places its
// own retries and says which of its errors count against the retry counter.
// *Handler is one.
type TaskHandler interface {
	asynq.Handler
	RetryDelay(n int, err error, t *asynq.Task) time.Duration
	IsFailure(err error) bool
}

// Server is one or more asynq servers (ServerConfig.Fetchers) bound to one
// handler: the handler that processes the tasks is the one that places
// their retries, so the two cannot differ. It connects to Redis when it
// starts: a Server never started holds nothing to release.
type Server struct {
	redis asynq.RedisConnOpt
	cfgs  []asynq.Config // one per asynq server (Fetchers)
	h     TaskHandler

	mu   sync.Mutex
	srvs []*asynq.Server // made by the first Start or Run
}

// NewServer builds the asynq servers for h. Start them with Start (or Run,
// which also waits for SIGINT or SIGTERM); stop them with Shutdown.
func NewServer(cfg ServerConfig, h TaskHandler) (*Server, error) {
	if cfg.Redis == nil {
		return nil, errors.New("worker: ServerConfig.Redis is required")
	}
	if h == nil {
		return nil, errors.New("worker: a Handler is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = tasks.DefaultQueue
	}
	for _, err := range []error{
		defaults.Fill("Concurrency", &cfg.Concurrency, DefaultConcurrency),
		defaults.Fill("ShutdownTimeout", &cfg.ShutdownTimeout, DefaultShutdownTimeout),
		defaults.Fill("TaskCheckInterval", &cfg.TaskCheckInterval, DefaultTaskCheckInterval),
		defaults.Fill("DelayedTaskCheckInterval", &cfg.DelayedTaskCheckInterval, DefaultDelayedTaskCheckInterval),
		defaults.Fill("Fetchers", &cfg.Fetchers, DefaultFetchers),
	} {
		if err != nil {
			return nil, fmt.Errorf("worker: ServerConfig.%w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Fetchers > cfg.Concurrency {
		return nil, fmt.Errorf("worker: ServerConfig.Fetchers %d: must not exceed Concurrency %d (each needs a worker)", cfg.Fetchers, cfg.Concurrency)
	}
	log := cfg.Logger.With(zap.String("component", "asynq"))
	base := asynq.Config{ // Concurrency and Logger are set per server, below
		Queues:                   map[string]int{cfg.Queue: 1},
		BaseContext:              cfg.BaseContext,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           h.RetryDelay,
		IsFailure:                h.IsFailure,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		LogLevel:                 asynq.InfoLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if asynq.IsPanicError(err) {
				id, _ := asynq.GetTaskID(ctx)
				log.Error("task handler panicked", zap.String("task_id", id), zap.Error(err))
			}
		}),
	}
	srv := &Server{redis: cfg.Redis, h: h}
	for i, n := range split(cfg.Concurrency, cfg.Fetchers) {
		c := base
		c.Concurrency = n
		l := log
		if cfg.Fetchers > 1 { // which server says it: each logs its own shutdown
			l = l.With(zap.Int("fetcher", i+1))
		}
		c.Logger = l.WithOptions(zap.AddCallerSkip(1)).Sugar()
		if i > 0 {
			c.DelayedTaskCheckInterval = max(extraForwardInterval, cfg.DelayedTaskCheckInterval)
		}
		srv.cfgs = append(srv.cfgs, c)
	}
	return srv, nil
}

// split answers total workers shared by n servers, as evenly as can be.
func split(total, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = total / n
		if i < total%n {
			out[i]++
		}
	}
	return out
}

// servers answers the asynq servers, making them (and their Redis clients)
// once.
func (s *Server) servers() []*asynq.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srvs == nil {
		for _, c := range s.cfgs {
			s.srvs = append(s.srvs, asynq.NewServer(s.redis, c))
		}
	}
	return s.srvs
}

// Start starts processing tasks in the background. If a server fails to
// start, those started are shut down.
func (s *Server) Start() error {
	srvs := s.servers()
	for i, srv := range srvs {
		if err := srv.Start(s.h); err != nil {
			shutdown(srvs[:i])
			return err
		}
	}
	return nil
}

// Run processes tasks until the process gets SIGINT or SIGTERM, then shuts
// down as Shutdown does. As with asynq's Run, SIGTSTP (where there is one)
// stops taking new tasks and lets the running ones go on.
func (s *Server) Run() error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, append([]os.Signal{os.Interrupt, syscall.SIGTERM}, stopSignals...)...)
	defer signal.Stop(sigs)
	if err := s.Start(); err != nil {
		return err
	}
	for sig := range sigs {
		if slices.Contains(stopSignals, sig) {
			stop(s.servers())
			continue
		}
		break
	}
	s.Shutdown()
	return nil
}

// Shutdown stops taking tasks, gives running ones ShutdownTimeout to finish
// (then they go back to pending), and closes the servers' Redis
// connections: all servers at once, so the wait is one ShutdownTimeout. It
// does nothing if the server never started.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srvs := s.srvs
	s.mu.Unlock()
	shutdown(srvs)
}

// shutdown stops every server taking tasks (none takes a new one while
// another waits for its own), then shuts them all down at once.
func shutdown(srvs []*asynq.Server) {
	stop(srvs)
	all(srvs, (*asynq.Server).Shutdown)
}

// stop stops every server taking new tasks, at once: each may wait for a
// Redis call in flight.
func stop(srvs []*asynq.Server) { all(srvs, (*asynq.Server).Stop) }

func all(srvs []*asynq.Server, f func(*asynq.Server)) {
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(func() { f(srv) })
	}
	wg.Wait()
}
