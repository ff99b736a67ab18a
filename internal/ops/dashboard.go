package ops

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	// ReadOnly: the dashboard shows but never changes tasks or queues. It
	// always is without User and Password.
	ReadOnly bool
	// Loopback says the ops server listens only on a loopback address: only
	// then may the dashboard be served without credentials (read-only).
	Loopback bool
	// Failures, if set, limits failed basic-auth attempts per address.
	Failures *FailureLimit
	// PrometheusURL, if set, is the Prometheus the dashboard's Metrics page
	// draws time-series charts from (Asynqmon's PrometheusAddress): the ops
	// server queries it, and the page shows it. Asynqmon splices the
	// request's queue names into the PromQL it sends, so only names of
	// queues that exist are let through.
	PrometheusURL string
	// Queue is the cancellation queue. If set, each cancellation's payload
	// is shown with the outcome its task's result record holds (see
	// Dashboard), read with one Redis call per task shown.
	Queue string
	// Orders, if set, serves OrdersPath: an order's cancellations, linked
	// to their tasks' pages.
	Orders OrderFinder
}

// Dashboard is Asynqmon behind basic auth.
//
// Asynqmon's tables draw one column of our text for every task state — the
// payload — and at 1400 px its completed table draws its Result column off
// screen (the task IDs are long), while its archived table and archived
// task page show no result at all. So for a cancellation in
// DashboardConfig.Queue with a result record, the payload cell holds two
// lines: FormatPayload's ("DEMO0001 · closes 00:35:10Z · …") and
// FormatResult's ("cancelled · RF-1 · 1 try · …").
//
// Every request to its API passes check first (page size, queue names, and
// no change without credentials).
type Dashboard struct {
	h        *asynqmon.HTTPHandler
	serve    http.Handler
	insp     *asynq.Inspector // nil without DashboardConfig.Queue or PrometheusURL
	queue    string
	readOnly bool
}

// MaxPageSize bounds a page of a dashboard list (Asynqmon's "size"; its
// pages offer 10 to 100 rows). Asynqmon takes any size, and each task shown
// costs Redis calls (Asynqmon's, and the payload formatter's one), so one
// GET of thousands would cost thousands; a larger size gets 400.
const MaxPageSize = 100

// NewDashboard builds the dashboard. Without credentials it is read-only
// on a loopback address and refuses every request (403) on any other,
// rather than serve it open.
func NewDashboard(cfg DashboardConfig) *Dashboard {
	creds := cfg.User != "" && cfg.Password != ""
	d := &Dashboard{queue: cfg.Queue, readOnly: cfg.ReadOnly || !creds}
	if cfg.Queue != "" || cfg.PrometheusURL != "" {
		d.insp = asynq.NewInspector(cfg.Redis)
	}
	d.h = asynqmon.New(asynqmon.Options{
		RootPath:          DashboardPath,
		RedisConnOpt:      cfg.Redis,
		PayloadFormatter:  asynqmon.PayloadFormatterFunc(d.formatPayload),
		ResultFormatter:   asynqmon.ResultFormatterFunc(FormatResult),
		ReadOnly:          d.readOnly,
		PrometheusAddress: cfg.PrometheusURL,
	})
	var inner http.Handler = d.h
	if cfg.Orders != nil {
		mux := http.NewServeMux()
		mux.Handle(OrdersPath, orders(cfg.Orders))
		mux.Handle("/", d.h)
		inner = mux
	}
	checked := d.check(inner)
	d.serve = checked
	switch {
	case creds:
		d.serve = BasicAuth(cfg.User, cfg.Password, "refundd dashboard", cfg.Failures, checked)
	case !cfg.Loopback:
		d.serve = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			WriteJSON(w, http.StatusForbidden, errorBody{Error: "the dashboard is not served without DASHBOARD_USER and DASHBOARD_PASSWORD on a non-loopback OPS_ADDR"})
		})
	}
	return d
}

