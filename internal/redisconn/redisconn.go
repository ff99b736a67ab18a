// Package redisconn is the one place that reads a REDIS_URL (and the TLS
// files beside it) and builds Redis clients from it, so that the worker, the
// producer helpers, refundctl, the HTTP API, the dashboard, the health
// checks, the shared 2Checkout budget, the window sweep, deadline-first
// dispatch and the webhooks all reach the same Redis the same way.
//
// It reads:
//
//	redis://[[user]:password@]host[:port][/db]
//	rediss://[[user]:password@]host[:port][/db]          TLS, always verified
//	redis-socket://[[user]:password@]/path/to/socket[?db=N]
//	redis-sentinel://[[user]:password@]host1:port,host2:port[/db]?master=name
//	redis-cluster://[[user]:password@]host1:port,host2:port[,…]
//	rediss-cluster://[[user]:password@]host1:port,host2:port[,…]  TLS
//
// A user name logs in as that ACL user (asynq's own parser drops it and logs
// in as "default"). For Sentinel the user and password are given to the
// primary and to the sentinels. The port defaults to 6379.
//
// Open adds REDIS_CA_FILE (a PEM bundle that verifies Redis's certificate)
// and REDIS_CERT_FILE + REDIS_KEY_FILE (a client certificate) to a TLS URL.
// Verification is never turned off.
//
// Beside the way to Redis, the package holds what refundd asks of that
// Redis: the ACL user's rules (ACLRules) and readiness's proof that Redis
// takes refundd's writes (WriteProbe).
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// The variables Open reads.
const (
	EnvURL      = "REDIS_URL"
	EnvCAFile   = "REDIS_CA_FILE"
	EnvCertFile = "REDIS_CERT_FILE"
	EnvKeyFile  = "REDIS_KEY_FILE"
)

