// Package tasks is the producers' contract for refund cancellations: the
// task type, its payload and validation, the task constructor, and an
// enqueue helper that answers "already queued" instead of making a second
// task for the same refund.
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
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/internal/orderref"
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
	// MaxPayloadBytes caps a payload's size: the one limit of a
	// cancellation, whether it comes through the HTTP API, refundctl or Redis.
	MaxPayloadBytes = 8 << 10
	// MaxReasonBytes caps the reason field.
	MaxReasonBytes = 500
	// MaxRequestedByBytes caps the requested_by field.
	MaxRequestedByBytes = 100
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
		errs = append(errs, FieldError{fieldOrderRef, "is required"})
	case !orderref.Valid(p.OrderRef):
		errs = append(errs, FieldError{fieldOrderRef, "must be " + orderref.Want})
	}
	switch {
	case p.RefundInitiatedAt.IsZero():
		errs = append(errs, FieldError{fieldInitiatedAt, "is required (RFC 3339, e.g. 2026-11-25T10:00:00Z)"})
	case now != nil && p.RefundInitiatedAt.After(now.Add(FutureSkew)):
		errs = append(errs, FieldError{fieldInitiatedAt, fmt.Sprintf("%s is in the future", p.RefundInitiatedAt.Format(time.RFC3339))})
	}
	if problem := textProblem(p.Reason, MaxReasonBytes); problem != "" {
		errs = append(errs, FieldError{fieldReason, problem})
	}
	if problem := textProblem(p.RequestedBy, MaxRequestedByBytes); problem != "" {
		errs = append(errs, FieldError{fieldRequestedBy, problem})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// textProblem answers what is wrong with a free-text field, or "": it is
// bounded, valid UTF-8, and holds no control character (a newline or a
// bidirectional override would let one payload forge a line of the
// dashboard or a log).
func textProblem(s string, maxBytes int) string {
	if len(s) > maxBytes {
		return fmt.Sprintf("must be at most %d bytes, got %d", maxBytes, len(s))
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return fmt.Sprintf("must not contain control characters (found %U)", r)
		}
	}
	return ""
}

// WindowClosesAt answers when 2Checkout stops accepting the cancellation.
func (p CancelRefund) WindowClosesAt() time.Time { return p.RefundInitiatedAt.Add(Window) }

// TaskIDTimeLayout is how a task ID writes the refund's initiation time:
// UTC, whole seconds (sub-seconds dropped).
const TaskIDTimeLayout = "20060102T150405Z"

// TaskID answers the task ID of one refund's cancellation:
// refund:cancel:<order_ref>:<initiatedAt in UTC as YYYYMMDDTHHMMSSZ>, e.g.
// refund:cancel:73152889:20261125T100000Z. One task per refund: the same
// refund enqueued twice is one task; a later refund on the same order (once
// the earlier one is settled, 2Checkout allows a new one) is another.
// Producers using raw asynq must use this ID.
func TaskID(orderRef string, initiatedAt time.Time) string {
	return TypeCancelRefund + ":" + orderRef + ":" + initiatedAt.UTC().Format(TaskIDTimeLayout)
}

// TaskID answers the task ID of p's cancellation.
func (p CancelRefund) TaskID() string { return TaskID(p.OrderRef, p.RefundInitiatedAt) }

// Decode parses and validates a payload, for the worker: unknown fields are
// ignored (so newer producers don't break older workers). Everything else is
// strict, as in DecodeStrict: the payload must be one JSON object in UTF-8
// with no byte-order mark, field names are exact (case-sensitive), no field
// appears twice, and a missing, mistyped or malformed field gives a
// ValidationError naming the field and the problem in words. Decode does not
// judge the initiation time against a clock: Validate does.
func Decode(b []byte) (CancelRefund, error) { return decode(b, false) }

// DecodeStrict is Decode that also rejects unknown fields, for the front
// doors (the HTTP API, refundctl) where a misspelt field must fail loudly.
func DecodeStrict(b []byte) (CancelRefund, error) { return decode(b, true) }

// Field names of the payload.
const (
	fieldOrderRef    = "order_ref"
	fieldInitiatedAt = "refund_initiated_at"
	fieldReason      = "reason"
	fieldRequestedBy = "requested_by"
)

var knownFields = [...]string{fieldOrderRef, fieldInitiatedAt, fieldReason, fieldRequestedBy}

var utf8BOM = []byte("\xEF\xBB\xBF")

// checkBytes answers what makes b no payload before any JSON is read.
func checkBytes(b []byte) error {
	switch {
	case len(b) > MaxPayloadBytes:
		return ValidationError{{"payload", fmt.Sprintf("is larger than %d bytes", MaxPayloadBytes)}}
	case bytes.HasPrefix(b, utf8BOM):
		return ValidationError{{"payload", "starts with a UTF-8 byte-order mark (EF BB BF); send UTF-8 without one"}}
	case !utf8.Valid(b):
		return ValidationError{{"payload", "is not valid UTF-8"}}
	}
	return nil
}

