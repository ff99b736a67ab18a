package vendorbudget

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/refundd/refund-canceller/rpcclient"
)

// Wait implements rpcclient.Gate: it answers nil once the request may be
// sent (its budget taken), rpcclient.ErrStartDeadline (at once, without
// taking budget) if that cannot happen before the start deadline, the
// context's error if it ends first, or an error naming Redis if Redis cannot
// be asked. A request marked rpcclient.WithPriority is not held by an
// outage or the throttle; it waits only for the ceiling (TCO_RATE_LIMIT),
// polling it without queuing behind the process's other requests.
func (g *Gate) Wait(ctx context.Context, method string) error {
	granted := false
	start := time.Now()  // wall clock: a duration for the histogram
	var counted []string // reasons already counted for this request
	refused := func(reason string) { g.refused(method, reason, &counted) }
	priority := rpcclient.Priority(ctx)
	queued := false
	var probe int64 // the probe claim this request holds (its end, ms), if any
	defer func() {
		if probe != 0 && !granted {
			g.release(ctx, method, probe) // held by the rate past its deadline: not sent
		}
	}()
	for {
		wait, reason, err := g.next(ctx, method, &probe, priority)
		if err != nil {
			if ctx.Err() != nil {
				refused(ReasonContext)
				return ctx.Err()
			}
			refused(ReasonUnavailable)
			return fmt.Errorf("shared budget in Redis: %w", err)
		}
		if wait <= 0 {
			break
		}
		refused(reason)
		if err := g.mayWait(ctx, wait); err != nil {
			refused(reasonOf(err))
			return err
		}
		if reason != ReasonOutage && !queued && !priority {
			// One poller of the rate per process: the others wait their
			// turn here, never past their start deadline. No jitter: the
			// first to wake takes the slot; a late one would waste it
			// (GCRA does not bank unused time beyond Burst).
			if err := g.sleep(ctx, g.poller, 0); err != nil {
				refused(reasonOf(err))
				return err
			}
			queued = true
			defer func() { <-g.poller }()
			continue // the budget may have come while queuing
		}
		if err := g.sleep(ctx, nil, wait); err != nil {
			refused(reasonOf(err))
			return err
		}
	}
	if g.cfg.Observer != nil {
		g.cfg.Observer.Waited(method, time.Since(start))
	}
	if probe != 0 {
		// Done gives the claim back if the request is then not sent (its
		// caller's check stops it): the client hands Done the same ctx.
		g.probes.Store(ctx, probe)
	}
	granted = true
	return nil
}

// next answers whether a request of method may go now (wait 0, its budget
// taken); otherwise how long until it might, and why. *probe: the request
// is its method's probe (set once it is; it then waits for the rate only).
// priority: only the ceiling applies.
func (g *Gate) next(ctx context.Context, method string, probe *int64, priority bool) (wait time.Duration, reason string, err error) {
	if priority {
		return g.ceiling(ctx)
	}
	v, err := g.state(ctx)
	if err != nil {
		return 0, "", err
	}
	if g.cfg.OutageMin > 0 && *probe == 0 {
		wait, *probe, err = g.hold(ctx, v, method)
		if err != nil || wait > 0 {
			return wait, ReasonOutage, err
		}
	}
	if m := v.methods[method]; m.Throttled {
		// The method's throttle first: a request it holds takes none of
		// the ceiling's budget.
		if wait, err := g.take(ctx, g.cfg.Key+":"+method, m.Rate); err != nil || wait > 0 {
			return wait, ReasonThrottled, err
		}
	}
	return g.ceiling(ctx)
}

// ceiling takes one request of the fleet's configured rate (TCO_RATE_LIMIT),
// which every request keeps to, a priority one too.
func (g *Gate) ceiling(ctx context.Context) (wait time.Duration, reason string, err error) {
	if g.cfg.Rate > 0 {
		if wait, err := g.take(ctx, g.cfg.Key, float64(g.cfg.Rate)); err != nil || wait > 0 {
			return wait, ReasonRateLimit, err
		}
	}
	return 0, "", nil
}

// take asks key's GCRA at rate for one request: 0 if it may go (its
// budget taken), else how long until it might.
func (g *Gate) take(ctx context.Context, key string, rate float64) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RedisTimeout)
	defer cancel()
	res, err := g.limiter.Allow(rctx, key, g.limit(rate))
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}

// Done implements rpcclient.Gate: it counts how the request ended for the
// fleet's throttle and outage breaker, and while method is out, ends the
// outage on an answer or renews it on none.
func (g *Gate) Done(ctx context.Context, method string, err error) {
	if claim, ok := g.probes.LoadAndDelete(ctx); ok && !sent(err) {
		g.release(ctx, method, claim.(int64))
	}
	if !sent(err) {
		return
	}
	load := refusedForLoad(err)
	unavailable := !load && rpcclient.Unavailable(err)
	g.count(method, unavailable, load)
	if v := g.view.Load(); load && (v == nil || !v.methods[method].Throttled) && g.syncing.CompareAndSwap(false, true) {
		// Refusals while the method is not throttled: the fleet hears of
		// them now, not a Sync later (at full speed that is hundreds of
		// requests); one sync at a time.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.RedisTimeout)
		_, _ = g.sync(rctx)
		cancel()
		g.syncing.Store(false)
	}
	if g.cfg.OutageMin > 0 {
		g.answered(ctx, method, unavailable)
	}
}

// sent reports whether how a request ended counts as 2Checkout's answer:
// it may have reached 2Checkout (rpcclient.Sent), and its caller did not
// cancel it (a shutdown says nothing of 2Checkout).
func sent(err error) bool {
	return rpcclient.Sent(err) && !errors.Is(err, context.Canceled)
}

// refusedForLoad reports whether 2Checkout refused the request for load: a
// 429, or a 503 with Retry-After.
func refusedForLoad(err error) bool {
	var ae *rpcclient.APIError
	if !errors.As(err, &ae) {
		return false
	}
	_, slowDown := rpcclient.SlowDownAsked(err)
	return ae.HTTPStatus == http.StatusTooManyRequests || slowDown
}

// refused tells the observer, once per request and reason (counted holds
// the reasons told), that a request was held back.
func (g *Gate) refused(method, reason string, counted *[]string) {
	if g.cfg.Observer == nil || slices.Contains(*counted, reason) {
		return
	}
	*counted = append(*counted, reason)
	g.cfg.Observer.Refused(method, reason)
}

// mayWait answers nil if a request may wait d from now: it would still start
// before its start deadline and before its context's deadline.
func (g *Gate) mayWait(ctx context.Context, d time.Duration) error {
	sd, hasStart := rpcclient.StartDeadline(ctx)
	cd, hasCtx := ctx.Deadline()
	return waitRefusal(g.cfg.Now(), d, sd, hasStart, cd, hasCtx)
}

// waitRefusal is the rule for a request that must wait d from now:
// rpcclient.ErrStartDeadline if it would start at or after its start
// deadline, context.DeadlineExceeded if its context would end first, nil if
// it may wait.
func waitRefusal(now time.Time, d time.Duration, startDeadline time.Time, hasStart bool, ctxDeadline time.Time, hasCtx bool) error {
	at := now.Add(d)
	if hasStart && !at.Before(startDeadline) {
		return rpcclient.ErrStartDeadline
	}
	if hasCtx && !at.Before(ctxDeadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// sleep waits d, or for a slot of sem if sem is set; never past the start
// deadline (ErrStartDeadline) nor the context (its error).
func (g *Gate) sleep(ctx context.Context, sem chan struct{}, d time.Duration) error {
	var deadline <-chan time.Time
	if sd, ok := rpcclient.StartDeadline(ctx); ok {
		t := time.NewTimer(sd.Sub(g.cfg.Now()))
		defer t.Stop()
		deadline = t.C
	}
	var done <-chan time.Time
	if sem == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		done = t.C
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-done:
		return nil
	case <-deadline:
		return rpcclient.ErrStartDeadline
	case <-ctx.Done():
		return ctx.Err()
	}
}

func reasonOf(err error) string {
	if errors.Is(err, rpcclient.ErrStartDeadline) {
		return ReasonStartDeadline
	}
	return ReasonContext
}
