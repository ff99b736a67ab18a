package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

type env struct {
	clock *rpctest.Clock
	srv   *rpctest.Server
	api   *rpcclient.Client
	h     *Handler
	mem   *fakeMemory
	logs  *observer.ObservedLogs
	obs   *countingObserver
}

type countingObserver struct{ outcomes []string }

func (c *countingObserver) Attempted(outcome string, _ time.Duration) {
	c.outcomes = append(c.outcomes, outcome)
}

// useGate makes the handler call 2Checkout through g, where the fleet's
// Gate (internal/vendorbudget) stands in refundd.
func (e *env) useGate(t *testing.T, g rpcclient.Gate) {
	t.Helper()
	api, err := rpcclient.New(rpcclient.Config{URL: e.srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey,
		Now: e.clock.Now, RequestTimeout: time.Second, Gate: g})
	if err != nil {
		t.Fatal(err)
	}
	e.h.api = api
}

func newEnv(t *testing.T, secret string) *env {
	t.Helper()
	return newEnvWith(t, secret, rpctest.Config{})
}

// newEnvWith is newEnv with a sandbox configured by sb (its clock is set).
func newEnvWith(t *testing.T, secret string, sb rpctest.Config) *env {
	t.Helper()
	clock := rpctest.NewClock(t0)
	sb.Now = clock.Now
	srv := rpctest.NewServer(sb)
	t.Cleanup(srv.Close)
	if secret == "" {
		secret = rpctest.DefaultSecretKey
	}
	api, err := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpcclient.Secret(secret), Now: clock.Now, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	obs := &countingObserver{}
	mem := newFakeMemory()
	h, err := NewHandler(HandlerConfig{API: api, Memory: mem, Logger: zap.New(core), Now: clock.Now, Observer: obs, Policy: Policy{Rand: func() float64 { return 0.5 }}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{clock: clock, srv: srv, api: api, h: h, mem: mem, logs: logs, obs: obs}
}

func payload(ref string, initiated time.Time) []byte {
	return []byte(fmt.Sprintf(`{"order_ref":%q,"refund_initiated_at":%q}`, ref, initiated.Format(time.RFC3339Nano)))
}

func TestHandle(t *testing.T) {
	initiated := t0.Add(-time.Hour)
	cases := []struct {
		name        string
		seed        *rpctest.Refund
		faults      []rpctest.FaultRule
		payload     []byte
		secret      string
		wantOutcome string
		wantReason  string // prefix of the terminal reason
		wantRetry   bool
		wantCancels int // cancelRefund calls in the ledger
		// thenOutcome, for a retry: run it when due and want this outcome.
		thenOutcome string
	}{
		{name: "cancelled", seed: &rpctest.Refund{OrderRef: "H1", RefundID: "R1", InitiatedAt: initiated},
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeCancelled, wantCancels: 1},
		{name: "already cancelled, confirmed", seed: &rpctest.Refund{OrderRef: "H1", Status: "CANCELED", InitiatedAt: initiated},
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeAlreadyCancelled, wantCancels: 1},
		{name: "apply then drop: the retry confirms", seed: &rpctest.Refund{OrderRef: "H1", InitiatedAt: initiated},
			faults:  []rpctest.FaultRule{{Method: "cancelRefund", Kind: "apply_then_drop", FirstN: 1}},
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeRetry, wantRetry: true, wantCancels: 1, thenOutcome: tasks.OutcomeAlreadyCancelled},
		{name: "refused: completed refund", seed: &rpctest.Refund{OrderRef: "H1", Status: "COMPLETED", InitiatedAt: initiated},
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeRefused, wantReason: "2Checkout refused: 20004 REFUND_NOT_CANCELLABLE: ", wantCancels: 1},
		{name: "refused: unknown order", payload: payload("H404", initiated), wantOutcome: tasks.OutcomeRefused,
			wantReason: "2Checkout refused: 20002 ORDER_NOT_FOUND: ", wantCancels: 1},
		{name: "invalid payload", payload: []byte(`{"order_ref":""}`), wantOutcome: tasks.OutcomeInvalid,
			wantReason: "invalid payload: order_ref: is required; refund_initiated_at: is required"},
		{name: "window closed before the call", seed: &rpctest.Refund{OrderRef: "H1", InitiatedAt: t0.Add(-119 * time.Minute)},
			payload: payload("H1", t0.Add(-119*time.Minute)), wantOutcome: tasks.OutcomeWindowClosed, wantReason: "window closed at 2026-11-25T10:01:00Z"},
		{name: "vendor says the window passed", seed: &rpctest.Refund{OrderRef: "H1", InitiatedAt: t0.Add(-3 * time.Hour)},
			payload: payload("H1", t0.Add(-time.Hour)), wantOutcome: tasks.OutcomeWindowClosed, wantReason: "window closed at 2026-11-25T11:00:00Z: 2Checkout refused: 20005 REFUND_WINDOW_EXPIRED", wantCancels: 1},
		{name: "503 retried", seed: &rpctest.Refund{OrderRef: "H1", InitiatedAt: initiated},
			faults:  []rpctest.FaultRule{{Method: "cancelRefund", Kind: "status", Status: 503}},
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeRetry, wantRetry: true, wantCancels: 1},
		{name: "bad credentials retried", seed: &rpctest.Refund{OrderRef: "H1", InitiatedAt: initiated}, secret: "wrong",
			payload: payload("H1", initiated), wantOutcome: tasks.OutcomeRetry, wantRetry: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.secret)
			if tc.seed != nil {
				if err := e.srv.Seed(*tc.seed); err != nil {
					t.Fatal(err)
				}
			}
			_ = e.srv.SetFaults(tc.faults...)
			res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "refund:cancel:H1", Payload: tc.payload})
			if got := e.obs.outcomes; len(got) != 1 || got[0] != tc.wantOutcome {
				t.Fatalf("outcomes %v, want [%s] (err %v)", got, tc.wantOutcome, err)
			}
			var terr *TerminalError
			var rerr *RetryError
			switch {
			case tc.wantReason != "":
				if !errors.As(err, &terr) || !strings.HasPrefix(terr.Reason, tc.wantReason) || !errors.Is(err, asynq.SkipRetry) {
					t.Fatalf("err %v, want terminal %q", err, tc.wantReason)
				}
			case tc.wantRetry:
				cutoff := e.h.policy.Cutoff(initiated)
				if !errors.As(err, &rerr) || !rerr.At.After(t0) || !rerr.At.Before(cutoff) {
					t.Fatalf("err %v, want a retry before %v", err, cutoff)
				}
			default:
				if err != nil || res.Outcome != tc.wantOutcome || res.Attempts != 1 || !res.WindowClosesAt.Equal(initiated.Add(2*time.Hour)) {
					t.Fatalf("res %+v err %v", res, err)
				}
			}
			if n := e.srv.Stats().Calls["cancelRefund"]; sum(n) != tc.wantCancels {
				t.Fatalf("%d cancelRefund calls, want %d", sum(n), tc.wantCancels)
			}
			if e.logs.FilterField(zap.String("task_id", "refund:cancel:H1")).Len() != 1 {
				t.Fatalf("want one log line per attempt with task_id: %v", e.logs.All())
			}
			if tc.thenOutcome == "" {
				return
			}
			e.clock.Set(rerr.At)
			res, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "refund:cancel:H1", Retried: 1, Payload: tc.payload})
			if err != nil || res.Outcome != tc.thenOutcome || !res.Confirmed || res.Attempts != 2 {
				t.Fatalf("retry: %+v %v", res, err)
			}
			if r, _ := e.srv.Refund("H1"); r.Status != rpctest.StatusCanceled {
				t.Fatalf("sandbox refund %+v", r)
			}
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// The apply-then-drop fault cancels the refund but loses the answer; the
// next attempt hears "not cancellable", confirms with getOrder, and
// completes as already_cancelled.
func TestAmbiguousOutcomeEndsInTheTruth(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "A1", RefundID: "R-A1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "apply_then_drop", FirstN: 1})
	_, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Payload: payload("A1", initiated)})
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("first attempt: %v", err)
	}
	e.clock.Set(rerr.At)
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: 1, Payload: payload("A1", initiated)})
	if err != nil || res.Outcome != tasks.OutcomeAlreadyCancelled || !res.Confirmed || res.Attempts != 2 || res.RefundID != "R-A1" {
		t.Fatalf("second attempt: %+v %v", res, err)
	}
}

