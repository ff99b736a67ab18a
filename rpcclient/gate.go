package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Gate paces a Client's requests: a rate limit, or a pause the vendor asked
// for, possibly shared with other processes. The client asks it before every
// HTTP request (login included) and tells it when 2Checkout answers 429 or
// 503 with a Retry-After. Implementations must be safe for concurrent use.
type Gate interface {
	// Wait blocks until a request for method may be sent. It answers nil to
	// send it now; ErrStartDeadline, without waiting, when the request could
	// not start before the start deadline in ctx (see StartDeadline); or
	// another error (the context ended, the gate is unavailable), which the
	// client returns as a *GateError. A refused request spends no budget.
	Wait(ctx context.Context, method string) error
	// Pause is told that 2Checkout asked, in answer to method, that no
	// request be sent for d.
	Pause(ctx context.Context, method string, d time.Duration)
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
		return ErrStartDeadline // whatever the gate did, no request starts late
	}
	return err
}

// gatePause tells the gate, if any, of a 429 or 503 that carried a
// Retry-After, so that no request is sent until it has passed.
func (c *Client) gatePause(ctx context.Context, method string, err error) {
	var ae *APIError
	if c.cfg.Gate == nil || !errors.As(err, &ae) || ae.RetryAfter <= 0 {
		return
	}
	if ae.HTTPStatus == http.StatusTooManyRequests || ae.HTTPStatus == http.StatusServiceUnavailable {
		c.cfg.Gate.Pause(ctx, method, ae.RetryAfter)
	}
}
