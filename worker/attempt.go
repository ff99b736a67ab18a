package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
)

// attempt runs one attempt of the refund's owner, from the record c
// holds. It answers the attempt's record (nil when asynq stopped the
// attempt: nothing to record) and nil, a *TerminalError or a *RetryError.
func (h *Handler) attempt(ctx context.Context, log *zap.Logger, d Delivery, p tasks.CancelRefund, c Claim, start time.Time) (*tasks.Result, error) {
	prior := c.Record
	res := &tasks.Result{Outcome: tasks.OutcomeRetry, TaskID: d.TaskID, OrderRef: p.OrderRef, RefundInitiatedAt: p.RefundInitiatedAt.UTC(),
		Run: max(c.Run, 1), Attempts: 1, WindowClosesAt: h.policy.Closes(p.RefundInitiatedAt).UTC()}
	if prior != nil {
		res.Attempts, res.Sent, res.MaybeApplied, res.UnknownErrors = prior.Attempts+1, prior.Sent, prior.MaybeApplied, prior.UnknownErrors
	}
	if prior != nil && prior.Outcome == tasks.OutcomeSending && res.MaybeApplied == "" {
		res.MaybeApplied = prior.Reason // a delivery ended mid-call: its request may have applied
	}
	err := h.try(ctx, d, p, c, res, start)
	switch {
	case err == nil:
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		h.finish(log, start, h.policy.Closes(p.RefundInitiatedAt), nil, err)
		return nil, err
	default:
		var terr *TerminalError
		var rerr *RetryError
		if errors.As(err, &terr) {
			res.Outcome, res.Reason = terr.Outcome, terr.Reason
		} else if errors.As(err, &rerr) {
			res.NextAttemptAt = rerr.At.UTC()
			if rerr.NothingSent { // holds included: this run was no attempt
				res.Attempts--
			}
			if rerr.Held {
				res.Outcome, res.Reason = tasks.OutcomeHeld, rerr.Cause.Error()
				if prior != nil {
					res.VendorCode, res.VendorError = prior.VendorCode, prior.VendorError
				}
			}
		}
	}
	if res.Final() {
		res.FinishedAt = h.now().UTC()
	}
	h.finish(log, start, h.policy.Closes(p.RefundInitiatedAt), res, err)
	return res, err
}

// sendWithin bounds the time from an attempt's start to its cancelRefund
// starting (the record that says it is being sent comes in between, right
// before the send): well inside asynq's 30 s lease, so a delivery that
// stalls after its record cannot send once asynq has handed the task to
// another delivery, and a worker waits no longer at the fleet's Gate.
const sendWithin = 20 * time.Second

// first reports whether no cancelRefund may have reached 2Checkout for the
// refund yet.
func first(res *tasks.Result) bool { return res.Sent == 0 && res.MaybeApplied == "" }

