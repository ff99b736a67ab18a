package worker_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/worker"
)

// countingOpt counts the Redis clients made from it.
type countingOpt struct {
	asynq.RedisClientOpt
	made atomic.Int32
}

func (o *countingOpt) MakeRedisClient() any {
	o.made.Add(1)
	return o.RedisClientOpt.MakeRedisClient()
}

func TestNewServerValidates(t *testing.T) {
	opt := &countingOpt{RedisClientOpt: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}}
	for _, tc := range []struct {
		name string
		cfg  worker.ServerConfig
		h    worker.TaskHandler
		want string // "" for no error
	}{
		{"defaults", worker.ServerConfig{Redis: opt}, noopHandler{}, ""},
		{"no redis", worker.ServerConfig{}, noopHandler{}, "Redis is required"},
		{"no handler", worker.ServerConfig{Redis: opt}, nil, "Handler is required"},
		{"negative concurrency", worker.ServerConfig{Redis: opt, Concurrency: -1}, noopHandler{}, "worker: ServerConfig.Concurrency -1: must not be negative"},
		{"negative shutdown timeout", worker.ServerConfig{Redis: opt, ShutdownTimeout: -time.Second}, noopHandler{}, "worker: ServerConfig.ShutdownTimeout -1s: must not be negative"},
		{"negative check interval", worker.ServerConfig{Redis: opt, DelayedTaskCheckInterval: -1}, noopHandler{}, "DelayedTaskCheckInterval -1ns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := worker.NewServer(tc.cfg, tc.h)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				srv.Shutdown() // never started: nothing to do, no panic
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A Server connects when it starts: one built and shut down without
	// starting made no Redis client, so it has none to leak.
	if n := opt.made.Load(); n != 0 {
		t.Fatalf("NewServer made %d Redis clients before Start", n)
	}
}
