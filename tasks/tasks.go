// Package tasks is the producers' contract for refund cancellations: the
// task type, its payload and validation, the task constructor, and an
// enqueue helper that answers "already queued" instead of making a second
// task for the same order.
//
// A producer builds a CancelRefund, and enqueues it with an Enqueuer (or
// builds the *asynq.Task with NewTask and enqueues it itself). The refundd
// workers do the rest. The package knows nothing of 2Checkout's wire format.
package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// TypeCancelRefund is the asynq task type of a refund cancellation.
const TypeCancelRefund = "refund:cancel"

// Defaults of the task options.
const (
	// DefaultQueue is the queue cancellations go to.
	DefaultQueue = "refunds"
	// Window is how long after its initiation 2Checkout lets a refund be cancelled.
	Window = 2 * time.Hour
	// DefaultRetention keeps a finished task, with its result, for 7 days.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultTimeout bounds one handler run (one attempt).
	DefaultTimeout = time.Minute
	// DefaultMaxRetry is high on purpose: the cancellation window, not the
	// retry counter, ends a task that keeps failing transiently.
	DefaultMaxRetry = 10000
	// FutureSkew is how far in the future refund_initiated_at may lie
	// (clock skew between systems) before it is rejected.
	FutureSkew = 5 * time.Minute
	// MaxPayloadBytes caps a payload's size.
	MaxPayloadBytes = 8 << 10
)

// CancelRefund is the payload of a refund:cancel task.
//
//	{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"duplicate request","requested_by":"support-tool"}
type CancelRefund struct {
	// OrderRef is 2Checkout's order reference (RefNo). Required.
	OrderRef string `json:"order_ref"`
	// RefundInitiatedAt is when the refund was initiated (RFC 3339).
	// Required: the cancellation window closes 2 hours later.
	RefundInitiatedAt time.Time `json:"refund_initiated_at"`
	// Reason is free text for people. Optional.
	Reason string `json:"reason,omitempty"`
	// RequestedBy names the system or person asking. Optional.
	RequestedBy string `json:"requested_by,omitempty"`
}

var orderRefRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// FieldError is one problem with one field of a payload.
type FieldError struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every problem found in a payload. It matches
// ErrInvalidPayload with errors.Is.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = f.Field + ": " + f.Problem
	}
	return strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidPayload) true.
func (v ValidationError) Is(target error) bool { return target == ErrInvalidPayload }

// ErrInvalidPayload matches any payload that cannot be decoded or validated.
var ErrInvalidPayload = errors.New("invalid payload")

// Validate checks the payload against the clock now: it answers nil or a
// ValidationError naming each bad field.
func (p CancelRefund) Validate(now time.Time) error { return p.check(&now) }

// check validates the fields, and the initiation time against now if given.
func (p CancelRefund) check(now *time.Time) error {
	var errs ValidationError
	switch {
	case p.OrderRef == "":
		errs = append(errs, FieldError{"order_ref", "is required"})
	case !orderRefRE.MatchString(p.OrderRef):
		errs = append(errs, FieldError{"order_ref", "must be 1-32 letters, digits, '-' or '_'"})
	}
	switch {
	case p.RefundInitiatedAt.IsZero():
		errs = append(errs, FieldError{"refund_initiated_at", "is required (RFC 3339, e.g. 2026-11-25T10:00:00Z)"})
	case now != nil && p.RefundInitiatedAt.After(now.Add(FutureSkew)):
		errs = append(errs, FieldError{"refund_initiated_at", fmt.Sprintf("%s is in the future", p.RefundInitiatedAt.Format(time.RFC3339))})
	}
	if len(p.Reason) > 500 {
		errs = append(errs, FieldError{"reason", "must be at most 500 bytes"})
	}
	if len(p.RequestedBy) > 100 {
		errs = append(errs, FieldError{"requested_by", "must be at most 100 bytes"})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// WindowClosesAt answers when 2Checkout stops accepting the cancellation.
func (p CancelRefund) WindowClosesAt() time.Time { return p.RefundInitiatedAt.Add(Window) }

// TaskID answers the task ID of the order's cancellation: one per order.
func TaskID(orderRef string) string { return TypeCancelRefund + ":" + orderRef }

// Decode parses and validates a payload. Unknown fields are ignored (so newer
// producers don't break older workers); missing, mistyped or malformed ones
// give a ValidationError. Decode does not judge the initiation time against
// a clock: Validate does.
func Decode(b []byte) (CancelRefund, error) { return decode(b, false) }

// DecodeStrict is Decode that also rejects unknown fields, for front doors
// (the HTTP API, the CLI) where a misspelt field should fail loudly.
func DecodeStrict(b []byte) (CancelRefund, error) { return decode(b, true) }

func decode(b []byte, strict bool) (CancelRefund, error) {
	var p CancelRefund
	if len(b) > MaxPayloadBytes {
		return p, ValidationError{{"payload", fmt.Sprintf("larger than %d bytes", MaxPayloadBytes)}}
	}
	if !strict { // the worker's path: Unmarshal spares a Decoder and its buffer per task
		if err := json.Unmarshal(b, &p); err != nil { // trailing data too
			return p, decodeError(err)
		}
		return p, p.check(nil)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, decodeError(err)
	}
	if dec.More() {
		return p, ValidationError{{"payload", "trailing data after the JSON object"}}
	}
	return p, p.check(nil)
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return ValidationError{{te.Field, "must be a " + te.Type.String()}}
	case errors.As(err, &pe):
		return ValidationError{{"refund_initiated_at", "must be RFC 3339, e.g. 2026-11-25T10:00:00Z"}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return ValidationError{{strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field"}}
	}
	return ValidationError{{"payload", "not a JSON object: " + err.Error()}}
}

// NewTask validates p against now and builds its task: type
// TypeCancelRefund, ID TaskID(p.OrderRef), queue DefaultQueue, timeout
// DefaultTimeout, retention DefaultRetention, max retry DefaultMaxRetry. opts
// come last and override these.
func NewTask(p CancelRefund, now time.Time, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(now); err != nil {
		return nil, err
	}
	p.RefundInitiatedAt = p.RefundInitiatedAt.UTC()
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	all := append([]asynq.Option{
		asynq.TaskID(TaskID(p.OrderRef)),
		asynq.Queue(DefaultQueue),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
		asynq.MaxRetry(DefaultMaxRetry),
	}, opts...)
	return asynq.NewTask(TypeCancelRefund, b, all...), nil
}