// Settings are the variables that say how to reach Redis.
type Settings struct {
	URL string
	// CAFile is a PEM bundle to verify Redis's certificate with (default:
	// the system's roots).
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (Redis's
	// tls-auth-clients), set together.
	CertFile, KeyFile string
}

// FromEnv answers the Settings in getenv (os.Getenv in production).
func FromEnv(getenv func(string) string) Settings {
	return Settings{URL: getenv(EnvURL), CAFile: getenv(EnvCAFile), CertFile: getenv(EnvCertFile), KeyFile: getenv(EnvKeyFile)}
}

// Open reads s into asynq's connection options. Each error names the
// variable to change and never holds the password.
func Open(s Settings) (asynq.RedisConnOpt, error) {
	opt, err := Parse(s.URL)
	if err != nil {
		return nil, fmt.Errorf("%s %w", EnvURL, err)
	}
	if s.CAFile == "" && s.CertFile == "" && s.KeyFile == "" {
		return opt, nil
	}
	cfg := tlsConfig(opt)
	if cfg == nil {
		name := EnvCAFile
		if s.CAFile == "" {
			name = EnvCertFile
			if s.CertFile == "" {
				name = EnvKeyFile
			}
		}
		return nil, fmt.Errorf("%s is set but %s is not a TLS URL (rediss:// or rediss-cluster://)", name, EnvURL)
	}
	if s.CAFile != "" {
		b, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s cannot be read: %v", EnvCAFile, unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no PEM certificate", EnvCAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		return nil, fmt.Errorf("%s is set without %s; set both", EnvCertFile, EnvKeyFile)
	case s.CertFile == "" && s.KeyFile != "":
		return nil, fmt.Errorf("%s is set without %s; set both", EnvKeyFile, EnvCertFile)
	case s.CertFile != "":
		if _, err := os.Stat(s.CertFile); err != nil {
			return nil, fmt.Errorf("%s cannot be read: %v", EnvCertFile, unwrapPath(err))
		}
		if _, err := os.Stat(s.KeyFile); err != nil {
			return nil, fmt.Errorf("%s cannot be read: %v", EnvKeyFile, unwrapPath(err))
		}
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			// crypto/tls's words name the PEM block at fault, never its bytes.
			return nil, fmt.Errorf("%s and %s are not a certificate and its key: %v", EnvCertFile, EnvKeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return opt, nil
}

// tlsConfig answers opt's TLS configuration (shared with opt, so changes
// reach it), nil if opt does not use TLS.
func tlsConfig(opt asynq.RedisConnOpt) *tls.Config {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return o.TLSConfig
	case asynq.RedisClusterClientOpt:
		return o.TLSConfig
	}
	return nil
}

// Parse reads a Redis URL into asynq's connection options: RedisClientOpt,
// RedisFailoverClientOpt or RedisClusterClientOpt. Its errors never hold the
// password.
func Parse(uri string) (asynq.RedisConnOpt, error) {
	if uri == "" {
		return nil, errors.New("is empty")
	}
	u, err := url.Parse(uri)
	if err != nil {
		// url.Parse's error quotes the URL, password and all.
		return nil, errors.New("is not a URL")
	}
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	switch u.Scheme {
	case "redis", "rediss":
		if err := noQuery(u); err != nil {
			return nil, err
		}
		addr, err := hostPort(u.Host)
		if err != nil {
			return nil, err
		}
		db, err := dbPath(u.Path)
		if err != nil {
			return nil, err
		}
		o := asynq.RedisClientOpt{Addr: addr, Username: user, Password: pass, DB: db}
		if u.Scheme == "rediss" {
			host, _, _ := net.SplitHostPort(addr)
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		}
		return o, nil
	case "redis-socket":
		if u.Host != "" || u.Path == "" {
			return nil, errors.New("(redis-socket) wants redis-socket://[[user]:password@]/path/to/socket[?db=N]")
		}
		db := 0
		q := u.Query()
		for k := range q {
			if k != "db" {
				return nil, fmt.Errorf("(redis-socket) query parameter %q is not known (only db)", k)
			}
		}
		if v := q.Get("db"); v != "" {
			if db, err = dbNumber(v); err != nil {
				return nil, err
			}
		}
		return asynq.RedisClientOpt{Network: "unix", Addr: u.Path, Username: user, Password: pass, DB: db}, nil
	case "redis-sentinel":
		q := u.Query()
		for k := range q {
			if k != "master" {
				return nil, fmt.Errorf("(redis-sentinel) query parameter %q is not known (only master)", k)
			}
		}
		master := q.Get("master")
		if master == "" {
			return nil, errors.New("(redis-sentinel) needs ?master=<name>")
		}
		addrs, err := hostList("redis-sentinel", "sentinel", u.Host)
		if err != nil {
			return nil, err
		}
		db, err := dbPath(u.Path)
		if err != nil {
			return nil, err
		}
		return asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: addrs, SentinelUsername: user, SentinelPassword: pass,
			Username: user, Password: pass, DB: db}, nil
	case "redis-cluster", "rediss-cluster":
		if err := noQuery(u); err != nil {
			return nil, err
		}
		addrs, err := hostList(u.Scheme, "node", u.Host)
		if err != nil {
			return nil, err
		}
		if db, err := dbPath(u.Path); err != nil || db != 0 {
			return nil, fmt.Errorf("(%s) has no database but 0: a cluster has one", u.Scheme)
		}
		o := asynq.RedisClusterClientOpt{Addrs: addrs, Username: user, Password: pass}
		if u.Scheme == "rediss-cluster" {
			// No ServerName: each node is verified under its own host name.
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return o, nil
	}
	return nil, fmt.Errorf("is not a redis://, rediss://, redis-socket://, redis-sentinel://, redis-cluster:// or rediss-cluster:// URL (scheme %q)", u.Scheme)
}

func noQuery(u *url.URL) error {
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("(%s) takes no query parameters", u.Scheme)
	}
	return nil
}

// hostPort answers host:port, the port 6379 if none is given.
func hostPort(h string) (string, error) {
	if h == "" {
		return "", errors.New("names no host:port")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port (or a bare IPv6 address in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "6379"
	}
	if host == "" || strings.ContainsAny(host, ",/ ") {
		return "", fmt.Errorf("host %q: want host:port", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q: want a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// hostList reads host1:port,host2:port.
func hostList(scheme, what, h string) ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(h, ",") {
		if a == "" || !strings.Contains(a, ":") {
			return nil, fmt.Errorf("(%s) %s address %q: want host:port", scheme, what, a)
		}
		addr, err := hostPort(a)
		if err != nil {
			return nil, fmt.Errorf("(%s) %s address: %v", scheme, what, err)
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

func dbPath(p string) (int, error) {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return 0, nil
	}
	return dbNumber(p)
}

func dbNumber(s string) (int, error) {
	db, err := strconv.Atoi(s)
	if err != nil || db < 0 || db > 1<<16 {
		return 0, fmt.Errorf("database %q: want a number", s)
	}
	return db, nil
}

// unwrapPath drops the path from *os.PathError: the variable names the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// NewClient builds a go-redis client for opt, as asynq would, with command
// timeouts taken from the context (ContextTimeoutEnabled) so that a caller's
// deadline bounds a command even when Redis stops answering: a *redis.Client
// for a server or Sentinel, a *redis.ClusterClient for a cluster. Close it.
func NewClient(opt asynq.RedisConnOpt) redis.UniversalClient {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		return redis.NewClient(&redis.Options{
			Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true,
		})
	case asynq.RedisFailoverClientOpt:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true,
		})
	case asynq.RedisClusterClientOpt:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: o.Addrs, MaxRedirects: o.MaxRedirects, Username: o.Username, Password: o.Password,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true,
		})
	}
	return opt.MakeRedisClient().(redis.UniversalClient)
}
