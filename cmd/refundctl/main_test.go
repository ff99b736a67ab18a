package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
)

func ctl(t *testing.T, r *redistest.Redis, q, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{getenv: envMap{"REDIS_URL": r.URL, "REFUND_QUEUE": q}.get, stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut}
	code := run(context.Background(), args, e)
	return code, out.String(), errOut.String()
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

func TestEnqueueAndStatus(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	now := time.Now().UTC().Format(time.RFC3339)
	code, out, _ := ctl(t, r, q, "", "enqueue", "--order-ref", "C1", "--initiated-at", now, "--reason", "dup")
	if code != 0 || !strings.HasPrefix(out, "queued refund:cancel:C1:") {
		t.Fatalf("%d %q", code, out)
	}
	code, out, _ = ctl(t, r, q, "", "enqueue", "--json", "--order-ref", "C1", "--initiated-at", now)
	var res map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res["result"] != "already_queued" || res["state"] != "pending" {
		t.Fatalf("%d %q", code, out)
	}
	code, out, _ = ctl(t, r, q, "", "status", "--json", "--initiated-at", now, "C1")
	var st statusView
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != "pending" || !strings.Contains(string(st.Payload), `"dup"`) {
		t.Fatalf("%d %q", code, out)
	}
	if code, _, errOut := ctl(t, r, q, "", "status", "--initiated-at", now, "NOPE"); code != 1 || !strings.Contains(errOut, "no cancellation task refund:cancel:NOPE:") {
		t.Fatalf("%d %q", code, errOut)
	}
	if code, _, errOut := ctl(t, r, q, "", "status", "C1"); code != 2 || !strings.Contains(errOut, "--initiated-at") {
		t.Fatalf("%d %q", code, errOut)
	}
}

func TestBulkEnqueue(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	now := time.Now().UTC().Format(time.RFC3339)
	in := fmt.Sprintf(`{"order_ref":"B1","refund_initiated_at":%q}
# a comment

{"order_ref":"B1","refund_initiated_at":%q}
{"order_ref":"B2","refund_initiated_at":%q,"priority":9}
not json
{"order_ref":"B3","refund_initiated_at":"2020-01-01T00:00:00Z"}
`, now, now, now)
	code, out, _ := ctl(t, r, q, in, "enqueue", "--file", "-")
	if code != 1 {
		t.Fatalf("exit %d, want 1 for rejected lines", code)
	}
	for _, want := range []string{"queued 1, already queued 1, rejected 3", "line 5 B2: priority: unknown field", "line 6 : payload: not a JSON object", "line 7 B3: order B3: cancellation window closed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output misses %q:\n%s", want, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	r := &redistest.Redis{URL: "redis://127.0.0.1:1/0"}
	for _, args := range [][]string{{}, {"bogus"}, {"enqueue"}, {"enqueue", "--order-ref", "A"}, {"enqueue", "--order-ref", "A", "--initiated-at", "yesterday"}, {"status"}, {"enqueue", "--nope"}} {
		if code, _, _ := ctl(t, r, "q", "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
