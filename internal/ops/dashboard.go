package ops

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

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
	// PrometheusURL, if set, is the Prometheus the dashboard's Metrics page
	// draws time-series charts from (Asynqmon's PrometheusAddress): the ops
	// server queries it, and the page shows it.
	PrometheusURL string
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
		RootPath:          DashboardPath,
		RedisConnOpt:      cfg.Redis,
		PayloadFormatter:  asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:   asynqmon.ResultFormatterFunc(FormatResult),
		ReadOnly:          cfg.ReadOnly,
		PrometheusAddress: cfg.PrometheusURL,
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

// The dashboard's text for a cancellation. Asynqmon shows the same
// formatter string in its tables and on the task page, each in a box about
// 400 px wide (roughly 40 characters visible, the rest behind a scroll bar),
// so each string starts with what an operator scans for — the order and
// when its window closes; the outcome, refund and tries — and carries the
// full detail after it (" · " separated) for the task page.
//
// The close time is shown as a time of day (15:04:05Z, UTC) when it falls on
// the current UTC day, otherwise with its date (2006-01-02 15:04:05Z).

// FormatPayload shows a cancellation's order and window close first
// ("DEMO0001 · closes 00:35:10Z"), then the full detail.
func FormatPayload(taskType string, payload []byte) string {
	return formatPayload(time.Now(), taskType, payload)
}

func formatPayload(now time.Time, taskType string, payload []byte) string {
	if taskType != tasks.TypeCancelRefund {
		return string(payload)
	}
	p, err := tasks.Decode(payload)
	if err != nil {
		// Quoted: a refused payload may hold the very characters (newlines,
		// bidirectional overrides) that would spoof the dashboard's line.
		return fmt.Sprintf("INVALID PAYLOAD (%v): %s", err, strconv.QuoteToASCII(clip.String(string(payload), 300)))
	}
	closes := p.WindowClosesAt().UTC()
	s := fmt.Sprintf("%s · closes %s · window closes %s · refund initiated %s", p.OrderRef, clock(now, closes),
		closes.Format(time.RFC3339), p.RefundInitiatedAt.UTC().Format(time.RFC3339))
	if p.Reason != "" {
		s += " · reason: " + p.Reason
	}
	if p.RequestedBy != "" {
		s += " · by " + p.RequestedBy
	}
	return s
}

// clock shows t (UTC) as a time of day if it falls on now's UTC day, else
// with its date.
func clock(now, t time.Time) string {
	t = t.UTC()
	if y, m, d := now.UTC().Date(); t.Year() == y && t.Month() == m && t.Day() == d {
		return t.Format("15:04:05Z")
	}
	return t.Format("2006-01-02 15:04:05Z")
}

// outcomeWords names each outcome in the dashboard's tables.
var outcomeWords = map[string]string{
	tasks.OutcomeCancelled:        "cancelled",
	tasks.OutcomeAlreadyCancelled: "already cancelled",
	tasks.OutcomeRefused:          "refused",
	tasks.OutcomeWindowClosed:     "window closed",
	tasks.OutcomeInvalid:          "invalid",
	tasks.OutcomeSuperseded:       "superseded",
	tasks.OutcomeUnknown:          "unknown — check order",
	tasks.OutcomeRetry:            "retrying",
}

// FormatResult shows a cancellation's result record (tasks.DecodeResult):
// outcome, refund ID and tries first ("cancelled · RF-1 · 1 try",
// "window closed · 3 tries"), then the full detail.
func FormatResult(taskType string, result []byte) string {
	return formatResult(time.Now(), taskType, result)
}

func formatResult(now time.Time, taskType string, result []byte) string {
	if taskType != tasks.TypeCancelRefund {
		return string(result)
	}
	r, err := tasks.DecodeResult(result)
	if errors.Is(err, tasks.ErrNoResult) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("INVALID RESULT (%v): %s", err, strconv.QuoteToASCII(clip.String(string(result), 300)))
	}
	// Every field is shown through safe: the record is the worker's, but
	// its refund ID, vendor error and reason carry 2Checkout's text.
	words, ok := outcomeWords[r.Outcome]
	if !ok {
		words = safe(r.Outcome)
	}
	parts := []string{words}
	if r.RefundID != "" {
		parts = append(parts, safe(r.RefundID))
	}
	parts = append(parts, tries(r.Attempts))
	if r.Outcome == tasks.OutcomeRetry && !r.NextAttemptAt.IsZero() {
		parts = append(parts, "next "+clock(now, r.NextAttemptAt))
	}
	// The detail, for the task page.
	parts = append(parts, "outcome "+safe(r.Outcome))
	if r.Confirmed {
		parts = append(parts, "confirmed with getOrder")
	}
	if r.VendorCode != 0 || r.VendorError != "" {
		parts = append(parts, fmt.Sprintf("2Checkout %d %s", r.VendorCode, safe(r.VendorError)))
	}
	if r.Reason != "" {
		parts = append(parts, "reason: "+safe(r.Reason))
	}
	if r.MaybeApplied != "" {
		parts = append(parts, "may have applied: "+safe(r.MaybeApplied))
	}
	if !r.WindowClosesAt.IsZero() {
		parts = append(parts, "window closes "+r.WindowClosesAt.UTC().Format(time.RFC3339))
	}
	if !r.FinishedAt.IsZero() {
		parts = append(parts, "finished "+r.FinishedAt.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " · ")
}

func tries(n int) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}

// safe answers s as it is if every rune in it is printable (which rules
// out newlines and bidirectional overrides, format characters); otherwise
// s quoted, so no field can break or spoof the dashboard's line.
func safe(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.QuoteToASCII(clip.String(s, 300))
		}
	}
	return s
}
