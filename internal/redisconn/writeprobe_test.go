package redisconn_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/redistest"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// The probe writes into the queue's slot with an expiry, asks Redis at
// most once a second, and reports OOM (maxmemory with noeviction) as the
// reason once the second has passed.
func TestWriteProbeOOM(t *testing.T) {
	r := redistest.Start(t)
	rc := r.Client()
	defer rc.Close()
	ctx := context.Background()
	clk := &clock{time.Unix(1_800_000_000, 0)}
	p := redisconn.NewWriteProbe(rc, "refunds", 0, clk.now)
	if err := p.Check(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := rc.Keys(ctx, redisconn.ProbeKey("refunds", "*")).Result()
	if err != nil || len(keys) != 1 || !strings.Contains(keys[0], "{refunds}") {
		t.Fatalf("keys %v %v", keys, err)
	}
	if ttl := rc.PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("ttl %v", ttl)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer rc.ConfigSet(ctx, "maxmemory", "0")
	clk.t = clk.t.Add(999 * time.Millisecond)
	if err := p.Check(ctx); err != nil {
		t.Fatalf("asked Redis again within the second: %v", err)
	}
	clk.t = clk.t.Add(time.Millisecond)
	if err := p.Check(ctx); err == nil || !strings.Contains(err.Error(), "out of memory") || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("under OOM: %v", err)
	}
	// A clock that goes back does not keep an old answer.
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(-time.Hour)
	if err := p.Check(ctx); err != nil {
		t.Fatalf("after OOM: %v", err)
	}
}

func TestWriteProbeReadOnlyReplica(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.StartWith(t, redistest.Server{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port())}})
	rc := replica.Client()
	defer rc.Close()
	err := redisconn.NewWriteProbe(rc, "refunds", 0, nil).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "read-only replica") || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("on a replica: %v", err)
	}
}

func TestWriteProbeNoPerm(t *testing.T) {
	for name, acl := range map[string]string{
		"no SET":             "user refundd on >pw ~* +@all -set",
		"not refundd's keys": "user refundd on >pw ~asynq:* +@all",
	} {
		t.Run(name, func(t *testing.T) {
			r := redistest.StartWith(t, redistest.Server{ACL: []string{"user default off", acl}, User: "refundd", Password: "pw"})
			rc := r.Client()
			defer rc.Close()
			err := redisconn.NewWriteProbe(rc, "refunds", 0, nil).Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), "ACL user may not write") || !strings.Contains(err.Error(), "NOPERM") {
				t.Fatalf("%v", err)
			}
		})
	}
}