// decode is the one payload decoder: encoding/json's token reader, once,
// so that a key is matched exactly and a repeated key is refused (both
// would pass json.Unmarshal), and every problem is named.
func decode(b []byte, strict bool) (CancelRefund, error) {
	var p CancelRefund
	if err := checkBytes(b); err != nil {
		return p, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return p, ValidationError{{"payload", "is empty"}}
	}
	if err != nil {
		return p, syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return p, ValidationError{{"payload", "must be a JSON object, got " + tokenKind(tok)}}
	}
	var errs ValidationError
	seen := make(map[string]bool, len(knownFields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, syntaxError(err)
		}
		key, _ := tok.(string) // inside an object the decoder only answers string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return p, syntaxError(err)
		}
		if seen[key] {
			errs = append(errs, FieldError{fieldName(key), "appears more than once"})
			continue
		}
		seen[key] = true
		var problem string
		switch key {
		case fieldOrderRef:
			p.OrderRef, problem = stringValue(raw)
		case fieldReason:
			p.Reason, problem = stringValue(raw)
		case fieldRequestedBy:
			p.RequestedBy, problem = stringValue(raw)
		case fieldInitiatedAt:
			p.RefundInitiatedAt, problem = timeValue(raw)
		default:
			problem = unknownField(key, strict)
		}
		if problem != "" {
			errs = append(errs, FieldError{fieldName(key), problem})
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return p, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return p, ValidationError{{"payload", "has data after the JSON object"}}
	}
	if verr := p.check(nil); verr != nil {
		for _, fe := range verr.(ValidationError) {
			if !errs.has(fe.Field) {
				errs = append(errs, fe)
			}
		}
	}
	if len(errs) > 0 {
		return p, errs
	}
	return p, nil
}

func (v ValidationError) has(field string) bool {
	for _, f := range v {
		if f.Field == field {
			return true
		}
	}
	return false
}

// unknownField answers the problem with a field the payload does not have:
// none in lenient mode, unless it is a known name in another letter case.
func unknownField(key string, strict bool) string {
	for _, k := range knownFields {
		if strings.EqualFold(key, k) {
			return fmt.Sprintf("is not a field: names are case-sensitive, did you mean %q?", k)
		}
	}
	if strict {
		return "is not a field of the payload (fields: " + strings.Join(knownFields[:], ", ") + ")"
	}
	return ""
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// fieldName answers a key fit to print: as it is if plain, else quoted and
// clipped, so a hostile key cannot forge log lines.
func fieldName(key string) string {
	if plainName.MatchString(key) {
		return key
	}
	if len(key) > 64 {
		key = key[:64]
	}
	return strconv.QuoteToASCII(key)
}

// stringValue decodes a JSON string; null counts as absent.
func stringValue(raw json.RawMessage) (string, string) {
	if k := rawKind(raw); k != "a string" {
		if k == "null" {
			return "", ""
		}
		return "", "must be a string, got " + k
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "must be a string"
	}
	return s, ""
}

// timeValue decodes an RFC 3339 time string; null counts as absent.
func timeValue(raw json.RawMessage) (time.Time, string) {
	const want = "must be an RFC 3339 time string, e.g. 2026-11-25T10:00:00Z"
	s, problem := stringValue(raw)
	switch {
	case problem != "":
		return time.Time{}, want + ", got " + rawKind(raw)
	case s == "":
		return time.Time{}, ""
	}
	t, err := time.Parse(time.RFC3339, s)
	switch {
	case err != nil:
		return time.Time{}, fmt.Sprintf("%s, got %s", want, strconv.QuoteToASCII(clip.String(s, 40)))
	case t.IsZero():
		return time.Time{}, fmt.Sprintf("%s is the zero time, a placeholder rather than when the refund was initiated", s)
	case t.Year() < 2000:
		return time.Time{}, fmt.Sprintf("%s is before 2000: not a plausible initiation time", s)
	}
	return t, ""
}

// rawKind names a JSON value's kind in words.
func rawKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// tokenKind names the kind of a top-level token in words.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// syntaxError describes malformed JSON in words.
func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return ValidationError{{"payload", "is not valid JSON: it ends too early"}}
	case errors.As(err, &se):
		return ValidationError{{"payload", fmt.Sprintf("is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)}}
	}
	return ValidationError{{"payload", "is not valid JSON"}}
}

// NewTask validates p against now and builds its task: type
// TypeCancelRefund, ID p.TaskID(), queue DefaultQueue, timeout
// DefaultTimeout, retention DefaultRetention, max retry DefaultMaxRetry. opts
// override all of these but the ID: one refund, one task ID (the worker
// ends any other task for the same refund as a duplicate anyway).
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
		asynq.Queue(DefaultQueue),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
		asynq.MaxRetry(DefaultMaxRetry),
	}, opts...)
	all = append(all, asynq.TaskID(p.TaskID()))
	return asynq.NewTask(TypeCancelRefund, b, all...), nil
}
