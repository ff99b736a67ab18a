// Package rpcclient is a client for 2Checkout's (Verifone's) JSON-RPC 6.0 API:
// login with HMAC, one session shared by all goroutines, and the refund
// methods cancelRefund, getOrder and issueRefund.
//
// Every failure is an *APIError (the server answered) or a *TransportError (it
// did not); Classify is the one place that decides whether a failure is
// transient, a credentials problem, a permanent refusal, or an answer it does
// not recognise, and MaybeApplied whether a failed call may have gone
// through. The package knows nothing of queues or retries: it makes one call
// (plus one re-login on a session error) and says what happened.
package rpcclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/internal/loopback"
)

// Config configures a Client. The zero value of each optional field means
// the default written beside it.
type Config struct {
	// URL of the JSON-RPC endpoint. Default DefaultURL. https is required
	// unless the host is a loopback address (the sandbox server) or
	// AllowHTTP is set.
	URL string
	// AllowHTTP permits plain http to a non-loopback host: a sandbox in
	// another container. It never permits http to 2Checkout's own hosts.
	AllowHTTP bool
	// MerchantCode is the merchant's code. Required.
	MerchantCode string
	// SecretKey is the merchant's secret key. Required.
	SecretKey Secret
	// HashAlgo is the login HMAC: HashMD5 (default) or HashSHA256.
	HashAlgo string
	// HTTPClient makes the requests. Default: a client with keep-alive,
	// verified TLS (RootCAs if set) and connect timeouts. A given client is
	// used as it is (RequestTimeout still applies), except that redirects
	// are never followed (see noRedirects).
	HTTPClient *http.Client
	// RootCAs verifies the server's certificate when HTTPClient is nil.
	// Default: the system's roots. TLS is always verified.
	RootCAs *x509.CertPool
	// RequestTimeout bounds one HTTP request, answer read included, when the
	// caller's context has no sooner deadline (HTTPClient given or not).
	// Default 15s.
	RequestTimeout time.Duration
	// SessionTTL is how long a session lives after login. Default 10m, as
	// 2Checkout documents.
	SessionTTL time.Duration
	// RenewBefore: a session is renewed this long before it would expire.
	// Default 1m.
	RenewBefore time.Duration
	// CredentialsBackoff: after 2Checkout refuses our credentials at login,
	// calls fail at once with that error for this long instead of logging in
	// again, so a wrong key does not hammer the API (or lock the account)
	// while thousands of tasks retry. Default 5s.
	CredentialsBackoff time.Duration
	// MaxResponseBytes caps the size of an answer read. Default 1 MiB.
	MaxResponseBytes int64
	// Logger receives debug lines for logins and calls. Default zap.NewNop().
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Observer, if set, is told of every request (metrics).
	Observer RequestObserver
	// Gate, if set, is asked before every request (login included) and told
	// how each ended: a rate limit, a throttle and an outage hold, possibly
	// shared by several processes. Default: none, requests go at once.
	Gate Gate
}

// RequestObserver is told how each HTTP request to 2Checkout went: the
// method (login included), the class of its failure (ClassNone for
// success), and how long it took. It must be safe for concurrent use.
type RequestObserver interface {
	ObserveRequest(method string, class Class, took time.Duration)
}

// Defaults of Config.
const (
	DefaultRequestTimeout     = 15 * time.Second
	DefaultSessionTTL         = 10 * time.Minute
	DefaultRenewBefore        = time.Minute
	DefaultCredentialsBackoff = 5 * time.Second
	DefaultMaxResponseBytes   = 1 << 20
)

// Client calls 2Checkout's JSON-RPC 6.0 API. It is safe for concurrent use;
// share one per process.
type Client struct {
	cfg    Config
	url    string
	hc     *http.Client
	log    *zap.Logger
	now    func() time.Time
	nextID atomic.Int64

	mu      sync.Mutex
	sess    *session            // current session, nil if none
	pending map[bool]*loginCall // login in flight by priority, nil if none
	refused error               // the last login's credentials error, if any
	retryAt time.Time           // no login before this after a credentials error

	loginFailure atomic.Pointer[error] // last login's error, nil once one succeeds
}

