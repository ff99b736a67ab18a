package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// TestRedirectedVendorNeverFollowed: refundd's 2Checkout endpoint logs in
// normally, then answers every cancelRefund and getOrder with a 307 to
// another host — a second sandbox that would accept the same credentials.
// Nothing reaches that host; the task retries until its cut-off and ends
// unknown or window closed (never cancelled, never refused), its record
// saying where the redirect pointed; the refund is still open.
func TestRedirectedVendorNeverFollowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	elsewhere := rpctest.NewServer(rpctest.Config{MerchantCode: "M", SecretKey: "S"})
	defer elsewhere.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(body, &req)
		if req.Method != "login" {
			http.Redirect(w, r, elsewhere.RPCURL, http.StatusTemporaryRedirect)
			return
		}
		resp, err := http.Post(f.sb.RPCURL, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer front.Close()

	// The cut-off (the window's close less WINDOW_SAFETY_MARGIN, 1m) comes
	// a few seconds from now.
	initiated := time.Now().Add(-tasks.Window + time.Minute + 4*time.Second).UTC().Truncate(time.Second)
	_ = f.sb.Seed(rpctest.Refund{OrderRef: "RD1", RefundID: "R-RD1", InitiatedAt: initiated})
	f.start(t, map[string]string{"TCO_API_URL": front.URL + "/rpc/6.0/", "RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "500ms"})
	if _, err := f.enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "RD1", RefundInitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	var info *asynq.TaskInfo
	testutil.Eventually(t, 60*time.Second, "the task to end", func() bool {
		info, _ = f.enq.Status("RD1", initiated)
		return info != nil && (info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived)
	})
	if st := elsewhere.Stats(); st.Logins != 0 || len(st.Calls) != 0 || len(elsewhere.Ledger()) != 0 {
		t.Fatalf("the redirect's target was reached: %+v", st)
	}
	var res tasks.Result
	if err := json.Unmarshal(info.Result, &res); err != nil {
		t.Fatalf("%v: %s", err, info.Result)
	}
	if res.Outcome != tasks.OutcomeUnknown && res.Outcome != tasks.OutcomeWindowClosed {
		t.Fatalf("outcome %q, want unknown or window_closed: %s", res.Outcome, info.Result)
	}
	if !strings.Contains(string(info.Result), elsewhere.RPCURL) {
		t.Errorf("the record does not say where the redirect pointed (%s): %s", elsewhere.RPCURL, info.Result)
	}
	t.Logf("record: %s", info.Result)
	if rf, _ := f.sb.Refund("RD1"); rf.Status == "CANCELED" {
		t.Fatalf("the refund was cancelled: %+v", rf)
	}
	for _, c := range f.sb.Ledger() {
		if c.Method != "login" {
			t.Fatalf("the vendor's own endpoint served %s: only logins pass the front", c.Method)
		}
	}
}
