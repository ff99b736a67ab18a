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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/loopback"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/webhook"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Config is refundd's effective configuration.
type Config struct {
	RedisURL       string
	Redis          asynq.RedisConnOpt // REDIS_URL with the REDIS_*_FILE TLS files (redisconn.Open)
	RedisCAFile    string
	RedisCertFile  string
	RedisKeyFile   string
	APIURL         string
	MerchantCode   string
	SecretKey      rpcclient.Secret
	HashAlgo       string
	AllowHTTP      bool
	RootCAs        *x509.CertPool // nil: the system's
	CAFile         string
	RequestTimeout time.Duration
	RateLimit      int // requests/s to 2Checkout, fleet-wide; 0: none
	RateBurst      int
	// OutageProbe is how often the fleet probes a method that is out; 0: no
	// outage breaker.
	OutageProbe time.Duration
	// DispatchSlots: deadline-first dispatch's turns (see Turns); -1 when
	// DISPATCH_SLOTS is not set.
	DispatchSlots   int
	Queue           string
	Concurrency     int
	Fetchers        int           // asynq servers sharing Concurrency
	PollInterval    time.Duration // an idle worker's look for new tasks
	ShutdownTimeout time.Duration
	SafetyMargin    time.Duration
	RetryBaseDelay  time.Duration
	RetryMaxDelay   time.Duration
	RetryAfterMax   time.Duration // 0: RetryMaxDelay
	UnknownAttempts int
	SweepInterval   time.Duration
	// OutcomeRetention is how long a refund's record is kept after its
	// last write (internal/records).
	OutcomeRetention time.Duration
	OpsAddr          string
	// OpsAllowedHosts are host names the ops server answers besides
	// localhost and IP addresses.
	OpsAllowedHosts []string
	LogLevel        string
	LogFormat       string
	// The ops server's dashboard and producer API.
	DashboardUser     string
	DashboardPassword rpcclient.Secret
	DashboardReadOnly bool
	// PrometheusURL, if set, is the Prometheus the dashboard draws its
	// time-series charts from (Asynqmon's PrometheusAddress).
	PrometheusURL string
	APIToken      rpcclient.Secret
	// EnqueueRate: enqueues per second the API token may make after a
	// first full batch; 0: no limit.
	EnqueueRate int
	// AuthFailures and AuthFailureRefill: failed authentication attempts
	// an address may make at once, and how often it regains one.
	AuthFailures      int
	AuthFailureRefill time.Duration
	// ClockSkewMax: a replica whose clock is further than this from Redis's
	// is not ready; 0: not checked.
	ClockSkewMax time.Duration
	// Completion webhooks (off without NotifyURL).
	NotifyURL    string
	NotifySecret rpcclient.Secret
	NotifyMaxAge time.Duration

	fileKey rpcclient.Secret // TCO_SECRET_KEY_FILE's content, until check picks a key
}

// Var is one environment variable refundd reads.
type Var struct {
	Name    string
	Default string
	Help    string
	Secret  bool
	set     func(c *Config, v string) error
}

