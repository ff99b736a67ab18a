package soak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/loopback"
)

// redisServer is the soak's own redis-server: loopback only, its files in
// dir, the append-only file on (fsync every second; a clean shutdown
// fsyncs it), no RDB snapshots.
type redisServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startRedis starts a redis-server on a free loopback port keeping its
// files in dir, and waits until it answers PING.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server is not on PATH: %w", err)
	}
	port, err := loopback.FreePort()
	if err != nil {
		return nil, fmt.Errorf("a free port for redis-server: %w", err)
	}
	r := &redisServer{dir: dir, port: port}
	if err := r.launch(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// URL answers the server's redis:// URL.
func (r *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Addr answers host:port.
func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) logPath() string { return filepath.Join(r.dir, "redis.log") }

func (r *redisServer) launch(ctx context.Context) error {
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--maxmemory-policy", "noeviction", "--logfile", r.logPath())
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.done)
	if err := r.waitPing(ctx, 15*time.Second); err != nil {
		r.kill()
		return err
	}
	return nil
}

// waitPing answers nil once the server answers PING.
func (r *redisServer) waitPing(ctx context.Context, within time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		if err = c.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("redis-server exited before answering PING (log: %s)", r.logPath())
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s not answering PING within %s: %v (log: %s)", r.Addr(), within, err, r.logPath())
		case <-tick.C:
		}
	}
}

// Restart stops the server cleanly (SIGTERM: Redis fsyncs its append-only
// file), waits for it to exit, starts it again on the same port and dir,
// and waits for PING. It answers how long Redis was unavailable.
func (r *redisServer) Restart(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := r.terminate(30 * time.Second); err != nil {
		return 0, fmt.Errorf("restart redis: %w", err)
	}
	if err := r.launch(ctx); err != nil {
		return 0, fmt.Errorf("restart redis: %w", err)
	}
	return time.Since(start), nil
}

// terminate sends SIGTERM and waits for the exit.
func (r *redisServer) terminate(within time.Duration) error {
	if r.cmd == nil {
		return errors.New("redis-server is not running")
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM redis-server: %w", err)
	}
	select {
	case <-r.done:
		r.cmd = nil
		return nil
	case <-time.After(within):
		r.kill()
		return fmt.Errorf("redis-server did not exit within %s of SIGTERM (killed; log: %s)", within, r.logPath())
	}
}

// Stop ends the server: SIGTERM, then SIGKILL after 10 s.
func (r *redisServer) Stop() {
	if r.cmd != nil {
		_ = r.terminate(10 * time.Second)
	}
}

func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// mkTemp makes the soak's temp dir.
func mkTemp() (string, error) {
	dir, err := os.MkdirTemp("", "refundsoak-")
	if err != nil {
		return "", fmt.Errorf("temp dir: %w", err)
	}
	return dir, nil
}
