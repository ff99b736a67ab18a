package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/clip"
)

// notification is a notification task's payload.
type notification struct {
	// ID names what is notified ("<task ID>#<run>"); it is also the
	// DeliveryHeader, and signed.
	ID string `json:"id"`
	// CreatedAt starts the MaxAge clock.
	CreatedAt time.Time `json:"created_at"`
	// Record is the body POSTed, as it is.
	Record json.RawMessage `json:"record"`
}

// TaskID answers the notification task's ID for the final state of the task
// id: one notification per final state, however often it is enqueued.
func TaskID(id string) string { return TaskType + ":" + id }

// Notifier enqueues notifications. It is safe for concurrent use.
type Notifier struct {
	client *asynq.Client
	queue  string
	maxAge time.Duration
	now    func() time.Time
}

// NewNotifier enqueues to queue (DefaultQueue if empty) through redis;
// notifications are kept until delivered for up to maxAge (DefaultMaxAge if
// zero). Close it when done.
func NewNotifier(redis asynq.RedisConnOpt, queue string, maxAge time.Duration, now func() time.Time) *Notifier {
	if queue == "" {
		queue = DefaultQueue
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &Notifier{client: asynq.NewClient(redis), queue: queue, maxAge: maxAge, now: now}
}

// Close releases the Redis connection.
func (n *Notifier) Close() error { return n.client.Close() }

// Notify enqueues the delivery of record (a JSON object) as the delivery id
// ("<task ID>#<run>", DeliveryIDPattern). A second call for the same id is a
// no-op: asynq already holds that notification.
func (n *Notifier) Notify(ctx context.Context, id string, record []byte) error {
	if !DeliveryIDPattern.MatchString(id) {
		return fmt.Errorf("webhook: delivery ID %s: must match %s", strconv.QuoteToASCII(clip.String(id, 100)), DeliveryIDPattern)
	}
	if !isObject(record) {
		return errors.New("webhook: record is not a JSON object")
	}
	b, err := json.Marshal(notification{ID: id, CreatedAt: n.now().UTC(), Record: record})
	if err != nil {
		return err
	}
	t := asynq.NewTask(TaskType, b,
		asynq.TaskID(TaskID(id)), asynq.Queue(n.queue), asynq.MaxRetry(maxRetry),
		asynq.Timeout(time.Minute), asynq.Retention(n.maxAge))
	_, err = n.client.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("enqueue notification for %s: %w", id, err)
	}
	return nil
}

// isObject reports whether b is one JSON object starting at its first
// byte: the signed string's body part starts with '{'.
func isObject(b []byte) bool { return len(b) > 0 && b[0] == '{' && json.Valid(b) }

// maxRetry is high on purpose: MaxAge, not the counter, ends a delivery.
const maxRetry = 100000

// Defaults of Config.
const (
	DefaultMaxAge      = 24 * time.Hour
	DefaultTimeout     = 10 * time.Second
	DefaultBaseDelay   = 5 * time.Second
	DefaultMaxDelay    = 30 * time.Minute
	DefaultConcurrency = 4
)

