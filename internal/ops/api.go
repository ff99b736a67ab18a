package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/tasks"
)

// Limits of the producer API.
const (
	MaxBodyBytes  = 16 << 10 // one cancellation
	MaxBatchItems = 1000
	MaxBatchBytes = 4 << 20
)

// Producer is what the API needs to enqueue and look up cancellations;
// *tasks.Enqueuer has it.
type Producer interface {
	Enqueue(ctx context.Context, p tasks.CancelRefund, opts ...asynq.Option) (*asynq.TaskInfo, error)
	Status(orderRef string, initiatedAt time.Time) (*asynq.TaskInfo, error)
	Queue() string
}

// API is the HTTP producer API, for systems not written in Go:
//
//	POST /v1/cancellations         one payload       → 202 | 400 | 409 | 422
//	POST /v1/cancellations:batch   up to 1,000       → 200 with per-item results in order
//	GET  /v1/cancellations/{ref}?refund_initiated_at=RFC3339
//	                               one refund's task → 200 | 400 | 404
//
// Every route needs "Authorization: Bearer <API_TOKEN>". OpenAPI: api/openapi.yaml.
type API struct {
	producer Producer
	token    string
	log      *zap.Logger
}

// NewAPI returns the API. With an empty token every route answers 503:
// the API is off until API_TOKEN is set.
func NewAPI(p Producer, token string, log *zap.Logger) *API {
	if log == nil {
		log = zap.NewNop()
	}
	return &API{producer: p, token: token, log: log}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	wrap := func(h http.HandlerFunc) http.Handler {
		if a.token == "" {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the producer API is off: set API_TOKEN to enable it"})
			})
		}
		return Bearer(a.token, h)
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		WriteJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)})
		return
	}
	it := a.enqueue(r.Context(), body)
	WriteJSON(w, it.Status, it)
}

func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBatchBytes))
	if err != nil {
		WriteJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body larger than %d bytes", MaxBatchBytes)})
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
	if len(bytes.TrimSpace(body)) == 0 {
		return Item{Status: http.StatusBadRequest, Error: "invalid payload", Fields: []tasks.FieldError{{Field: "payload", Problem: "is empty"}}}
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

// TaskView is GET /v1/cancellations/{order_ref}'s answer.
type TaskView struct {
	TaskID         string          `json:"task_id"`
	OrderRef       string          `json:"order_ref"`
	Queue          string          `json:"queue"`
	State          string          `json:"state"`
	Retried        int             `json:"retried"`
	LastError      string          `json:"last_error,omitempty"`
	NextProcessAt  string          `json:"next_process_at,omitempty"`
	WindowClosesAt string          `json:"window_closes_at,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("order_ref")
	initiated, perr := time.Parse(time.RFC3339, r.URL.Query().Get("refund_initiated_at"))
	if perr != nil {
		WriteJSON(w, http.StatusBadRequest, errorBody{Error: "query parameter refund_initiated_at is required (RFC 3339): a cancellation is one refund's"})
		return
	}
	info, err := a.producer.Status(ref, initiated)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
		WriteJSON(w, http.StatusNotFound, errorBody{Error: "no cancellation for order " + clip(ref, 40) + "'s refund initiated at " + initiated.UTC().Format(time.RFC3339)})
		return
	case err != nil:
		a.log.Error("task lookup failed", zap.String("order_ref", ref), zap.Error(err))
		WriteJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the queue is unavailable; try again"})
		return
	}
	v := TaskView{TaskID: info.ID, OrderRef: ref, Queue: info.Queue, State: info.State.String(), Retried: info.Retried, LastError: info.LastErr}
	if p, err := tasks.Decode(info.Payload); err == nil {
		v.WindowClosesAt = p.WindowClosesAt().UTC().Format(time.RFC3339)
	}
	if !info.NextProcessAt.IsZero() && (info.State == asynq.TaskStateRetry || info.State == asynq.TaskStateScheduled) {
		v.NextProcessAt = info.NextProcessAt.UTC().Format(time.RFC3339)
	}
	if len(info.Result) > 0 && json.Valid(info.Result) {
		v.Result = info.Result
	}
	WriteJSON(w, http.StatusOK, v)
}