func (h *Handler) try(ctx context.Context, d Delivery, p tasks.CancelRefund, c Claim, res *tasks.Result, now time.Time) error {
	closes := h.policy.Closes(p.RefundInitiatedAt)
	cutoff := h.policy.Cutoff(p.RefundInitiatedAt)
	if !now.Before(cutoff) {
		return h.settle(ctx, p, res, windowClosed(closes, cutoff, nil), res.MaybeApplied)
	}
	rctx := rpcclient.WithStartDeadline(ctx, cutoff)
	// Relative, so the bound is right whatever clock h.now reads.
	rctx, cancel := context.WithTimeout(rctx, cutoff.Sub(now)+h.policy.RequestTimeout)
	defer cancel()
	// The last chance — no retry fits after this attempt — is never held
	// back: not by the fleet's throttle or outage hold (a priority
	// request), nor by deadline-first's turns. It is one request.
	last := h.policy.LastChance(now, cutoff)
	if last {
		rctx = rpcclient.WithPriority(rctx)
	}

	if h.turns != nil && !last {
		turn, err := h.turns.Take(ctx, res.TaskID, cutoff)
		switch {
		case err != nil:
			h.log.Warn("deadline-first dispatch unavailable: calling without a turn", zap.String("task_id", res.TaskID), zap.Error(err))
		case !turn.Granted():
			at := turn.HeldUntil
			if last := h.policy.LastRetryAt(cutoff); at.After(last) && last.After(now) {
				at = last // due while a worker can still take it before the cut-off
			}
			return &RetryError{At: at, Uncounted: true, Held: true, NothingSent: true, Cause: fmt.Errorf(
				"held: waiting its turn behind %d refund(s) whose windows close sooner (deadline-first dispatch; nothing sent, not a failure, no retry counted)", turn.Ahead)}
		default:
			defer turn.Release()
		}
	}

	// Right before the cancel is sent — once the fleet's Gate lets it go,
	// so that no wait at the Gate comes in between (rpcclient: before) —
	// the attempt
	//   - checks, after a cancel of the task's reached 2Checkout, that the
	//     order's refund is still the task's: cancelRefund names only the
	//     order (checkRefund);
	//   - records that a cancelRefund is on its way (sending): whatever
	//     happens to this delivery, the next one knows it may have applied.
	// stop is what ended the attempt there instead of the send.
	checked := !first(res)
	var stop func() error
	recorded := false
	before := func(cctx context.Context) error {
		if checked {
			s, err := h.checkRefund(ctx, cctx, d, p, res)
			if err != nil {
				stop = s
				return err
			}
		}
		if recorded {
			return nil // the resend after a session error: recorded already
		}
		recordedAt := h.now()
		sending := *res
		sending.Outcome, sending.Sent = tasks.OutcomeSending, res.Sent+1
		sending.Reason = "cancelRefund sent at " + recordedAt.UTC().Format(time.RFC3339) + " has no recorded answer (the delivery ended mid-call: a crash, a shutdown or a timeout)"
		if err := h.mem.Write(ctx, c, &sending, DeliveryRunning, false); err != nil {
			stop = func() error {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &RetryError{At: h.now().Add(h.policy.MinDelay), Uncounted: true, NothingSent: true,
					Cause: fmt.Errorf("record that a cancelRefund is being sent (nothing sent): %w", err)}
			}
			return errStopped
		}
		res.Sent++
		recorded = true
		return nil
	}
	// refused: a send left and was refused for its session, and its resend
	// did not leave (rpcclient.ResendError): one cancel was sent.
	refused := false
	unsent := func() {
		if recorded && !refused {
			res.Sent--
		}
	}
	// The request starts within sendWithin of the attempt's start, or not
	// at all: a worker does not wait at the Gate for longer, and a delivery
	// that stalls after its record (a paused process) must not send after
	// asynq re-delivered the task to another. An ordinary attempt's
	// requests start in time for the last chance to follow them, however
	// long the Gate holds them.
	sctx, startBy := rctx, cutoff
	if !last {
		startBy = h.policy.OrdinaryDeadline(cutoff)
	}
	if at := now.Add(sendWithin); at.Before(startBy) {
		startBy = at
	}
	if startBy.Before(cutoff) {
		sctx = rpcclient.WithStartDeadline(rctx, startBy)
	}
	if !checked {
		// A first cancel: if cancelRefund is out, let a retry (which checks
		// its refund anyway) be the probe first — a failed probe of this
		// one would cost its task a check later.
		sctx = rpcclient.WithProbeLast(sctx)
	}
	refundID, err := h.api.CancelRefund(sctx, p.OrderRef, before)
	if err == nil {
		res.Outcome, res.RefundID = tasks.OutcomeCancelled, refundID
		return nil
	}
	var re *rpcclient.ResendError
	if refused = recorded && errors.As(err, &re); refused && ctx.Err() != nil {
		// asynq stopped the attempt before the resend left: the record must
		// not go on saying "sending" for a cancel 2Checkout refused.
		h.refusedOnly(ctx, c, res)
	}
	if stop != nil {
		unsent() // stopped before it was sent
		return stop()
	}
	if errors.Is(err, rpcclient.ErrStartDeadline) && h.now().Before(cutoff) {
		unsent()
		at, ok := h.policy.Next(h.now(), res.Attempts, cutoff, nil)
		if !ok && !last {
			// The ordinary deadline passed during this attempt (a stall):
			// no retry fits any more, so this attempt is the last chance.
			return h.try(ctx, d, p, c, res, h.now())
		}
		if !ok {
			at = h.now().Add(h.policy.MinDelay)
		}
		return &RetryError{At: at, Uncounted: true, NothingSent: true,
			Cause: fmt.Errorf("cancelRefund did not start by %s (within %v of the attempt's start, and in time for a last chance after it): nothing sent", startBy.UTC().Format(time.RFC3339), sendWithin)}
	}
	if reached(err) != refundReached {
		unsent() // it never left (only a login did, or nothing)
		return h.retryOrGiveUp(ctx, d, p, res, false, err, err)
	}
	if res.MaybeApplied == "" && rpcclient.MaybeApplied(err) {
		res.MaybeApplied = "cancelRefund at " + h.now().UTC().Format(time.RFC3339) + " got no clear answer: " + describe(err)
	}
	if rpcclient.IsName(err, rpcclient.NameRefundNotCancellable) {
		// An earlier attempt (or someone else) may have cancelled it. Ask
		// the order what is true — a read, allowed after the cut-off too,
		// so not under the start deadline, and never held back (priority;
		// see settle).
		o, gerr := h.api.GetOrder(rpcclient.WithPriority(ctx), p.OrderRef)
		switch {
		case gerr == nil && o.RefundStatus == "CANCELED" && whose(o, p.RefundInitiatedAt) != refundOther:
			res.Outcome, res.RefundID, res.Confirmed = tasks.OutcomeAlreadyCancelled, o.RefundID, true
			return nil
		case gerr != nil && rpcclient.Classify(gerr) != rpcclient.ClassPermanent:
			return h.retryOrGiveUp(ctx, d, p, res, true, gerr, fmt.Errorf("%w; confirming with getOrder: %v", err, gerr))
		}
	}
	return h.retryOrGiveUp(ctx, d, p, res, true, err, err)
}