// Vars lists every variable, in the order --help shows them. Each row reads
// its own variable and sets its own fields only; the rules that join two
// variables are in (*Config).check, which runs after every row. So the rows'
// order is only the order of --help.
var Vars = []Var{
	{Name: redisconn.EnvURL, Help: "Redis of the queue: redis://[[user]:password@]host:port[/db], rediss:// for TLS, redis-sentinel://[[user]:password@]host1:port,host2:port[/db]?master=name, redis-cluster://[[user]:password@]host1:port,host2:port[,…] (rediss-cluster:// for TLS). Required (not in demo)",
		set: func(c *Config, v string) error {
			if v == "" {
				return errors.New("is required (e.g. redis://127.0.0.1:6379/0)")
			}
			if _, err := redisconn.Parse(v); err != nil {
				return err
			}
			c.RedisURL = v
			return nil
		}},
	{Name: redisconn.EnvCAFile, Help: "PEM bundle to verify Redis's certificate with (rediss:// and rediss-cluster://; default: the system's roots). Verification is never off",
		set: func(c *Config, v string) error { c.RedisCAFile = v; return nil }},
	{Name: redisconn.EnvCertFile, Help: "client certificate (PEM) for a Redis that asks for one (tls-auth-clients), with REDIS_KEY_FILE",
		set: func(c *Config, v string) error { c.RedisCertFile = v; return nil }},
	{Name: redisconn.EnvKeyFile, Help: "the client certificate's private key (PEM), with REDIS_CERT_FILE",
		set: func(c *Config, v string) error { c.RedisKeyFile = v; return nil }},
	{Name: "TCO_ALLOW_HTTP", Default: "false", Help: "true: allow plain http to a non-loopback TCO_API_URL (a sandbox in another container; never 2Checkout itself)",
		set: boolVar(func(c *Config) *bool { return &c.AllowHTTP })},
	{Name: "TCO_API_URL", Default: rpcclient.DefaultURL, Help: "2Checkout JSON-RPC 6.0 endpoint (plain http only to a loopback sandbox, or with TCO_ALLOW_HTTP)",
		set: func(c *Config, v string) error {
			u, err := url.Parse(v)
			if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				return errors.New("is not an http(s) URL")
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
		set: fileVar(func(c *Config, _ string, b []byte) error {
			s := strings.TrimRight(string(b), "\r\n")
			if s == "" {
				return errors.New("names an empty file")
			}
			c.fileKey = rpcclient.Secret(s)
			return nil
		})},
	{Name: "TCO_HASH_ALGO", Default: rpcclient.HashMD5, Help: "login HMAC: md5 or sha256",
		set: oneOf(func(c *Config) *string { return &c.HashAlgo }, rpcclient.HashMD5, rpcclient.HashSHA256)},
	{Name: "TCO_CA_FILE", Help: "PEM bundle to verify 2Checkout's certificate (default: the system's roots)",
		set: fileVar(func(c *Config, path string, b []byte) error {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return errors.New("holds no PEM certificate")
			}
			c.RootCAs, c.CAFile = pool, path
			return nil
		})},
	{Name: "TCO_REQUEST_TIMEOUT", Default: "15s", Help: "bound on one 2Checkout request",
		set: durationVar(func(c *Config) *time.Duration { return &c.RequestTimeout })},
	{Name: "TCO_RATE_LIMIT", Default: "0", Help: "requests per second to 2Checkout for all replicas together (shared through Redis, login included): the ceiling; below it the fleet throttles itself by the share of requests 2Checkout refuses with 429 (or 503 with Retry-After); 0: no ceiling",
		set: intVar(0, " (no limit)", 100000, func(c *Config) *int { return &c.RateLimit })},
	{Name: "TCO_RATE_BURST", Default: "1", Help: "requests allowed at once above TCO_RATE_LIMIT (1: evenly spaced)",
		set: intVar(1, "", 100000, func(c *Config) *int { return &c.RateBurst })},
	{Name: "REFUND_QUEUE", Default: tasks.DefaultQueue, Help: "asynq queue to process",
		set: func(c *Config, v string) error {
			if v == "" || strings.ContainsAny(v, " \t:") {
				return errors.New("must be a queue name without spaces or ':'")
			}
			c.Queue = v
			return nil
		}},
	{Name: "WORKER_CONCURRENCY", Default: "10", Help: "tasks processed at once",
		set: intVar(1, "", 1000, func(c *Config) *int { return &c.Concurrency })},
	{Name: "WORKER_POLL_INTERVAL", Default: "1s", Help: "how often an idle worker looks for new tasks (asynq's TaskCheckInterval: it waits 0.5 to 1.5 times this); 1s keeps an idle replica cheap, pickup within 1.5s; 50ms picks up within ~100ms for ~20 more dequeue scripts a second per replica",
		set: durationVar(func(c *Config) *time.Duration { return &c.PollInterval })},
	{Name: "WORKER_FETCHERS", Default: "1", Help: "asynq servers in the process sharing WORKER_CONCURRENCY, each with its own fetch loop (more take very fast tasks off the queue faster; each adds its own idle polling); at most WORKER_CONCURRENCY",
		set: intVar(1, "", 64, func(c *Config) *int { return &c.Fetchers })},
	{Name: "SHUTDOWN_TIMEOUT", Default: "30s", Help: "on SIGTERM, how long running tasks may finish before going back to pending",
		set: durationVar(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{Name: "WINDOW_SAFETY_MARGIN", Default: "1m", Help: "no request starts later than this before the 2-hour window closes",
		set: durationVar(func(c *Config) *time.Duration { return &c.SafetyMargin })},
	{Name: "RETRY_BASE_DELAY", Default: "2s", Help: "first retry delay (exponential backoff with full jitter)",
		set: durationVar(func(c *Config) *time.Duration { return &c.RetryBaseDelay })},
	{Name: "RETRY_MAX_DELAY", Default: "5m", Help: "cap of the retry delay",
		set: durationVar(func(c *Config) *time.Duration { return &c.RetryMaxDelay })},
	{Name: "TCO_OUTAGE_PROBE_INTERVAL", Default: "1s", Help: "once at least half of at least 20 requests of a method in 10s, fleet-wide, find 2Checkout unavailable (no answer, 408, 5xx, not JSON-RPC), the fleet holds that method and lets one real request of it through per this interval until one is answered; 0: no outage breaker",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New("must be a duration like 1s or 500ms (0: off)")
			}
			c.OutageProbe = d
			return nil
		}},
	{Name: "DISPATCH_SLOTS", Help: "deadline-first dispatch: under a backlog, how many tasks of the fleet may call 2Checkout at once while the others wait, earliest cut-off first (default 2×TCO_RATE_LIMIT, at least TCO_RATE_BURST; off without TCO_RATE_LIMIT; 0: off). Every replica must use the same value",
		set: func(c *Config, v string) error {
			c.DispatchSlots = -1
			if v == "" {
				return nil
			}
			return intVar(0, " (off)", 1000000, func(c *Config) *int { return &c.DispatchSlots })(c, v)
		}},
	{Name: "RETRY_AFTER_MAX", Help: "longest Retry-After honoured; a longer one is cut to this (default RETRY_MAX_DELAY)",
		set: func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			return durationVar(func(c *Config) *time.Duration { return &c.RetryAfterMax })(c, v)
		}},
	{Name: "UNKNOWN_ERROR_ATTEMPTS", Default: "3", Help: "an error 2Checkout answers that this worker does not recognise is retried until it came back this often (or the cut-off), then archived with the vendor's words",
		set: intVar(1, "", 1000, func(c *Config) *int { return &c.UnknownAttempts })},
	{Name: "WINDOW_SWEEP_INTERVAL", Default: "20s", Help: "how often the queue is swept for tasks asynq keeps from the window rule (expired asynq.Deadline, past the cut-off, archived by the retry counter); one replica sweeps for the fleet, another takes over after 0.9 of its own interval without a sign of life (give all the same)",
		set: durationVar(func(c *Config) *time.Duration { return &c.SweepInterval })},
	{Name: "OUTCOME_RETENTION", Default: "720h", Help: "how long each refund's record (its outcome, and what its attempts learned) is kept in Redis after its last write, whatever asynq keeps of its task; the API, refundctl status and the order lookup read it",
		set: durationVar(func(c *Config) *time.Duration { return &c.OutcomeRetention })},
	{Name: "OPS_ADDR", Default: "127.0.0.1:8080", Help: "ops HTTP server: /healthz /readyz /metrics /monitoring/ /v1/",
		set: func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("must be host:port")
			}
			c.OpsAddr = v
			return nil
		}},
	{Name: "OPS_ALLOWED_HOSTS", Help: "host names the ops server answers besides localhost and IP addresses, comma-separated (e.g. refundd.internal); other Host headers get 403 (DNS rebinding)",
		set: func(c *Config, v string) error {
			c.OpsAllowedHosts = nil
			for _, h := range strings.Split(v, ",") {
				h = strings.TrimSpace(h)
				if h == "" {
					continue
				}
				if !hostNameRE.MatchString(h) {
					return errors.New("must be comma-separated host names without scheme, port or path (e.g. refundd.internal,ops.example.com)")
				}
				c.OpsAllowedHosts = append(c.OpsAllowedHosts, strings.ToLower(h))
			}
			return nil
		}},
	{Name: "DASHBOARD_USER", Help: "basic-auth user of the dashboard at /monitoring/; without it (and the password) the dashboard is read-only on a loopback OPS_ADDR and refused (403) on any other",
		set: func(c *Config, v string) error { c.DashboardUser = v; return nil }},
	{Name: "DASHBOARD_PASSWORD", Secret: true, Help: "basic-auth password of the dashboard",
		set: secretVar(12, func(c *Config) *rpcclient.Secret { return &c.DashboardPassword })},
	{Name: "DASHBOARD_READ_ONLY", Default: "false", Help: "true: the dashboard shows but cannot change tasks or queues",
		set: boolVar(func(c *Config) *bool { return &c.DashboardReadOnly })},
	{Name: "PROMETHEUS_URL", Help: "Prometheus the dashboard draws time-series charts from (its /monitoring/ Metrics page), e.g. http://prometheus:9090; refundd's ops server queries it, the page shows it (off when empty)",
		set: func(c *Config, v string) error {
			if v != "" {
				if err := checkPrometheusURL(v); err != nil {
					return err
				}
			}
			c.PrometheusURL = v
			return nil
		}},
	{Name: "API_TOKEN", Secret: true, Help: "bearer token of the producer API at /v1/ (the API is off without it)",
		set: secretVar(16, func(c *Config) *rpcclient.Secret { return &c.APIToken })},
	{Name: "API_ENQUEUE_RATE", Default: "50", Help: "cancellations the API token may enqueue per second on this replica, after a first full batch (1,000) at once; past it 429 with Retry-After. 0: no limit",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000000 {
				return errors.New("must be a whole number from 0 (no limit) to 1000000")
			}
			c.EnqueueRate = n
			return nil
		}},
	{Name: "OPS_AUTH_FAILURES", Default: "10", Help: "failed authentication attempts (dashboard password, API token) a client address may make at once; past them it gets 429 with Retry-After, right credentials included, until it regains one",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100000 {
				return errors.New("must be a whole number from 1 to 100000")
			}
			c.AuthFailures = n
			return nil
		}},
	{Name: "OPS_AUTH_FAILURE_REFILL", Default: "6s", Help: "how often a client address regains one failed authentication attempt (OPS_AUTH_FAILURES)",
		set: durationVar(func(c *Config) *time.Duration { return &c.AuthFailureRefill })},
	{Name: "CLOCK_SKEW_MAX", Default: "5s", Help: "how far this replica's clock may be from Redis's (TIME, measured at start and every 30s) before /readyz says not ready: cut-offs and asynq's leases are reckoned by each replica's clock. 0: not checked",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New("must be a duration like 5s (0: not checked)")
			}
			c.ClockSkewMax = d
			return nil
		}},
	{Name: "NOTIFY_URL", Help: "completion webhook: each cancellation's final record is POSTed here, signed (Refundd-Signature); https, or http to a loopback host (off when empty)",
		set: func(c *Config, v string) error {
			if v != "" {
				if err := webhook.CheckURL(v); err != nil {
					return err
				}
			}
			c.NotifyURL = v
			return nil
		}},
	{Name: "NOTIFY_SECRET", Secret: true, Help: "HMAC-SHA256 key of the webhook signature (at least 16 bytes; required with NOTIFY_URL)",
		set: secretVar(16, func(c *Config) *rpcclient.Secret { return &c.NotifySecret })},
	{Name: "NOTIFY_MAX_AGE", Default: "24h", Help: "a notification the receiver has not accepted (2xx) this long after the final state is archived, visible in the dashboard's notifications queue",
		set: durationVar(func(c *Config) *time.Duration { return &c.NotifyMaxAge })},
	{Name: "LOG_LEVEL", Default: "info", Help: "debug, info, warn or error",
		set: oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{Name: "LOG_FORMAT", Default: "json", Help: "json or console",
		set: oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "console")},
}