func TestNoRequestAfterCutoff(t *testing.T) {
	// Every attempt fails with 503; the clock follows each retry. The task
	// ends archived, and no call in the ledger arrived at or after the cut-off.
	e := newEnv(t, "")
	initiated := t0.Add(-110 * time.Minute)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "S1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503})
	cutoff := e.h.policy.Cutoff(initiated)
	var err error
	attempts := 0
	for ; attempts < 1000; attempts++ {
		_, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Retried: attempts, Payload: payload("S1", initiated)})
		var rerr *RetryError
		if !errors.As(err, &rerr) {
			break
		}
		e.clock.Set(rerr.At)
	}
	var terr *TerminalError
	if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeWindowClosed || !strings.HasPrefix(terr.Reason, "no retry fits before the window closes at 2026-11-25T10:10:00Z") {
		t.Fatalf("after %d attempts: %v", attempts, err)
	}
	calls := 0
	for _, c := range e.srv.Ledger() {
		if c.Method == "cancelRefund" {
			calls++
			if !c.Time.Before(cutoff) {
				t.Fatalf("call at %v, cut-off %v", c.Time, cutoff)
			}
		}
	}
	if calls < 5 || calls != attempts+1 { // every run, including the last, made one call
		t.Fatalf("%d calls for %d attempts", calls, attempts)
	}
}

