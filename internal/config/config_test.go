package config

import (
	"github.com/hibiken/asynq"

	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/worker"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func base() map[string]string {
	return map[string]string{"REDIS_URL": "redis://:redispass@127.0.0.1:6390/2", "TCO_MERCHANT_CODE": "M", "TCO_SECRET_KEY": "hunter2hunter2"}
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(envOf(base()))
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL != "https://api.2checkout.com/rpc/6.0/" || c.HashAlgo != "md5" || c.Queue != "refunds" || c.Concurrency != 10 ||
		c.OpsAddr != "127.0.0.1:8080" || c.LogFormat != "json" || c.SafetyMargin.String() != "1m0s" || c.SecretKey.Reveal() != "hunter2hunter2" {
		t.Fatalf("%+v", c)
	}
	if p := c.Policy(); p.RetryAfterMax != 0 || c.UnknownAttempts != 3 || c.SweepInterval != 20*time.Second {
		t.Fatalf("policy %+v, unknown attempts %d, sweep %v", p, c.UnknownAttempts, c.SweepInterval)
	}
	if c.Fetchers != 1 || c.PollInterval != time.Second || c.Policy().LastRetryLead != worker.LeadFor(worker.DefaultDelayedTaskCheckInterval, time.Second) {
		t.Fatalf("fetchers %d, poll %v, lead %v", c.Fetchers, c.PollInterval, c.Policy().LastRetryLead)
	}
	// The last retry's lead follows the poll interval: a slower poll needs
	// a retry due earlier.
	if c.EnqueueRate != 50 || c.AuthFailures != 10 || c.AuthFailureRefill != 6*time.Second || c.ClockSkewMax != 5*time.Second {
		t.Fatalf("trust limits: enqueue %d, auth %d per %v, skew %v", c.EnqueueRate, c.AuthFailures, c.AuthFailureRefill, c.ClockSkewMax)
	}
	env := base()
	env["WORKER_POLL_INTERVAL"] = "50ms"
	if c, err := Load(envOf(env)); err != nil || c.Policy().LastRetryLead != worker.LeadFor(worker.DefaultDelayedTaskCheckInterval, 50*time.Millisecond) {
		t.Fatalf("WORKER_POLL_INTERVAL: %v %v", c, err)
	}
	env = base()
	env["RETRY_AFTER_MAX"] = "30s"
	if c, err := Load(envOf(env)); err != nil || c.Policy().RetryAfterMax != 30*time.Second {
		t.Fatalf("RETRY_AFTER_MAX: %v %v", c, err)
	}
	eff := c.Effective(envOf(base()))
	if eff["TCO_SECRET_KEY"] != "[REDACTED]" || strings.Contains(eff["REDIS_URL"], "redispass") {
		t.Fatalf("effective config leaks: %v", eff)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	_ = os.WriteFile(keyFile, []byte("filesecret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)
	cases := []struct {
		name string
		set  map[string]string
		want string // the error must start with this
	}{
		{"no redis", map[string]string{"REDIS_URL": ""}, "REDIS_URL is required"},
		{"bad redis", map[string]string{"REDIS_URL": "http://:pw@x"}, "REDIS_URL is not a redis://"},
		{"no merchant", map[string]string{"TCO_MERCHANT_CODE": ""}, "TCO_MERCHANT_CODE is required"},
		{"no secret", map[string]string{"TCO_SECRET_KEY": ""}, "TCO_SECRET_KEY_FILE or TCO_SECRET_KEY is required"},
		{"both secrets", map[string]string{"TCO_SECRET_KEY_FILE": keyFile}, "TCO_SECRET_KEY_FILE and TCO_SECRET_KEY are both set"},
		{"missing secret file", map[string]string{"TCO_SECRET_KEY": "", "TCO_SECRET_KEY_FILE": "/nonexistent/k"}, "TCO_SECRET_KEY_FILE cannot be read"},
		{"empty secret file", map[string]string{"TCO_SECRET_KEY": "", "TCO_SECRET_KEY_FILE": empty}, "TCO_SECRET_KEY_FILE names an empty file"},
		{"bad algo", map[string]string{"TCO_HASH_ALGO": "sha1"}, "TCO_HASH_ALGO must be md5 or sha256"},
		{"plain http remote", map[string]string{"TCO_API_URL": "http://sandbox.internal:9090/rpc/6.0/"}, "TCO_API_URL refused: plain http"},
		{"http to 2checkout even when allowed", map[string]string{"TCO_ALLOW_HTTP": "true", "TCO_API_URL": "http://api.2checkout.com/rpc/6.0/"}, "TCO_API_URL refused: 2Checkout is only ever called over https"},
		{"bad concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY must be"},
		{"more fetchers than workers", map[string]string{"WORKER_CONCURRENCY": "2", "WORKER_FETCHERS": "3"}, "WORKER_FETCHERS 3 is more than WORKER_CONCURRENCY 2"},
		{"bad poll interval", map[string]string{"WORKER_POLL_INTERVAL": "0s"}, "WORKER_POLL_INTERVAL must be a positive duration"},
		{"bad duration", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT must be a positive duration"},
		{"bad retry-after max", map[string]string{"RETRY_AFTER_MAX": "-1s"}, "RETRY_AFTER_MAX must be a positive duration"},
		{"bad unknown attempts", map[string]string{"UNKNOWN_ERROR_ATTEMPTS": "0"}, "UNKNOWN_ERROR_ATTEMPTS must be a whole number"},
		{"bad sweep interval", map[string]string{"WINDOW_SWEEP_INTERVAL": "often"}, "WINDOW_SWEEP_INTERVAL must be a positive duration"},
		{"bad ops addr", map[string]string{"OPS_ADDR": "8080"}, "OPS_ADDR must be host:port"},
		{"allowed host with scheme", map[string]string{"OPS_ALLOWED_HOSTS": "refundd.internal,https://ops.example.com"}, "OPS_ALLOWED_HOSTS must be comma-separated host names"},
		{"allowed host with port", map[string]string{"OPS_ALLOWED_HOSTS": "ops.example.com:8080"}, "OPS_ALLOWED_HOSTS must be comma-separated host names"},
		{"bad level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL must be"},
		{"bad format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or console"},
		{"bad ca", map[string]string{"TCO_CA_FILE": keyFile}, "TCO_CA_FILE holds no PEM certificate"},
		{"dashboard user alone", map[string]string{"DASHBOARD_USER": "ops"}, "DASHBOARD_PASSWORD and DASHBOARD_USER must be set together"},
		{"dashboard password short", map[string]string{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "hunter2"}, "DASHBOARD_PASSWORD must be at least 12"},
		{"read only not bool", map[string]string{"DASHBOARD_READ_ONLY": "maybe"}, "DASHBOARD_READ_ONLY must be true or false"},
		{"prometheus not a URL", map[string]string{"PROMETHEUS_URL": "prometheus:9090"}, "PROMETHEUS_URL must be an http or https URL"},
		{"prometheus other scheme", map[string]string{"PROMETHEUS_URL": "ftp://prometheus:9090"}, "PROMETHEUS_URL must be an http or https URL"},
		{"prometheus no host", map[string]string{"PROMETHEUS_URL": "http:///api"}, "PROMETHEUS_URL must name a host"},
		{"prometheus credentials", map[string]string{"PROMETHEUS_URL": "https://ops:hunter2hunter2@prometheus:9090"}, "PROMETHEUS_URL must not hold credentials"},
		{"prometheus query", map[string]string{"PROMETHEUS_URL": "http://prometheus:9090/?x=1"}, "PROMETHEUS_URL must not have a query or fragment"},
		{"prometheus junk", map[string]string{"PROMETHEUS_URL": "http://[::1"}, "PROMETHEUS_URL must be a URL"},
		{"api token short", map[string]string{"API_TOKEN": "hunter2hunter2"}, "API_TOKEN must be at least 16"},
		{"delays inverted", map[string]string{"RETRY_BASE_DELAY": "10m"}, "RETRY_MAX_DELAY 5m0s is shorter"},
		{"bad rate", map[string]string{"TCO_RATE_LIMIT": "-1"}, "TCO_RATE_LIMIT must be a whole number"},
		{"fractional rate", map[string]string{"TCO_RATE_LIMIT": "2.5"}, "TCO_RATE_LIMIT must be a whole number"},
		{"zero burst", map[string]string{"TCO_RATE_BURST": "0"}, "TCO_RATE_BURST must be a whole number from 1"},
		{"negative enqueue rate", map[string]string{"API_ENQUEUE_RATE": "-5"}, "API_ENQUEUE_RATE must be a whole number from 0"},
		{"zero auth failures", map[string]string{"OPS_AUTH_FAILURES": "0"}, "OPS_AUTH_FAILURES must be a whole number from 1"},
		{"bad refill", map[string]string{"OPS_AUTH_FAILURE_REFILL": "soon"}, "OPS_AUTH_FAILURE_REFILL must be a positive duration"},
		{"negative skew", map[string]string{"CLOCK_SKEW_MAX": "-1s"}, "CLOCK_SKEW_MAX must be a duration"},
		{"sentinel without master", map[string]string{"REDIS_URL": "redis-sentinel://:redispass@127.0.0.1:26379"}, "REDIS_URL (redis-sentinel) needs ?master="},
		{"redis CA without TLS", map[string]string{"REDIS_CA_FILE": keyFile}, "REDIS_CA_FILE is set but REDIS_URL is not a TLS URL"},
		{"redis CA junk", map[string]string{"REDIS_URL": "rediss://:redispass@127.0.0.1:6390", "REDIS_CA_FILE": keyFile}, "REDIS_CA_FILE holds no PEM certificate"},
		{"redis CA missing", map[string]string{"REDIS_URL": "rediss://:redispass@127.0.0.1:6390", "REDIS_CA_FILE": "/nonexistent/ca"}, "REDIS_CA_FILE cannot be read"},
		{"redis cert alone", map[string]string{"REDIS_URL": "rediss-cluster://127.0.0.1:7000", "REDIS_CERT_FILE": keyFile}, "REDIS_CERT_FILE is set without REDIS_KEY_FILE"},
		{"redis cluster db", map[string]string{"REDIS_URL": "redis-cluster://:redispass@127.0.0.1:7000/2"}, "REDIS_URL (redis-cluster) has no database but 0"},
		{"margin eats window", map[string]string{"WINDOW_SAFETY_MARGIN": "2h"}, "WINDOW_SAFETY_MARGIN 2h0m0s leaves no time"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := base()
			for k, v := range tc.set {
				env[k] = v
			}
			_, err := Load(envOf(env))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q…", err, tc.want)
			}
			if s := err.Error(); strings.Contains(s, "hunter2") || strings.Contains(s, "redispass") || strings.Contains(s, "filesecret") || strings.Contains(s, "\n") {
				t.Fatalf("error leaks a secret or spans lines: %q", s)
			}
		})
	}
	env := base()
	env["TCO_SECRET_KEY"], env["TCO_SECRET_KEY_FILE"] = "", keyFile
	c, err := Load(envOf(env))
	if err != nil || c.SecretKey.Reveal() != "filesecret" {
		t.Fatalf("secret file: %v", err)
	}
}

// The rows' order is only the order of --help: read in reverse, they give
// the same configuration and the same errors.
func TestRowsAreIndependent(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	_ = os.WriteFile(keyFile, []byte("filesecret\n"), 0o600)
	reversed := slices.Clone(Vars)
	slices.Reverse(reversed)
	for _, set := range []map[string]string{
		{},
		{"TCO_ALLOW_HTTP": "true", "TCO_API_URL": "http://sandbox.internal:9090/rpc/6.0/"},
		{"TCO_API_URL": "http://sandbox.internal:9090/rpc/6.0/"},
		{"TCO_SECRET_KEY": "", "TCO_SECRET_KEY_FILE": keyFile},
		{"TCO_SECRET_KEY_FILE": keyFile},
		{"TCO_SECRET_KEY": ""},
		{"DASHBOARD_USER": "ops", "DASHBOARD_PASSWORD": "correct horse battery"},
		{"DASHBOARD_USER": "ops"},
		{"DASHBOARD_PASSWORD": "correct horse battery"},
	} {
		env := base()
		maps.Copy(env, set)
		want, wantErr := load(envOf(env), Vars)
		got, gotErr := load(envOf(env), reversed)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Errorf("%v: in reverse order %+v, %v; in order %+v, %v", set, got, gotErr, want, wantErr)
		}
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	u := Usage()
	for _, v := range Vars {
		if !strings.Contains(u, v.Name) {
			t.Errorf("--help misses %s", v.Name)
		}
	}
}

func TestOpsAllowedHosts(t *testing.T) {
	env := base()
	env["OPS_ALLOWED_HOSTS"] = " refundd.internal, Ops.Example.com ,,"
	c, err := Load(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.OpsAllowedHosts, ",") != "refundd.internal,ops.example.com" {
		t.Fatalf("%q", c.OpsAllowedHosts)
	}
}

func TestPrometheusURL(t *testing.T) {
	c, err := Load(envOf(base()))
	if err != nil || c.PrometheusURL != "" {
		t.Fatalf("default: %q %v", c.PrometheusURL, err)
	}
	for _, v := range []string{"http://127.0.0.1:9090", "https://prometheus.internal/prom/"} {
		env := base()
		env["PROMETHEUS_URL"] = v
		if c, err := Load(envOf(env)); err != nil || c.PrometheusURL != v {
			t.Fatalf("%s: %+v %v", v, c, err)
		}
	}
}

// RedactURL never shows a password, even in a URL it cannot make sense of.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw-secret@127.0.0.1:6379/0": "redis://:xxxxx@127.0.0.1:6379/0",
		"redis://127.0.0.1:6379/0":            "redis://127.0.0.1:6379/0",
		"redis//:pw-secret@127.0.0.1:6379":    "[malformed URL, not shown]",
		"redis:pw-secret@127.0.0.1":           "[malformed URL, not shown]",
		"redis://:pw-secret@[::1":             "[malformed URL, not shown]",
		"127.0.0.1:6379?password=pw-secret":   "[malformed URL, not shown]",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateAndSentinel(t *testing.T) {
	env := base()
	c, err := Load(envOf(env))
	if err != nil || c.RateLimit != 0 || c.RateBurst != 1 {
		t.Fatalf("defaults: rate %d burst %d %v", c.RateLimit, c.RateBurst, err)
	}
	env["TCO_RATE_LIMIT"], env["TCO_RATE_BURST"] = "25", "3"
	env["REDIS_URL"] = "redis-sentinel://:redispass@127.0.0.1:26379,127.0.0.1:26380/2?master=refunds"
	c, err = Load(envOf(env))
	if err != nil || c.RateLimit != 25 || c.RateBurst != 3 {
		t.Fatalf("rate %d burst %d %v", c.RateLimit, c.RateBurst, err)
	}
	if eff := c.Effective(envOf(env))["REDIS_URL"]; strings.Contains(eff, "redispass") || !strings.Contains(eff, "26380") {
		t.Fatalf("effective REDIS_URL %q", eff)
	}
}

// The webhook URL's path, query and user info often hold a token: the
// effective configuration shows its scheme and host only.
func TestNotifyURLRedacted(t *testing.T) {
	env := base()
	env["NOTIFY_URL"] = "https://hook:pw-in-url@hooks.example.com/T000/B000/tok-in-path?key=tok-in-query"
	env["NOTIFY_SECRET"] = "whsec-0123456789abcdef"
	c, err := Load(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Effective(envOf(env))["NOTIFY_URL"]
	if got != "https://hooks.example.com/[path not shown]" {
		t.Fatalf("effective NOTIFY_URL %q", got)
	}
}

func TestRedisForms(t *testing.T) {
	env := base()
	env["REDIS_URL"] = "redis-cluster://refundd:redispass@10.0.0.1:7000,10.0.0.2:7000"
	c, err := Load(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	o, ok := c.Redis.(asynq.RedisClusterClientOpt)
	if !ok || o.Username != "refundd" || len(o.Addrs) != 2 {
		t.Fatalf("cluster %#v", c.Redis)
	}
	if eff := c.Effective(envOf(env))["REDIS_URL"]; strings.Contains(eff, "redispass") || !strings.Contains(eff, "10.0.0.2:7000") {
		t.Fatalf("effective REDIS_URL %q", eff)
	}
	if c.OutcomeRetention != 30*24*time.Hour {
		t.Fatalf("OUTCOME_RETENTION default %v", c.OutcomeRetention)
	}
}
