package rpctest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

type answer struct {
	HTTPStatus int
	Result     json.RawMessage
	ErrCode    int
	ErrName    string
	ErrMessage string
	ID         json.RawMessage
}

// post sends a raw body to the RPC endpoint.
func post(t *testing.T, url, body string) answer {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				ErrorCode string `json:"error_code"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("answer %q is not JSON: %v", b, err)
	}
	a := answer{HTTPStatus: resp.StatusCode, Result: r.Result, ID: r.ID}
	if r.Error != nil {
		a.ErrCode, a.ErrName, a.ErrMessage = r.Error.Code, r.Error.Data.ErrorCode, r.Error.Message
	}
	return a
}

func call(t *testing.T, url, method string, params ...any) answer {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params, "id": 7})
	return post(t, url, string(b))
}

func login(t *testing.T, srv *rpctest.Server, now time.Time) string {
	t.Helper()
	cfg := srv.Config()
	date := rpcclient.FormatDate(now)
	hash, _ := rpcclient.LoginHash("md5", cfg.MerchantCode, date, []byte(cfg.SecretKey))
	a := call(t, srv.RPCURL, "login", cfg.MerchantCode, date, hash)
	var sid string
	if a.ErrName != "" || json.Unmarshal(a.Result, &sid) != nil || sid == "" {
		t.Fatalf("login: %+v", a)
	}
	return sid
}

func newServer(t *testing.T, clock *rpctest.Clock) *rpctest.Server {
	t.Helper()
	srv := rpctest.NewServer(rpctest.Config{Now: clock.Now, MerchantCode: "AVANGATE", SecretKey: "SECRET_KEY"})
	t.Cleanup(srv.Close)
	return srv
}

func TestLogin(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	date := rpcclient.FormatDate(t0)
	md5h, _ := rpcclient.LoginHash("md5", "AVANGATE", date, []byte("SECRET_KEY"))
	shah, _ := rpcclient.LoginHash("sha256", "AVANGATE", date, []byte("SECRET_KEY"))
	wrong, _ := rpcclient.LoginHash("md5", "AVANGATE", date, []byte("WRONG"))
	old := rpcclient.FormatDate(t0.Add(-11 * time.Minute))
	oldHash, _ := rpcclient.LoginHash("md5", "AVANGATE", old, []byte("SECRET_KEY"))
	edge := rpcclient.FormatDate(t0.Add(10 * time.Minute))
	edgeHash, _ := rpcclient.LoginHash("md5", "AVANGATE", edge, []byte("SECRET_KEY"))
	cases := []struct {
		name    string
		params  []any
		wantErr string
	}{
		{"md5", []any{"AVANGATE", date, md5h}, ""},
		{"md5 uppercase hex", []any{"AVANGATE", date, strings.ToUpper(md5h)}, ""},
		{"sha256", []any{"AVANGATE", date, shah, "sha256"}, ""},
		{"explicit md5", []any{"AVANGATE", date, md5h, "md5"}, ""},
		{"date at skew edge", []any{"AVANGATE", edge, edgeHash}, ""},
		{"sha256 hash without algorithm", []any{"AVANGATE", date, shah}, "AUTHENTICATION_FAILED"},
		{"wrong key", []any{"AVANGATE", date, wrong}, "AUTHENTICATION_FAILED"},
		{"wrong merchant", []any{"OTHER", date, md5h}, "AUTHENTICATION_FAILED"},
		{"date too old", []any{"AVANGATE", old, oldHash}, "AUTHENTICATION_FAILED"},
		{"date not parsable", []any{"AVANGATE", "yesterday", md5h}, "AUTHENTICATION_FAILED"},
		{"unknown algorithm", []any{"AVANGATE", date, md5h, "sha1"}, "AUTHENTICATION_FAILED"},
		{"too few params", []any{"AVANGATE", date}, "INVALID_PARAMS"},
		{"param not a string", []any{"AVANGATE", 42, md5h}, "INVALID_PARAMS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.RPCURL, "login", tc.params...)
			if a.ErrName != tc.wantErr {
				t.Fatalf("error %q (%s), want %q", a.ErrName, a.ErrMessage, tc.wantErr)
			}
			if tc.wantErr == "" {
				var sid string
				if err := json.Unmarshal(a.Result, &sid); err != nil || len(sid) != 32 {
					t.Fatalf("session ID %s", a.Result)
				}
			} else if code, _ := rpcclient.CodeOf(tc.wantErr); a.ErrCode != code {
				t.Fatalf("code %d, want %d", a.ErrCode, code)
			}
		})
	}
	if got := srv.Stats().Logins; got != 5 {
		t.Fatalf("logins counted %d, want 5", got)
	}
}

func TestCancelRefundPaths(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	err := srv.Seed(
		rpctest.Refund{OrderRef: "PENDING1", Status: "PENDING", InitiatedAt: t0.Add(-time.Hour), RefundID: "R-1"},
		rpctest.Refund{OrderRef: "APPROVED1", Status: "APPROVED", InitiatedAt: t0.Add(-2*time.Hour + time.Nanosecond)},
		rpctest.Refund{OrderRef: "EXPIRED1", Status: "PENDING", InitiatedAt: t0.Add(-2 * time.Hour)},
		rpctest.Refund{OrderRef: "CANCELED1", Status: "CANCELED", InitiatedAt: t0},
		rpctest.Refund{OrderRef: "DONE1", Status: "COMPLETED", InitiatedAt: t0},
		rpctest.Refund{OrderRef: "NOREFUND1", Status: "NONE"},
	)
	if err != nil {
		t.Fatal(err)
	}
	sid := login(t, srv, t0)
	cases := []struct {
		name, ref, wantErr, wantID string
		wantInWindow               *bool
	}{
		{"pending in window", "PENDING1", "", "R-1", ptr(true)},
		{"approved one ns before close", "APPROVED1", "", "RF-APPROVED1", ptr(true)},
		{"again: already cancelled", "PENDING1", "REFUND_NOT_CANCELLABLE", "", ptr(true)},
		{"window closed exactly now", "EXPIRED1", "REFUND_WINDOW_EXPIRED", "", ptr(false)},
		{"cancelled", "CANCELED1", "REFUND_NOT_CANCELLABLE", "", ptr(true)},
		{"completed", "DONE1", "REFUND_NOT_CANCELLABLE", "", ptr(true)},
		{"no refund", "NOREFUND1", "NO_REFUND", "", nil},
		{"unknown order", "NOPE", "ORDER_NOT_FOUND", "", nil},
		{"malformed ref", "bad ref!", "INVALID_ORDER_REFERENCE", "", nil},
		{"empty ref", "", "INVALID_ORDER_REFERENCE", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, srv.RPCURL, "cancelRefund", sid, tc.ref)
			if a.ErrName != tc.wantErr {
				t.Fatalf("error %q (%s), want %q", a.ErrName, a.ErrMessage, tc.wantErr)
			}
			if tc.wantErr == "" {
				var id string
				if err := json.Unmarshal(a.Result, &id); err != nil || id != tc.wantID {
					t.Fatalf("result %s, want %q", a.Result, tc.wantID)
				}
				if r, _ := srv.Refund(tc.ref); r.Status != "CANCELED" {
					t.Fatalf("refund status %s after cancel", r.Status)
				}
			}
			l := srv.Ledger()
			last := l[len(l)-1]
			want := tc.wantErr
			if want == "" {
				want = "ok"
			}
			if last.Method != "cancelRefund" || last.Outcome != want || last.OrderRef != tc.ref {
				t.Fatalf("ledger %+v", last)
			}
			if (last.InWindow == nil) != (tc.wantInWindow == nil) || (last.InWindow != nil && *last.InWindow != *tc.wantInWindow) {
				t.Fatalf("in_window %v, want %v", deref(last.InWindow), deref(tc.wantInWindow))
			}
		})
	}
	if r, _ := srv.Refund("EXPIRED1"); r.Status != "PENDING" {
		t.Fatalf("expired refund changed to %s", r.Status)
	}
}

func ptr[T any](v T) *T { return &v }
func deref(b *bool) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprint(*b)
}

func TestSessionsAndEnvelope(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	_ = srv.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	sid := login(t, srv, t0)
	cases := []struct {
		name, body, wantErr string
		wantHTTP            int
	}{
		{"unparsable", `{"jsonrpc":`, "PARSE_ERROR", 200},
		{"params not array", `{"jsonrpc":"2.0","method":"getOrder","params":{"a":1},"id":1}`, "INVALID_REQUEST", 200},
		{"no method", `{"jsonrpc":"2.0","params":[],"id":1}`, "INVALID_REQUEST", 200},
		{"float id", `{"jsonrpc":"2.0","method":"getOrder","params":[],"id":1.5}`, "INVALID_REQUEST", 200},
		{"string id", `{"jsonrpc":"2.0","method":"getOrder","params":[],"id":"x"}`, "INVALID_REQUEST", 200},
		{"unknown method", `{"jsonrpc":"2.0","method":"dropTables","params":[],"id":1}`, "METHOD_NOT_FOUND", 200},
		{"missing params", `{"jsonrpc":"2.0","method":"getOrder","params":["` + sid + `"],"id":1}`, "INVALID_PARAMS", 200},
		{"extra cancel param", `{"jsonrpc":"2.0","method":"cancelRefund","params":["` + sid + `","A1","x"],"id":1}`, "INVALID_PARAMS", 200},
		{"empty session", `{"jsonrpc":"2.0","method":"getOrder","params":["","A1"],"id":1}`, "FORBIDDEN", 200},
		{"unknown session", `{"jsonrpc":"2.0","method":"getOrder","params":["deadbeef","A1"],"id":1}`, "INVALID_SESSION", 200},
		{"too large", `{"jsonrpc":"2.0","method":"getOrder","params":["` + strings.Repeat("x", 70<<10) + `"],"id":1}`, "INVALID_REQUEST", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := post(t, srv.RPCURL, tc.body)
			if a.ErrName != tc.wantErr || a.HTTPStatus != tc.wantHTTP {
				t.Fatalf("got %s HTTP %d (%s), want %s HTTP %d", a.ErrName, a.HTTPStatus, a.ErrMessage, tc.wantErr, tc.wantHTTP)
			}
		})
	}
	t.Run("GET is 405", func(t *testing.T) {
		resp, err := http.Get(srv.RPCURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("status %d allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("no trailing slash", func(t *testing.T) {
		a := call(t, srv.URL+"/rpc/6.0", "getOrder", sid, "A1")
		if a.ErrName != "" || string(a.ID) != "7" {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("admin not reachable under rpc", func(t *testing.T) {
		a := post(t, srv.URL+"/rpc/6.0/admin/refunds", `{"order_ref":"X"}`)
		if a.ErrName != "INVALID_REQUEST" {
			t.Fatalf("%+v", a)
		}
		if _, ok := srv.Refund("X"); ok {
			t.Fatal("seeded through /rpc/")
		}
	})
	t.Run("session expires with the clock", func(t *testing.T) {
		clock.Advance(10*time.Minute - time.Nanosecond)
		if a := call(t, srv.RPCURL, "getOrder", sid, "A1"); a.ErrName != "" {
			t.Fatalf("before expiry: %+v", a)
		}
		clock.Advance(time.Nanosecond)
		if a := call(t, srv.RPCURL, "getOrder", sid, "A1"); a.ErrName != "SESSION_EXPIRED" || a.ErrCode != 10002 {
			t.Fatalf("at expiry: %+v", a)
		}
	})
}

func TestGetOrderAndIssueRefund(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	_ = srv.Seed(
		rpctest.Refund{OrderRef: "O1", Status: "NONE"},
		rpctest.Refund{OrderRef: "O2", Status: "PENDING"},
		rpctest.Refund{OrderRef: "O3", Status: "NONE", OrderStatus: "CANCELED"},
		rpctest.Refund{OrderRef: "O4", Status: "COMPLETED"},
	)
	sid := login(t, srv, t0)
	for _, tc := range []struct{ ref, wantErr string }{
		{"O1", ""}, {"O2", "PENDING_REFUND_EXISTS"}, {"O3", "ORDER_CANCELED"}, {"O4", "ORDER_NOT_REFUNDABLE"}, {"O9", "ORDER_NOT_FOUND"},
	} {
		a := call(t, srv.RPCURL, "issueRefund", sid, tc.ref, 10.5, []any{}, "comment", "reason")
		if a.ErrName != tc.wantErr {
			t.Fatalf("issueRefund %s: %q (%s), want %q", tc.ref, a.ErrName, a.ErrMessage, tc.wantErr)
		}
	}
	clock.Advance(time.Minute)
	a := call(t, srv.RPCURL, "getOrder", sid, "O1")
	var o rpcclient.Order
	if err := json.Unmarshal(a.Result, &o); err != nil {
		t.Fatal(err)
	}
	if o.RefNo != "O1" || o.Status != "COMPLETE" || o.RefundStatus != "PENDING" || o.RefundInitiatedAt != t0.Format(time.RFC3339Nano) {
		t.Fatalf("order %+v", o)
	}
	a = call(t, srv.RPCURL, "cancelRefund", sid, "O1")
	if a.ErrName != "" {
		t.Fatalf("cancel issued refund: %+v", a)
	}
	a = call(t, srv.RPCURL, "getOrder", sid, "O1")
	_ = json.Unmarshal(a.Result, &o)
	if o.RefundStatus != "CANCELED" {
		t.Fatalf("after cancel: %+v", o)
	}
}

func TestSeedValidation(t *testing.T) {
	srv := newServer(t, rpctest.NewClock(t0))
	for _, body := range []string{
		`{"order_ref":"bad ref","status":"PENDING"}`,
		`{"order_ref":"A","status":"WHATEVER"}`,
		`{"order_ref":"A","unknown":1}`,
		`[{"order_ref":"A"},{"order_ref":""}]`,
		`{"order_ref":"A","initiated_at":"yesterday"}`,
	} {
		resp, err := http.Post(srv.URL+"/admin/refunds", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", body, resp.StatusCode)
		}
	}
	if _, ok := srv.Refund("A"); ok {
		t.Fatal("a rejected batch was partly seeded")
	}
	resp, err := http.Post(srv.URL+"/admin/refunds", "application/json",
		strings.NewReader(`[{"order_ref":"A","status":"APPROVED","initiated_at":"2026-11-25T09:00:00Z","refund_id":"R9"},{"order_ref":"B"}]`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("seed: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	resp, _ = http.Get(srv.URL + "/admin/refunds/A")
	var r rpctest.Refund
	_ = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if r.Status != "APPROVED" || r.RefundID != "R9" || !r.InitiatedAt.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("%+v", r)
	}
	resp, _ = http.Get(srv.URL + "/admin/refunds/ZZZ")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown order: %d", resp.StatusCode)
	}
}

func TestLedgerAndStatsJSON(t *testing.T) {
	srv := newServer(t, rpctest.NewClock(t0.Add(123*time.Nanosecond)))
	_ = srv.Seed(rpctest.Refund{OrderRef: "L1", InitiatedAt: t0})
	sid := login(t, srv, t0)
	call(t, srv.RPCURL, "cancelRefund", sid, "L1")
	call(t, srv.RPCURL, "cancelRefund", sid, "L1")
	var ledger struct {
		Calls []map[string]any `json:"calls"`
	}
	testutil.GetJSON(t, srv.URL+"/admin/ledger", &ledger)
	if len(ledger.Calls) != 3 {
		t.Fatalf("ledger %+v", ledger)
	}
	c := ledger.Calls[1]
	if c["time"] != "2026-11-25T10:00:00.000000123Z" || c["method"] != "cancelRefund" || c["order_ref"] != "L1" || c["outcome"] != "ok" || c["in_window"] != true {
		t.Fatalf("ledger entry %v", c)
	}
	var stats rpctest.Stats
	testutil.GetJSON(t, srv.URL+"/admin/stats", &stats)
	if stats.Logins != 1 || stats.Calls["cancelRefund"]["ok"] != 1 || stats.Calls["cancelRefund"]["REFUND_NOT_CANCELLABLE"] != 1 || stats.Calls["login"]["ok"] != 1 {
		t.Fatalf("stats %+v", stats)
	}
}

func TestFaults(t *testing.T) {
	// Each case sets one rule, makes one cancelRefund call with a 2s client
	// timeout, and checks what the client saw and whether the refund moved.
	cases := []struct {
		name        string
		rule        string
		wantStatus  int    // HTTP status seen; 0 when no answer
		wantNoReply bool   // connection dropped or timed out
		wantBody    string // substring of the body
		wantApplied bool
		wantRetry   string
	}{
		{"503", `{"method":"cancelRefund","kind":"status","status":503}`, 503, false, "503", false, ""},
		{"429 retry-after", `{"kind":"status","status":429,"retry_after":7}`, 429, false, "429", false, "7"},
		{"500", `{"kind":"status","status":500,"probability":1}`, 500, false, "500", false, ""},
		{"drop", `{"kind":"drop"}`, 0, true, "", false, ""},
		{"hang", `{"kind":"hang"}`, 0, true, "", false, ""},
		{"malformed", `{"kind":"malformed"}`, 200, false, "<html>", false, ""},
		{"apply then drop", `{"kind":"apply_then_drop"}`, 0, true, "", true, ""},
		{"apply then 502", `{"kind":"apply_then_drop","status":502}`, 502, false, "502", true, ""},
		{"expire session", `{"kind":"expire_session"}`, 200, false, "SESSION_EXPIRED", false, ""},
		{"latency", `{"kind":"latency","latency":"20ms","jitter":"5ms"}`, 200, false, `"result":"RF-F1"`, true, ""},
		{"other method only", `{"method":"getOrder","kind":"drop"}`, 200, false, `"result"`, true, ""},
		{"probability zero", `{"kind":"drop","probability":0}`, 200, false, `"result"`, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, rpctest.NewClock(t0))
			_ = srv.Seed(rpctest.Refund{OrderRef: "F1", InitiatedAt: t0})
			sid := login(t, srv, t0)
			resp, err := http.Post(srv.URL+"/admin/faults", "application/json", strings.NewReader(tc.rule))
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("set faults: %v %v", err, resp.Status)
			}
			resp.Body.Close()
			hc := &http.Client{Timeout: 2 * time.Second}
			body := fmt.Sprintf(`{"jsonrpc":"2.0","method":"cancelRefund","params":[%q,"F1"],"id":1}`, sid)
			start := time.Now()
			resp, err = hc.Post(srv.RPCURL, "application/json", strings.NewReader(body))
			if tc.wantNoReply {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got an answer %s, want none", resp.Status)
				}
			} else {
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus || !bytes.Contains(b, []byte(tc.wantBody)) {
					t.Fatalf("HTTP %d %q, want %d containing %q", resp.StatusCode, b, tc.wantStatus, tc.wantBody)
				}
				if got := resp.Header.Get("Retry-After"); got != tc.wantRetry {
					t.Fatalf("Retry-After %q, want %q", got, tc.wantRetry)
				}
			}
			if tc.name == "latency" && time.Since(start) < 20*time.Millisecond {
				t.Fatalf("answered after %v, want ≥ 20ms", time.Since(start))
			}
			r, _ := srv.Refund("F1")
			if applied := r.Status == "CANCELED"; applied != tc.wantApplied {
				t.Fatalf("applied=%v, want %v", applied, tc.wantApplied)
			}
			l := srv.Ledger()
			if last := l[len(l)-1]; last.Method != "cancelRefund" || (!tc.wantApplied && last.Outcome == "ok") {
				t.Fatalf("ledger %+v", last)
			}
		})
	}
}

func TestFaultFirstNAndSeed(t *testing.T) {
	srv := newServer(t, rpctest.NewClock(t0))
	_ = srv.Seed(rpctest.Refund{OrderRef: "F1", Status: "NONE"})
	sid := login(t, srv, t0)
	if err := srv.SetFaults(rpctest.FaultRule{Method: "getOrder", Kind: "status", Status: 503, FirstN: 2}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "getOrder", "params": []any{sid, "F1"}, "id": 1})
		resp, err := http.Post(srv.RPCURL, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, fmt.Sprint(resp.StatusCode))
	}
	if strings.Join(got, ",") != "503,503,200,200" {
		t.Fatalf("statuses %v", got)
	}

	// The same seed gives the same sequence of hits.
	seq := func() string {
		sb, _ := rpctest.New(rpctest.Config{FaultSeed: 42})
		half := 0.5
		_ = sb.SetFaults(rpctest.FaultRule{Kind: "status", Status: 500, Probability: &half})
		var s strings.Builder
		for range 32 {
			rec := httptest.NewRecorder()
			sb.ServeHTTP(rec, httptest.NewRequest("POST", "/rpc/6.0/", strings.NewReader(`{"jsonrpc":"2.0","method":"nope","params":[],"id":1}`)))
			s.WriteString(fmt.Sprint(rec.Code / 100))
		}
		return s.String()
	}
	a, b := seq(), seq()
	if a != b || !strings.Contains(a, "5") || !strings.Contains(a, "2") {
		t.Fatalf("sequences %s / %s", a, b)
	}
}

// A rate_limit rule is a token bucket on the sandbox's clock: Burst calls
// at once, then Rate a second; a call above it is answered 429 with the
// whole seconds until a token comes (at least 1), and is not applied.
func TestFaultRateLimit(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	sid := login(t, srv, t0)
	if err := srv.SetFaults(rpctest.FaultRule{Method: "cancelRefund", Kind: rpctest.FaultRateLimit, Rate: 0.4, Burst: 2}); err != nil {
		t.Fatal(err)
	}
	n := 0
	cancel := func() (int, string) {
		n++
		ref := fmt.Sprintf("RL%d", n)
		_ = srv.Seed(rpctest.Refund{OrderRef: ref, InitiatedAt: clock.Now()})
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "cancelRefund", "params": []any{sid, ref}, "id": 1})
		resp, err := http.Post(srv.RPCURL, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		r, _ := srv.Refund(ref)
		if applied := r.Status == "CANCELED"; applied != (resp.StatusCode == 200) {
			t.Fatalf("HTTP %d, applied %v", resp.StatusCode, applied)
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	var got []string
	for _, step := range []time.Duration{0, 0, 0, 1500 * time.Millisecond, 1100 * time.Millisecond, 0, 5 * time.Second, 0, 0} {
		clock.Advance(step)
		code, ra := cancel()
		got = append(got, fmt.Sprintf("%d/%s", code, ra))
	}
	// 2 tokens; empty: a token in 2.5s (Retry-After 3); 1.5s later still
	// none (1s left: 1); 2.6s after emptying: one; empty again; 5s: two.
	want := "200/,200/,429/3,429/1,200/,429/3,200/,200/,429/3"
	if strings.Join(got, ",") != want {
		t.Fatalf("answers %s, want %s", strings.Join(got, ","), want)
	}
	// Other methods are not limited by a rule for cancelRefund.
	for range 5 {
		if a := call(t, srv.RPCURL, "getOrder", sid, "RL1"); a.HTTPStatus != 200 || a.ErrCode != 0 {
			t.Fatalf("getOrder: %+v", a)
		}
	}
}

func TestFaultRuleValidation(t *testing.T) {
	for _, body := range []string{
		`{"kind":"teleport"}`,
		`{"kind":"status"}`,
		`{"kind":"status","status":200}`,
		`{"kind":"latency"}`,
		`{"kind":"latency","latency":"soon"}`,
		`{"kind":"drop","probability":2}`,
		`{"kind":"drop","first_n":-1}`,
		`{"kind":"drop","surprise":true}`,
		`{"kind":"rate_limit"}`,
		`{"kind":"rate_limit","rate":-1}`,
		`{"kind":"rate_limit","rate":5,"burst":-1}`,
		`[{"kind":"drop"},{"kind":"nope"}]`,
		`{"kind":"rpc_error","message":"no code"}`,
		`{"kind":"rpc_error","code":300}`,
	} {
		if _, err := rpctest.ParseFaultRules([]byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		}
	}
	rules, err := rpctest.ParseFaultRules([]byte(`[]`))
	if err != nil || len(rules) != 0 {
		t.Fatalf("clear: %v %v", rules, err)
	}
}

// rpc_error answers the error object it names, without data, and applies
// nothing; the documented-only mode drops data.error_code and the refund
// fields of getOrder.
func TestRPCErrorFaultAndDocumentedOnly(t *testing.T) {
	clock := rpctest.NewClock(t0)
	srv := newServer(t, clock)
	_ = srv.Seed(rpctest.Refund{OrderRef: "E1", InitiatedAt: t0})
	sid := login(t, srv, t0)
	rules, err := rpctest.ParseFaultRules([]byte(`{"method":"cancelRefund","kind":"rpc_error","code":300,"message":"Refund cannot be canceled","first_n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = srv.SetFaults(rules...)
	a := call(t, srv.RPCURL, "cancelRefund", sid, "E1")
	if a.HTTPStatus != 200 || a.ErrCode != 300 || a.ErrMessage != "Refund cannot be canceled" || a.ErrName != "" || string(a.ID) != "7" {
		t.Fatalf("%+v", a)
	}
	if r, _ := srv.Refund("E1"); r.Status != rpctest.StatusPending {
		t.Fatalf("applied: %+v", r)
	}
	if l := srv.Ledger(); l[len(l)-1].Outcome != "not_applied" || l[len(l)-1].Fault != "rpc_error" {
		t.Fatalf("ledger %+v", l)
	}
	if a := call(t, srv.RPCURL, "cancelRefund", sid, "E1"); a.ErrCode != 0 { // first_n spent: served
		t.Fatalf("%+v", a)
	}

	doc := rpctest.NewServer(rpctest.Config{Now: clock.Now, MerchantCode: "AVANGATE", SecretKey: "SECRET_KEY", DocumentedOnly: true})
	t.Cleanup(doc.Close)
	_ = doc.Seed(rpctest.Refund{OrderRef: "E2", InitiatedAt: t0, Status: rpctest.StatusCanceled})
	sid = login(t, doc, t0)
	if a := call(t, doc.RPCURL, "cancelRefund", sid, "E2"); a.ErrCode != 20004 || a.ErrName != "" || a.ErrMessage == "" {
		t.Fatalf("documented-only error: %+v", a)
	}
	a = call(t, doc.RPCURL, "getOrder", sid, "E2")
	if strings.Contains(string(a.Result), "Refund") || !strings.Contains(string(a.Result), `"Status":"COMPLETE"`) {
		t.Fatalf("documented-only getOrder: %s", a.Result)
	}
}

func TestHangReleasedByClose(t *testing.T) {
	srv := rpctest.NewServer(rpctest.Config{})
	_ = srv.SetFaults(rpctest.FaultRule{Kind: "hang"})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.RPCURL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"x","params":[],"id":1}`))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testutil.Eventually(t, 5*time.Second, "the call to hang", func() bool { return len(srv.Ledger()) == 1 && srv.InFlight() == 1 })
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("hang answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hanging request")
	}
}
