// Package ops is refundd's operations HTTP surface: the server itself
// (NewServer: bounded reads and headers, behind a Guard that refuses foreign
// Host headers and cross-origin changes), liveness and readiness (Health,
// with the clock's skew against Redis: ClockSkew), the Asynqmon dashboard
// behind basic auth (Dashboard; read-only without it) and the producer API
// (API), both with failed attempts limited per address (FailureLimit).
// Metrics live in internal/metrics; the daemon mounts them here.
package ops

import (
	"context"
	"net/http"
	"time"

	"github.com/refundd/refund-canceller/internal/httpjson"
)

// Checks are what readiness asks.
type Checks struct {
	// Redis proves the queue's Redis takes a write (redisconn.WriteProbe).
	Redis func(ctx context.Context) error
	// WorkerRunning reports whether the worker server is processing.
	WorkerRunning func() bool
	// LoginFailure answers the last login's error, nil if it succeeded.
	LoginFailure func() error
	// ClockSkew answers nil if this replica's clock is within bound of
	// Redis's (ClockSkew.Err), else why not.
	ClockSkew func() error
}

// Health serves /healthz and /readyz.
type Health struct{ checks Checks }

// NewHealth returns the health handlers for checks.
func NewHealth(checks Checks) *Health { return &Health{checks: checks} }

// Register adds /healthz and /readyz to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", h.ready)
}

type check struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func (h *Health) ready(w http.ResponseWriter, r *http.Request) {
	ready, checks := h.evaluate(r.Context())
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	WriteJSON(w, status, map[string]any{"ready": ready, "checks": checks})
}

// Ready answers what /readyz would: true when every check passes.
func (h *Health) Ready(ctx context.Context) bool {
	ready, _ := h.evaluate(ctx)
	return ready
}

// evaluate runs every check, each bounded by 2s.
func (h *Health) evaluate(ctx context.Context) (bool, map[string]check) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	checks := map[string]check{}
	ready := true
	add := func(name string, err error) {
		c := check{OK: err == nil}
		if err != nil {
			c.Detail = err.Error()
			ready = false
		}
		checks[name] = c
	}
	if h.checks.Redis != nil {
		add("redis", h.checks.Redis(ctx))
	}
	if h.checks.WorkerRunning != nil {
		var err error
		if !h.checks.WorkerRunning() {
			err = errString("worker is not running")
		}
		add("worker", err)
	}
	if h.checks.LoginFailure != nil {
		add("2checkout_login", h.checks.LoginFailure())
	}
	if h.checks.ClockSkew != nil {
		add("clock", h.checks.ClockSkew())
	}
	return ready, checks
}

type errString string

func (e errString) Error() string { return string(e) }

// WriteJSON writes v as an indented JSON body with status (httpjson.Write).
func WriteJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }
