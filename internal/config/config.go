// Package config reads refundd's configuration from the environment. One
// table (Vars) names every variable, its default and meaning; it drives
// parsing, `refundd --help` and the redacted effective-configuration log.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Config is refundd's effective configuration.
type Config struct {
	RedisURL        string
	Redis           asynq.RedisConnOpt
	APIURL          string
	MerchantCode    string
	SecretKey       rpcclient.Secret
	HashAlgo        string
	AllowHTTP       bool
	RootCAs         *x509.CertPool // nil: the system's
	CAFile          string
	RequestTimeout  time.Duration
	RateLimit       int // requests/s to 2Checkout, fleet-wide; 0: none
	RateBurst       int
	Queue           string
	Concurrency     int
	ShutdownTimeout time.Duration
	SafetyMargin    time.Duration
	RetryBaseDelay  time.Duration
	RetryMaxDelay   time.Duration
	OpsAddr         string
	LogLevel        string
	LogFormat       string
	// The ops server's dashboard and producer API.
	DashboardUser     string
	DashboardPassword rpcclient.Secret
	DashboardReadOnly bool
	APIToken          rpcclient.Secret
}

// Var is one environment variable refundd reads.
type Var struct {
	Name    string
	Default string
	Help    string
	Secret  bool
	set     func(c *Config, v string) error
}

// Vars lists every variable, in the order --help shows them.
var Vars = []Var{
	{Name: "REDIS_URL", Help: "Redis of the queue: redis://[:password@]host:port[/db], rediss:// for TLS, redis-sentinel://[:password@]host1:port,host2:port[/db]?master=name. Required (not in demo)",
		set: func(c *Config, v string) error {
			if v == "" {
				return errors.New("is required (e.g. redis://127.0.0.1:6379/0)")
			}
			opt, err := redisconn.Parse(v)
			if err != nil {
				return err
			}
			c.RedisURL, c.Redis = v, opt
			return nil
		}},
	{Name: "TCO_ALLOW_HTTP", Default: "false", Help: "true: allow plain http to a non-loopback TCO_API_URL (a sandbox in another container; never 2Checkout itself)",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			c.AllowHTTP = b
			return nil
		}},
	{Name: "TCO_API_URL", Default: rpcclient.DefaultURL, Help: "2Checkout JSON-RPC 6.0 endpoint (plain http only to a loopback sandbox, or with TCO_ALLOW_HTTP)",
		set: func(c *Config, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				return errors.New("is not an http(s) URL")
			}
			if err := rpcclient.CheckURL(u, c.AllowHTTP); err != nil {
				return fmt.Errorf("refused: %v", err)
			}
			c.APIURL = v
			return nil
		}},
	{Name: "TCO_MERCHANT_CODE", Help: "2Checkout merchant code. Required",
		set: func(c *Config, v string) error {
			if v == "" {
				return errors.New("is required")
			}
			c.MerchantCode = v
			return nil
		}},
	{Name: "TCO_SECRET_KEY", Secret: true, Help: "2Checkout secret key. This or TCO_SECRET_KEY_FILE is required",
		set: func(c *Config, v string) error { c.SecretKey = rpcclient.Secret(v); return nil }},
	{Name: "TCO_SECRET_KEY_FILE", Help: "file holding the secret key (trailing newline ignored)",
		set: func(c *Config, v string) error {
			if v == "" {
				if c.SecretKey == "" {
					return errors.New("or TCO_SECRET_KEY is required")
				}
				return nil
			}
			if c.SecretKey != "" {
				return errors.New("and TCO_SECRET_KEY are both set; set one")
			}
			b, err := os.ReadFile(v)
			if err != nil {
				return fmt.Errorf("cannot be read: %v", unwrapPath(err))
			}
			s := strings.TrimRight(string(b), "\r\n")
			if s == "" {
				return errors.New("names an empty file")
			}
			c.SecretKey = rpcclient.Secret(s)
			return nil
		}},
	{Name: "TCO_HASH_ALGO", Default: rpcclient.HashMD5, Help: "login HMAC: md5 or sha256",
		set: func(c *Config, v string) error {
			if v != rpcclient.HashMD5 && v != rpcclient.HashSHA256 {
				return errors.New("must be md5 or sha256")
			}
			c.HashAlgo = v
			return nil
		}},
	{Name: "TCO_CA_FILE", Help: "PEM bundle to verify 2Checkout's certificate (default: the system's roots)",
		set: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			b, err := os.ReadFile(v)
			if err != nil {
				return fmt.Errorf("cannot be read: %v", unwrapPath(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return errors.New("holds no PEM certificate")
			}
			c.RootCAs, c.CAFile = pool, v
			return nil
		}},
	{Name: "TCO_REQUEST_TIMEOUT", Default: "15s", Help: "bound on one 2Checkout request",
		set: durationVar(func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{Name: "TCO_RATE_LIMIT", Default: "0", Help: "requests per second to 2Checkout for all replicas together (shared through Redis, login included); 0: no limit",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 100000 {
				return errors.New("must be a whole number from 0 (no limit) to 100000")
			}
			c.RateLimit = n
			return nil
		}},
	{Name: "TCO_RATE_BURST", Default: "1", Help: "requests allowed at once above TCO_RATE_LIMIT (1: evenly spaced)",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100000 {
				return errors.New("must be a whole number from 1 to 100000")
			}
			c.RateBurst = n
			return nil
		}},
	{Name: "REFUND_QUEUE", Default: tasks.DefaultQueue, Help: "asynq queue to process",
		set: func(c *Config, v string) error {
			if v == "" || strings.ContainsAny(v, " \t:") {
				return errors.New("must be a queue name without spaces or ':'")
			}
			c.Queue = v
			return nil
		}},
	{Name: "WORKER_CONCURRENCY", Default: "10", Help: "tasks processed at once",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return errors.New("must be a whole number from 1 to 1000")
			}
			c.Concurrency = n
			return nil
		}},
	{Name: "SHUTDOWN_TIMEOUT", Default: "30s", Help: "on SIGTERM, how long running tasks may finish before going back to pending",
		set: durationVar(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{Name: "WINDOW_SAFETY_MARGIN", Default: "1m", Help: "no request starts later than this before the 2-hour window closes",
		set: durationVar(func(c *Config) *time.Duration { return &c.SafetyMargin })},
	{Name: "RETRY_BASE_DELAY", Default: "2s", Help: "first retry delay (exponential backoff with full jitter)",
		set: durationVar(func(c *Config) *time.Duration { return &c.RetryBaseDelay })},
	{Name: "RETRY_MAX_DELAY", Default: "5m", Help: "cap of the retry delay",
		set: durationVar(func(c *Config) *time.Duration { return &c.RetryMaxDelay })},
	{Name: "OPS_ADDR", Default: "127.0.0.1:8080", Help: "ops HTTP server: /healthz /readyz /metrics /monitoring/ /v1/",
		set: func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("must be host:port")
			}
			c.OpsAddr = v
			return nil
		}},
	{Name: "DASHBOARD_USER", Help: "basic-auth user of the dashboard at /monitoring/ (required, with the password, unless OPS_ADDR is loopback)",
		set: func(c *Config, v string) error { c.DashboardUser = v; return nil }},
	{Name: "DASHBOARD_PASSWORD", Secret: true, Help: "basic-auth password of the dashboard",
		set: func(c *Config, v string) error {
			if (v == "") != (c.DashboardUser == "") {
				return errors.New("and DASHBOARD_USER must be set together")
			}
			if v != "" && len(v) < 12 {
				return errors.New("must be at least 12 characters")
			}
			c.DashboardPassword = rpcclient.Secret(v)
			return nil
		}},
	{Name: "DASHBOARD_READ_ONLY", Default: "false", Help: "true: the dashboard shows but cannot change tasks or queues",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			c.DashboardReadOnly = b
			return nil
		}},
	{Name: "API_TOKEN", Secret: true, Help: "bearer token of the producer API at /v1/ (the API is off without it)",
		set: func(c *Config, v string) error {
			if v != "" && len(v) < 16 {
				return errors.New("must be at least 16 characters")
			}
			c.APIToken = rpcclient.Secret(v)
			return nil
		}},
	{Name: "LOG_LEVEL", Default: "info", Help: "debug, info, warn or error",
		set: func(c *Config, v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return errors.New("must be debug, info, warn or error")
		}},
	{Name: "LOG_FORMAT", Default: "json", Help: "json or console",
		set: func(c *Config, v string) error {
			if v != "json" && v != "console" {
				return errors.New("must be json or console")
			}
			c.LogFormat = v
			return nil
		}},
}

