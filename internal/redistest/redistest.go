// Package redistest finds a Redis for tests (and Launch starts one for the
// benchmark command): REDIS_URL if set; else a
// redis-server from PATH started on a free port for the test; else, only
// outside CI, an in-process miniredis. In CI (CI set) a test that needs Redis
// fails when there is none.
//
// Tests never flush a database: each takes its own queue name (Queue) and
// deletes only that queue, the queues named after it, and every key left
// for them, when it ends.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/loopback"
	"github.com/refundd/refund-canceller/internal/redisconn"
)

// Redis is a Redis a test may use.
type Redis struct {
	// URL is redis://… for the server.
	URL string
	// Opt connects asynq to it.
	Opt asynq.RedisConnOpt
	// Kind says where it came from: "REDIS_URL", "redis-server" or "miniredis".
	Kind string

	cmd  *exec.Cmd
	port int
	dir  string
	args []string // redis-server's arguments besides port, bind and files
}

// New answers a Redis for t, following the package's order of preference.
func New(t testing.TB) *Redis {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		opt, err := redisconn.Open(redisconn.FromEnv(os.Getenv))
		if err != nil {
			t.Fatal(err)
		}
		r := &Redis{URL: u, Opt: opt, Kind: "REDIS_URL"}
		r.ping(t)
		return r
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		return Start(t)
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI: no Redis for this test: set REDIS_URL or put redis-server on PATH")
	}
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.Start(); err != nil {
		t.Fatalf("miniredis: %v", err)
	}
	t.Cleanup(m.Close)
	return &Redis{URL: "redis://" + m.Addr(), Opt: asynq.RedisClientOpt{Addr: m.Addr()}, Kind: "miniredis"}
}

// Start starts a redis-server of the test's own on a free port, stopped when
// the test ends. Tests that stop and restart Redis use it. Outside CI it
// skips when redis-server is not on PATH; in CI it fails.
func Start(t testing.TB) *Redis { return StartWith(t, Server{}) }

// Server says how StartWith runs a redis-server.
type Server struct {
	// Args are added to redis-server's command line (e.g. "--maxmemory", "1").
	Args []string
	// ACL, if set, are the lines of the server's ACL file ("user default
	// off", "user refundd on >pw ~* +@all"); User and Password are then
	// the credentials of URL and Opt.
	ACL            []string
	User, Password string
	// CA, if set, makes the server TLS-only with a certificate CA signed;
	// URL is rediss://, and Opt trusts CA. With ClientAuth the server asks
	// for a client certificate (tls-auth-clients yes) and Opt presents one.
	CA         *CA
	ClientAuth bool
}

// StartWith starts a redis-server as s says, on a free port, stopped when
// the test ends. Outside CI it skips when redis-server is not on PATH; in
// CI it fails.
func StartWith(t testing.TB, s Server) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: redis-server is not on PATH")
		}
		t.Skip("redis-server not on PATH")
	}
	port, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := newServer(port, t.TempDir())
	r.args = append(r.args, s.Args...)
	if s.ACL != nil {
		f := filepath.Join(r.dir, "users.acl")
		if err := os.WriteFile(f, []byte(strings.Join(s.ACL, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.args = append(r.args, "--aclfile", f)
		o := r.Opt.(asynq.RedisClientOpt)
		o.Username, o.Password = s.User, s.Password
		r.Opt = o
		r.URL = fmt.Sprintf("redis://%s@127.0.0.1:%d/0", url.UserPassword(s.User, s.Password), port)
	}
	if s.CA != nil {
		cert, key := s.CA.Issue(t, fmt.Sprintf("redis-%d", port))
		auth := "no"
		if s.ClientAuth {
			auth = "yes"
		}
		r.args = append(r.args, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", cert, "--tls-key-file", key,
			"--tls-ca-cert-file", s.CA.File, "--tls-auth-clients", auth)
		r.URL = "rediss" + strings.TrimPrefix(r.URL, "redis")
		opt, err := redisconn.Open(redisconn.Settings{URL: r.URL, CAFile: s.CA.File})
		if err != nil {
			t.Fatal(err)
		}
		if s.ClientAuth {
			ccert, ckey := s.CA.Issue(t, "refundd-client")
			if opt, err = redisconn.Open(redisconn.Settings{URL: r.URL, CAFile: s.CA.File, CertFile: ccert, KeyFile: ckey}); err != nil {
				t.Fatal(err)
			}
		}
		r.Opt = opt
	}
	r.Restart(t)
	t.Cleanup(r.Stop)
	return r
}

// Port answers the port of a redis-server from Start.
func (r *Redis) Port() int { return r.port }

// Launch starts a redis-server from PATH on a free port outside a test (the
// benchmark command uses it), keeping its files in dir. Stop it when done.
func Launch(dir string) (*Redis, error) {
	port, err := loopback.FreePort()
	if err != nil {
		return nil, err
	}
	r := newServer(port, dir)
	if err := r.launch(); err != nil {
		return nil, err
	}
	return r, nil
}

func newServer(port int, dir string) *Redis {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &Redis{URL: "redis://" + addr + "/0", Opt: asynq.RedisClientOpt{Addr: addr}, Kind: "redis-server", port: port, dir: dir}
}

// Stop kills a redis-server started by Start. Its data is gone.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Restart starts the redis-server again on the same port (after Stop).
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	if r.port == 0 {
		t.Fatal("redistest: Restart needs a Redis from Start")
	}
	if err := r.launch(); err != nil {
		t.Fatal(err)
	}
}

func (r *Redis) launch() error {
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--maxmemory-policy", "noeviction"}, r.args...)
	cmd := exec.Command("redis-server", args...)
	if r.dir != "" {
		if log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			cmd.Stdout = log
			defer log.Close() // the child holds its own descriptor
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %w", err)
	}
	r.cmd = cmd
	if err := r.wait(); err != nil {
		r.Stop()
		return err
	}
	return nil
}

func (r *Redis) ping(t testing.TB) {
	t.Helper()
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
}

// wait answers nil once the server answers PING, or an error after 10s.
func (r *Redis) wait() error {
	c := r.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		if err = c.Ping(ctx).Err(); err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline for the server to listen
	}
	return fmt.Errorf("redis %s not answering: %v (log: %s)", r.Kind, err, filepath.Join(r.dir, "redis.log"))
}

// Client answers a go-redis client for the server; close it.
func (r *Redis) Client() *redis.Client {
	c, ok := redisconn.NewClient(r.Opt).(*redis.Client)
	if !ok {
		panic("redistest: Client needs a Redis server or Sentinel, not a cluster")
	}
	return c
}

// Queue answers a queue name unique to this test and, when the test ends,
// deletes that queue and those named after it (q-notifications, the
// webhook deliveries'), with all their tasks, and every key left for them:
// asynq's (statistics, and task keys DeleteQueue leaves) and refundd's own
// (refundd:…{<queue>}…: the window sweep's lease, deadline-first's turns).
func (r *Redis) Queue(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	q := "test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		insp := asynq.NewInspector(r.Opt)
		defer insp.Close()
		queues, _ := insp.Queues()
		for _, name := range queues {
			if strings.HasPrefix(name, q) {
				_ = insp.DeleteQueue(name, true)
			}
		}
		c := r.Client()
		defer c.Close()
		ctx := context.Background()
		for _, match := range []string{"asynq:{" + q + "*}:*", "refundd:*{" + q + "*}*"} {
			for it := c.Scan(ctx, 0, match, 100).Iterator(); it.Next(ctx); {
				_ = c.Del(ctx, it.Val()).Err()
			}
		}
	})
	return q
}
