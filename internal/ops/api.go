package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/internal/orderref"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/tasks"
)

// Limits of the producer API. A single payload has one limit everywhere:
// tasks.MaxPayloadBytes.
const (
	MaxBatchItems = 1000
	MaxBatchBytes = MaxBatchItems * tasks.MaxPayloadBytes
)

// Producer is what the API needs to enqueue cancellations; *tasks.Enqueuer
// has it.
type Producer interface {
	Enqueue(ctx context.Context, p tasks.CancelRefund, opts ...asynq.Option) (*asynq.TaskInfo, error)
	Queue() string
}

// Finder is what the API needs to look cancellations up;
// *taskview.Lookup has it.
type Finder interface {
	Refund(ctx context.Context, orderRef string, initiated time.Time) (taskview.View, error)
	Order(ctx context.Context, orderRef string) ([]taskview.View, error)
}

// API is the HTTP producer API, for systems not written in Go:
//
//	POST /v1/cancellations         one payload       → 202 | 400 | 409 | 413 | 415 | 422
//	POST /v1/cancellations:batch   up to 1,000       → 200 with per-item results in order
//	GET  /v1/cancellations/{ref}?refund_initiated_at=RFC3339
//	                               one refund's cancellation → 200 | 400 | 404
//	GET  /v1/cancellations/{ref}   every cancellation of the order, newest
//	                               refund first → 200 | 400 | 404
//
// Every route needs "Authorization: Bearer <API_TOKEN>", checked before any
// body is read (failed attempts limited per address: APILimits.Failures).
// Enqueues are limited per token (APILimits.EnqueueRate): past it, 429 with
// Retry-After. Bodies must be "Content-Type: application/json" (else 415)
// and are decoded by tasks.DecodeStrict: exact field names, no duplicates,
// no unknown fields. OpenAPI: api/openapi.yaml.
type API struct {
	producer Producer
	finder   Finder
	token    string
	log      *zap.Logger
	limits   APILimits
	enqueues *rate.Limiter // nil: no enqueue limit
	// The enqueue limit's warn line is written at most once per
	// refusalLogEvery, counting the refusals since the last one.
	refusalLoggedAt atomic.Int64 // Unix nanoseconds
	refusals        atomic.Int64
}

// refusalLogEvery spaces the enqueue limit's warn lines: a flood must not
// become a flood of logs.
const refusalLogEvery = 10 * time.Second

// APILimits are the API's limits; the zero value limits nothing.
type APILimits struct {
	// Failures limits failed bearer-token attempts per client address.
	Failures *FailureLimit
	// EnqueueRate is how many cancellations the token may enqueue per
	// second (API_ENQUEUE_RATE), after a first full batch at once
	// (MaxBatchItems); 0: no limit. A request past it gets 429 with
	// Retry-After and enqueues nothing (a batch counts each payload).
	EnqueueRate int
	// Observer counts the refusals. Optional.
	Observer Observer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Limit sets the API's limits and answers a.
func (a *API) Limit(l APILimits) *API {
	if l.Now == nil {
		l.Now = time.Now
	}
	a.limits = l
	a.enqueues = nil
	if l.EnqueueRate > 0 {
		a.enqueues = rate.NewLimiter(rate.Limit(l.EnqueueRate), MaxBatchItems)
	}
	return a
}

// takeEnqueues takes n enqueues from the token's rate, or answers 429 and
// false.
func (a *API) takeEnqueues(w http.ResponseWriter, r *http.Request, n int) bool {
	if a.enqueues == nil {
		return true
	}
	now := a.limits.Now()
	if a.enqueues.AllowN(now, n) {
		return true
	}
	if a.limits.Observer != nil {
		a.limits.Observer.OpsRefused(RefusedEnqueueRate)
	}
	refused := a.refusals.Add(1)
	if last := a.refusalLoggedAt.Load(); now.UnixNano()-last >= int64(refusalLogEvery) && a.refusalLoggedAt.CompareAndSwap(last, now.UnixNano()) {
		a.refusals.Add(-refused)
		a.log.Warn("enqueues refused: over API_ENQUEUE_RATE", zap.Int64("requests_refused_since_last_line", refused), zap.Int("payloads", n), zap.Int("per_second", a.limits.EnqueueRate), zap.String("address", clientAddress(r)))
	}
	setRetryAfter(w, until(a.enqueues, now, n))
	refuse(w, r, http.StatusTooManyRequests, fmt.Sprintf("over the enqueue limit (%d per second, API_ENQUEUE_RATE); nothing was enqueued, try again after Retry-After", a.limits.EnqueueRate))
	return false
}

// NewAPI returns the API. With an empty token every route answers 503:
// the API is off until API_TOKEN is set.
func NewAPI(p Producer, f Finder, token string, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{producer: p, finder: f, token: token, log: log}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	wrap := func(h http.HandlerFunc) http.Handler {
		if a.token == "" {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				refuse(w, r, http.StatusServiceUnavailable, "the producer API is off: set API_TOKEN to enable it")
			})
		}
		return Bearer(a.token, a.limits.Failures, h)
	}
	mux.Handle("POST /v1/cancellations", wrap(a.create))
	mux.Handle("POST /v1/cancellations:batch", wrap(a.batch))
	mux.Handle("GET /v1/cancellations/{order_ref}", wrap(a.get))
}