// checkPrometheusURL: an http(s) URL of a host, without credentials (the
// dashboard's page shows it), query or fragment (Asynqmon appends its API
// path and query).
func checkPrometheusURL(v string) error {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return errors.New("must be a URL such as http://prometheus:9090")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an http or https URL such as http://prometheus:9090")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("must name a host, e.g. http://prometheus:9090")
	case u.User != nil:
		return errors.New("must not hold credentials: the dashboard's page shows it")
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(v, "?") || strings.HasSuffix(v, "#"):
		return errors.New("must not have a query or fragment")
	}
	return nil
}

// fileVar reads the file a variable names, if it names one, and hands its
// path and content to use.
func fileVar(use func(c *Config, path string, content []byte) error) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		b, err := os.ReadFile(v)
		if err != nil {
			return fmt.Errorf("cannot be read: %v", unwrapPath(err))
		}
		return use(c, v, b)
	}
}

// oneOf reads a value that must be one of choices ("must be a, b or c").
func oneOf(field func(*Config) *string, choices ...string) func(*Config, string) error {
	want := strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
	return func(c *Config, v string) error {
		if !slices.Contains(choices, v) {
			return errors.New("must be " + want)
		}
		*field(c) = v
		return nil
	}
}

func boolVar(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		*field(c) = b
		return nil
	}
}

