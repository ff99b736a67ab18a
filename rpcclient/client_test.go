package rpcclient_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func TestLoginHashVectors(t *testing.T) {
	// The vendor's documented example string is 8AVANGATE192010-05-13 12:12:12.
	// Expected values computed independently (Python's hmac module).
	cases := []struct{ algo, want string }{
		{"md5", "bf763db7d333e9c3038698cf59ada3e6"},
		{"sha256", "29e85dbf92ce0113e7755c31c0438a7db98a4de9f910bf0a527e005f35e43739"},
	}
	for _, tc := range cases {
		got, err := rpcclient.LoginHash(tc.algo, "AVANGATE", "2010-05-13 12:12:12", []byte("SECRET_KEY"))
		if err != nil || got != tc.want {
			t.Errorf("%s: %s %v, want %s", tc.algo, got, err, tc.want)
		}
	}
	// Lengths are byte lengths, not rune counts: "MÜNCHEN" is 7 runes but 8
	// bytes, so the signed string is 8MÜNCHEN192010-05-13 12:12:12. Expected
	// values computed independently (Python's hmac module and openssl dgst
	// -hmac agree); counting runes signs "7MÜNCHEN…" and fails here.
	for _, tc := range []struct{ algo, want string }{
		{"md5", "1852f2beff17db0f6b86fa1524beb524"},
		{"sha256", "585e11e89c685daef7d4d2544f739bc3a3ada3123cfcd1739914138c9381363a"},
	} {
		got, err := rpcclient.LoginHash(tc.algo, "MÜNCHEN", "2010-05-13 12:12:12", []byte("SECRET_KEY"))
		if err != nil || got != tc.want {
			t.Errorf("non-ASCII merchant code, %s: %s %v, want %s", tc.algo, got, err, tc.want)
		}
	}
	if _, err := rpcclient.LoginHash("sha1", "A", "d", nil); err == nil {
		t.Fatal("sha1 accepted")
	}
}

func TestNewValidates(t *testing.T) {
	ok := rpcclient.Config{URL: "https://api.example.test/rpc/6.0/", MerchantCode: "M", SecretKey: "topsecret"}
	cases := []struct {
		name   string
		mutate func(*rpcclient.Config)
		want   string
	}{
		{"no merchant", func(c *rpcclient.Config) { c.MerchantCode = "" }, "MerchantCode"},
		{"no secret", func(c *rpcclient.Config) { c.SecretKey = "" }, "SecretKey"},
		{"bad algo", func(c *rpcclient.Config) { c.HashAlgo = "sha1" }, "HashAlgo"},
		{"relative url", func(c *rpcclient.Config) { c.URL = "/rpc" }, "URL"},
		{"ftp url", func(c *rpcclient.Config) { c.URL = "ftp://x/rpc" }, "URL"},
		{"plain http remote", func(c *rpcclient.Config) { c.URL = "http://sandbox.internal/rpc/6.0/" }, "loopback"},
		{"plain http to 2checkout", func(c *rpcclient.Config) { c.URL = "http://api.2checkout.com/rpc/6.0/"; c.AllowHTTP = true }, "only ever called over https"},
		{"negative timeout", func(c *rpcclient.Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"renew too late", func(c *rpcclient.Config) { c.RenewBefore = 10 * time.Minute }, "RenewBefore"},
		{"negative size", func(c *rpcclient.Config) { c.MaxResponseBytes = -1 }, "MaxResponseBytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			_, err := rpcclient.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Fatal("secret in error")
			}
		})
	}
	c, err := rpcclient.New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", c, ok, ok, c); strings.Contains(s, "topsecret") {
		t.Fatalf("secret printed: %s", s)
	}
	if b, err := json.Marshal(struct{ Key rpcclient.Secret }{ok.SecretKey}); err != nil || string(b) != `{"Key":"[REDACTED]"}` {
		t.Fatalf("secret marshalled: %s %v", b, err)
	}
	core, logs := observer.New(zap.DebugLevel)
	zap.New(core).Info("cfg", zap.Any("cfg", ok))
	if b, _ := json.Marshal(logs.All()[0].ContextMap()); strings.Contains(string(b), "topsecret") {
		t.Fatalf("secret logged: %s", b)
	}
}