// New validates cfg, fills in its defaults and returns a Client. Errors name
// the field at fault; the secret key never appears in them.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("rpcclient: URL %q: want an absolute http(s) URL", cfg.URL)
	}
	if err := CheckURL(u, cfg.AllowHTTP); err != nil {
		return nil, fmt.Errorf("rpcclient: URL %q: %w", cfg.URL, err)
	}
	if cfg.MerchantCode == "" {
		return nil, errors.New("rpcclient: MerchantCode is required")
	}
	if cfg.SecretKey == "" {
		return nil, errors.New("rpcclient: SecretKey is required")
	}
	if cfg.HashAlgo == "" {
		cfg.HashAlgo = HashMD5
	}
	if cfg.HashAlgo != HashMD5 && cfg.HashAlgo != HashSHA256 {
		return nil, fmt.Errorf("rpcclient: HashAlgo %q: want %q or %q", cfg.HashAlgo, HashMD5, HashSHA256)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"RequestTimeout", &cfg.RequestTimeout, DefaultRequestTimeout},
		{"SessionTTL", &cfg.SessionTTL, DefaultSessionTTL},
		{"RenewBefore", &cfg.RenewBefore, DefaultRenewBefore},
		{"CredentialsBackoff", &cfg.CredentialsBackoff, DefaultCredentialsBackoff},
	} {
		if err := defaults.Fill(d.name, d.v, d.def); err != nil {
			return nil, fmt.Errorf("rpcclient: %w", err)
		}
	}
	if cfg.RenewBefore >= cfg.SessionTTL {
		return nil, fmt.Errorf("rpcclient: RenewBefore %v must be shorter than SessionTTL %v", cfg.RenewBefore, cfg.SessionTTL)
	}
	if err := defaults.Fill("MaxResponseBytes", &cfg.MaxResponseBytes, DefaultMaxResponseBytes); err != nil {
		return nil, fmt.Errorf("rpcclient: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var hc *http.Client
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient // a copy: the caller's client keeps its own redirect rule
		hc = &c
	} else {
		hc = newHTTPClient(cfg.RootCAs)
	}
	hc.CheckRedirect = noRedirects
	return &Client{cfg: cfg, url: u.String(), hc: hc, log: cfg.Logger, now: cfg.Now, pending: map[bool]*loginCall{}}, nil
}

// CheckURL answers nil if u may be called: https always; http only to a
// loopback host, or to any host but 2Checkout's own when allowHTTP is set.
func CheckURL(u *url.URL, allowHTTP bool) error {
	if u.Scheme == "https" {
		return nil
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case loopback.Host(host):
		return nil
	case strings.HasSuffix(host, "2checkout.com") || strings.HasSuffix(host, "avangate.com") || strings.HasSuffix(host, "verifone.cloud"):
		return errors.New("2Checkout is only ever called over https")
	case !allowHTTP:
		return errors.New("plain http is allowed only to a loopback host (or a sandbox, with AllowHTTP)")
	}
	return nil
}

// newHTTPClient is the one http.Client of a Client: keep-alive, verified
// TLS, timeouts for connecting; send bounds each whole request by
// RequestTimeout.
func newHTTPClient(roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, CheckRedirect: noRedirects}
}

// noRedirects keeps every request at the configured URL: a redirect is
// never followed (it would carry the login's HMAC and the session to
// another host, around CheckURL's https rule), and send answers it as an
// unexpected answer.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// String describes the client without its secret.
func (c *Client) String() string {
	return fmt.Sprintf("rpcclient.Client{URL: %s, MerchantCode: %s, HashAlgo: %s}", c.url, c.cfg.MerchantCode, c.cfg.HashAlgo)
}

// LoginFailure answers the error of the most recent login if it failed, or
// nil if it succeeded (or none was made yet). Readiness checks use it.
func (c *Client) LoginFailure() error {
	if p := c.loginFailure.Load(); p != nil {
		return *p
	}
	return nil
}

