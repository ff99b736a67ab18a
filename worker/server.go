package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/tasks"
)

// ServerConfig configures the asynq server that runs a Handler.
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
	// Dequeuers: how many asynq servers NewServers runs, sharing
	// Concurrency. Default DequeuersFor(Concurrency). NewServer ignores it.
	Dequeuers int
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
	// ConcurrencyPerDequeuer: NewServers runs one asynq server per this many
	// tasks at once (see DequeuersFor). One server started ~2,900–4,900
	// tasks/s on the 2-core benchmark machine; 250 tasks of 100 ms need 2,500.
	ConcurrencyPerDequeuer = 250
)

// NewServer builds the asynq server for h. Run it with srv.Run(h) or
// srv.Start(h); stop it with srv.Shutdown().
func NewServer(cfg ServerConfig, h *Handler) (*asynq.Server, error) {
	if cfg.Redis == nil {
		return nil, errors.New("worker: ServerConfig.Redis is required")
	}
	if h == nil {
		return nil, errors.New("worker: a Handler is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = tasks.DefaultQueue
	}
	if cfg.Concurrency < 0 {
		return nil, errors.New("worker: ServerConfig.Concurrency must not be negative")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.TaskCheckInterval <= 0 {
		cfg.TaskCheckInterval = DefaultTaskCheckInterval
	}
	if cfg.DelayedTaskCheckInterval <= 0 {
		cfg.DelayedTaskCheckInterval = DefaultDelayedTaskCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	log := cfg.Logger.With(zap.String("component", "asynq"))
	return asynq.NewServer(cfg.Redis, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{cfg.Queue: 1},
		BaseContext:              cfg.BaseContext,
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           h.RetryDelay,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		Logger:                   log.WithOptions(zap.AddCallerSkip(1)).Sugar(),
		LogLevel:                 asynq.InfoLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if asynq.IsPanicError(err) {
				id, _ := asynq.GetTaskID(ctx)
				log.Error("task handler panicked", zap.String("task_id", id), zap.Error(err))
			}
		}),
	}), nil
}
