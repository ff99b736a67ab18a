package redisconn

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func TestParse(t *testing.T) {
	cases := []struct {
		url  string
		want asynq.RedisConnOpt
	}{
		{"redis://127.0.0.1:6379", asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}},
		{"redis://:pw@127.0.0.1:6379/3", asynq.RedisClientOpt{Addr: "127.0.0.1:6379", Password: "pw", DB: 3}},
		{"redis-socket://:pw@/run/redis.sock?db=2", asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis.sock", Password: "pw", DB: 2}},
		{"redis-sentinel://127.0.0.1:26379,127.0.0.1:26380/2?master=mymaster",
			asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"127.0.0.1:26379", "127.0.0.1:26380"}, DB: 2}},
		{"redis-sentinel://:pw@s1:26379,s2:26379,s3:26379?master=m",
			asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379", "s2:26379", "s3:26379"}, SentinelPassword: "pw", Password: "pw"}},
		{"redis://refundd:p%40ss@10.0.0.1:6380/1", asynq.RedisClientOpt{Addr: "10.0.0.1:6380", Username: "refundd", Password: "p@ss", DB: 1}},
		{"redis://redis.internal", asynq.RedisClientOpt{Addr: "redis.internal:6379"}},
		{"redis://[::1]:7000", asynq.RedisClientOpt{Addr: "[::1]:7000"}},
		{"redis-socket://refundd:pw@/run/redis.sock", asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis.sock", Username: "refundd", Password: "pw"}},
		{"redis-sentinel://refundd:pw@s1:26379,s2:26379/3?master=m",
			asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379", "s2:26379"}, SentinelUsername: "refundd", SentinelPassword: "pw",
				Username: "refundd", Password: "pw", DB: 3}},
		{"redis-cluster://refundd:pw@n1:7000,n2:7001,n3:7002",
			asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Username: "refundd", Password: "pw"}},
		{"redis-cluster://n1:7000/0", asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000"}}},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			got, err := Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			switch w := tc.want.(type) {
			case asynq.RedisClientOpt:
				g, ok := got.(asynq.RedisClientOpt)
				if !ok || g.Addr != w.Addr || g.Network != w.Network || g.Username != w.Username || g.Password != w.Password || g.DB != w.DB || g.TLSConfig != nil {
					t.Fatalf("got %#v, want %#v", got, w)
				}
			case asynq.RedisFailoverClientOpt:
				g, ok := got.(asynq.RedisFailoverClientOpt)
				if !ok || g.MasterName != w.MasterName || strings.Join(g.SentinelAddrs, ",") != strings.Join(w.SentinelAddrs, ",") ||
					g.DB != w.DB || g.Password != w.Password || g.SentinelPassword != w.SentinelPassword ||
					g.Username != w.Username || g.SentinelUsername != w.SentinelUsername {
					t.Fatalf("got %#v, want %#v", got, w)
				}
			case asynq.RedisClusterClientOpt:
				g, ok := got.(asynq.RedisClusterClientOpt)
				if !ok || strings.Join(g.Addrs, ",") != strings.Join(w.Addrs, ",") || g.Username != w.Username || g.Password != w.Password || g.TLSConfig != nil {
					t.Fatalf("got %#v, want %#v", got, w)
				}
			}
		})
	}
}

func TestParseTLS(t *testing.T) {
	opt, err := Parse("rediss://:pw@redis.example.test:6380/1")
	if err != nil {
		t.Fatal(err)
	}
	o := opt.(asynq.RedisClientOpt)
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "redis.example.test" || o.TLSConfig.InsecureSkipVerify || o.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS %#v", o.TLSConfig)
	}
	if c, ok := NewClient(o).(*redis.Client); !ok || c.Options().TLSConfig != o.TLSConfig {
		t.Fatal("client without the TLS config")
	}
}

func TestParseRejects(t *testing.T) {
	for url, want := range map[string]string{
		"":                                 "empty",
		"http://127.0.0.1:6379":            "scheme",
		"redis-sentinel://127.0.0.1:26379": "master",
		"redis-sentinel://:secretpw@h:1/x?master=m":   "database",
		"redis-sentinel://h1,h2?master=m":             "host:port",
		"redis://":                                    "host:port",
		"redis://:secretpw@h:99999":                   "port",
		"redis://:secretpw@h:1/x":                     "database",
		"redis://:secretpw@h:1/0?protocol=3":          "query",
		"redis-cluster://:secretpw@h:1/2":             "database",
		"redis-cluster://:secretpw@h:1,h2":            "URL",
		"redis-cluster://:secretpw@h1:1,:2":           "host",
		"redis-cluster://:secretpw@":                  "host:port",
		"redis-sentinel://:secretpw@h:1?master=m&x=1": "query parameter",
		"redis-socket://:secretpw@host/x":             "redis-socket",
		"redis-socket://:secretpw@/x?db=y":            "database",
		"redis://:secret pw@h:1":                      "URL",
	} {
		_, err := Parse(url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error about %s", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%q: password in error", url)
		}
	}
}

func TestNewClientKinds(t *testing.T) {
	opt, _ := Parse("redis-sentinel://:pw@127.0.0.1:26379/4?master=m")
	c := NewClient(opt)
	defer c.Close()
	if _, ok := c.(*redis.Client); !ok {
		t.Fatalf("sentinel client %T", c)
	}
	opt, _ = Parse("redis://127.0.0.1:6379/5")
	c2 := NewClient(opt)
	defer c2.Close()
	if o := c2.(*redis.Client).Options(); o.DB != 5 || !o.ContextTimeoutEnabled {
		t.Fatalf("options %+v", o)
	}
}

func TestParseClusterTLS(t *testing.T) {
	opt, err := Parse("rediss-cluster://refundd:pw@n1.internal:7000,n2.internal:7000")
	if err != nil {
		t.Fatal(err)
	}
	o := opt.(asynq.RedisClusterClientOpt)
	// Each node is verified under its own name: no one ServerName.
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "" || o.TLSConfig.InsecureSkipVerify || o.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS %#v", o.TLSConfig)
	}
	c := NewClient(o)
	defer c.Close()
	cc, ok := c.(*redis.ClusterClient)
	if !ok || cc.Options().TLSConfig != o.TLSConfig || cc.Options().Username != "refundd" || !cc.Options().ContextTimeoutEnabled {
		t.Fatalf("cluster client %T", c)
	}
}