// Item is the answer for one cancellation (alone, or in a batch).
type Item struct {
	// Status is the HTTP status this cancellation alone would get.
	Status         int    `json:"status"`
	TaskID         string `json:"task_id,omitempty"`
	Queue          string `json:"queue,omitempty"`
	State          string `json:"state,omitempty"`
	WindowClosesAt string `json:"window_closes_at,omitempty"`
	// OrderRef and RefundInitiatedAt name the refund (on 409: the refund
	// whose cancellation is already queued).
	OrderRef          string             `json:"order_ref,omitempty"`
	RefundInitiatedAt string             `json:"refund_initiated_at,omitempty"`
	Error             string             `json:"error,omitempty"`
	Fields            []tasks.FieldError `json:"fields,omitempty"`
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	if !a.takeEnqueues(w, r, 1) {
		return
	}
	body, ok := readBody(w, r, tasks.MaxPayloadBytes)
	if !ok {
		return
	}
	it := a.enqueue(r.Context(), body)
	WriteJSON(w, it.Status, it)
}

// readBody reads a JSON request body of at most limit bytes. It refuses a
// body that is not JSON (415) or too large (413) before reading it, and
// one not received within the server's read timeout (408). ok is false
// when it has answered.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, ok bool) {
	if problem := jsonContentType(r.Header.Get("Content-Type")); problem != "" {
		refuse(w, r, http.StatusUnsupportedMediaType, problem)
		return nil, false
	}
	tooLarge := fmt.Sprintf("body larger than %d bytes", limit)
	if r.ContentLength > limit {
		refuse(w, r, http.StatusRequestEntityTooLarge, tooLarge)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		refuse(w, r, http.StatusRequestEntityTooLarge, tooLarge)
		return nil, false
	case err != nil:
		w.Header().Set("Connection", "close")
		WriteJSON(w, http.StatusRequestTimeout, errorBody{Error: "the request body was not received in time"})
		return nil, false
	}
	return body, true
}

// jsonContentType answers what is wrong with a request's Content-Type, or
// "" for application/json (in UTF-8, the only charset JSON has).
func jsonContentType(ct string) string {
	const want = "Content-Type must be application/json"
	if ct == "" {
		return want + "; none was given"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return want + "; got " + clip.String(strconv.Quote(ct), 80)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "a JSON body must be UTF-8; got charset " + clip.String(strconv.Quote(cs), 40)
	}
	return ""
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, MaxBatchBytes)
	if !ok {
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "body must be a JSON array of cancellation payloads"})
		return
	}
	if len(items) == 0 || len(items) > MaxBatchItems {
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("a batch holds 1 to %d payloads, got %d", MaxBatchItems, len(items))})
		return
	}
	if !a.takeEnqueues(w, r, len(items)) {
		return
	}
	out := make([]Item, len(items))
	for i, raw := range items {
		if r.Context().Err() != nil {
			return // the client left; what was enqueued stays enqueued
		}
		out[i] = a.enqueue(r.Context(), raw)
	}
	WriteJSON(w, http.StatusOK, map[string][]Item{"results": out})
}