type fixture struct {
	srv    *rpctest.Server
	clock  *rpctest.Clock
	client *rpcclient.Client
}

func newFixture(t *testing.T, mutate ...func(*rpcclient.Config)) *fixture {
	t.Helper()
	clock := rpctest.NewClock(t0)
	srv := rpctest.NewServer(rpctest.Config{Now: clock.Now})
	t.Cleanup(srv.Close)
	cfg := rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, Now: clock.Now, RequestTimeout: 2 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := rpcclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, clock: clock, client: c}
}

func TestCancelRefund(t *testing.T) {
	for _, algo := range []string{"md5", "sha256"} {
		t.Run(algo, func(t *testing.T) {
			f := newFixture(t, func(c *rpcclient.Config) { c.HashAlgo = algo })
			_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", RefundID: "R-77", InitiatedAt: t0})
			id, err := f.client.CancelRefund(context.Background(), "A1", nil)
			if err != nil || id != "R-77" {
				t.Fatalf("%q %v", id, err)
			}
			_, err = f.client.CancelRefund(context.Background(), "A1", nil)
			var ae *rpcclient.APIError
			if !errors.As(err, &ae) || ae.Name != rpcclient.NameRefundNotCancellable || ae.Code != 20004 || ae.Method != "cancelRefund" {
				t.Fatalf("second cancel: %#v", err)
			}
			if rpcclient.Classify(err) != rpcclient.ClassPermanent {
				t.Fatalf("class %v", rpcclient.Classify(err))
			}
			o, err := f.client.GetOrder(context.Background(), "A1")
			if err != nil || o.RefundStatus != "CANCELED" || o.RefNo != "A1" {
				t.Fatalf("%+v %v", o, err)
			}
		})
	}
}

// IssueRefund puts a PENDING refund on a complete order, initiated now; a
// second one is refused for good, and the refund it made can be cancelled.
func TestIssueRefund(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "I1", Status: rpctest.StatusNone})
	if err := f.client.IssueRefund(ctx, "I1", 0, "comment", "reason"); err != nil {
		t.Fatal(err)
	}
	if r, ok := f.srv.Refund("I1"); !ok || r.Status != rpctest.StatusPending || !r.InitiatedAt.Equal(t0) {
		t.Fatalf("sandbox after issueRefund: %+v", r)
	}
	o, err := f.client.GetOrder(ctx, "I1")
	if err != nil || o.RefundStatus != rpctest.StatusPending || o.RefundInitiatedAt != t0.Format(time.RFC3339Nano) {
		t.Fatalf("getOrder after issueRefund: %+v %v", o, err)
	}
	err = f.client.IssueRefund(ctx, "I1", 0, "comment", "reason")
	var ae *rpcclient.APIError
	if !errors.As(err, &ae) || ae.Name != rpcclient.NamePendingRefundExists || ae.Method != rpcclient.MethodIssueRefund || rpcclient.Classify(err) != rpcclient.ClassPermanent {
		t.Fatalf("second issueRefund: %#v", err)
	}
	if id, err := f.client.CancelRefund(ctx, "I1", nil); err != nil || id != o.RefundID {
		t.Fatalf("cancel the issued refund: %q %v, want %q", id, err, o.RefundID)
	}
}

func TestOneLoginForManyGoroutines(t *testing.T) {
	f := newFixture(t)
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", Status: "NONE"})
	// Slow logins make the race real: every goroutine arrives while one is in flight.
	_ = f.srv.SetFaults(rpctest.FaultRule{Method: "login", Kind: "latency", Latency: rpctest.Duration(50 * time.Millisecond)})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.client.GetOrder(context.Background(), "A1")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.Stats().Logins; n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
}

