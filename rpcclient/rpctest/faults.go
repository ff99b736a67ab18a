package rpctest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault kinds.
const (
	FaultLatency       = "latency"         // delay the answer by Latency plus up to Jitter
	FaultStatus        = "status"          // answer an HTTP Status (e.g. 500, 502, 503, 429) without applying the call
	FaultDrop          = "drop"            // close the connection without answering or applying
	FaultHang          = "hang"            // never answer (until the client gives up); nothing applied
	FaultMalformed     = "malformed"       // answer 200 with a body that is not JSON; nothing applied
	FaultExpireSession = "expire_session"  // expire the caller's session, then serve the call
	FaultApplyThenDrop = "apply_then_drop" // apply the call, then drop the connection (or answer Status if set)
	FaultRPCError      = "rpc_error"       // answer HTTP 200 with the JSON-RPC error object {Code, Message} (no data); nothing applied
	FaultRateLimit     = "rate_limit"      // a token bucket of Rate per second and Burst: a call above it is answered 429 with Retry-After (whole seconds, at least 1); nothing applied
)

// FaultRule is one fault-injection rule, as POST /admin/faults takes it.
//
//	{"method":"cancelRefund","kind":"status","status":503,"retry_after":2,"probability":0.5,"first_n":10}
//	{"method":"cancelRefund","kind":"rpc_error","code":300,"message":"Refund cannot be canceled","first_n":2}
//	{"method":"cancelRefund","kind":"rate_limit","rate":20,"burst":5}
type FaultRule struct {
	// Method limits the rule to one JSON-RPC method; empty matches all.
	Method string `json:"method,omitempty"`
	// Kind is one of the Fault* constants.
	Kind string `json:"kind"`
	// Status is the HTTP status for "status" (required) and
	// "apply_then_drop" (optional: answer it instead of dropping).
	Status int `json:"status,omitempty"`
	// RetryAfter, in seconds, is sent as Retry-After with "status".
	RetryAfter int `json:"retry_after,omitempty"`
	// Code and Message, for "rpc_error": the error object's code (required,
	// non-zero) and message (required), sent as they are, without data.
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Rate (calls per second, positive) and Burst (default 1), for
	// "rate_limit": the calls the rule matches share one token bucket that
	// holds Burst tokens and gains Rate a second; a call finding it empty
	// is answered 429 with the whole seconds until a token comes (at
	// least 1) as Retry-After.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Latency and Jitter, for "latency": a fixed delay plus a random one up to Jitter.
	Latency Duration `json:"latency,omitzero"`
	Jitter  Duration `json:"jitter,omitzero"`
	// Probability that a matching call is hit, 0 to 1. Default 1.
	Probability *float64 `json:"probability,omitempty"`
	// FirstN limits the rule to the first N matching calls; 0 means all.
	FirstN int `json:"first_n,omitempty"`
}

// Duration is a time.Duration written in JSON as a Go duration string ("3s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "3s"-style strings (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: want a string like \"3s\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

func (r *FaultRule) validate() error {
	switch r.Kind {
	case FaultLatency:
		if r.Latency < 0 || r.Jitter < 0 || r.Latency+r.Jitter <= 0 {
			return fmt.Errorf("kind latency wants a positive latency and/or jitter")
		}
	case FaultStatus:
		if r.Status < 400 || r.Status > 599 {
			return fmt.Errorf("kind status wants status 400-599, got %d", r.Status)
		}
	case FaultApplyThenDrop:
		if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
			return fmt.Errorf("kind apply_then_drop: status must be 400-599 or absent, got %d", r.Status)
		}
	case FaultRPCError:
		if r.Code == 0 || r.Message == "" {
			return fmt.Errorf("kind rpc_error wants a non-zero code and a message")
		}
	case FaultRateLimit:
		if !(r.Rate > 0) || r.Burst < 0 {
			return fmt.Errorf("kind rate_limit wants a positive rate and a burst of 0 (1) or more, got rate %v, burst %d", r.Rate, r.Burst)
		}
	case FaultDrop, FaultHang, FaultMalformed, FaultExpireSession:
	default:
		return fmt.Errorf("unknown kind %q (want latency, status, drop, hang, malformed, expire_session, apply_then_drop, rpc_error or rate_limit)", r.Kind)
	}
	if r.RetryAfter < 0 {
		return fmt.Errorf("retry_after must not be negative")
	}
	if r.Probability != nil && (*r.Probability < 0 || *r.Probability > 1) {
		return fmt.Errorf("probability must be between 0 and 1")
	}
	if r.FirstN < 0 {
		return fmt.Errorf("first_n must not be negative")
	}
	return nil
}

// ParseFaultRules reads one rule or an array of rules and validates them.
func ParseFaultRules(b []byte) ([]FaultRule, error) {
	var rules []FaultRule
	trimmed := strings.TrimSpace(string(b))
	dec := func(v any) error {
		d := json.NewDecoder(strings.NewReader(trimmed))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}
	if strings.HasPrefix(trimmed, "[") {
		if err := dec(&rules); err != nil {
			return nil, fmt.Errorf("fault rules: %w", err)
		}
	} else {
		var r FaultRule
		if err := dec(&r); err != nil {
			return nil, fmt.Errorf("fault rule: %w", err)
		}
		rules = []FaultRule{r}
	}
	for i := range rules {
		if err := rules[i].validate(); err != nil {
			return nil, fmt.Errorf("fault %d: %w", i, err)
		}
	}
	return rules, nil
}