func TestRetryDelay(t *testing.T) {
	e := newEnv(t, "")
	task := asynq.NewTask("refund:cancel", payload("D1", t0.Add(-time.Hour)))
	if d := e.h.RetryDelay(1, &RetryError{At: t0.Add(42 * time.Second), Cause: errors.New("x")}, task); d != 42*time.Second {
		t.Fatalf("from RetryError: %v", d)
	}
	if d := e.h.RetryDelay(1, context.DeadlineExceeded, task); d != time.Second { // rand 0.5 of 2s, floored at 1s
		t.Fatalf("from policy: %v", d)
	}
	late := asynq.NewTask("refund:cancel", payload("D1", t0.Add(-2*time.Hour)))
	if d := e.h.RetryDelay(1, context.DeadlineExceeded, late); d != 0 {
		t.Fatalf("past cut-off: %v", d)
	}
	if d := e.h.RetryDelay(1, errors.New("x"), asynq.NewTask("refund:cancel", []byte("junk"))); d != 0 {
		t.Fatalf("junk payload: %v", d)
	}
}

func TestUnknownTaskType(t *testing.T) {
	e := newEnv(t, "")
	err := e.h.ProcessTask(context.Background(), asynq.NewTask("email:send", nil))
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "unknown task type") {
		t.Fatalf("%v", err)
	}
}

// ctxSpy records the context of each call and fails it.
type ctxSpy struct{ deadlines []time.Time }

func (s *ctxSpy) CancelRefund(ctx context.Context, _ string, check func(context.Context) error) (string, error) {
	if err := runCheck(ctx, check); err != nil {
		return "", err
	}
	d, _ := ctx.Deadline()
	s.deadlines = append(s.deadlines, d)
	return "", &rpcclient.APIError{Method: "cancelRefund", Name: rpcclient.NameHTTPStatus, HTTPStatus: 503}
}
func (s *ctxSpy) GetOrder(context.Context, string) (*rpcclient.Order, error) {
	return nil, errors.New("unused")
}

