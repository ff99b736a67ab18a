package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/testutil"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor.
const SentinelMaster = "refundd"

// Sentinel is a Redis primary, one replica and three sentinels, real
// processes (redis-server, and redis-server --sentinel) on free loopback
// ports, started by StartSentinel and killed when the test ends.
type Sentinel struct {
	// URL reaches the primary through the sentinels:
	// redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/0?master=refundd
	URL string

	mu        sync.Mutex
	servers   map[int]*exec.Cmd // redis-server by port
	sentinels []int
	dir       string
}

// StartSentinel starts the processes and waits until the sentinels see the
// replica and each other. Outside CI it skips when redis-server is not on
// PATH; in CI it fails.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: redis-server is not on PATH (the Sentinel test runs it with --sentinel)")
		}
		t.Skip("redis-server not on PATH")
	}
	s := &Sentinel{servers: map[int]*exec.Cmd{}, dir: t.TempDir()}
	t.Cleanup(s.stop)
	primary, replica := testutil.FreePort(t), testutil.FreePort(t)
	s.startServer(t, primary)
	s.startServer(t, replica, "--replicaof", "127.0.0.1", strconv.Itoa(primary))
	var addrs []string
	for i := range 3 {
		port := testutil.FreePort(t)
		conf := filepath.Join(s.dir, fmt.Sprintf("sentinel-%d.conf", i))
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 4000\n"+
			"sentinel parallel-syncs %s 1\n", port, s.dir, SentinelMaster, primary, SentinelMaster, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", conf, "--sentinel")
		cmd.Stdout, cmd.Stderr = s.logFile(t, fmt.Sprintf("sentinel-%d.log", i)), nil
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server --sentinel: %v", err)
		}
		s.mu.Lock()
		s.servers[port] = cmd
		s.sentinels = append(s.sentinels, port)
		s.mu.Unlock()
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	s.URL = fmt.Sprintf("redis-sentinel://%s/0?master=%s", strings.Join(addrs, ","), SentinelMaster)
	s.waitReady(t, 30*time.Second)
	return s
}

func (s *Sentinel) logFile(t testing.TB, name string) *os.File {
	f, err := os.Create(filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func (s *Sentinel) startServer(t testing.TB, port int, extra ...string) {
	t.Helper()
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--dbfilename", fmt.Sprintf("dump-%d.rdb", port), "--maxmemory-policy", "noeviction"}, extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout = s.logFile(t, fmt.Sprintf("redis-%d.log", port))
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	s.mu.Lock()
	s.servers[port] = cmd
	s.mu.Unlock()
}

// sentinelDo runs a command on the first sentinel that answers.
func (s *Sentinel) sentinelDo(ctx context.Context, args ...any) (any, error) {
	var err error
	for _, p := range s.sentinels {
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p), MaxRetries: -1})
		var v any
		v, err = c.Do(ctx, args...).Result()
		c.Close()
		if err == nil {
			return v, nil
		}
	}
	return nil, err
}

// waitReady waits until the sentinels agree on a primary that has a
// connected replica and know each other (a failover needs their quorum).
func (s *Sentinel) waitReady(t testing.TB, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	testutil.Eventually(t, within, "the sentinels to see the replica and each other (logs in "+s.dir+")", func() bool {
		for _, p := range s.sentinels {
			c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", p), MaxRetries: -1})
			others, err1 := c.Do(ctx, "SENTINEL", "SENTINELS", SentinelMaster).Slice()
			replicas, err2 := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
			c.Close()
			if err1 != nil || err2 != nil || len(others) < 2 || !hasHealthyReplica(replicas) {
				return false
			}
		}
		return true
	})
}

func hasHealthyReplica(replicas []any) bool {
	for _, r := range replicas {
		fields := map[string]string{}
		switch v := r.(type) {
		case map[any]any:
			for k, x := range v {
				fields[fmt.Sprint(k)] = fmt.Sprint(x)
			}
		case []any:
			for i := 0; i+1 < len(v); i += 2 {
				fields[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
			}
		}
		if fields["flags"] == "slave" && fields["master-link-status"] == "ok" {
			return true
		}
	}
	return false
}

// PrimaryPort answers the port of the primary the sentinels name now.
func (s *Sentinel) PrimaryPort(t testing.TB) int {
	t.Helper()
	v, err := s.sentinelDo(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
	if err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	addr, _ := v.([]any)
	if len(addr) != 2 {
		t.Fatalf("sentinel: master address %v", v)
	}
	port, _ := strconv.Atoi(fmt.Sprint(addr[1]))
	return port
}

// Failover asks the sentinels for a failover (SENTINEL FAILOVER) and waits
// until they name a new primary.
func (s *Sentinel) Failover(t testing.TB) (newPrimary int) {
	t.Helper()
	old := s.PrimaryPort(t)
	if _, err := s.sentinelDo(context.Background(), "SENTINEL", "FAILOVER", SentinelMaster); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	return s.waitNewPrimary(t, old)
}

// KillPrimary kills the primary (SIGKILL) and waits until the sentinels
// promote the replica. The killed server stays down.
func (s *Sentinel) KillPrimary(t testing.TB) (newPrimary int) {
	t.Helper()
	old := s.PrimaryPort(t)
	s.mu.Lock()
	cmd := s.servers[old]
	delete(s.servers, old)
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return s.waitNewPrimary(t, old)
}

func (s *Sentinel) waitNewPrimary(t testing.TB, old int) int {
	t.Helper()
	var p int
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("a new primary after losing %d (logs in %s)", old, s.dir), func() bool {
		p = s.PrimaryPort(t)
		return p != old
	})
	return p
}

func (s *Sentinel) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, cmd := range s.servers {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		delete(s.servers, port)
	}
}
