package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/refundd/refund-canceller/internal/clip"
)

// equal compares secrets in constant time, whatever their lengths.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// BasicAuth admits requests with the user and password; others get 401 with
// a challenge, before any of their body is read. lim, if not nil, limits
// the failed attempts of each client address.
func BasicAuth(user, password, realm string, lim *FailureLimit, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, sent := r.BasicAuth()
		at, ok := lim.begin(w, r, sent)
		if !ok {
			return
		}
		// Both comparisons always run: no early exit to time.
		userOK, passOK := equal(u, user), equal(p, password)
		if !sent || !userOK || !passOK {
			at.end(r, "basic", false)
			w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
			refuse(w, r, http.StatusUnauthorized, "authentication required")
			return
		}
		at.end(r, "basic", true)
		next.ServeHTTP(w, r)
	})
}

// Bearer admits requests carrying "Authorization: Bearer <token>"; others
// get 401 before any of their body is read. lim, if not nil, limits the
// failed attempts of each client address.
func Bearer(token string, lim *FailureLimit, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, sent := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		at, ok := lim.begin(w, r, sent)
		if !ok {
			return
		}
		if !sent || !equal(got, token) {
			at.end(r, "bearer", false)
			w.Header().Set("WWW-Authenticate", `Bearer realm="refundd"`)
			refuse(w, r, http.StatusUnauthorized, "a valid bearer token is required (Authorization: Bearer $API_TOKEN)")
			return
		}
		at.end(r, "bearer", true)
		next.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Error string `json:"error"`
}

// Reasons an Observer is told of.
const (
	// RefusedAuth: a request with wrong or missing credentials (401).
	RefusedAuth = "auth_failed"
	// RefusedAuthThrottled: a request from an address past its failed
	// attempts (429), credentials not looked at.
	RefusedAuthThrottled = "auth_throttled"
	// RefusedEnqueueRate: an enqueue past API_ENQUEUE_RATE (429).
	RefusedEnqueueRate = "enqueue_rate"
)

// Observer is told of each request the ops server refuses for one of the
// reasons above (metrics). It must be safe for concurrent use.
type Observer interface {
	OpsRefused(reason string)
}

// Defaults of FailureLimitConfig.
const (
	// DefaultAuthFailures is how many failed attempts an address may make at
	// once.
	DefaultAuthFailures = 10
	// DefaultAuthFailureRefill is how often an address regains one.
	DefaultAuthFailureRefill = 6 * time.Second
	// maxAddresses bounds the addresses remembered; past it, those back to
	// a full bucket are forgotten, and if none are, all are.
	maxAddresses = 100_000
)