func TestSessionRenewalAndRelogin(t *testing.T) {
	f := newFixture(t)
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", Status: "NONE"})
	ctx := context.Background()
	get := func() {
		t.Helper()
		if _, err := f.client.GetOrder(ctx, "A1"); err != nil {
			t.Fatal(err)
		}
	}
	get()
	f.clock.Advance(9*time.Minute - time.Nanosecond) // just before renew time (10m - 1m)
	get()
	if n := f.srv.Stats().Logins; n != 1 {
		t.Fatalf("%d logins before renew time", n)
	}
	f.clock.Advance(time.Nanosecond)
	get()
	if n := f.srv.Stats().Logins; n != 2 {
		t.Fatalf("%d logins after renew time, want 2", n)
	}
	// The server expires the session: one re-login, one retry, success.
	_ = f.srv.SetFaults(rpctest.FaultRule{Method: "getOrder", Kind: "expire_session", FirstN: 1})
	get()
	st := f.srv.Stats()
	if st.Logins != 3 || st.Calls["getOrder"]["SESSION_EXPIRED"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Expired on every call: one re-login and one retry only, then the error.
	_ = f.srv.SetFaults(rpctest.FaultRule{Method: "getOrder", Kind: "expire_session"})
	_, err := f.client.GetOrder(ctx, "A1")
	if rpcclient.Classify(err) != rpcclient.ClassSession {
		t.Fatalf("err %v class %v", err, rpcclient.Classify(err))
	}
	if st := f.srv.Stats(); st.Logins != 4 {
		t.Fatalf("logins %d, want 4", st.Logins)
	}
}

func TestBadCredentials(t *testing.T) {
	f := newFixture(t, func(c *rpcclient.Config) { c.SecretKey = "wrong-secret" })
	_, err := f.client.CancelRefund(context.Background(), "A1", nil)
	if rpcclient.Classify(err) != rpcclient.ClassCredentials {
		t.Fatalf("err %v class %v", err, rpcclient.Classify(err))
	}
	if f.client.LoginFailure() == nil {
		t.Fatal("LoginFailure nil after a failed login")
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatal("secret in error")
	}
	// Within the backoff, calls fail at once without another login.
	for range 10 {
		if _, err := f.client.CancelRefund(context.Background(), "A1", nil); rpcclient.Classify(err) != rpcclient.ClassCredentials {
			t.Fatalf("during backoff: %v", err)
		}
	}
	if n := f.srv.Stats().Calls["login"]["AUTHENTICATION_FAILED"]; n != 1 {
		t.Fatalf("%d login attempts during the backoff, want 1", n)
	}
	f.clock.Advance(rpcclient.DefaultCredentialsBackoff)
	_, _ = f.client.CancelRefund(context.Background(), "A1", nil)
	if n := f.srv.Stats().Calls["login"]["AUTHENTICATION_FAILED"]; n != 2 {
		t.Fatalf("%d login attempts after the backoff, want 2", n)
	}
}

func TestFaultsClassify(t *testing.T) {
	cases := []struct {
		rule      rpctest.FaultRule
		want      rpcclient.Class
		wantRetry time.Duration
	}{
		{rpctest.FaultRule{Kind: "status", Status: 503}, rpcclient.ClassTransient, 0},
		{rpctest.FaultRule{Kind: "status", Status: 429, RetryAfter: 9}, rpcclient.ClassTransient, 9 * time.Second},
		{rpctest.FaultRule{Kind: "status", Status: 404}, rpcclient.ClassUnknown, 0},
		{rpctest.FaultRule{Kind: "rpc_error", Code: 31337, Message: "Something we never heard of"}, rpcclient.ClassUnknown, 0},
		{rpctest.FaultRule{Kind: "rpc_error", Code: 20004, Message: "refund not cancellable"}, rpcclient.ClassUnknown, 0},
		{rpctest.FaultRule{Kind: "rpc_error", Code: 400, Message: "Invalid ORDER_REF"}, rpcclient.ClassPermanent, 0},
		{rpctest.FaultRule{Kind: "rpc_error", Code: 10001, Message: "whatever"}, rpcclient.ClassSession, 0},
		{rpctest.FaultRule{Kind: "drop"}, rpcclient.ClassTransient, 0},
		{rpctest.FaultRule{Kind: "hang"}, rpcclient.ClassTransient, 0},
		{rpctest.FaultRule{Kind: "malformed"}, rpcclient.ClassTransient, 0},
		{rpctest.FaultRule{Kind: "apply_then_drop"}, rpcclient.ClassTransient, 0},
	}
	for _, tc := range cases {
		t.Run(tc.rule.Kind+fmt.Sprint(tc.rule.Status), func(t *testing.T) {
			f := newFixture(t, func(c *rpcclient.Config) { c.RequestTimeout = 300 * time.Millisecond })
			_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
			tc.rule.Method = "cancelRefund"
			_ = f.srv.SetFaults(tc.rule)
			_, err := f.client.CancelRefund(context.Background(), "A1", nil)
			if got := rpcclient.Classify(err); got != tc.want {
				t.Fatalf("err %v: class %v, want %v", err, got, tc.want)
			}
			if ra, _ := rpcclient.RetryAfter(err); ra != tc.wantRetry {
				t.Fatalf("retry after %v, want %v", ra, tc.wantRetry)
			}
		})
	}
}

func TestContextAndStartDeadline(t *testing.T) {
	f := newFixture(t)
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	ctx := rpcclient.WithStartDeadline(context.Background(), t0)
	if _, err := f.client.CancelRefund(ctx, "A1", nil); !errors.Is(err, rpcclient.ErrStartDeadline) || rpcclient.Classify(err) != rpcclient.ClassNotStarted {
		t.Fatalf("at deadline: %v", err)
	}
	if len(f.srv.Ledger()) != 0 {
		t.Fatal("a request was sent after its start deadline")
	}
	ctx = rpcclient.WithStartDeadline(context.Background(), t0.Add(time.Nanosecond))
	if _, err := f.client.CancelRefund(ctx, "A1", nil); err != nil {
		t.Fatalf("before deadline: %v", err)
	}
	// One caller past its start deadline never fails the shared login of
	// another: it does not even start one.
	f2 := newFixture(t)
	_ = f2.srv.Seed(rpctest.Refund{OrderRef: "B1", InitiatedAt: t0})
	late := rpcclient.WithStartDeadline(context.Background(), t0.Add(-time.Second))
	if _, err := f2.client.CancelRefund(late, "B1", nil); !errors.Is(err, rpcclient.ErrStartDeadline) {
		t.Fatalf("late caller: %v", err)
	}
	if f2.srv.Stats().Logins != 0 || len(f2.srv.Ledger()) != 0 {
		t.Fatalf("a late caller logged in: %+v", f2.srv.Ledger())
	}
	if _, err := f2.client.CancelRefund(context.Background(), "B1", nil); err != nil {
		t.Fatalf("next caller: %v", err)
	}
	// A hanging server is cut off by the caller's context.
	_ = f.srv.SetFaults(rpctest.FaultRule{Method: "getOrder", Kind: "hang"})
	cctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.client.GetOrder(cctx, "A1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
}

func TestResponseHandling(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		header   string
		body     string
		wantName string
		wantID   string
	}{
		{"result string", 200, "", `{"jsonrpc":"2.0","id":%d,"result":"R1"}`, "", "R1"},
		{"result object", 200, "", `{"jsonrpc":"2.0","id":%d,"result":{"RefundID":"R2"}}`, "", "R2"},
		{"result true", 200, "", `{"jsonrpc":"2.0","id":%d,"result":true}`, "", ""},
		{"response field", 200, "", `{"jsonrpc":"6.0","id":%d,"response":"R3"}`, "", "R3"},
		{"wrong id", 200, "", `{"jsonrpc":"2.0","id":999999,"result":"R1"}`, "MALFORMED_RESPONSE", ""},
		{"no result", 200, "", `{"jsonrpc":"2.0","id":%d}`, "MALFORMED_RESPONSE", ""},
		{"result false", 200, "", `{"jsonrpc":"2.0","id":%d,"result":false}`, "MALFORMED_RESPONSE", ""},
		{"html 502", 502, "", `<html>bad gateway</html>`, "HTTP_STATUS", ""},
		{"error with name", 500, "", `{"jsonrpc":"2.0","id":%d,"error":{"code":20005,"message":"late","data":{"error_code":"REFUND_WINDOW_EXPIRED"}}}`, "REFUND_WINDOW_EXPIRED", ""},
		{"error code only", 200, "", `{"jsonrpc":"2.0","id":%d,"error":{"code":-32603,"message":"oops"}}`, "INTERNAL_ERROR", ""},
		{"too large", 200, "", `{"jsonrpc":"2.0","id":%d,"result":"` + strings.Repeat("x", 2048) + `"}`, "MALFORMED_RESPONSE", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits int
			var loginID int64
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					Method string `json:"method"`
					ID     int64  `json:"id"`
				}
				b, _ := io.ReadAll(r.Body)
				_ = json.Unmarshal(b, &req)
				if req.Method == "login" {
					loginID = req.ID
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":"sid"}`, req.ID)
					return
				}
				hits++
				w.WriteHeader(tc.status)
				body := tc.body
				if strings.Contains(body, "%d") {
					body = fmt.Sprintf(body, req.ID)
				}
				_, _ = io.WriteString(w, body)
			}))
			defer hs.Close()
			c, _ := rpcclient.New(rpcclient.Config{URL: hs.URL, MerchantCode: "M", SecretKey: "S", MaxResponseBytes: 1024})
			id, err := c.CancelRefund(context.Background(), "A1", nil)
			var ae *rpcclient.APIError
			if tc.wantName == "" {
				if err != nil || id != tc.wantID {
					t.Fatalf("%q %v", id, err)
				}
			} else if !errors.As(err, &ae) || ae.Name != tc.wantName {
				t.Fatalf("err %v, want %s", err, tc.wantName)
			}
			if hits != 1 || loginID == 0 {
				t.Fatalf("hits %d", hits)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	api := func(method, name string, code, status int) error {
		return fmt.Errorf("wrapped: %w", &rpcclient.APIError{Method: method, Name: name, Code: code, HTTPStatus: status})
	}
	cases := []struct {
		err  error
		want rpcclient.Class
	}{
		{nil, rpcclient.ClassNone},
		{rpcclient.ErrStartDeadline, rpcclient.ClassNotStarted},
		{&rpcclient.TransportError{Method: "x", Err: io.ErrUnexpectedEOF}, rpcclient.ClassTransient},
		{context.DeadlineExceeded, rpcclient.ClassTransient},
		{api("cancelRefund", "HTTP_STATUS", 0, 429), rpcclient.ClassTransient},
		{api("cancelRefund", "HTTP_STATUS", 0, 500), rpcclient.ClassTransient},
		{api("cancelRefund", "HTTP_STATUS", 0, 599), rpcclient.ClassTransient},
		{api("cancelRefund", "HTTP_STATUS", 0, 403), rpcclient.ClassUnknown},
		{api("cancelRefund", "HTTP_STATUS", 0, 408), rpcclient.ClassTransient},
		{api("cancelRefund", "MALFORMED_RESPONSE", 0, 200), rpcclient.ClassTransient},
		{api("cancelRefund", "INTERNAL_ERROR", -32603, 200), rpcclient.ClassTransient},
		{api("login", "AUTHENTICATION_FAILED", 10003, 200), rpcclient.ClassCredentials},
		{api("login", "FORBIDDEN", 10000, 200), rpcclient.ClassCredentials},
		{api("login", "", 10000, 200), rpcclient.ClassCredentials},
		{api("getOrder", "NOT_ALLOWED", 10004, 200), rpcclient.ClassCredentials},
		{api("cancelRefund", "FORBIDDEN", 10000, 200), rpcclient.ClassSession},
		{api("cancelRefund", "", 10001, 200), rpcclient.ClassSession},
		{api("cancelRefund", "SESSION_EXPIRED", 10002, 200), rpcclient.ClassSession},
		{api("cancelRefund", "REFUND_NOT_CANCELLABLE", 20004, 200), rpcclient.ClassPermanent},
		{api("cancelRefund", "REFUND_WINDOW_EXPIRED", 20005, 200), rpcclient.ClassPermanent},
		{api("cancelRefund", "ORDER_NOT_FOUND", 20002, 200), rpcclient.ClassPermanent},
		{api("cancelRefund", "SOMETHING_NEW", 31337, 200), rpcclient.ClassUnknown},
		{api("cancelRefund", "ERROR_20004", 20004, 200), rpcclient.ClassUnknown},
		{api("cancelRefund", "", 20004, 200), rpcclient.ClassUnknown},
		{api("cancelRefund", "ORDER_CANCELED", 0, 200), rpcclient.ClassPermanent},
		{&rpcclient.TransportError{Method: "cancelRefund", Err: context.Canceled, NotSent: true}, rpcclient.ClassTransient},
		{api("cancelRefund", "INVALID_PARAMS", -32602, 200), rpcclient.ClassPermanent},
	}
	for _, tc := range cases {
		if got := rpcclient.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Error objects without data.error_code are named by the codes others
// documented, then by 2Checkout's documented messages, else ERROR_<code>.
func TestDecodeResponseNames(t *testing.T) {
	cases := []struct {
		body, want string
		class      rpcclient.Class
	}{
		{`{"code":10001,"message":"x"}`, rpcclient.NameInvalidSession, rpcclient.ClassSession},
		{`{"code":10003,"message":"Authentication failed"}`, rpcclient.NameAuthenticationFailed, rpcclient.ClassCredentials},
		{`{"code":1,"message":"Authentication failed: date too far"}`, rpcclient.NameAuthenticationFailed, rpcclient.ClassCredentials},
		{`{"code":20004,"message":"refund is CANCELED"}`, "ERROR_20004", rpcclient.ClassUnknown},
		{`{"code":42,"message":" Order already canceled. "}`, rpcclient.NameOrderCanceled, rpcclient.ClassPermanent},
		{`{"code":42,"message":"ORDER_REF missing or format incorrect"}`, rpcclient.NameInvalidOrderReference, rpcclient.ClassPermanent},
		{`{"code":42,"message":"You already have a pending refund request."}`, rpcclient.NamePendingRefundExists, rpcclient.ClassPermanent},
		{`{"code":42,"message":"The allowed period to request a new refund for this order has expired"}`, rpcclient.NameRefundPeriodExpired, rpcclient.ClassPermanent},
		{`{"code":42,"message":"Order already canceled, or not"}`, "ERROR_42", rpcclient.ClassUnknown},
		{`{"code":42,"message":"x","data":{"error_code":"REFUND_NOT_CANCELLABLE"}}`, rpcclient.NameRefundNotCancellable, rpcclient.ClassPermanent},
	}
	for _, tc := range cases {
		err := rpcclient.DecodeResponse("cancelRefund", 1, 200, 0, []byte(`{"jsonrpc":"2.0","id":1,"error":`+tc.body+`}`), new(string))
		var ae *rpcclient.APIError
		if !errors.As(err, &ae) || ae.Name != tc.want || rpcclient.Classify(err) != tc.class {
			t.Errorf("%s: %v (class %v), want %s %v", tc.body, err, rpcclient.Classify(err), tc.want, tc.class)
		}
	}
}

// MaybeApplied: only failures after which the call may have gone through.
func TestMaybeApplied(t *testing.T) {
	api := func(method, name string, status int) error {
		return &rpcclient.APIError{Method: method, Name: name, HTTPStatus: status}
	}
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{rpcclient.ErrStartDeadline, false},
		{&rpcclient.TransportError{Method: "cancelRefund", Err: io.ErrUnexpectedEOF}, true},
		{&rpcclient.TransportError{Method: "cancelRefund", Err: context.DeadlineExceeded}, true},
		{&rpcclient.TransportError{Method: "cancelRefund", Err: context.Canceled, NotSent: true}, false},
		{&rpcclient.GateError{Method: "login", Err: context.DeadlineExceeded}, false},
		{&rpcclient.GateError{Method: "cancelRefund", Err: errors.New("redis: connection refused")}, false},
		{&rpcclient.TransportError{Method: "login", Err: io.ErrUnexpectedEOF}, false},
		{&rpcclient.TransportError{Method: "cancelRefund", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, false},
		{api("cancelRefund", "HTTP_STATUS", 503), true},
		{api("cancelRefund", "HTTP_STATUS", 408), true},
		{api("cancelRefund", "HTTP_STATUS", 429), false},
		{api("cancelRefund", "HTTP_STATUS", 404), false},
		{api("cancelRefund", "MALFORMED_RESPONSE", 200), true},
		{api("cancelRefund", "INTERNAL_ERROR", 200), true},
		{api("cancelRefund", "ERROR_31337", 200), false},
		{api("cancelRefund", "REFUND_NOT_CANCELLABLE", 200), false},
		{api("login", "HTTP_STATUS", 503), false},
	}
	for _, tc := range cases {
		if got := rpcclient.MaybeApplied(tc.err); got != tc.want {
			t.Errorf("MaybeApplied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A caller whose context ended before sending gets a transient error that
// says nothing was sent — not ClassNotStarted, which is the window's.
func TestContextEndedBeforeSending(t *testing.T) {
	f := newFixture(t)
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	if _, err := f.client.GetOrder(context.Background(), "A1"); err != nil { // log in first
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.client.CancelRefund(ctx, "A1", nil)
	var te *rpcclient.TransportError
	if !errors.As(err, &te) || !te.NotSent || rpcclient.Classify(err) != rpcclient.ClassTransient || rpcclient.MaybeApplied(err) {
		t.Fatalf("%#v: class %v", err, rpcclient.Classify(err))
	}
	if n := f.srv.Stats().Calls["cancelRefund"]; len(n) != 0 {
		t.Fatalf("sent: %v", n)
	}
}

// In documented-only mode the client still knows session and login errors
// (documented codes and messages) but not the sandbox's own refusals.
func TestDocumentedOnlySandbox(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := rpctest.NewServer(rpctest.Config{Now: clock.Now, DocumentedOnly: true})
	t.Cleanup(srv.Close)
	c, err := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_ = srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0, Status: "CANCELED"})
	_, err = c.CancelRefund(context.Background(), "A1", nil)
	var ae *rpcclient.APIError
	if !errors.As(err, &ae) || ae.Name != "ERROR_20004" || rpcclient.Classify(err) != rpcclient.ClassUnknown {
		t.Fatalf("%v", err)
	}
	o, err := c.GetOrder(context.Background(), "A1")
	if err != nil || o.RefundStatus != "" || o.RefundID != "" || o.RefundInitiatedAt != "" || o.Status != "COMPLETE" {
		t.Fatalf("%+v %v", o, err)
	}
	bad, _ := rpcclient.New(rpcclient.Config{URL: srv.RPCURL, MerchantCode: rpctest.DefaultMerchantCode, SecretKey: "wrong", Now: clock.Now})
	if _, err := bad.GetOrder(context.Background(), "A1"); rpcclient.Classify(err) != rpcclient.ClassCredentials {
		t.Fatalf("bad key: %v", err)
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":"R1"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":{"RefundID":5}}`))
	f.Add(500, []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":[1]}}`))
	f.Add(502, []byte(`<html>`))
	f.Add(200, []byte(`{"id":1,"response":null,"result":null}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":true}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":"`+strings.Repeat("Ü", 150)+`"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":{"RefundId":"R2"}}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":[1,2]}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":42,"message":"Order already canceled: x"}}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":20004,"message":":"}}`))
	f.Add(200, []byte(` { "result" : "R-1" , "id" : 1 } `))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":"R\u00fc"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":12345}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":2,"result":"R1"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","ID":1,"result":"R1"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":"R1","result":"R2"}`))
	f.Add(200, []byte(`{"jsonrpc":"2.0","id":1,"result":null,"response":"R3"}`))
	f.Add(200, []byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		var raw json.RawMessage
		err := rpcclient.DecodeResponse("cancelRefund", 1, status, 0, body, &raw)
		if err == nil {
			id, perr := rpcclient.ParseRefundID(raw)
			var v any
			_ = json.Unmarshal(raw, &v)
			if s, ok := v.(string); ok && (perr != nil || id != clip.String(s, 200)) {
				t.Fatalf("ParseRefundID(%s) = %q, %v; want %q", raw, id, perr, clip.String(s, 200))
			}
		}
		if err == nil {
			checkRefundID(t, raw)
			return
		}
		var ae *rpcclient.APIError
		if !errors.As(err, &ae) || ae.Name == "" {
			t.Fatalf("error %v is not a named *APIError", err)
		}
		if rpcclient.Classify(err) == rpcclient.ClassNone {
			t.Fatal("an error classified as none")
		}
		_ = rpcclient.MaybeApplied(err) // never panics
	})
}

// checkRefundID asserts what ParseRefundID makes of a decoded result: an ID
// that is the result itself when the result is a short string, never longer
// than the bound, and otherwise an error that says what was unexpected (the
// client reports it as MALFORMED_RESPONSE).
func checkRefundID(t *testing.T, raw json.RawMessage) {
	t.Helper()
	id, err := rpcclient.ParseRefundID(raw)
	if err != nil {
		if msg := err.Error(); !strings.HasPrefix(msg, "unexpected cancelRefund result") || len(msg) > 400 {
			t.Fatalf("ParseRefundID(%s) error %q: want a short \"unexpected cancelRefund result\"", raw, msg)
		}
		return
	}
	if len(id) > 200+len("…") {
		t.Fatalf("ParseRefundID(%.60s…) answered %d bytes: not bounded", raw, len(id))
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && len(s) <= 200 && id != s {
		t.Fatalf("ParseRefundID(%s) = %q, want %q", raw, id, s)
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil && id != "" {
		t.Fatalf("ParseRefundID(%s) = %q, want no ID", raw, id)
	}
}

// TLS is always verified: a server with an unknown certificate is refused;
// with its CA configured, the same server is trusted.
func TestTLSVerified(t *testing.T) {
	sb, _ := rpctest.New(rpctest.Config{})
	_ = sb.Seed(rpctest.Refund{OrderRef: "T1"})
	srv := httptest.NewTLSServer(sb)
	defer srv.Close()
	cfg := rpcclient.Config{URL: srv.URL + "/rpc/6.0/", MerchantCode: rpctest.DefaultMerchantCode, SecretKey: rpctest.DefaultSecretKey}

	c, _ := rpcclient.New(cfg)
	_, err := c.GetOrder(context.Background(), "T1")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("unknown certificate accepted: %v", err)
	}
	if len(sb.Ledger()) != 0 {
		t.Fatal("a request went through an unverified connection")
	}

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cfg.RootCAs = pool
	c, _ = rpcclient.New(cfg)
	if o, err := c.GetOrder(context.Background(), "T1"); err != nil || o.RefNo != "T1" {
		t.Fatalf("with the CA: %+v %v", o, err)
	}
}

// A request 2Checkout never answers ends at RequestTimeout, and says so
// (the caller's own deadline would read differently).
func TestRequestTimeoutSaysSo(t *testing.T) {
	f := newFixture(t, func(c *rpcclient.Config) { c.RequestTimeout = 200 * time.Millisecond })
	_ = f.srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	_ = f.srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: "hang"})
	_, err := f.client.CancelRefund(context.Background(), "A1", nil)
	if rpcclient.Classify(err) != rpcclient.ClassTransient || !strings.Contains(fmt.Sprint(err), "no answer within RequestTimeout 200ms") {
		t.Fatalf("err %v: want a transient error naming RequestTimeout", err)
	}
}

// DecodeResponse never panics, a nil destination included.
func TestDecodeResponseNilDestination(t *testing.T) {
	err := rpcclient.DecodeResponse("cancelRefund", 1, 200, 0, []byte(`{"jsonrpc":"2.0","id":1,"result":"R1"}`), (*json.RawMessage)(nil))
	var ae *rpcclient.APIError
	if !errors.As(err, &ae) || ae.Name != rpcclient.NameMalformedResponse {
		t.Fatalf("err %v: want MALFORMED_RESPONSE", err)
	}
}
