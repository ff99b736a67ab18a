package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/taskview"
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
	var st taskview.View
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.State != "pending" || !strings.Contains(string(st.Payload), `"dup"`) {
		t.Fatalf("%d %q", code, out)
	}
	if code, _, errOut := ctl(t, r, q, "", "status", "--initiated-at", now, "NOPE"); code != 1 || !strings.Contains(errOut, "no cancellation task refund:cancel:NOPE:") {
		t.Fatalf("%d %q", code, errOut)
	}
	if code, out, _ := ctl(t, r, q, "", "status", "C1"); code != 0 || !strings.HasPrefix(out, now+"  pending") || strings.Count(out, "\n") != 1 {
		t.Fatalf("the order's list: %d %q", code, out)
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
	for _, want := range []string{"queued 1, already queued 1, rejected 3", "line 5 rejected B2: priority: is not a field", "line 6 rejected : payload: is not valid JSON", "line 7 rejected B3: order B3: cancellation window closed"} {
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

// One over-long line is one rejected line: the lines before and after it
// are enqueued and reported, and the summary prints.
func TestBulkOverlongLine(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	now := time.Now().UTC().Format(time.RFC3339)
	line := func(ref string) string { return fmt.Sprintf(`{"order_ref":%q,"refund_initiated_at":%q}`, ref, now) }
	huge := `{"order_ref":"L9","reason":"` + strings.Repeat("x", 70<<10) + `"}`
	over := `{"order_ref":"L8","reason":"` + strings.Repeat("x", 9<<10) + `"}`
	in := strings.Join([]string{line("L1"), huge, line("L2"), over, line("L3")}, "\n")
	code, out, _ := ctl(t, r, q, in, "enqueue", "--file", "-")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, out)
	}
	for _, want := range []string{"queued 3, already queued 0, rejected 2, unavailable 0 (5 lines)", "line 2 rejected : payload: the line is longer than 8192 bytes", "line 4 rejected"} {
		if !strings.Contains(out, want) {
			t.Errorf("output misses %q:\n%.500s", want, out)
		}
	}
	// --json: a result per line, then the summary.
	code, out, _ = ctl(t, r, q, in, "enqueue", "--file", "-", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 6 {
		t.Fatalf("exit %d, %d lines: %.500s", code, len(lines), out)
	}
	var results []string
	for _, l := range lines[:5] {
		var res lineResult
		if err := json.Unmarshal([]byte(l), &res); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		results = append(results, fmt.Sprint(res.Line, res.Result))
	}
	if strings.Join(results, ",") != "1already_queued,2rejected,3already_queued,4rejected,5already_queued" {
		t.Fatalf("results %v", results)
	}
	if !strings.Contains(lines[5], `"summary":{"lines":5,"queued":0,"already_queued":3,"rejected":2,"unavailable":0}`) {
		t.Fatalf("summary %s", lines[5])
	}
}

// closedRedis is a Redis URL nothing listens on.
func closedRedis(t *testing.T) *redistest.Redis {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &redistest.Redis{URL: "redis://" + addr + "/0"}
}

// With Redis down nothing is decided: the answer says "unavailable", not
// "rejected", and the exit status is 3; an invalid line is still rejected.
func TestQueueUnavailable(t *testing.T) {
	t.Parallel()
	r := closedRedis(t)
	now := time.Now().UTC().Format(time.RFC3339)
	code, out, _ := ctl(t, r, "q", "", "enqueue", "--order-ref", "U1", "--initiated-at", now)
	if code != 3 || !strings.HasPrefix(out, "unavailable U1: the queue is unavailable, nothing was decided") {
		t.Fatalf("%d %q", code, out)
	}
	in := fmt.Sprintf("{\"order_ref\":\"U1\",\"refund_initiated_at\":%q}\n{\"order_ref\":1}\n{\"order_ref\":\"U2\",\"refund_initiated_at\":%q}\n", now, now)
	code, out, _ = ctl(t, r, "q", in, "enqueue", "--file", "-")
	if code != 3 || !strings.Contains(out, "queued 0, already queued 0, rejected 1, unavailable 2 (3 lines)") || !strings.Contains(out, "line 3 unavailable U2: not sent") {
		t.Fatalf("%d %q", code, out)
	}
	code, out, _ = ctl(t, r, "q", "", "status", "--initiated-at", now, "U1", "--json")
	var e map[string]string
	if code != 3 || json.Unmarshal([]byte(out), &e) != nil || e["kind"] != "unavailable" {
		t.Fatalf("%d %q", code, out)
	}
}

func TestHelpExitsZero(t *testing.T) {
	r := closedRedis(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "enqueue"}, {"enqueue", "--help"}, {"enqueue", "-h"}, {"status", "--help"}, {"status", "-help", "--json"}} {
		code, out, errOut := ctl(t, r, "q", "", args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %.80q, stderr %.80q", args, code, out, errOut)
		}
	}
}

// --json answers errors as JSON too, with their kind.
func TestJSONErrors(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	for _, tc := range []struct {
		args []string
		kind string
		code int
	}{
		{[]string{"status", "--initiated-at", "2026-11-29T00:00:00Z", "NOPE", "--json"}, "not_found", 1},
		{[]string{"status", "--json"}, "usage", 2},
		{[]string{"enqueue", "--json", "--nope"}, "usage", 2},
		{[]string{"bogus", "--json"}, "usage", 2},
	} {
		code, out, errOut := ctl(t, r, q, "", tc.args...)
		var e map[string]string
		if code != tc.code || json.Unmarshal([]byte(out), &e) != nil || e["kind"] != tc.kind || e["error"] == "" || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
	}
	code, out, _ := ctl(t, r, q, `{"order_ref":"J1","refund_initiated_at":"2020-01-01T00:00:00Z"}`, "enqueue", "--json", "--order-ref", "J1", "--initiated-at", "2020-01-01T00:00:00Z")
	var res lineResult
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Result != "rejected" {
		t.Errorf("rejected: %d %q", code, out)
	}
}

// A malformed REDIS_URL is never printed: it may hold a password.
func TestNoSecretEchoed(t *testing.T) {
	for _, u := range []string{"redis//:hunter2-secret@127.0.0.1:6379", "redis://:hunter2-secret@127.0.0.1:6379/notadb", "redis://:hunter2-secret@[::1", "127.0.0.1:6379?password=hunter2-secret"} {
		for _, args := range [][]string{{"status", "--initiated-at", "2026-11-29T00:00:00Z", "X1"}, {"status", "--initiated-at", "2026-11-29T00:00:00Z", "X1", "--json"}} {
			code, out, errOut := ctl(t, &redistest.Redis{URL: u}, "q", "", args...)
			if code != 2 || strings.Contains(out+errOut, "hunter2") {
				t.Errorf("%s %v: exit %d, %q %q", u, args, code, out, errOut)
			}
		}
	}
}