// secretVar reads an optional secret: empty, or at least minLen bytes.
func secretVar(minLen int, field func(*Config) *rpcclient.Secret) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v != "" && len(v) < minLen {
			return fmt.Errorf("must be at least %d characters", minLen)
		}
		*field(c) = rpcclient.Secret(v)
		return nil
	}
}

// intVar reads a whole number from lo to hi; loNote says what lo means,
// if anything (" (off)").
func intVar(lo int, loNote string, hi int, field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("must be a whole number from %d%s to %d", lo, loNote, hi)
		}
		*field(c) = n
		return nil
	}
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

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$`)

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
func Load(getenv func(string) string) (*Config, error) { return load(getenv, Vars) }

// load reads the rows of vars, in any order, then checks the rules that join
// them.
func load(getenv func(string) string, vars []Var) (*Config, error) {
	c := &Config{}
	for _, v := range vars {
		val := getenv(v.Name)
		if val == "" {
			val = v.Default
		}
		if err := v.set(c, val); err != nil {
			return nil, fmt.Errorf("%s %s", v.Name, err)
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check applies the rules that join two or more variables; each error names
// the variable to change first.
func (c *Config) check() error {
	opt, err := redisconn.Open(redisconn.Settings{URL: c.RedisURL, CAFile: c.RedisCAFile, CertFile: c.RedisCertFile, KeyFile: c.RedisKeyFile})
	if err != nil {
		return err
	}
	c.Redis = opt
	u, _ := url.Parse(c.APIURL) // parsed by its row
	if err := rpcclient.CheckURL(u, c.AllowHTTP); err != nil {
		return fmt.Errorf("TCO_API_URL refused: %v", err)
	}
	switch {
	case c.SecretKey != "" && c.fileKey != "":
		return errors.New("TCO_SECRET_KEY_FILE and TCO_SECRET_KEY are both set; set one")
	case c.SecretKey == "" && c.fileKey == "":
		return errors.New("TCO_SECRET_KEY_FILE or TCO_SECRET_KEY is required")
	case c.SecretKey == "":
		c.SecretKey, c.fileKey = c.fileKey, ""
	}
	if (c.DashboardPassword == "") != (c.DashboardUser == "") {
		return errors.New("DASHBOARD_PASSWORD and DASHBOARD_USER must be set together")
	}
	if (c.NotifyURL == "") != (c.NotifySecret == "") {
		return errors.New("NOTIFY_SECRET and NOTIFY_URL must be set together")
	}
	if c.RetryMaxDelay < c.RetryBaseDelay {
		return fmt.Errorf("RETRY_MAX_DELAY %v is shorter than RETRY_BASE_DELAY %v", c.RetryMaxDelay, c.RetryBaseDelay)
	}
	if c.Fetchers > c.Concurrency {
		return fmt.Errorf("WORKER_FETCHERS %d is more than WORKER_CONCURRENCY %d (each needs a worker)", c.Fetchers, c.Concurrency)
	}
	if c.SafetyMargin >= tasks.Window {
		return fmt.Errorf("WINDOW_SAFETY_MARGIN %v leaves no time in the %v window", c.SafetyMargin, tasks.Window)
	}
	return nil
}

// redactHook shows a webhook URL's scheme and host only: its user info,
// path and query often carry a token (Slack-style hook URLs).
func redactHook(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "[malformed URL, not shown]"
	}
	return u.Scheme + "://" + u.Host + "/[path not shown]"
}

// OpsLoopback reports whether OPS_ADDR listens on loopback only.
func (c *Config) OpsLoopback() bool {
	host, _, _ := net.SplitHostPort(c.OpsAddr)
	return loopback.Host(host)
}

// Policy answers the worker policy the configuration asks for.
func (c *Config) Policy() worker.Policy {
	return worker.Policy{SafetyMargin: c.SafetyMargin, RequestTimeout: c.RequestTimeout, BaseDelay: c.RetryBaseDelay, MaxDelay: c.RetryMaxDelay,
		RetryAfterMax: c.RetryAfterMax, LastRetryLead: worker.LeadFor(worker.DefaultDelayedTaskCheckInterval, c.PollInterval)}
}

// Turns answers how many tasks of the fleet hold a turn to call 2Checkout
// under deadline-first dispatch (DISPATCH_SLOTS); 0: dispatch is off. By
// default it is what the shared budget sends in 2 s: with no budget there
// is no order to keep.
func (c *Config) Turns() int {
	if c.DispatchSlots >= 0 {
		return c.DispatchSlots
	}
	if c.RateLimit == 0 {
		return 0
	}
	return max(2*c.RateLimit, c.RateBurst)
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
		case v.Name == "NOTIFY_URL" && val != "":
			val = redactHook(val)
		}
		m[v.Name] = val
	}
	return m
}

// RedactURL hides the password of a URL. A string that is not a URL with
// a host (so that its password could not be found and hidden) is not shown
// at all.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "[malformed URL, not shown]"
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