// Register adds the dashboard to mux under DashboardPath.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.Handle(DashboardPath+"/", d.serve)
	mux.Handle(DashboardPath, http.RedirectHandler(DashboardPath+"/", http.StatusMovedPermanently))
}

// check refuses, before Asynqmon sees it: a change (any method but GET and
// HEAD) to a read-only dashboard (403), a list page larger than
// MaxPageSize (400), and metrics asked for a queue that does not exist
// (400).
func (d *Dashboard) check(next http.Handler) http.Handler {
	api := DashboardPath + "/api/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.readOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			refuse(w, r, http.StatusForbidden, "the dashboard is read-only: changes need DASHBOARD_USER and DASHBOARD_PASSWORD (and DASHBOARD_READ_ONLY=false)")
			return
		}
		if !strings.HasPrefix(r.URL.Path, api) {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		if s, ok := q["size"]; ok {
			if n, err := strconv.Atoi(s[0]); len(s) != 1 || err != nil || n < 1 || n > MaxPageSize {
				refuse(w, r, http.StatusBadRequest, fmt.Sprintf("size must be a whole number from 1 to %d", MaxPageSize))
				return
			}
		}
		if r.URL.Path == api+"metrics" && q.Has("queues") {
			if status, msg := d.unknownQueues(q["queues"]); msg != "" {
				refuse(w, r, status, msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// unknownQueues answers what is wrong with a metrics request's queues
// parameter (comma-separated names, as Asynqmon reads it) and the status to
// answer, or "" if each names a queue that exists.
func (d *Dashboard) unknownQueues(values []string) (int, string) {
	if d.insp == nil {
		return 0, ""
	}
	if len(values) != 1 {
		return http.StatusBadRequest, "queues must be given once"
	}
	known, err := d.insp.Queues()
	if err != nil {
		return http.StatusServiceUnavailable, "queues cannot be checked: Redis did not answer"
	}
	for _, name := range strings.Split(values[0], ",") {
		if !slices.Contains(known, name) {
			return http.StatusBadRequest, "queues: no queue named " + strconv.QuoteToASCII(clip.String(name, 60))
		}
	}
	return 0, ""
}

// Close releases the dashboard's Redis connections.
func (d *Dashboard) Close() error {
	err := d.h.Close()
	if d.insp != nil {
		err = errors.Join(err, d.insp.Close())
	}
	return err
}

// formatPayload is the dashboard's payload text: FormatPayload's line and,
// for a cancellation whose task has a result record, FormatResult's line.
// Both lines are the worker's or quoted (no field can add a line).
func (d *Dashboard) formatPayload(taskType string, payload []byte) string {
	s, p := describePayload(time.Now(), taskType, payload)
	if p == nil || d.queue == "" {
		return s
	}
	info, err := d.insp.GetTaskInfo(d.queue, p.TaskID())
	if err != nil || !bytes.Equal(info.Payload, payload) || len(info.Result) == 0 {
		return s // not this task, or no record yet
	}
	return s + "\n" + FormatResult(taskType, info.Result)
}

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
	s, _ := describePayload(now, taskType, payload)
	return s
}

// describePayload answers FormatPayload's text and the payload, if it is a
// valid cancellation.
func describePayload(now time.Time, taskType string, payload []byte) (string, *tasks.CancelRefund) {
	if taskType != tasks.TypeCancelRefund {
		return string(payload), nil
	}
	p, err := tasks.Decode(payload)
	if err != nil {
		// Quoted: a refused payload may hold the very characters (newlines,
		// bidirectional overrides) that would spoof the dashboard's line.
		return fmt.Sprintf("INVALID PAYLOAD (%v): %s", err, strconv.QuoteToASCII(clip.String(string(payload), 300))), nil
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
	return s, &p
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
	tasks.OutcomeHeld:             "held",
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
	if !r.Final() && !r.NextAttemptAt.IsZero() {
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
