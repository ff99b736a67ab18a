package ops

import (
	"net/http"
	"time"
)

// Defaults of ServerConfig.
const (
	// DefaultReadHeaderTimeout bounds reading a request's headers.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout bounds reading a whole request, body included:
	// a client sending its body a byte at a time is cut off after it.
	DefaultReadTimeout = 15 * time.Second
	// DefaultWriteTimeout bounds writing an answer.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultIdleTimeout closes kept-alive connections left idle.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes caps a request's headers (Go's default is 1 MiB);
	// larger ones get 431.
	DefaultMaxHeaderBytes = 16 << 10
)

// ServerConfig configures the ops HTTP server. Zero fields take the defaults.
type ServerConfig struct {
	// Handler serves the routes (health, metrics, dashboard, API). Required.
	Handler http.Handler
	// AllowedHosts are host names served besides localhost and IP
	// addresses (OPS_ALLOWED_HOSTS). See Guard.
	AllowedHosts []string
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout and
	// MaxHeaderBytes are http.Server's.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// NewServer answers the ops HTTP server: cfg.Handler behind a Guard, with
// bounded header size and read, write and idle times, so no client can hold
// it.
func NewServer(cfg ServerConfig) *http.Server {
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	orDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	orDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	orDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           NewGuard(cfg.AllowedHosts).Handler(cfg.Handler),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
	}
}