// refusedOnly records, although asynq stopped the attempt, that its only
// cancelRefund was refused for its session (never applied): the next
// delivery must not take the "sending" record for a cancel that may have
// applied. Fenced like any write; best effort.
func (h *Handler) refusedOnly(ctx context.Context, c Claim, res *tasks.Result) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.policy.RequestTimeout)
	defer cancel()
	rec := *res
	rec.Outcome, rec.Reason = tasks.OutcomeRetry, "stopped (a shutdown or a timeout) before the resend of a cancelRefund 2Checkout refused for its session: nothing applied"
	if err := h.mem.Write(wctx, c, &rec, DeliveryRunning, false); err != nil {
		h.log.Warn("could not record that the only cancelRefund sent was refused", zap.String("task_id", res.TaskID), zap.Error(err))
	}
}

// checkRefund is the check before a cancel that follows one that reached
// 2Checkout: getOrder, as a priority request (the Gate has let the cancel
// through; the pair goes together). It answers nil to send the cancel;
// else an error that stops it, with stop — unless nil — saying how the
// attempt ends (a request that could not start in time has none: the
// cancel's own start deadline decides).
func (h *Handler) checkRefund(ctx, cctx context.Context, d Delivery, p tasks.CancelRefund, res *tasks.Result) (func() error, error) {
	o, err := h.api.GetOrder(rpcclient.WithPriority(cctx), p.OrderRef)
	switch {
	case errors.Is(err, rpcclient.ErrStartDeadline):
		return nil, err
	case err != nil && rpcclient.IsName(err, rpcclient.NameOrderNotFound):
		return func() error {
			return h.settle(ctx, p, res, &TerminalError{Outcome: tasks.OutcomeRefused,
				Reason: "2Checkout refused: " + describe(err) + " (getOrder: the order does not exist, so it has no refund to cancel)"}, "")
		}, errStopped
	case err != nil:
		return func() error {
			return h.retryOrGiveUp(ctx, d, p, res, false, err, fmt.Errorf("checking the order's refund with getOrder: %w", err))
		}, errStopped
	}
	switch whose(o, p.RefundInitiatedAt) {
	case refundOther:
		if res.MaybeApplied != "" {
			// Our own cancel may be what settled our refund: superseded
			// would say "not cancelled by this task".
			return func() error {
				return &TerminalError{Outcome: tasks.OutcomeUnknown, Reason: fmt.Sprintf(
					"outcome unknown: order %s's refund is now the one initiated at %s (%s), left alone; but %s, and getOrder no longer shows this task's refund (initiated at %s): check order %s in 2Checkout's control panel",
					p.OrderRef, o.RefundInitiatedAt, o.RefundStatus, res.MaybeApplied, p.RefundInitiatedAt.UTC().Format(time.RFC3339), p.OrderRef)}
			}, errStopped
		}
		return func() error { return &TerminalError{Outcome: tasks.OutcomeSuperseded, Reason: superseded(o, p)} }, errStopped
	case refundOurs:
		if o.RefundStatus == "CANCELED" {
			return func() error {
				res.Outcome, res.RefundID, res.Confirmed = tasks.OutcomeAlreadyCancelled, o.RefundID, true
				return nil
			}, errStopped
		}
	}
	return nil, nil
}