type faultSet struct {
	mu      sync.Mutex
	rng     *rand.Rand
	now     func() time.Time
	list    []FaultRule
	seen    []int    // matching calls per rule
	buckets []bucket // per rule, for rate_limit
	empty   bool     // fast path: no rules
}

// bucket is a rate_limit rule's token bucket.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was counted
}

// take answers 0 if a token was there (and takes it), else the wait until
// one comes.
func (b *bucket) take(now time.Time, rate float64, burst int) time.Duration {
	size := float64(max(burst, 1))
	if b.at.IsZero() {
		b.tokens = size
	} else if d := now.Sub(b.at); d > 0 {
		b.tokens = min(size, b.tokens+d.Seconds()*rate)
	}
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

func newFaultSet(seed int64, now func() time.Time) *faultSet {
	return &faultSet{rng: rand.New(rand.NewPCG(uint64(seed), 0x2c0)), now: now, empty: true}
}

func (f *faultSet) set(rules []FaultRule) {
	f.mu.Lock()
	f.list = append([]FaultRule(nil), rules...)
	f.seen = make([]int, len(rules))
	f.buckets = make([]bucket, len(rules))
	f.empty = len(rules) == 0
	f.mu.Unlock()
}

func (f *faultSet) rules() []FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FaultRule{}, f.list...)
}

// action is what the faults do to one call.
type action struct {
	kind          string
	latency       time.Duration
	expireSession bool
	// answer, if set, answers in the server's place; the call is not applied.
	answer func(w http.ResponseWriter, r *http.Request, id json.RawMessage, closed <-chan struct{})
	// after, if set, answers in the server's place after the call is applied.
	after func(w http.ResponseWriter, r *http.Request)
}

func (f *faultSet) match(method string) action {
	var a action
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.empty {
		return a
	}
	var kinds []string
	for i := range f.list {
		r := &f.list[i]
		if r.Method != "" && r.Method != method {
			continue
		}
		f.seen[i]++
		if r.FirstN > 0 && f.seen[i] > r.FirstN {
			continue
		}
		if r.Probability != nil && f.rng.Float64() >= *r.Probability {
			continue
		}
		switch r.Kind {
		case FaultLatency:
			a.latency += time.Duration(r.Latency)
			if r.Jitter > 0 {
				a.latency += time.Duration(f.rng.Int64N(int64(r.Jitter)))
			}
		case FaultExpireSession:
			a.expireSession = true
		case FaultApplyThenDrop:
			if a.answer != nil || a.after != nil {
				continue
			}
			status := r.Status
			a.after = func(w http.ResponseWriter, _ *http.Request) {
				if status != 0 {
					writeStatus(w, status, 0)
					return
				}
				dropConn(w)
			}
		case FaultRateLimit:
			if a.answer != nil || a.after != nil {
				continue
			}
			wait := f.buckets[i].take(f.now(), r.Rate, r.Burst)
			if wait == 0 {
				continue // under the limit: served
			}
			retryAfter := max(1, int(math.Ceil(wait.Seconds())))
			a.answer = func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage, _ <-chan struct{}) {
				writeStatus(w, http.StatusTooManyRequests, retryAfter)
			}
		default:
			if a.answer != nil || a.after != nil {
				continue
			}
			a.answer = answerFor(*r)
		}
		kinds = append(kinds, r.Kind)
	}
	a.kind = strings.Join(kinds, "+")
	return a
}

func answerFor(r FaultRule) func(http.ResponseWriter, *http.Request, json.RawMessage, <-chan struct{}) {
	switch r.Kind {
	case FaultStatus:
		return func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage, _ <-chan struct{}) {
			writeStatus(w, r.Status, r.RetryAfter)
		}
	case FaultDrop:
		return func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage, _ <-chan struct{}) { dropConn(w) }
	case FaultRPCError:
		return func(w http.ResponseWriter, _ *http.Request, id json.RawMessage, _ <-chan struct{}) {
			writeWire(w, http.StatusOK, id, nil, &wireError{Code: r.Code, Message: r.Message})
		}
	case FaultHang:
		return func(w http.ResponseWriter, req *http.Request, _ json.RawMessage, closed <-chan struct{}) {
			select {
			case <-req.Context().Done():
			case <-closed:
			}
			dropConn(w)
		}
	default: // FaultMalformed
		return func(w http.ResponseWriter, _ *http.Request, _ json.RawMessage, _ <-chan struct{}) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":<html>upstream error`))
		}
	}
}

// writeStatus answers like a proxy in front of the API would: an HTML body.
func writeStatus(w http.ResponseWriter, status, retryAfter int) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", status, http.StatusText(status))
}

// dropConn closes the connection with no answer.
func dropConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http's documented way to abort a response
}
