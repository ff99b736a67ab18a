package redisconn_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/fleettest"
	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// refundd runs as an ACL user with exactly redisconn.ACLRules, the default
// user off: two replicas cancel a few refunds (with the shared budget,
// deadline-first dispatch and webhooks on), one more comes through the
// API, the dashboard and /readyz answer, and Redis's ACL LOG shows no
// command or key refused.
func TestACLUser(t *testing.T) {
	const pw = "refundd-acl-pass"
	r := redistest.StartWith(t, redistest.Server{
		ACL:  []string{"user default off", "user admin on >admin-pass ~* &* +@all", "user refundd on >" + pw + " " + redisconn.ACLRules},
		User: "admin", Password: "admin-pass",
	})
	admin := r.Client()
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	// A command the rules lack fails the test (below), or stalls the
	// worker's retries until a wait times out: then the log says which.
	t.Cleanup(func() {
		if t.Failed() {
			entries, _ := admin.Do(ctx, "ACL", "LOG").Slice()
			for _, e := range entries {
				t.Logf("ACL LOG: %v", e)
			}
		}
	})
	// The default user is off: a password alone logs in as no one.
	anon := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port()), Password: pw})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("the default user: %v", err)
	}
	if err := admin.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}

	var delivered atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	refundURL := fmt.Sprintf("redis://%s@127.0.0.1:%d/0", url.UserPassword("refundd", pw), r.Port())
	f := fleettest.Start(t, fleettest.Options{RedisURL: refundURL, Queue: "refunds", Replicas: 2, Env: map[string]string{
		"TCO_RATE_LIMIT": "20", "NOTIFY_URL": hook.URL, "NOTIFY_SECRET": "webhook-secret-0123456789", "API_TOKEN": "api-token-0123456789",
	}})
	refs := fleettest.Refs("ACL", 10)
	f.Add(t, refs...)
	testutil.Eventually(t, 30*time.Second, "the replicas' ops servers", func() bool { return len(f.Ops()) == 2 })
	base := f.Ops()[0]

	// One through the producer API.
	initiated := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if err := f.SB.Seed(rpctest.Refund{OrderRef: "ACLAPI", InitiatedAt: initiated}); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"order_ref":"ACLAPI","refund_initiated_at":%q}`, initiated.Format(time.RFC3339))
	req, _ := http.NewRequest("POST", base+"/v1/cancellations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer api-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	if code, got := do(t, req); code != http.StatusAccepted && code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("POST /v1/cancellations: %d %s", code, got)
	}

	states := f.WaitFinished(t, 60*time.Second, refs...)
	if got := len(states[asynq.TaskStateCompleted]); got != len(refs) {
		t.Fatalf("%d of %d completed: %v", got, len(refs), states)
	}
	testutil.Eventually(t, 30*time.Second, "the API's refund cancelled", func() bool {
		r, _ := f.SB.Refund("ACLAPI")
		return r.Status == "CANCELED"
	})
	testutil.Eventually(t, 30*time.Second, "a webhook per refund", func() bool { return delivered.Load() >= int64(len(refs)+1) })
	for _, path := range []string{"/readyz", "/monitoring/api/queues", "/monitoring/api/queue_stats", "/monitoring/api/servers",
		"/monitoring/api/redis_info", "/monitoring/api/queues/refunds/completed_tasks", "/monitoring/api/queues/refunds/archived_tasks"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		if code, got := do(t, req); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, got)
		}
	}
	req, _ = http.NewRequest("GET", base+"/v1/cancellations/ACLAPI?refund_initiated_at="+url.QueryEscape(initiated.Format(time.RFC3339)), nil)
	req.Header.Set("Authorization", "Bearer api-token-0123456789")
	if code, got := do(t, req); code != http.StatusOK {
		t.Errorf("GET /v1/cancellations/ACLAPI: %d %s", code, got)
	}

	ok := map[string]int{}
	for _, c := range f.SB.Ledger() {
		if c.Method == rpcclient.MethodCancelRefund && c.Outcome == "ok" {
			ok[c.OrderRef]++
		}
	}
	for _, ref := range append(refs, "ACLAPI") {
		if ok[ref] != 1 {
			t.Errorf("%s cancelled %d times", ref, ok[ref])
		}
	}
	// Nothing refused: an empty ACL LOG.
	entries, err := admin.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("refused: %v", e)
	}
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}
