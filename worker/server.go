package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/tasks"
)

// ServerConfig configures the asynq server that runs a Handler. A zero
// optional field means the default written beside it; a negative one is an
// error.
type ServerConfig struct {
	// Redis is the queue's Redis. Required.
	Redis asynq.RedisConnOpt
	// Queue to process. Default tasks.DefaultQueue.
	Queue string
	// Concurrency is how many tasks run at once. Default 10.
	Concurrency int
	// ShutdownTimeout: on shutdown, running tasks get this long to finish
	// before they go back to pending (no retry counted). Default 30s, longer
	// than one request.
	ShutdownTimeout time.Duration
	// TaskCheckInterval: how long an idle worker waits before looking for new
	// tasks (asynq sleeps half of it plus a random part of it, so up to 1.5x).
	// Default 40ms: a task on a quiet queue starts within ~60ms, for about 25
	// cheap script calls a second per idle asynq server (see the README's
	// performance section).
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
	DefaultTaskCheckInterval        = 40 * time.Millisecond
	DefaultDelayedTaskCheckInterval = time.Second
)

// TaskHandler is what a Server runs: an asynq.Handler that also places its
// own retries and says which of its errors count against the retry counter.
// *Handler is one.
type TaskHandler interface {
	asynq.Handler
	RetryDelay(n int, err error, t *asynq.Task) time.Duration
	IsFailure(err error) bool
}

// Server is an asynq server bound to one handler: the handler that processes
// the tasks is the one that places their retries, so the two cannot differ.
// It connects to Redis when it starts: a Server never started holds nothing
// to release.
type Server struct {
	redis asynq.RedisConnOpt
	cfg   asynq.Config
	h     TaskHandler

	mu  sync.Mutex
	srv *asynq.Server // made by the first Start or Run
}

// NewServer builds the asynq server for h. Start it with Start (or Run, which
// also waits for SIGINT or SIGTERM); stop it with Shutdown.
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
	} {
		if err != nil {
			return nil, fmt.Errorf("worker: ServerConfig.%w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	log := cfg.Logger.With(zap.String("component", "asynq"))
	return &Server{redis: cfg.Redis, h: h, cfg: asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{cfg.Queue: 1},
		BaseContext:              cfg.BaseContext,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           h.RetryDelay,
		IsFailure:                h.IsFailure,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   log.WithOptions(zap.AddCallerSkip(1)).Sugar(),
		LogLevel:                 asynq.InfoLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if asynq.IsPanicError(err) {
				id, _ := asynq.GetTaskID(ctx)
				log.Error("task handler panicked", zap.String("task_id", id), zap.Error(err))
			}
		}),
	}}, nil
}

// server answers the asynq server, making it (and its Redis client) once.
func (s *Server) server() *asynq.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		s.srv = asynq.NewServer(s.redis, s.cfg)
	}
	return s.srv
}

// Start starts processing tasks in the background.
func (s *Server) Start() error { return s.server().Start(s.h) }

// Run processes tasks until the process gets SIGINT or SIGTERM, then shuts
// down as Shutdown does.
func (s *Server) Run() error { return s.server().Run(s.h) }

// Shutdown stops taking tasks, gives running ones ShutdownTimeout to finish
// (then they go back to pending), and closes the server's Redis connection.
// It does nothing if the server never started.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}
