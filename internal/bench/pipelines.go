package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/daemon"
	"github.com/refundd/refund-canceller/internal/logging"
)

// Credentials the refundd pipeline logs in with (the no-op server accepts any).
const (
	merchantCode = "BENCH"
	secretKey    = "bench-secret"
)

// pipeline is one running consumer of a queue.
type pipeline interface {
	stop() error
}

// startFunc starts a pipeline on queue with the given concurrency.
type startFunc func(queue string, concurrency int) (pipeline, error)

// workerEnv is refundd's environment for the benchmark's queue and no-op
// server: the same variables an operator sets.
func workerEnv(redisURL, rpcURL, queue string, concurrency int) map[string]string {
	return map[string]string{
		"REDIS_URL": redisURL, "TCO_API_URL": rpcURL, "TCO_MERCHANT_CODE": merchantCode, "TCO_SECRET_KEY": secretKey,
		"REFUND_QUEUE": queue, "WORKER_CONCURRENCY": strconv.Itoa(concurrency), "OPS_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "info", "LOG_FORMAT": "json",
	}
}

// refunddPipeline is refundd itself, in this process: the daemon built from
// its configuration exactly as `refundd` builds it (client, handler, asynq
// server, metrics, ops server), logging every attempt as JSON to io.Discard
// so encoding is paid for but no terminal is.
type refunddPipeline struct {
	cancel context.CancelFunc
	done   chan error
}

// startRefundd starts refundd with the environment an operator would give
// it, plus extra (for instance the low-latency WORKER_POLL_INTERVAL).
func startRefundd(redisURL, rpcURL string, extra map[string]string) startFunc {
	return func(queue string, concurrency int) (pipeline, error) {
		env := workerEnv(redisURL, rpcURL, queue, concurrency)
		maps.Copy(env, extra)
		cfg, err := config.Load(func(k string) string { return env[k] })
		if err != nil {
			return nil, err
		}
		log, err := logging.NewTo(io.Discard, cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return nil, err
		}
		started := make(chan struct{})
		d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, OnListen: func(net.Addr) { close(started) }})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &refunddPipeline{cancel: cancel, done: make(chan error, 1)}
		// Goroutines inherit the label: -cpuprofile's samples say whose they are.
		pprof.Do(ctx, pprof.Labels("pipeline", "refundd"), func(ctx context.Context) {
			go func() { p.done <- d.Run(ctx) }()
		})
		select {
		case <-started:
			return p, nil
		case err := <-p.done:
			cancel()
			return nil, fmt.Errorf("refundd: %w", err)
		}
	}
}

func (p *refunddPipeline) stop() error {
	p.cancel()
	return <-p.done
}

// minimalPipeline is the least a worker can do for the same job: a plain
// asynq server (defaults but concurrency), and a handler that reads the
// order reference, makes one raw JSON-RPC POST with a keep-alive client, and
// writes the answer as the task's result (kept with the task's retention).
type minimalPipeline struct {
	srv *asynq.Server
}

func startMinimal(opt asynq.RedisConnOpt, rpcURL string) startFunc {
	hc := &http.Client{
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		Timeout:   15 * time.Second,
	}
	return func(queue string, concurrency int) (pipeline, error) {
		srv := asynq.NewServer(opt, asynq.Config{
			Concurrency: concurrency,
			Queues:      map[string]int{queue: 1},
			Logger:      zap.NewNop().Sugar(),
			LogLevel:    asynq.ErrorLevel,
		})
		h := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			var p struct {
				OrderRef string `json:"order_ref"`
			}
			if err := json.Unmarshal(t.Payload(), &p); err != nil || p.OrderRef == "" {
				return fmt.Errorf("payload: %v: %w", err, asynq.SkipRetry)
			}
			res, err := rawPost(ctx, hc, rpcURL, p.OrderRef)
			if err != nil {
				return err
			}
			_, err = t.ResultWriter().Write(res)
			return err
		})
		var err error
		pprof.Do(context.Background(), pprof.Labels("pipeline", "minimal"), func(context.Context) { err = srv.Start(h) })
		if err != nil {
			return nil, err
		}
		return &minimalPipeline{srv: srv}, nil
	}
}

func (p *minimalPipeline) stop() error {
	p.srv.Shutdown()
	return nil
}