// Config configures a Deliverer.
type Config struct {
	// URL receives the POSTs: https, or http to a loopback host. Required.
	URL string
	// Secret keys the signature. Required; never logged.
	Secret []byte
	// MaxAge: a notification not delivered this long after it was enqueued
	// is archived (visible in the dashboard). Default 24h.
	MaxAge time.Duration
	// Timeout bounds one POST. Default 10s.
	Timeout time.Duration
	// BaseDelay and MaxDelay shape the retry backoff (exponential, full
	// jitter, at least BaseDelay). Defaults 5s and 30m.
	BaseDelay, MaxDelay time.Duration
	// RootCAs verifies the receiver's certificate. Default: the system's
	// roots. TLS is always verified.
	RootCAs *x509.CertPool
	// Logger logs each delivery. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Deliverer POSTs notification tasks to the receiver. It is an asynq.Handler.
type Deliverer struct {
	cfg Config
	hc  *http.Client
	log *zap.Logger
}

// NewDeliverer validates cfg and returns a Deliverer.
func NewDeliverer(cfg Config) (*Deliverer, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("webhook: URL: %w", err)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook: Secret is required")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.MaxAge, DefaultMaxAge}, {&cfg.Timeout, DefaultTimeout}, {&cfg.BaseDelay, DefaultBaseDelay}, {&cfg.MaxDelay, DefaultMaxDelay}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   DefaultConcurrency,
		IdleConnTimeout:       90 * time.Second,
	}
	hc := &http.Client{Transport: tr, Timeout: cfg.Timeout,
		// A receiver's redirect is not followed: the signature was made for
		// the configured URL.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Deliverer{cfg: cfg, hc: hc, log: cfg.Logger}, nil
}

// ProcessTask implements asynq.Handler: one delivery attempt.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var n notification
	if err := json.Unmarshal(t.Payload(), &n); err != nil || !DeliveryIDPattern.MatchString(n.ID) || !isObject(n.Record) {
		return fmt.Errorf("invalid notification payload: %w", asynq.SkipRetry)
	}
	log := d.log.With(zap.String("task_id", n.ID))
	if age := d.cfg.Now().Sub(n.CreatedAt); age > d.cfg.MaxAge {
		log.Error("notification not delivered in time: giving up", zap.Duration("age", age))
		return fmt.Errorf("not delivered within %s of %s: %w", d.cfg.MaxAge, n.CreatedAt.Format(time.RFC3339), asynq.SkipRetry)
	}
	err := d.post(ctx, n)
	if err != nil {
		log.Warn("notification delivery failed; will retry", zap.Error(err))
		return err
	}
	log.Info("notification delivered")
	return nil
}

func (d *Deliverer) post(ctx context.Context, n notification) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, bytes.NewReader(n.Record))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "refundd-webhook/1")
	req.Header.Set(DeliveryHeader, n.ID)
	req.Header.Set(SignatureHeader, Sign(d.cfg.Secret, d.cfg.Now(), n.ID, n.Record))
	resp, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered HTTP %d: %s", resp.StatusCode, clip.String(string(body), 200))
	}
	return nil
}

// RetryDelay is the asynq.RetryDelayFunc of the notification queue:
// exponential backoff with full jitter, at least BaseDelay, at most MaxDelay.
func (d *Deliverer) RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	ceil := d.cfg.BaseDelay
	for i := 0; i < n && ceil < d.cfg.MaxDelay; i++ {
		ceil *= 2
	}
	ceil = min(ceil, d.cfg.MaxDelay)
	return max(d.cfg.BaseDelay, time.Duration(rand.Float64()*float64(ceil)))
}

// Server delivers the notifications waiting in one queue: an asynq server
// bound to its Deliverer. It connects to Redis when it starts, so a Server
// never started holds nothing to release.
type Server struct {
	redis asynq.RedisConnOpt
	cfg   asynq.Config
	d     *Deliverer
	srv   *asynq.Server // made by Start
}

// NewServer builds the server that delivers the notifications waiting in
// queue (DefaultQueue if empty) with d, concurrency at a time
// (DefaultConcurrency if zero). Run it beside the cancellation worker.
func (d *Deliverer) NewServer(redis asynq.RedisConnOpt, queue string, concurrency int) *Server {
	if queue == "" {
		queue = DefaultQueue
	}
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	return &Server{d: d, redis: redis, cfg: asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		RetryDelayFunc:           d.RetryDelay,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          d.cfg.Timeout + time.Second,
		Logger:                   d.log.With(zap.String("component", "asynq"), zap.String("queue", queue)).WithOptions(zap.AddCallerSkip(1)).Sugar(),
		LogLevel:                 asynq.WarnLevel,
	}}
}

// Start starts delivering. Call it once.
func (s *Server) Start() error {
	s.srv = asynq.NewServer(s.redis, s.cfg)
	return s.srv.Start(s.d)
}

// Shutdown stops delivering; a delivery in flight finishes or is retried.
func (s *Server) Shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
	}
}