// errStopped: what runs right before the cancel (checkRefund, the sending
// record) ended the attempt instead of the send.
var errStopped = errors.New("the check or the record before the cancel ended the attempt")

// retryOrGiveUp decides what a failed call means for the task. class is
// judged on classErr; the reason carries err. sent: a cancelRefund went
// out in this attempt before the call that failed, or was the call.
func (h *Handler) retryOrGiveUp(ctx context.Context, d Delivery, p tasks.CancelRefund, res *tasks.Result, sent bool, classErr, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // asynq stopped this attempt: it requeues or retries the task
	}
	var ae *rpcclient.APIError
	if errors.As(classErr, &ae) {
		res.VendorCode, res.VendorError = ae.Code, ae.Name
	}
	closes, cutoff := h.policy.Closes(p.RefundInitiatedAt), h.policy.Cutoff(p.RefundInitiatedAt)
	switch rpcclient.Classify(classErr) {
	case rpcclient.ClassNotStarted:
		return h.settle(ctx, p, res, windowClosed(closes, cutoff, nil), res.MaybeApplied)
	case rpcclient.ClassPermanent:
		if rpcclient.IsName(classErr, rpcclient.NameRefundWindowExpired) {
			return h.settle(ctx, p, res, windowClosed(closes, cutoff, classErr), res.MaybeApplied)
		}
		return h.settle(ctx, p, res, &TerminalError{Outcome: tasks.OutcomeRefused, Reason: "2Checkout refused: " + describe(classErr)}, res.MaybeApplied)
	case rpcclient.ClassUnknown:
		if res.UnknownErrors++; res.UnknownErrors >= h.unknown {
			// An answer we do not recognise does not say the refund is still
			// open: getOrder decides, and where it cannot tell, the outcome
			// is unknown, never a false refusal.
			doubt := res.MaybeApplied
			if doubt == "" {
				doubt = "2Checkout's answer is not one this worker recognises, so it does not show the refund still open"
			}
			return h.settle(ctx, p, res, &TerminalError{Outcome: tasks.OutcomeRefused,
				Reason: fmt.Sprintf("2Checkout refused: %s (an answer this worker does not recognise, %d times)", describe(classErr), res.UnknownErrors)}, doubt)
		}
	}
	at, ok := h.policy.Next(h.now(), res.Attempts, cutoff, classErr)
	if !ok {
		wait := ""
		if ra, has := rpcclient.RetryAfter(classErr); has {
			wait = fmt.Sprintf(" (2Checkout asked to wait %v: Retry-After)", ra)
		}
		return h.settle(ctx, p, res, &TerminalError{Outcome: tasks.OutcomeWindowClosed,
			Reason: fmt.Sprintf("no retry fits before the window closes at %s%s: last error: %v", closes.UTC().Format(time.RFC3339), wait, err)}, res.MaybeApplied)
	}
	r := refundReached
	if !sent {
		r = reached(classErr)
	}
	// Uncounted when nothing left at all, and when the count would archive
	// the task (a producer's small MaxRetry) while a retry still fits.
	lastCount := d.MaxRetry > 0 && d.Retried+1 >= d.MaxRetry
	return &RetryError{At: at, Cause: err, NothingSent: r != refundReached, Uncounted: r == nothingReached || lastCount}
}

// reach is how far a failed call's requests got.
type reach int

const (
	// nothingReached: no request left — the shared budget held it back
	// (rpcclient.GateError: an outage, Redis unreachable) or the caller's
	// context ended first. Not an attempt, and no retry is counted.
	nothingReached reach = iota
	// loginReached: only a login reached 2Checkout. Not an attempt (the
	// next run is still a first attempt), but a counted retry, so a
	// failing login's backoff grows.
	loginReached
	// refundReached: a request about the refund may have reached 2Checkout.
	refundReached
)

// reached reads how far the failed call whose error is err got.
func reached(err error) reach {
	var te *rpcclient.TransportError
	var ae *rpcclient.APIError
	switch {
	case !rpcclient.Sent(err):
		return nothingReached
	case errors.As(err, &te) && te.Method == rpcclient.MethodLogin, errors.As(err, &ae) && ae.Method == rpcclient.MethodLogin:
		return loginReached
	}
	return refundReached
}

