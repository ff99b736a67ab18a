package rpcclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// APIError is the one error type for every answer 2Checkout (or something in
// front of it) gave that was not a success: a JSON-RPC error object, an HTTP
// status without one, or a body that could not be read as JSON-RPC.
//
// Transport failures (refused connections, resets, timeouts) are not APIErrors:
// they come back wrapped as *TransportError. Classify decides what either means.
type APIError struct {
	// Method is the JSON-RPC method called.
	Method string
	// Code is the JSON-RPC error code; 0 when the answer carried none.
	Code int
	// Name is the error's name (data.error_code, or derived from Code), e.g.
	// REFUND_NOT_CANCELLABLE, HTTP_STATUS, MALFORMED_RESPONSE.
	Name string
	// Message is the vendor's message, or a description of what was wrong.
	Message string
	// HTTPStatus is the HTTP status code of the answer.
	HTTPStatus int
	// RetryAfter is the server's Retry-After, zero when it sent none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("2checkout %s: %d %s: %s", e.Method, e.Code, e.Name, e.Message)
	}
	return fmt.Sprintf("2checkout %s: %s (HTTP %d): %s", e.Method, e.Name, e.HTTPStatus, e.Message)
}

// TransportError is a call that got no answer: the connection failed, was
// dropped, or timed out. The request may or may not have reached 2Checkout
// (MaybeApplied tells).
type TransportError struct {
	Method string
	Err    error
	// NotSent: the caller's context ended before the request was sent.
	NotSent bool
}

func (e *TransportError) Error() string { return fmt.Sprintf("2checkout %s: %v", e.Method, e.Err) }
func (e *TransportError) Unwrap() error { return e.Err }

// ErrStartDeadline is returned, unwrapped, when a request would start at or
// after the start deadline set with WithStartDeadline. No request was sent.
var ErrStartDeadline = errors.New("request not started: start deadline passed")

// Class is what a failure means for whoever decides to retry.
type Class int

// The classes of failure. Classify is the one place that assigns them.
const (
	// ClassNone: no error.
	ClassNone Class = iota
	// ClassTransient: worth retrying later — network errors, timeouts, 5xx,
	// 429, a malformed answer, a JSON-RPC internal error.
	ClassTransient
	// ClassSession: the session was refused; the client logs in again and
	// retries once by itself, so callers see this class only if that failed too.
	ClassSession
	// ClassCredentials: login refused — merchant code, secret key, hash
	// algorithm, or the clock is wrong. Retrying helps only once an operator
	// fixes it.
	ClassCredentials
	// ClassPermanent: 2Checkout refused the request for a reason we know and
	// that retrying will not change (order unknown, refund not cancellable,
	// window passed, malformed request, one of the vendor's documented
	// refusal messages).
	ClassPermanent
	// ClassNotStarted: the request was not sent because its start deadline
	// had passed (ErrStartDeadline). A caller's context that ended before
	// sending is not this class but ClassTransient (a *TransportError with
	// NotSent): it says nothing about the window, only that the caller
	// stopped waiting, and a later call may well succeed.
	ClassNotStarted
	// ClassUnknown: 2Checkout (or something in front of it) answered with
	// an error this package does not recognise: a code without a known name
	// or documented message, or an HTTP 4xx without a JSON-RPC error.
	// 2Checkout documents no error codes for cancelRefund, so against the
	// real API most refusals land here. Not a permanent refusal: worth a few
	// more tries before giving up.
	ClassUnknown
)

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTransient:
		return "transient"
	case ClassSession:
		return "session"
	case ClassCredentials:
		return "credentials"
	case ClassPermanent:
		return "permanent"
	case ClassNotStarted:
		return "not_started"
	case ClassUnknown:
		return "unknown"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Classify tells what err means. It is the only place in the project that
// decides whether a failure is worth retrying.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	if errors.Is(err, ErrStartDeadline) {
		return ClassNotStarted
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return classifyAPI(ae)
	}
	// Transport errors, the caller's own timeouts and anything unexpected:
	// the vendor did not refuse, so it is worth another try.
	return ClassTransient
}

