package ops

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/tasks"
)

// DashboardPath is where Asynqmon is served.
const DashboardPath = "/monitoring"

// DashboardConfig configures the embedded Asynqmon.
type DashboardConfig struct {
	Redis    asynq.RedisConnOpt
	User     string
	Password string
	ReadOnly bool
	// Loopback says the ops server listens only on a loopback address: only
	// then may the dashboard be served without credentials.
	Loopback bool
}

// Dashboard is Asynqmon behind basic auth.
type Dashboard struct {
	h     *asynqmon.HTTPHandler
	serve http.Handler
}

// NewDashboard builds the dashboard. Without credentials on a non-loopback
// address it refuses every request (403) rather than serve it open.
func NewDashboard(cfg DashboardConfig) *Dashboard {
	h := asynqmon.New(asynqmon.Options{
		RootPath:         DashboardPath,
		RedisConnOpt:     cfg.Redis,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(FormatResult),
		ReadOnly:         cfg.ReadOnly,
	})
	var serve http.Handler = h
	switch {
	case cfg.User != "" && cfg.Password != "":
		serve = BasicAuth(cfg.User, cfg.Password, "refundd dashboard", h)
	case !cfg.Loopback:
		serve = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, http.StatusForbidden, errorBody{Error: "the dashboard is not served without DASHBOARD_USER and DASHBOARD_PASSWORD on a non-loopback OPS_ADDR"})
		})
	}
	return &Dashboard{h: h, serve: serve}
}

// Register adds the dashboard to mux under DashboardPath.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.Handle(DashboardPath+"/", d.serve)
	mux.Handle(DashboardPath, http.RedirectHandler(DashboardPath+"/", http.StatusMovedPermanently))
}

// Close releases the dashboard's Redis connections.
func (d *Dashboard) Close() error { return d.h.Close() }

// FormatPayload shows a cancellation's order, initiation and window close.
func FormatPayload(taskType string, payload []byte) string {
	if taskType != tasks.TypeCancelRefund {
		return string(payload)
	}
	p, err := tasks.Decode(payload)
	if err != nil {
		// Quoted: a refused payload may hold the very characters (newlines,
		// bidirectional overrides) that would spoof the dashboard's line.
		return fmt.Sprintf("INVALID PAYLOAD (%v): %s", err, strconv.QuoteToASCII(clip.String(string(payload), 300)))
	}
	s := fmt.Sprintf("order %s · window closes %s · refund initiated %s", p.OrderRef,
		p.WindowClosesAt().UTC().Format(time.RFC3339), p.RefundInitiatedAt.UTC().Format(time.RFC3339))
	if p.Reason != "" {
		s += " · reason: " + p.Reason
	}
	if p.RequestedBy != "" {
		s += " · by " + p.RequestedBy
	}
	return s
}

// FormatResult shows a cancellation's outcome and refund ID.
func FormatResult(taskType string, result []byte) string {
	var r struct {
		Outcome   string `json:"outcome"`
		RefundID  string `json:"refund_id"`
		Attempts  int    `json:"attempts"`
		Confirmed bool   `json:"confirmed"`
	}
	if taskType != tasks.TypeCancelRefund || json.Unmarshal(result, &r) != nil || r.Outcome == "" {
		return string(result)
	}
	s := fmt.Sprintf("%s · refund %s · %d attempt(s)", r.Outcome, r.RefundID, r.Attempts)
	if r.Confirmed {
		s += " · confirmed with getOrder"
	}
	return s
}