// CancelRefund cancels the pending or approved refund of the order and
// answers the refund's ID (which may be empty if the server sent none).
//
// before, if not nil, runs each time the request may go — its Gate let it
// through — right before it is sent, so that no wait at the Gate comes
// between what before does and the request: a caller that must know the
// order's refund is still its own asks there, and one that records the
// request as on its way records it there. If before answers an error,
// nothing is sent (the Gate is told so) and CancelRefund answers that
// error as it is.
func (c *Client) CancelRefund(ctx context.Context, orderRef string, before func(context.Context) error) (string, error) {
	var raw json.RawMessage
	if err := c.callChecked(ctx, MethodCancelRefund, []any{orderRef}, &raw, before); err != nil {
		return "", err
	}
	id, err := ParseRefundID(raw)
	if err != nil {
		return "", &APIError{Method: MethodCancelRefund, Name: NameMalformedResponse, Message: err.Error(), HTTPStatus: http.StatusOK}
	}
	return id, nil
}

// ParseRefundID reads cancelRefund's result: a RefundID string, a number, an
// object with RefundID (or RefundId), or true (no ID given).
func ParseRefundID(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("unexpected cancelRefund result: %w", err)
	}
	switch x := v.(type) {
	case string:
		return clip.String(x, 200), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		if x {
			return "", nil
		}
	case map[string]any:
		for _, k := range []string{"RefundID", "RefundId", "refund_id"} {
			if s, ok := x[k].(string); ok {
				return clip.String(s, 200), nil
			}
			if f, ok := x[k].(float64); ok {
				return strconv.FormatFloat(f, 'f', -1, 64), nil
			}
		}
	}
	return "", fmt.Errorf("unexpected cancelRefund result %s", clip.String(string(raw), 100))
}

// Order is what getOrder answers, as far as this project reads it. The
// Refund* fields are the sandbox's extension; 2Checkout documents no method
// that returns a refund's own status, so on the real API they may be empty.
type Order struct {
	RefNo             string `json:"RefNo"`
	Status            string `json:"Status"`
	ApproveStatus     string `json:"ApproveStatus,omitempty"`
	RefundID          string `json:"RefundID,omitempty"`
	RefundStatus      string `json:"RefundStatus,omitempty"`
	RefundInitiatedAt string `json:"RefundInitiatedAt,omitempty"`
}