// Rule 1: every request's context has a deadline no later than the cut-off
// plus the request timeout, measured from the injected clock.
func TestRequestDeadlineBoundedByCutoff(t *testing.T) {
	for _, left := range []time.Duration{time.Nanosecond, time.Second, 90 * time.Minute} {
		clock := rpctest.NewClock(t0)
		spy := &ctxSpy{}
		h, err := NewHandler(HandlerConfig{API: spy, Memory: newFakeMemory(), Now: clock.Now, Policy: Policy{RequestTimeout: 5 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		initiated := t0.Add(left - (2*time.Hour - time.Minute)) // cut-off = t0 + left
		before := time.Now()
		_, _ = h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "t", Payload: payload("D1", initiated)})
		if len(spy.deadlines) != 1 {
			t.Fatalf("left %v: %d calls", left, len(spy.deadlines))
		}
		if limit := time.Now().Add(left + 5*time.Second); spy.deadlines[0].After(limit) || spy.deadlines[0].Before(before.Add(left)) {
			t.Fatalf("left %v: deadline %v, want within (%v, %v]", left, spy.deadlines[0], before.Add(left), limit)
		}
	}
}

// panickyAPI panics on every call.
type panickyAPI struct{}

func (panickyAPI) CancelRefund(context.Context, string, func(context.Context) error) (string, error) {
	panic("vendor client bug")
}
func (panickyAPI) GetOrder(context.Context, string) (*rpcclient.Order, error) {
	panic("vendor client bug")
}

// A panic in the handler's work reaches asynq's recovery in ProcessTask's
// own goroutine (asynq reports it as the task's error, with where it
// happened).
func TestPanicReachesAsynq(t *testing.T) {
	h, err := NewHandler(HandlerConfig{API: panickyAPI{}, Memory: newFakeMemory()})
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"order_ref":"P1","refund_initiated_at":%q}`, time.Now().UTC().Format(time.RFC3339))
	got := func() (v any) {
		defer func() { v = recover() }()
		_ = h.ProcessTask(context.Background(), asynq.NewTask("refund:cancel", []byte(payload)))
		return nil
	}()
	if got != "vendor client bug" {
		t.Fatalf("ProcessTask's goroutine recovered %v, want the handler's panic", got)
	}
}

// One refund, one owner: a second task for the same refund — any ID, a
// delayed copy, a raw producer's UUID — ends at once as a duplicate that
// names the owner, asking 2Checkout nothing; the owner's record is not
// touched.
func TestSecondTaskForTheRefundIsADuplicate(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "D1", InitiatedAt: initiated})
	_ = e.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "status", Status: 503, FirstN: 1})
	owner := tasks.TaskID("D1", initiated)
	if _, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: owner, Payload: payload("D1", initiated)}); err == nil {
		t.Fatal("the owner's first attempt was to fail (503)")
	}
	calls := len(e.srv.Ledger())
	for _, id := range []string{"2f1c6a0e-uuid", owner + ":again"} {
		res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: id, Payload: payload("D1", initiated)})
		terr := &TerminalError{}
		if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeDuplicate || !strings.Contains(terr.Reason, "task "+owner+" owns") ||
			res.Outcome != tasks.OutcomeDuplicate || res.TaskID != id {
			t.Fatalf("%s: %+v %v", id, res, err)
		}
	}
	if len(e.srv.Ledger()) != calls {
		t.Fatalf("duplicates sent %d requests", len(e.srv.Ledger())-calls)
	}
	if rec := e.mem.record(tasks.CancelRefund{OrderRef: "D1", RefundInitiatedAt: initiated}); rec == nil || rec.TaskID != owner || rec.Outcome != tasks.OutcomeRetry {
		t.Fatalf("owner's record %+v", rec)
	}
}

// Nothing a producer sets is read as the worker's memory: a task carrying
// a forged final record in the header the sweep used to carry records is
// run as what it is, a first attempt.
func TestForgedHeaderIsNotARecord(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "F1", Status: "COMPLETED", InitiatedAt: initiated})
	forged := `{"outcome":"cancelled","order_ref":"F1","refund_id":"FORGED","attempts":1}`
	task := asynq.NewTaskWithHeaders(tasks.TypeCancelRefund, payload("F1", initiated), map[string]string{"refundd-prior": forged})
	err := e.h.ProcessTask(context.Background(), task)
	terr := &TerminalError{}
	if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeRefused || len(e.cancelCalls()) != 1 {
		t.Fatalf("%v; %d cancelRefund calls", err, len(e.cancelCalls()))
	}
}

// The worker refuses what the front doors refuse (tasks.Validate, one
// function): a raw task whose refund is "initiated" a year ahead would
// cancel whatever refund the order has now; it is archived invalid with
// no call.
func TestFutureDatedTaskIsInvalid(t *testing.T) {
	e := newEnv(t, "")
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "Y1", InitiatedAt: t0.Add(-time.Minute)})
	res, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "y", Payload: payload("Y1", t0.AddDate(1, 0, 0))})
	terr := &TerminalError{}
	if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeInvalid || !strings.Contains(terr.Reason, "refund_initiated_at") ||
		!strings.Contains(terr.Reason, "in the future") || res.Outcome != tasks.OutcomeInvalid || len(e.srv.Ledger()) != 0 {
		t.Fatalf("%+v %v; %d calls", res, err, len(e.srv.Ledger()))
	}
}

// "Cannot tell" only where 2Checkout could not tell: an attempt that may
// have applied, then a settling getOrder that answers the order does not
// exist, ends refused (no such order: no refund this task cancelled), not
// unknown.
func TestOrderNotFoundSettlesTheDoubt(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-119*time.Minute + 30*time.Second) // one attempt fits
	e.h.api = lostThenGone{}
	_, err := e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "g", Payload: payload("G1", initiated)})
	var rerr *RetryError
	if !errors.As(err, &rerr) {
		t.Fatalf("first attempt: %v", err)
	}
	e.clock.Set(e.h.policy.Cutoff(initiated)) // past the cut-off: the next run settles
	_, err = e.h.Deliver(context.Background(), Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "g", Retried: 1, Payload: payload("G1", initiated)})
	terr := &TerminalError{}
	if !errors.As(err, &terr) || terr.Outcome != tasks.OutcomeWindowClosed || !strings.Contains(terr.Reason, "the order does not exist") {
		t.Fatalf("%v", err)
	}
}

// lostThenGone: cancelRefund's answer is lost; getOrder says no such order.
type lostThenGone struct{}

func (lostThenGone) CancelRefund(ctx context.Context, _ string, check func(context.Context) error) (string, error) {
	if err := runCheck(ctx, check); err != nil {
		return "", err
	}
	return "", &rpcclient.TransportError{Method: "cancelRefund", Err: errors.New("EOF")}
}

// runCheck runs a RefundAPI fake's check, as rpcclient.Client does right
// before it sends a cancelRefund.
func runCheck(ctx context.Context, check func(context.Context) error) error {
	if check == nil {
		return nil
	}
	return check(ctx)
}
func (lostThenGone) GetOrder(context.Context, string) (*rpcclient.Order, error) {
	return nil, &rpcclient.APIError{Method: "getOrder", Code: 20002, Name: rpcclient.NameOrderNotFound, Message: "order not found"}
}

// A finished task never shows an older record: when the copy of a final
// record into the task's asynq result fails (Redis restarting), asynq is
// told to retry (uncounted) rather than to complete; the next delivery
// finds the record final, sends nothing, and copies it. Unless the retry
// would make asynq archive the task (MaxRetry 0).
func TestFinalRecordCopyFailureRetries(t *testing.T) {
	e := newEnv(t, "")
	initiated := t0.Add(-time.Hour)
	_ = e.srv.Seed(rpctest.Refund{OrderRef: "W1", InitiatedAt: initiated})
	d := Delivery{Type: tasks.TypeCancelRefund, MaxRetry: tasks.DefaultMaxRetry, TaskID: "w", Payload: payload("W1", initiated)}
	var copied []byte
	failing := func([]byte) (int, error) { return 0, errors.New("connection refused") }
	working := func(b []byte) (int, error) { copied = b; return len(b), nil }

	res, err := e.h.Deliver(context.Background(), d)
	err = e.h.copyResult(d, res, err, failing)
	var rerr *RetryError
	if !res.Cancelled() || !errors.As(err, &rerr) || !rerr.Uncounted || e.h.IsFailure(err) {
		t.Fatalf("a final record not copied: %+v %v; want an uncounted retry", res, err)
	}
	calls := len(e.srv.Ledger())
	res, err = e.h.Deliver(context.Background(), d)
	if err = e.h.copyResult(d, res, err, working); err != nil || !res.Cancelled() {
		t.Fatalf("the next delivery: %+v %v", res, err)
	}
	if got, _ := tasks.DecodeResult(copied); got == nil || got.Outcome != tasks.OutcomeCancelled || len(e.srv.Ledger()) != calls {
		t.Fatalf("copied %s after %d more calls; want the cancelled record and none", copied, len(e.srv.Ledger())-calls)
	}
	// A retry asynq would archive (MaxRetry 0) would hide the ending: the
	// task ends as it is, its copy stale.
	d0 := d
	d0.MaxRetry = 0
	if err := e.h.copyResult(d0, res, nil, failing); err != nil {
		t.Fatalf("MaxRetry 0: %v; want the delivery's own answer (nil)", err)
	}
	// A record still retrying is the next delivery's to copy: the retry
	// stands as it is.
	retrying := &tasks.Result{Outcome: tasks.OutcomeRetry}
	want := &RetryError{At: t0}
	if err := e.h.copyResult(d, retrying, want, failing); err != want {
		t.Fatalf("a retrying record's failed copy changed the answer: %v", err)
	}
}