// FailureLimitConfig configures a FailureLimit. Zero fields take the
// defaults.
type FailureLimitConfig struct {
	// Failures is the bucket's size: failed attempts an address may make
	// before it is refused (AUTH_FAILURES).
	Failures int
	// Refill: an address regains one failed attempt this often
	// (AUTH_FAILURE_REFILL).
	Refill time.Duration
	// Logger receives a warn line per failed attempt and per address
	// throttled, with the address, never the credential.
	Logger *zap.Logger
	// Observer counts the refusals. Optional.
	Observer Observer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// FailureLimit limits failed authentication attempts per client address
// (its IP; an IPv6 address by its /64, which one host usually holds
// whole): a token bucket per address, one token per failed attempt. An
// attempt in flight holds a token until it is judged, so parallel guesses
// cannot overrun the bucket. An address without a token left gets 429 with
// Retry-After — before its credentials are looked at, so the right ones
// wait too — until it regains one; other addresses are not affected. A
// request that sends no credentials at all (a browser's first, answered with
// the challenge) is no attempt. The address is the connection's: behind a
// proxy every client shares the proxy's (refundd does not trust
// X-Forwarded-For), so put the limit in the proxy instead. A nil
// *FailureLimit limits nothing.
type FailureLimit struct {
	cfg FailureLimitConfig
	mu  sync.Mutex
	by  map[string]*bucket
}

// bucket is one address's failed attempts. Its fields are guarded by the
// FailureLimit's mu.
type bucket struct {
	tokens   *rate.Limiter
	inFlight int // attempts admitted, not yet judged: each holds a token
}

// NewFailureLimit returns a FailureLimit.
func NewFailureLimit(cfg FailureLimitConfig) *FailureLimit {
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultAuthFailures
	}
	if cfg.Refill <= 0 {
		cfg.Refill = DefaultAuthFailureRefill
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &FailureLimit{cfg: cfg, by: map[string]*bucket{}}
}

// attempt is one admitted authentication attempt; nil when nothing is
// limited or no credentials were sent.
type attempt struct {
	l    *FailureLimit
	b    *bucket
	addr string
}

// begin admits an attempt from r's address (sent: it carries credentials),
// or answers 429 and false if the address has no attempt left.
func (l *FailureLimit) begin(w http.ResponseWriter, r *http.Request, sent bool) (*attempt, bool) {
	if l == nil {
		return nil, true
	}
	addr := clientAddress(r)
	now := l.cfg.Now()
	l.mu.Lock()
	b := l.by[addr]
	if b == nil && sent {
		l.prune(now)
		b = &bucket{tokens: rate.NewLimiter(rate.Every(l.cfg.Refill), l.cfg.Failures)}
		l.by[addr] = b
	}
	var wait time.Duration
	if b != nil {
		wait = until(b.tokens, now, b.inFlight+1)
		if wait <= 0 && sent {
			b.inFlight++
		}
	}
	l.mu.Unlock()
	if wait > 0 {
		l.observe(RefusedAuthThrottled)
		setRetryAfter(w, wait)
		refuse(w, r, http.StatusTooManyRequests, "too many failed authentication attempts from this address; try again later")
		return nil, false
	}
	if !sent {
		return nil, true
	}
	return &attempt{l: l, b: b, addr: addr}, true
}

// end judges the attempt: a failure spends its token, a success keeps it.
func (a *attempt) end(r *http.Request, scheme string, ok bool) {
	if a == nil {
		return
	}
	l := a.l
	now := l.cfg.Now()
	l.mu.Lock()
	a.b.inFlight--
	if !ok {
		a.b.tokens.AllowN(now, 1)
	}
	left := int(a.b.tokens.TokensAt(now)) - a.b.inFlight
	l.mu.Unlock()
	if ok {
		return
	}
	l.observe(RefusedAuth)
	fields := []zap.Field{zap.String("address", a.addr), zap.String("scheme", scheme), zap.String("method", r.Method),
		zap.String("path", clip.String(r.URL.Path, 100)), zap.Int("attempts_left", max(0, left))}
	if left <= 0 {
		l.cfg.Logger.Warn("authentication failed; this address is refused (429) until it regains an attempt", append(fields, zap.Duration("refill", l.cfg.Refill))...)
		return
	}
	l.cfg.Logger.Warn("authentication failed", fields...)
}

// prune forgets addresses back to a full bucket, none in flight, once too
// many are held; if none is, it forgets all (the map's size stays bounded;
// attempts in flight keep their bucket). Called with mu held.
func (l *FailureLimit) prune(now time.Time) {
	if len(l.by) < maxAddresses {
		return
	}
	for a, b := range l.by {
		if b.inFlight == 0 && b.tokens.TokensAt(now) >= float64(l.cfg.Failures) {
			delete(l.by, a)
		}
	}
	if len(l.by) >= maxAddresses {
		clear(l.by)
	}
}

func (l *FailureLimit) observe(reason string) {
	if l.cfg.Observer != nil {
		l.cfg.Observer.OpsRefused(reason)
	}
}

// clientAddress answers the connection's IP; an IPv6 address as its /64.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