func classifyAPI(e *APIError) Class {
	name := e.Name
	if name == "" || name == NameHTTPStatus {
		if n := NameOf(e.Code); n != "" {
			name = n
		}
	}
	switch name {
	case NameMalformedResponse, NameInternalError:
		return ClassTransient
	case NameHTTPStatus:
		if e.HTTPStatus == http.StatusTooManyRequests || e.HTTPStatus >= 500 || e.HTTPStatus == http.StatusRequestTimeout {
			return ClassTransient
		}
		return ClassUnknown // a proxy's 403 or 404 is not 2Checkout refusing the refund
	case NameAuthenticationFailed:
		return ClassCredentials
	case NameForbidden, NameInvalidSession, NameSessionExpired:
		if e.Method == MethodLogin {
			// A refused login is never a session problem: the hash is wrong.
			return ClassCredentials
		}
		return ClassSession
	case NameNotAllowed:
		return ClassCredentials
	case NameInvalidOrderReference, NameOrderNotFound, NameNoRefund, NameRefundNotCancellable, NameRefundWindowExpired,
		NamePendingRefundExists, NameOrderCanceled, NameOrderNotRefundable, NameTotalRefundExists, NameAmountExceeded,
		NameRefundPeriodExpired, NameParseError, NameInvalidRequest, NameMethodNotFound, NameInvalidParams:
		return ClassPermanent
	}
	return ClassUnknown
}

// MaybeApplied reports whether the failed call may nevertheless have been
// carried out by 2Checkout, its answer lost: a request that was sent and
// then timed out or lost its connection, a 5xx or 408 (a proxy may answer
// that after the call went through), a malformed answer, a JSON-RPC
// internal error. It is false for answers that say the call was refused
// (an error object we know or do not know, 429, a 4xx), for calls never
// sent (start deadline, the caller's context ended first, a refused
// connection), and for failures of the login before the call.
func MaybeApplied(err error) bool {
	if err == nil || errors.Is(err, ErrStartDeadline) {
		return false
	}
	var ge *GateError
	if errors.As(err, &ge) {
		return false // the Gate refused it: never sent
	}
	var te *TransportError
	if errors.As(err, &te) {
		var oe *net.OpError
		return !te.NotSent && te.Method != MethodLogin && !(errors.As(te.Err, &oe) && oe.Op == "dial")
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Method == MethodLogin {
			return false
		}
		switch ae.Name {
		case NameMalformedResponse, NameInternalError:
			return true
		case NameHTTPStatus:
			return ae.HTTPStatus >= 500 || ae.HTTPStatus == http.StatusRequestTimeout
		}
		return false
	}
	return true // unexpected: assume the worst
}

// RetryAfter answers the server's Retry-After for err, if it sent one.
func RetryAfter(err error) (time.Duration, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter, true
	}
	return 0, false
}

// IsName reports whether err is an *APIError with the given name.
func IsName(err error, name string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Name == name
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

type startDeadlineKey struct{}

// WithStartDeadline returns a context under which no request is started at or
// after t (by the client's clock); such calls fail with ErrStartDeadline
// without sending. Running requests are bounded by the context's own deadline.
func WithStartDeadline(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, startDeadlineKey{}, t)
}

func startDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(startDeadlineKey{}).(time.Time)
	return t, ok
}

// ResendError is the error of a request whose first send was refused for
// its session (Refused: it reached 2Checkout and was not applied) and whose
// resend, after a new login, was not sent (Err: the login failed, the Gate
// held it, its start deadline passed). It is Err to errors.Is and As.
type ResendError struct {
	Refused error
	Err     error
}

func (e *ResendError) Error() string {
	return fmt.Sprintf("%v (its first send was refused for its session: %v)", e.Err, e.Refused)
}

// Unwrap answers Err.
func (e *ResendError) Unwrap() error { return e.Err }

// Sent reports whether a request that ended with err may have reached
// 2Checkout: not one the Gate or the start deadline held back, nor one its
// caller's context ended before it left.
func Sent(err error) bool {
	var ge *GateError
	var te *TransportError
	return !errors.Is(err, ErrStartDeadline) && !errors.As(err, &ge) && !(errors.As(err, &te) && te.NotSent)
}