// settle is the last word before a task is archived with terr: where doubt
// says why terr alone may not be the truth (an attempt that may have
// cancelled the refund with its answer lost), ask getOrder what is true —
// reads are allowed after the window, and no cancelRefund is sent. A
// cancelled refund completes the task; a refund getOrder shows still open
// keeps terr; where getOrder cannot tell, the outcome is unknown. An empty
// doubt: terr is the truth.
func (h *Handler) settle(ctx context.Context, p tasks.CancelRefund, res *tasks.Result, terr *TerminalError, doubt string) error {
	if doubt == "" {
		return terr
	}
	// The read that settles the outcome is never held back by the
	// fleet's throttle or outage hold: it is one request, and without it
	// the outcome would be unknown. The ceiling (TCO_RATE_LIMIT) still
	// holds it, for as long as the delivery may run (the request itself is
	// bounded by the client's RequestTimeout): many tasks settling at once
	// wait their slots rather than end unknown; a delivery that runs out of
	// time first is retried by asynq and settles again.
	o, err := h.api.GetOrder(rpcclient.WithPriority(ctx), p.OrderRef)
	var why string
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && rpcclient.IsName(err, rpcclient.NameOrderNotFound):
		// 2Checkout told: no such order, so no refund this task cancelled.
		terr.Reason += "; getOrder: the order does not exist (" + describe(err) + ")"
		return terr
	case err != nil:
		why = "getOrder failed: " + describe(err)
	case whose(o, p.RefundInitiatedAt) == refundOther:
		why = "the order now shows a different refund (initiated at " + o.RefundInitiatedAt + ")"
	case o.RefundStatus == "CANCELED":
		res.Outcome, res.RefundID, res.Confirmed = tasks.OutcomeAlreadyCancelled, o.RefundID, true
		return nil
	case o.RefundStatus != "":
		terr.Reason += "; getOrder confirms the refund is " + o.RefundStatus + ", not cancelled"
		return terr
	default:
		why = "getOrder does not show the refund's status (2Checkout documents no way to read it)"
	}
	return &TerminalError{Outcome: tasks.OutcomeUnknown, Reason: fmt.Sprintf("outcome unknown: %s; but %s, and %s: check order %s in 2Checkout's control panel",
		terr.Reason, doubt, why, p.OrderRef)}
}

// refundOwner says whose refund getOrder shows, as far as it tells.
type refundOwner int

const (
	refundUnknown refundOwner = iota // getOrder shows no (readable) initiation time
	refundOurs
	refundOther
)

func whose(o *rpcclient.Order, initiated time.Time) refundOwner {
	if o == nil || o.RefundInitiatedAt == "" {
		return refundUnknown
	}
	t, err := time.Parse(time.RFC3339Nano, o.RefundInitiatedAt)
	if err != nil {
		return refundUnknown
	}
	if t.Truncate(time.Second).Equal(initiated.Truncate(time.Second)) {
		return refundOurs
	}
	return refundOther
}

func superseded(o *rpcclient.Order, p tasks.CancelRefund) string {
	return fmt.Sprintf("superseded: order %s's refund is now the one initiated at %s (%s); this task's refund (initiated at %s) was settled before this attempt, by someone else (no cancelRefund of this task's can have applied); the newer refund is left alone",
		p.OrderRef, o.RefundInitiatedAt, o.RefundStatus, p.RefundInitiatedAt.UTC().Format(time.RFC3339))
}

func windowClosed(closes, cutoff time.Time, vendor error) *TerminalError {
	reason := fmt.Sprintf("window closed at %s (no request starts after %s)", closes.UTC().Format(time.RFC3339), cutoff.UTC().Format(time.RFC3339))
	if vendor != nil {
		reason = fmt.Sprintf("window closed at %s: 2Checkout refused: %s", closes.UTC().Format(time.RFC3339), describe(vendor))
	}
	return &TerminalError{Outcome: tasks.OutcomeWindowClosed, Reason: reason}
}

// describe answers "<code> <NAME>: <message>" for an *APIError.
func describe(err error) string {
	var ae *rpcclient.APIError
	if errors.As(err, &ae) {
		if ae.Code != 0 {
			return fmt.Sprintf("%d %s: %s", ae.Code, ae.Name, ae.Message)
		}
		return fmt.Sprintf("HTTP %d %s: %s", ae.HTTPStatus, ae.Name, ae.Message)
	}
	return err.Error()
}