// enqueue validates and enqueues one payload and says how it went.
func (a *API) enqueue(ctx context.Context, body []byte) Item {
	if len(body) > tasks.MaxPayloadBytes {
		return Item{Status: http.StatusRequestEntityTooLarge, Error: fmt.Sprintf("payload larger than %d bytes", tasks.MaxPayloadBytes)}
	}
	p, err := tasks.DecodeStrict(body)
	if err == nil {
		var info *asynq.TaskInfo
		if info, err = a.producer.Enqueue(ctx, p); err == nil {
			return Item{Status: http.StatusAccepted, TaskID: info.ID, Queue: info.Queue, State: info.State.String(),
				WindowClosesAt: p.WindowClosesAt().UTC().Format(time.RFC3339)}
		}
	}
	var ve tasks.ValidationError
	var aq *tasks.AlreadyQueuedError
	var wc *tasks.WindowClosedError
	switch {
	case errors.As(err, &ve):
		return Item{Status: http.StatusBadRequest, Error: "invalid payload", Fields: ve}
	case errors.As(err, &aq):
		return Item{Status: http.StatusConflict, TaskID: aq.TaskID, Queue: a.producer.Queue(), State: aq.State(), OrderRef: p.OrderRef,
			RefundInitiatedAt: p.RefundInitiatedAt.UTC().Format(time.RFC3339),
			Error:             "already queued: the cancellation of order " + p.OrderRef + "'s refund initiated at " + p.RefundInitiatedAt.UTC().Format(time.RFC3339)}
	case errors.As(err, &wc):
		return Item{Status: http.StatusUnprocessableEntity, WindowClosesAt: wc.ClosedAt.UTC().Format(time.RFC3339), Error: wc.Error() + "; nothing was enqueued"}
	}
	a.log.Error("enqueue failed", zap.String("order_ref", p.OrderRef), zap.Error(err))
	return Item{Status: http.StatusServiceUnavailable, Error: "the queue is unavailable; nothing was enqueued, try again"}
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("order_ref")
	if !orderref.Valid(ref) {
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "order_ref must be " + orderref.Want})
		return
	}
	if !r.URL.Query().Has("refund_initiated_at") {
		views, err := a.finder.Order(r.Context(), ref)
		switch {
		case errors.Is(err, taskview.ErrNotFound):
			WriteJSON(w, http.StatusNotFound, errorBody{Error: "no cancellation for order " + ref})
		case err != nil:
			a.log.Error("order lookup failed", zap.String("order_ref", ref), zap.Error(err))
			WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the queue is unavailable; try again"})
		default:
			WriteJSON(w, http.StatusOK, taskview.OrderView{OrderRef: ref, Cancellations: views})
		}
		return
	}
	initiated, perr := time.Parse(time.RFC3339, r.URL.Query().Get("refund_initiated_at"))
	if perr != nil {
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "query parameter refund_initiated_at must be RFC 3339 (e.g. 2026-11-25T10:00:00Z), or left out for every cancellation of the order"})
		return
	}
	v, err := a.finder.Refund(r.Context(), ref, initiated)
	switch {
	case errors.Is(err, taskview.ErrNotFound):
		WriteJSON(w, http.StatusNotFound, errorBody{Error: "no cancellation for order " + ref + "'s refund initiated at " + initiated.UTC().Format(time.RFC3339)})
	case err != nil:
		a.log.Error("task lookup failed", zap.String("order_ref", ref), zap.Error(err))
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the queue is unavailable; try again"})
	default:
		WriteJSON(w, http.StatusOK, v)
	}
}
