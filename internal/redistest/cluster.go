package redistest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/testutil"
)

// Cluster is a Redis Cluster of six redis-servers — three primaries, each
// with one replica — on free loopback ports, started by StartCluster and
// killed when the test ends.
type Cluster struct {
	// URL reaches it: redis-cluster://127.0.0.1:p1,…,127.0.0.1:p6
	URL string

	ports      []int
	dir        string
	user, pass string // the helper's own login (Server.User, Password)
	mu         sync.Mutex
	servers    []*exec.Cmd
}

// StartCluster starts the six servers, joins them (redis-cli --cluster
// create … --cluster-replicas 1) and waits until every node sees the
// cluster as ok and every primary has its replica in sync. Of s, Args and
// ACL are given to every node; with ACL, User and Password log in the
// helper, the replicas to their primaries, and URL. Outside CI it skips
// when redis-server or redis-cli is not on PATH; in CI it fails.
func StartCluster(t testing.TB, s Server) *Cluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI: %s is not on PATH", bin)
			}
			t.Skipf("%s not on PATH", bin)
		}
	}
	c := &Cluster{dir: t.TempDir(), user: s.User, pass: s.Password}
	t.Cleanup(c.stop)
	extra := slices.Clone(s.Args)
	if s.ACL != nil {
		f := filepath.Join(c.dir, "users.acl")
		if err := os.WriteFile(f, []byte(strings.Join(s.ACL, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, "--aclfile", f, "--masteruser", s.User, "--masterauth", s.Password)
	}
	var addrs []string
	for i := range 6 {
		port, bus := testutil.FreePort(t), testutil.FreePort(t)
		log, err := os.Create(filepath.Join(c.dir, fmt.Sprintf("redis-%d.log", port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", c.dir, "--dbfilename", fmt.Sprintf("dump-%d.rdb", port), "--maxmemory-policy", "noeviction",
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus), "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i),
			"--cluster-node-timeout", "2000")
		cmd.Args = append(cmd.Args, extra...)
		cmd.Stdout = log
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v", err)
		}
		c.mu.Lock()
		c.servers = append(c.servers, cmd)
		c.mu.Unlock()
		c.ports = append(c.ports, port)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	for _, p := range c.ports {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("redis-server :%d to answer", p), func() bool {
			n := c.node(p)
			defer n.Close()
			return n.Ping(context.Background()).Err() == nil
		})
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")
	if s.ACL != nil {
		args = append(args, "--user", s.User, "--pass", s.Password)
	}
	create := exec.Command("redis-cli", args...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.URL = "redis-cluster://" + strings.Join(addrs, ",")
	if s.ACL != nil {
		c.URL = "redis-cluster://" + url.UserPassword(s.User, s.Password).String() + "@" + strings.Join(addrs, ",")
	}
	c.waitHealthy(t)
	return c
}

// Ports answers the nodes' ports.
func (c *Cluster) Ports() []int { return slices.Clone(c.ports) }

// Node answers a client of one node (no cluster redirection) logged in as
// the helper; close it.
func (c *Cluster) Node(port int) *redis.Client { return c.node(port) }

// node answers a client of one node (no cluster redirection); close it.
func (c *Cluster) node(port int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Username: c.user, Password: c.pass, MaxRetries: -1})
}

func (c *Cluster) do(port int, args ...any) (any, error) {
	n := c.node(port)
	defer n.Close()
	return n.Do(context.Background(), args...).Result()
}

// waitHealthy waits until every node says cluster_state:ok and agrees on
// the owner of every slot, and every replica's link to its primary is up.
func (c *Cluster) waitHealthy(t testing.TB) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the cluster to be ok on every node (logs in "+c.dir+")", func() bool {
		var first string
		for _, p := range c.ports {
			info, err := c.do(p, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(fmt.Sprint(info), "cluster_state:ok") {
				return false
			}
			owners, err := c.owners(p)
			if err != nil {
				return false
			}
			if first == "" {
				first = owners
			} else if owners != first {
				return false
			}
			repl, err := c.do(p, "INFO", "replication")
			if err != nil {
				return false
			}
			s := fmt.Sprint(repl)
			if strings.Contains(s, "role:slave") && !strings.Contains(s, "master_link_status:up") {
				return false
			}
			if strings.Contains(s, "role:master") && !strings.Contains(s, "connected_slaves:1") {
				return false
			}
		}
		return true
	})
}

// owners answers node p's view of which primary, and replica, serve which
// slots.
func (c *Cluster) owners(p int) (string, error) {
	n := c.node(p)
	defer n.Close()
	shards, err := n.ClusterShards(context.Background()).Result()
	if err != nil {
		return "", err
	}
	var out []string
	for _, s := range shards {
		primary, replica := roles(s)
		if len(s.Slots) == 0 {
			continue
		}
		if primary == 0 || replica == 0 {
			return "", fmt.Errorf("slots %v: primary :%d, replica :%d, want both online", s.Slots, primary, replica)
		}
		out = append(out, fmt.Sprintf("%v:%d>%d", s.Slots, primary, replica))
	}
	sort.Strings(out)
	return strings.Join(out, ";"), nil
}

// roles answers the ports of a shard's primary and of its online replica.
func roles(s redis.ClusterShard) (primary, replica int) {
	for _, nd := range s.Nodes {
		switch {
		case nd.Role == "master":
			primary = int(nd.Port)
		case nd.Role == "replica" && nd.Health == "online":
			replica = int(nd.Port)
		}
	}
	return primary, replica
}

// Primary answers the port of the primary that serves key's slot, and of
// its replica.
func (c *Cluster) Primary(t testing.TB, key string) (primary, replica int) {
	t.Helper()
	primary, replica, err := c.primary(key)
	if err != nil {
		t.Fatal(err)
	}
	return primary, replica
}

func (c *Cluster) primary(key string) (primary, replica int, err error) {
	n := c.node(c.ports[0])
	defer n.Close()
	ctx := context.Background()
	slot, err := n.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return 0, 0, err
	}
	shards, err := n.ClusterShards(ctx).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, s := range shards {
		for _, r := range s.Slots {
			if r.Start <= slot && slot <= r.End {
				if primary, replica = roles(s); primary != 0 && replica != 0 {
					return primary, replica, nil
				}
			}
		}
	}
	return 0, 0, fmt.Errorf("no primary with a replica for slot %d: %v", slot, shards)
}

// Failover makes the replica of key's primary the primary (CLUSTER
// FAILOVER, the coordinated manual failover: the replica catches up before
// it takes over) and waits until every node agrees and the old primary
// replicates from it.
func (c *Cluster) Failover(t testing.TB, key string) (oldPrimary, newPrimary int) {
	t.Helper()
	oldPrimary, newPrimary = c.Primary(t, key)
	if _, err := c.do(newPrimary, "CLUSTER", "FAILOVER"); err != nil {
		t.Fatalf("CLUSTER FAILOVER on :%d: %v", newPrimary, err)
	}
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf(":%d to take over from :%d", newPrimary, oldPrimary), func() bool {
		p, _, err := c.primary(key)
		return err == nil && p == newPrimary
	})
	c.waitHealthy(t)
	return oldPrimary, newPrimary
}

func (c *Cluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range c.servers {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	c.servers = nil
}
