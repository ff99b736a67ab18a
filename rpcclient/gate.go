package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Gate paces a Client's requests: a rate limit, a throttle when the vendor
// refuses requests for load, a hold while a method is down — possibly shared
// with other processes. The client asks it before every HTTP request (login included)
// and tells it how each request it let through ended. Implementations must
// be safe for concurrent use.
type Gate interface {
	// Wait blocks until a request for method may be sent. It answers nil to
	// send it now; ErrStartDeadline, without waiting, when the request could
	// not start before the start deadline in ctx (see StartDeadline); or
	// another error (the context ended, the gate is unavailable), which the
	// client returns as a *GateError. A refused request spends no budget.
	Wait(ctx context.Context, method string) error
	// Done is told how a request for method that Wait let through ended:
	// err is nil or what the Client returns for it (SlowDownAsked and
	// Unavailable read it).
	Done(ctx context.Context, method string, err error)
}

// GateError is a request the Client did not send because its Gate refused
// it (for a reason other than the start deadline): the gate was unavailable
// or the caller's context ended while it waited. Nothing reached 2Checkout.
type GateError struct {
	Method string
	Err    error
}

func (e *GateError) Error() string {
	return fmt.Sprintf("2checkout %s: not sent: %v", e.Method, e.Err)
}

// Unwrap answers the gate's error.
func (e *GateError) Unwrap() error { return e.Err }

// StartDeadline answers the start deadline set on ctx with WithStartDeadline,
// for a Gate that must not make a request wait past it.
func StartDeadline(ctx context.Context) (time.Time, bool) { return startDeadline(ctx) }

// gateWait asks the gate, if any, for leave to send method.
func (c *Client) gateWait(ctx context.Context, method string) error {
	if c.cfg.Gate == nil {
		return nil
	}
	err := c.cfg.Gate.Wait(ctx, method)
	if err != nil && !errors.Is(err, ErrStartDeadline) {
		return &GateError{Method: method, Err: err}
	}
	if t, ok := startDeadline(ctx); ok && !c.now().Before(t) {
		if err == nil {
			c.gateDone(ctx, method, ErrStartDeadline) // let through, but not sent
		}
		return ErrStartDeadline // whatever the gate did, no request starts late
	}
	return err
}

// gateDone tells the gate, if any, how a request it let through ended.
func (c *Client) gateDone(ctx context.Context, method string, err error) {
	if c.cfg.Gate != nil {
		c.cfg.Gate.Done(ctx, method, err)
	}
}

// priorityKey marks a context made by WithPriority.
type priorityKey struct{}

// WithPriority marks the requests made with ctx as ones a Gate must never
// hold back for the fleet's sake: the last retry placed just before a
// task's cut-off, and the getOrder that settles an ambiguous attempt. Each
// is one request of one task, so sending it costs the fleet little, and
// holding it costs a refund. A Gate sends them whatever its throttle or
// outage hold says, and counts them like any other. The rate limit the
// operator configured (the ceiling agreed with 2Checkout) and the start
// deadline (WithStartDeadline) still hold.
func WithPriority(ctx context.Context) context.Context {
	return context.WithValue(ctx, priorityKey{}, true)
}

// probeLastKey marks a context made by WithProbeLast.
type probeLastKey struct{}

// WithProbeLast marks the requests made with ctx as the ones a Gate picks
// last to probe a method that is out (one real request per probe
// interval): a first cancel of a task, whose failure would cost its task
// a check of its refund before it retries. They may probe one interval
// after the claim lapses; others (a retry's cancel, which checks anyway; a
// login; a read) at once.
func WithProbeLast(ctx context.Context) context.Context {
	return context.WithValue(ctx, probeLastKey{}, true)
}

// ProbeLast reports whether ctx was made by WithProbeLast.
func ProbeLast(ctx context.Context) bool {
	p, _ := ctx.Value(probeLastKey{}).(bool)
	return p
}

// Priority reports whether ctx was made by WithPriority.
func Priority(ctx context.Context) bool {
	p, _ := ctx.Value(priorityKey{}).(bool)
	return p
}

// SlowDownAsked answers how long 2Checkout asked, with err, that no request
// be sent: a 429 or 503 with a Retry-After. A Gate counts such an answer as
// a request refused for load.
func SlowDownAsked(err error) (time.Duration, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.RetryAfter <= 0 {
		return 0, false
	}
	if ae.HTTPStatus == http.StatusTooManyRequests || ae.HTTPStatus == http.StatusServiceUnavailable {
		return ae.RetryAfter, true
	}
	return 0, false
}

// Unavailable reports whether err says 2Checkout is not answering the way a
// working service does: no answer at all (a connection refused or lost, a
// timeout), HTTP 408, 429 or any 5xx, or an answer that is not JSON-RPC. An
// error object in a JSON-RPC answer — whatever it says — means the service
// is up, as does success. A request the client never sent, or its caller
// cancelled, is neither.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrStartDeadline) {
		return false
	}
	var ge *GateError
	if errors.As(err, &ge) {
		return false
	}
	var te *TransportError
	if errors.As(err, &te) {
		// Cancelled by its caller (a shutdown): that says nothing of 2Checkout.
		return !te.NotSent && !errors.Is(te.Err, context.Canceled)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Name {
		case NameMalformedResponse:
			return true
		case NameHTTPStatus:
			return ae.HTTPStatus >= 500 || ae.HTTPStatus == http.StatusRequestTimeout || ae.HTTPStatus == http.StatusTooManyRequests
		}
		return false
	}
	return true // unexpected: assume the worst
}
