package redisconn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// WriteProbe proves that Redis takes a write of the kind refundd makes: a
// small SET with an expiry, on a key of the replica's own in the queue's
// hash slot (refundd:{<queue>}:ready:<replica>), so that it reaches the
// queue's primary (its shard, in a cluster) under refundd's ACL user. A PING
// passes where workers fail: under maxmemory with noeviction (OOM), on a
// read-only replica after a failover, or with a user that may not write
// (NOPERM). Readiness asks it.
//
// It asks Redis at most once per interval (DefaultProbeInterval); between
// two writes it answers the last write's result.
type WriteProbe struct {
	rc       redis.UniversalClient
	key      string
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	at   time.Time // the last write; zero: none yet
	last error
}

// DefaultProbeInterval is the least time between two writes of a probe.
const DefaultProbeInterval = time.Second

// NewWriteProbe answers a probe of queue's slot through rc. interval 0 is
// DefaultProbeInterval; now nil is time.Now.
func NewWriteProbe(rc redis.UniversalClient, queue string, interval time.Duration, now func() time.Time) *WriteProbe {
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	if now == nil {
		now = time.Now
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &WriteProbe{rc: rc, key: ProbeKey(queue, hex.EncodeToString(b[:])), interval: interval, now: now}
}

// ProbeKey is the key a replica's probe writes: in the queue's hash slot.
func ProbeKey(queue, replica string) string { return "refundd:{" + queue + "}:ready:" + replica }

// Check answers nil when Redis took the probe's write (now, or less than an
// interval ago), else why not.
func (p *WriteProbe) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.at.IsZero() && now.Sub(p.at) < p.interval && !now.Before(p.at) {
		return p.last
	}
	// The key outlives a few intervals: a replica that stops leaves it
	// behind for no longer.
	err := p.rc.Set(ctx, p.key, now.UnixMilli(), 10*p.interval).Err()
	if ctx.Err() != nil && err != nil {
		// The caller gave up: not a result to keep for others.
		return fmt.Errorf("redis: no answer to a write: %w", err)
	}
	p.at, p.last = now, explainWrite(err)
	return p.last
}

// explainWrite names the refusals that make a replica unready.
func explainWrite(err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	msg := err.Error()
	switch {
	case errors.As(err, &rerr) && strings.HasPrefix(msg, "OOM"):
		return fmt.Errorf("redis refuses writes: out of memory (maxmemory reached with noeviction): %s", msg)
	case errors.As(err, &rerr) && strings.HasPrefix(msg, "READONLY"):
		return fmt.Errorf("redis refuses writes: a read-only replica (the primary moved?): %s", msg)
	case errors.As(err, &rerr) && strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("redis refuses writes: the ACL user may not write refundd's keys: %s", msg)
	}
	return fmt.Errorf("redis: a write failed: %w", err)
}