// GetOrder answers the order with the given reference.
func (c *Client) GetOrder(ctx context.Context, orderRef string) (*Order, error) {
	var o Order
	if err := c.call(ctx, MethodGetOrder, []any{orderRef}, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// IssueRefund asks for a refund of amount on the order, with no items (a
// total refund, as the demo and tests use it). It answers nil once the
// refund is PENDING.
func (c *Client) IssueRefund(ctx context.Context, orderRef string, amount float64, comment, reason string) error {
	var ok bool
	if err := c.call(ctx, MethodIssueRefund, []any{orderRef, amount, []any{}, comment, reason}, &ok); err != nil {
		return err
	}
	if !ok {
		return &APIError{Method: MethodIssueRefund, Name: NameMalformedResponse, Message: "result is not true", HTTPStatus: http.StatusOK}
	}
	return nil
}

// call makes a session call: params follow the session ID. On a session
// error it logs in again once and retries once.
func (c *Client) call(ctx context.Context, method string, params []any, out any) error {
	return c.callChecked(ctx, method, params, out, nil)
}

// callChecked is call with check run right before each send (see
// CancelRefund).
func (c *Client) callChecked(ctx context.Context, method string, params []any, out any, check func(context.Context) error) error {
	if t, ok := startDeadline(ctx); ok && !c.now().Before(t) {
		return ErrStartDeadline // not even a login
	}
	sess, err := c.session(ctx)
	if err != nil {
		return err
	}
	err = c.do(ctx, method, sess.id, params, out, check)
	if Classify(err) != ClassSession {
		return err
	}
	c.log.Debug("session refused; logging in again", zap.String("method", method), zap.Error(err))
	c.dropSession(sess)
	refused := err
	if sess, err = c.session(ctx); err != nil {
		return &ResendError{Refused: refused, Err: err}
	}
	if err = c.do(ctx, method, sess.id, params, out, check); err != nil && !Sent(err) {
		return &ResendError{Refused: refused, Err: err}
	}
	return err
}

// jsonMediaType is the value of both headers of every request; never
// changed (net/http copies headers it adds to).
var jsonMediaType = []string{"application/json"}

// do sends one JSON-RPC request and decodes its result into out. Its
// params are the session ID, unless empty, then params. check, if not nil,
// runs once the Gate let the request through (see CancelRefund).
func (c *Client) do(ctx context.Context, method, session string, params []any, out any, check func(context.Context) error) error {
	if t, ok := startDeadline(ctx); ok && !c.now().Before(t) {
		return ErrStartDeadline
	}
	if err := ctx.Err(); err != nil {
		return &TransportError{Method: method, Err: err, NotSent: true}
	}
	if err := c.gateWait(ctx, method); err != nil {
		return err
	}
	if check != nil {
		err := c.runBefore(ctx, method, check)
		if err == nil {
			if t, ok := startDeadline(ctx); ok && !c.now().Before(t) {
				err = ErrStartDeadline // the check took the time left
			}
		}
		if err != nil {
			c.gateDone(ctx, method, &TransportError{Method: method, Err: err, NotSent: true})
			return err
		}
	}
	if c.cfg.Observer == nil {
		err := c.send(ctx, method, session, params, out)
		c.gateDone(ctx, method, err)
		return err
	}
	start := time.Now() // wall clock: a duration, whatever c.now reads
	err := c.send(ctx, method, session, params, out)
	c.cfg.Observer.ObserveRequest(method, Classify(err), time.Since(start))
	c.gateDone(ctx, method, err)
	return err
}

// runBefore runs a caller's before (see CancelRefund) for a request the
// Gate let through; if it panics, the Gate is told the request was not
// sent before the panic goes on.
func (c *Client) runBefore(ctx context.Context, method string, before func(context.Context) error) error {
	defer func() {
		if r := recover(); r != nil {
			c.gateDone(ctx, method, &TransportError{Method: method, Err: errors.New("not sent: the caller's before panicked"), NotSent: true})
			panic(r)
		}
	}()
	return before(ctx)
}

// send makes the HTTP round trip of one request, answer read included,
// bounded by RequestTimeout unless the caller's deadline comes sooner: one
// timer per request, not one per stage.
func (c *Client) send(ctx context.Context, method, session string, params []any, out any) error {
	caller := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > c.cfg.RequestTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	// timedOut says which deadline ended a failed request: RequestTimeout's
	// own, or the caller's (same class either way).
	timedOut := func(err error) error {
		if caller.Err() == nil && ctx.Err() != nil {
			return fmt.Errorf("no answer within RequestTimeout %v: %w", c.cfg.RequestTimeout, err)
		}
		return err
	}
	id := c.nextID.Add(1)
	body, err := encodeRequest(method, id, session, params)
	if err != nil {
		return fmt.Errorf("2checkout %s: encode request: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("2checkout %s: %w", method, err)
	}
	req.Header = http.Header{"Content-Type": jsonMediaType, "Accept": jsonMediaType} // canonical keys: no Set per request
	resp, err := c.hc.Do(req)
	if err != nil {
		return &TransportError{Method: method, Err: timedOut(stripURL(err))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return &TransportError{Method: method, Err: timedOut(fmt.Errorf("read answer: %w", err))}
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return redirected(method, resp)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return &APIError{Method: method, Name: NameMalformedResponse, HTTPStatus: resp.StatusCode,
			Message: fmt.Sprintf("answer larger than %d bytes", c.cfg.MaxResponseBytes)}
	}
	return DecodeResponse(method, id, resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After"), c.now()), data, out)
}

// redirected is the error for a 3xx answer, which is never followed: an
// unexpected answer (NameMalformedResponse: transient, and it may have
// applied, since what stands at the URL is not what was expected), saying
// where it pointed.
func redirected(method string, resp *http.Response) error {
	where := "no Location"
	if loc := resp.Header.Get("Location"); loc != "" {
		where = "Location " + strconv.QuoteToASCII(clip.String(loc, 200))
	}
	return &APIError{Method: method, Name: NameMalformedResponse, HTTPStatus: resp.StatusCode,
		Message: fmt.Sprintf("redirect not followed (HTTP %d, %s)", resp.StatusCode, where)}
}

// stripURL drops the URL from *url.Error so errors stay short and never carry
// query strings; the method name already says which call failed.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