func durationVar(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("must be a positive duration like 30s or 5m")
		}
		*field(c) = d
		return nil
	}
}

func isLoopbackIP(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// unwrapPath drops the path from *os.PathError: the variable already names it.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Load reads the configuration with getenv (os.Getenv in production). Its
// error is one line naming the variable; it never holds a secret's value.
// skip names variables the caller supplies itself (the demo skips REDIS_URL
// and the 2Checkout credentials).
func Load(getenv func(string) string, skip ...string) (*Config, error) {
	c := &Config{}
	skipped := make(map[string]bool, len(skip))
	for _, s := range skip {
		skipped[s] = true
	}
	for _, v := range Vars {
		if skipped[v.Name] {
			continue
		}
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		}
		if err := v.set(c, val); err != nil {
			return nil, fmt.Errorf("%s %s", v.Name, err)
		}
	}
	if c.RetryMaxDelay < c.RetryBaseDelay {
		return nil, fmt.Errorf("RETRY_MAX_DELAY %v is shorter than RETRY_BASE_DELAY %v", c.RetryMaxDelay, c.RetryBaseDelay)
	}
	if c.SafetyMargin >= tasks.Window {
		return nil, fmt.Errorf("WINDOW_SAFETY_MARGIN %v leaves no time in the %v window", c.SafetyMargin, tasks.Window)
	}
	return c, nil
}

// OpsLoopback reports whether OPS_ADDR listens on loopback only.
func (c *Config) OpsLoopback() bool {
	host, _, _ := net.SplitHostPort(c.OpsAddr)
	return host == "localhost" || isLoopbackIP(host)
}

// Policy answers the worker policy the configuration asks for.
func (c *Config) Policy() worker.Policy {
	return worker.Policy{SafetyMargin: c.SafetyMargin, RequestTimeout: c.RequestTimeout, BaseDelay: c.RetryBaseDelay, MaxDelay: c.RetryMaxDelay}
}

// Effective answers the configuration as name → value for the start-up log,
// secrets redacted and the Redis password hidden.
func (c *Config) Effective(getenv func(string) string) map[string]string {
	m := make(map[string]string, len(Vars))
	for _, v := range Vars {
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		}
		switch {
		case v.Secret && val != "":
			val = "[REDACTED]"
		case v.Name == "REDIS_URL":
			val = RedactURL(val)
		}
		m[v.Name] = val
	}
	return m
}

// RedactURL hides the password of a URL.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "[unparsable URL]"
	}
	return u.Redacted()
}

// Usage answers the variables' table for --help.
func Usage() string {
	var b strings.Builder
	b.WriteString("Environment (flags are not needed; every setting is a variable):\n")
	for _, v := range Vars {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(&b, "  %-22s %s\n  %-22s default: %s\n", v.Name, v.Help, "", def)
	}
	return b.String()
}
