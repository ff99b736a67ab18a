package daemon

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/config"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/worker"
)

// countingRedis hands out real go-redis clients (to a port where nothing
// listens: none of them is ever used) and remembers each, so a test can ask
// whether every one was closed.
type countingRedis struct {
	addr string
	mu   sync.Mutex
	made []*redis.Client
}

func (o *countingRedis) MakeRedisClient() any {
	c := redis.NewClient(&redis.Options{Addr: o.addr, MaxRetries: -1})
	o.mu.Lock()
	o.made = append(o.made, c)
	o.mu.Unlock()
	return c
}

// open answers how many of the clients handed out are still open: a closed
// go-redis client answers ErrClosed without touching the network.
func (o *countingRedis) open() (open, made int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.made {
		if !errors.Is(c.Ping(context.Background()).Err(), redis.ErrClosed) {
			open++
		}
	}
	return open, len(o.made)
}

func testConfig(t *testing.T) (*config.Config, *countingRedis) {
	t.Helper()
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "TCO_MERCHANT_CODE": "M", "TCO_SECRET_KEY": "k"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRedis{addr: testutil.FreeAddr(t)}
	cfg.Redis = r
	return cfg, r
}

// New closes what it opened on every error path, and Run closes everything
// when it cannot even listen.
func TestNoLeakOnError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*config.Config, *Options)
	}{
		{"2Checkout client refused", func(c *config.Config, _ *Options) { c.MerchantCode = "" }},
		{"policy refused", func(_ *config.Config, o *Options) { o.Policy = &worker.Policy{SafetyMargin: -1} }},
		{"server config refused", func(c *config.Config, _ *Options) { c.Concurrency = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, r := testConfig(t)
			opts := Options{Config: cfg}
			tc.spoil(cfg, &opts)
			if _, err := New(opts); err == nil {
				t.Fatal("New succeeded")
			}
			if open, made := r.open(); made == 0 || open != 0 {
				t.Fatalf("%d of %d Redis clients left open", open, made)
			}
		})
	}
	t.Run("ops address taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg, r := testConfig(t)
		cfg.OpsAddr = ln.Addr().String()
		d, err := New(Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Run(context.Background()); err == nil {
			t.Fatal("Run succeeded on a taken address")
		}
		if open, made := r.open(); made == 0 || open != 0 {
			t.Fatalf("%d of %d Redis clients left open", open, made)
		}
	})
}
