// Package redisconn is the one place that reads a REDIS_URL and builds Redis
// clients from it, so that the worker, the producer helpers, refundctl, the
// HTTP API, the dashboard, the health checks and the shared 2Checkout budget
// all reach the same Redis the same way.
//
// It accepts every form asynq.ParseRedisURI accepts:
//
//	redis://[:password@]host:port[/db]
//	rediss://[:password@]host:port[/db]           TLS, verified
//	redis-socket://[:password@]/path/to/socket[?db=N]
//	redis-sentinel://[:password@]host1:port,host2:port[/db]?master=name
//
// and fixes two gaps of asynq's parser for Sentinel: the /db path is read (asynq
// ignores it), and the password is used for the primary as well as for the
// sentinels (asynq gives it to the sentinels only, so a password-protected
// primary could not be reached).
package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Parse reads a Redis URL into asynq's connection options. Its errors never
// hold the password.
func Parse(uri string) (asynq.RedisConnOpt, error) {
	if uri == "" {
		return nil, errors.New("is empty")
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, errors.New("is not a URL")
	}
	opt, err := asynq.ParseRedisURI(uri)
	if err != nil {
		return nil, fmt.Errorf("is not a redis://, rediss://, redis-socket:// or redis-sentinel:// URL (scheme %q)", u.Scheme)
	}
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		if o.Network != "unix" && o.Addr == "" {
			return nil, errors.New("names no host:port")
		}
		if o.TLSConfig != nil {
			o.TLSConfig.MinVersion = tls.VersionTLS12
		}
		return o, nil
	case asynq.RedisFailoverClientOpt:
		if o.MasterName == "" {
			return nil, errors.New("(redis-sentinel) needs ?master=<name>")
		}
		for _, a := range o.SentinelAddrs {
			if a == "" || !strings.Contains(a, ":") {
				return nil, fmt.Errorf("(redis-sentinel) sentinel address %q: want host:port", a)
			}
		}
		if p := strings.Trim(u.Path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return nil, fmt.Errorf("(redis-sentinel) database %q: want a number", p)
			}
			o.DB = db
		}
		o.Password = o.SentinelPassword
		return o, nil
	}
	return opt, nil
}

// NewClient builds a go-redis client for opt, as asynq would, with command
// timeouts taken from the context (ContextTimeoutEnabled) so that a caller's
// deadline bounds a command even when Redis stops answering. Close it.
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
	}
	return opt.MakeRedisClient().(redis.UniversalClient)
}
