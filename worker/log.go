package worker

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// finish logs a delivery's one line and tells the observer. res may be nil
// (nothing recorded); closes is zero for an invalid payload.
func (h *Handler) finish(log *zap.Logger, start, closes time.Time, res *tasks.Result, err error) {
	now := h.now()
	outcome := tasks.OutcomeRetry
	var terr *TerminalError
	var rerr *RetryError
	switch {
	case err == nil:
		outcome = res.Outcome
	case errors.As(err, &terr):
		outcome = terr.Outcome
	case errors.As(err, &rerr) && rerr.Held:
		outcome = tasks.OutcomeHeld
	}
	fields := []zap.Field{zap.String("outcome", outcome), zap.Duration("duration", now.Sub(start))}
	if res != nil {
		fields = append(fields, zap.Int("attempt", res.Attempts), zap.Int("run", res.Run))
	}
	if !closes.IsZero() {
		fields = append(fields, zap.Time("window_closes_at", closes))
	}
	switch {
	case err == nil:
		log.Info("refund cancellation done", append(fields, zap.String("refund_id", res.RefundID), zap.Bool("confirmed", res.Confirmed))...)
	case terr != nil:
		log.Warn("refund cancellation archived", append(fields, zap.String("reason", terr.Reason))...)
	case outcome == tasks.OutcomeHeld:
		// Many at a time under a backlog: debug, the metrics count them.
		log.Debug("refund cancellation held for its turn", append(fields, zap.Time("retry_at", rerr.At), zap.Error(rerr.Cause))...)
	case rerr != nil:
		fields = append(fields, zap.Time("retry_at", rerr.At), zap.Error(rerr.Cause))
		if rpcclient.Classify(rerr.Cause) == rpcclient.ClassCredentials {
			log.Error("2Checkout refused our credentials; will retry within the window", fields...)
		} else {
			log.Warn("refund cancellation attempt failed; retrying", fields...)
		}
	default:
		log.Info("refund cancellation attempt stopped by the queue", append(fields, zap.Error(err))...)
	}
	if h.obs != nil {
		slack := time.Duration(0)
		if !closes.IsZero() {
			slack = closes.Sub(now)
		}
		h.obs.Attempted(outcome, slack)
	}
}
