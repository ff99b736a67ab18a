package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

var now = time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)

func TestValidate(t *testing.T) {
	ok := tasks.CancelRefund{OrderRef: "73152889", RefundInitiatedAt: now.Add(-time.Hour)}
	cases := []struct {
		name   string
		mutate func(*tasks.CancelRefund)
		fields string
	}{
		{"ok", func(*tasks.CancelRefund) {}, ""},
		{"empty ref", func(p *tasks.CancelRefund) { p.OrderRef = "" }, "order_ref"},
		{"ref with space", func(p *tasks.CancelRefund) { p.OrderRef = "73 15" }, "order_ref"},
		{"ref too long", func(p *tasks.CancelRefund) { p.OrderRef = strings.Repeat("1", 33) }, "order_ref"},
		{"zero time", func(p *tasks.CancelRefund) { p.RefundInitiatedAt = time.Time{} }, "refund_initiated_at"},
		{"future within skew", func(p *tasks.CancelRefund) { p.RefundInitiatedAt = now.Add(tasks.FutureSkew) }, ""},
		{"future beyond skew", func(p *tasks.CancelRefund) { p.RefundInitiatedAt = now.Add(tasks.FutureSkew + time.Nanosecond) }, "refund_initiated_at"},
		{"both", func(p *tasks.CancelRefund) { p.OrderRef = ""; p.RefundInitiatedAt = time.Time{} }, "order_ref,refund_initiated_at"},
		{"long reason", func(p *tasks.CancelRefund) { p.Reason = strings.Repeat("x", 501) }, "reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mutate(&p)
			err := p.Validate(now)
			var ve tasks.ValidationError
			var got []string
			if errors.As(err, &ve) {
				for _, f := range ve {
					got = append(got, f.Field)
				}
			}
			if strings.Join(got, ",") != tc.fields {
				t.Fatalf("fields %v (%v), want %s", got, err, tc.fields)
			}
			if err != nil && !errors.Is(err, tasks.ErrInvalidPayload) {
				t.Fatal("not ErrInvalidPayload")
			}
		})
	}
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, body, wantField string
		strict                bool
	}{
		{"contract example", `{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"duplicate request","requested_by":"support-tool"}`, "", false},
		{"offset time", `{"order_ref":"A1","refund_initiated_at":"2026-11-25T12:00:00+02:00"}`, "", false},
		{"unknown field tolerated", `{"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z","priority":1}`, "", false},
		{"unknown field strict", `{"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z","priority":1}`, "priority", true},
		{"not json", `hello`, "payload", false},
		{"array", `[]`, "payload", false},
		{"ref is number", `{"order_ref":73152889,"refund_initiated_at":"2026-11-25T10:00:00Z"}`, "order_ref", false},
		{"bad time", `{"order_ref":"A1","refund_initiated_at":"25/11/2026"}`, "refund_initiated_at", false},
		{"missing time", `{"order_ref":"A1"}`, "refund_initiated_at", false},
		{"trailing", `{"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"} {}`, "payload", false},
		{"huge", `{"order_ref":"A1","reason":"` + strings.Repeat("x", 9000) + `"}`, "payload", false},
		{"null", `null`, "payload", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dec := tasks.Decode
			if tc.strict {
				dec = tasks.DecodeStrict
			}
			_, err := dec([]byte(tc.body))
			var ve tasks.ValidationError
			if tc.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &ve) || ve[0].Field != tc.wantField {
				t.Fatalf("err %v, want field %s", err, tc.wantField)
			}
		})
	}
}

// TestDecodeStrictInput pins the strict rules of the one payload decoder
// (the API, refundctl and the worker use it): exact names, no duplicates, no
// control characters, bounded text, and problems named in words.
func TestDecodeStrictInput(t *testing.T) {
	const ok = `"order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"`
	cases := []struct {
		name, body string
		strict     bool
		field      string // the first problem's field; "" for none
		problem    string // a substring of the error
	}{
		{"duplicate key", `{` + ok + `,"order_ref":"A2"}`, false, "order_ref", "appears more than once"},
		{"duplicate unknown key strict", `{` + ok + `,"x":1,"x":2}`, true, "x", "appears more than once"},
		{"duplicate via escape", `{` + ok + `,"order\u005fref":"A2"}`, false, "order_ref", "appears more than once"},
		{"upper-case key", `{"ORDER_REF":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"}`, false, "ORDER_REF", `did you mean "order_ref"`},
		{"mixed-case key strict", `{"Order_Ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"}`, true, "Order_Ref", "case-sensitive"},
		{"number as time", `{"order_ref":"A1","refund_initiated_at":1764064800}`, false, "refund_initiated_at", "must be an RFC 3339 time string, e.g. 2026-11-25T10:00:00Z, got a number"},
		{"object as time", `{"order_ref":"A1","refund_initiated_at":{}}`, false, "refund_initiated_at", "got an object"},
		{"zero time", `{"order_ref":"A1","refund_initiated_at":"0001-01-01T00:00:00Z"}`, false, "refund_initiated_at", "zero time"},
		{"epoch", `{"order_ref":"A1","refund_initiated_at":"1970-01-01T00:00:00Z"}`, false, "refund_initiated_at", "before 2000"},
		{"date only", `{"order_ref":"A1","refund_initiated_at":"2026-11-25"}`, false, "refund_initiated_at", `got "2026-11-25"`},
		{"BOM", "\xEF\xBB\xBF{" + ok + "}", false, "payload", "byte-order mark"},
		{"invalid UTF-8", "{" + ok + ",\"reason\":\"\xff\"}", false, "payload", "not valid UTF-8"},
		{"string not object", `"A1"`, false, "payload", "must be a JSON object, got a string"},
		{"array not object", `[{` + ok + `}]`, false, "payload", "must be a JSON object, got an array"},
		{"number ref", `{"order_ref":73152889,"refund_initiated_at":"2026-11-25T10:00:00Z"}`, false, "order_ref", "must be a string, got a number"},
		{"bool reason", `{` + ok + `,"reason":true}`, false, "reason", "must be a string, got a boolean"},
		{"null reason is absent", `{` + ok + `,"reason":null}`, true, "", ""},
		{"newline in reason", `{` + ok + `,"reason":"dup\nORDER 1 CANCELLED"}`, false, "reason", "control characters (found U+000A)"},
		{"escape in requested_by", `{` + ok + `,"requested_by":"a\u001b[31m"}`, false, "requested_by", "U+001B"},
		{"bidi override in reason", `{` + ok + `,"reason":"a\u202eb"}`, false, "reason", "U+202E"},
		{"line separator", `{` + ok + `,"reason":"a\u2028b"}`, false, "reason", "U+2028"},
		{"unicode reason ok", `{` + ok + `,"reason":"doublon — client a annulé"}`, true, "", ""},
		{"reason at bound", `{` + ok + `,"reason":"` + strings.Repeat("x", tasks.MaxReasonBytes) + `"}`, true, "", ""},
		{"reason over bound", `{` + ok + `,"reason":"` + strings.Repeat("x", tasks.MaxReasonBytes+1) + `"}`, true, "reason", "at most 500 bytes, got 501"},
		{"requested_by over bound", `{` + ok + `,"requested_by":"` + strings.Repeat("x", tasks.MaxRequestedByBytes+1) + `"}`, true, "requested_by", "at most 100 bytes"},
		{"hostile key is quoted", `{` + ok + `,"a\nb":1}`, true, `"a\nb"`, "is not a field"},
		{"trailing bracket", `{` + ok + `}]`, false, "payload", "data after the JSON object"},
		{"truncated", `{"order_ref":"A1"`, false, "payload", "ends too early"},
		{"syntax", `{"order_ref" "A1"}`, false, "payload", "at byte"},
		{"empty", ``, false, "payload", "is empty"},
		{"size at limit", `{` + ok + `,"x":"` + strings.Repeat("x", tasks.MaxPayloadBytes-len(ok)-9) + `"}`, false, "", ""},
		{"size over limit", `{` + ok + `,"x":"` + strings.Repeat("x", tasks.MaxPayloadBytes-len(ok)-8) + `"}`, false, "payload", "larger than 8192 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dec := tasks.Decode
			if tc.strict {
				dec = tasks.DecodeStrict
			}
			_, err := dec([]byte(tc.body))
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve tasks.ValidationError
			if !errors.As(err, &ve) || ve[0].Field != tc.field || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("err %q, want field %s with %q", err, tc.field, tc.problem)
			}
			assertInWords(t, err)
		})
	}
}

// assertInWords fails if an error speaks Go instead of words.
func assertInWords(t *testing.T, err error) {
	t.Helper()
	for _, goSpeak := range []string{"time.Time", "UnmarshalJSON", "json:", "Go value", "struct", "int64", "float64", "\n"} {
		if strings.Contains(err.Error(), goSpeak) {
			t.Fatalf("error %q speaks Go (%q)", err, goSpeak)
		}
	}
}

// FuzzDecode: the decoder never panics; every refusal is a ValidationError
// in words; what Decode accepts round-trips and validates; DecodeStrict
// accepts nothing Decode refuses.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z"}`))
	f.Add([]byte(`{"order_ref":"","refund_initiated_at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"order_ref":"A","refund_initiated_at":"9999-12-31T23:59:59.999999999-23:59"}`))
	f.Add([]byte(`{"order_ref":"A","order_ref":"B","refund_initiated_at":"2026-11-25T10:00:00Z"}`))
	f.Add([]byte(`{"ORDER_REF":"A","refund_initiated_at":1764064800}`))
	f.Add([]byte(`{"ORDER_REF":"A","order_ref":"A1","refund_initiated_at":"2026-11-25T10:00:00Z"}`))
	f.Add([]byte("\xEF\xBB\xBF{\"order_ref\":\"A\"}"))
	f.Add([]byte(`{"order_ref":"A","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"a\u202e\n","requested_by":null,"x":[{"y":1}]}`))
	f.Add([]byte(`["x", 1, {"order_ref":"A"}]`))
	f.Add([]byte(`{"order_ref":"A","refund_initiated_at":"2026-11-25T10:00:00Z"} {}`))
	f.Add([]byte(" {\t\"requested_by\" : null ,\"order_ref\":\"B001-1\",\r\n\"refund_initiated_at\":\"2026-11-25T10:00:00+01:00\",\"reason\":\"\u00e9t\u00e9\"} "))
	f.Add([]byte(`{"order_ref":"B001-1","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"été ✓"}`))
	f.Add([]byte(`{"order_ref":"B001-1","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"a\tb"}`))
	f.Add([]byte(`{"order_ref":"B001-1","refund_initiated_at":"2026-11-25T10:00:00Z",}`))
	f.Add([]byte(`{"order_ref":"B001-1","refund_initiated_at":"2026-11-25T10:00:00Z"}x`))
	f.Add([]byte(`{"order_ref":nul}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tasks.Decode(b)
		_, serr := tasks.DecodeStrict(b)
		if err != nil {
			var ve tasks.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, tasks.ErrInvalidPayload) || len(ve) == 0 {
				t.Fatalf("error %v is not a ValidationError", err)
			}
			for _, fe := range ve {
				if fe.Field == "" || fe.Problem == "" || strings.ContainsAny(fe.Field+fe.Problem, "\n\r\x1b") {
					t.Fatalf("field error %+v", fe)
				}
			}
			assertInWords(t, err)
			if serr == nil {
				t.Fatalf("DecodeStrict accepts what Decode refuses: %v", err)
			}
			return
		}
		if err := p.Validate(p.RefundInitiatedAt); err != nil {
			t.Fatalf("decoded payload does not validate: %v", err)
		}
		// Field names are exact: an accepted payload has no known name in
		// another letter case (json.Unmarshal would have matched it).
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(b, &keys); err != nil {
			t.Fatalf("Decode accepts what json.Unmarshal refuses: %v", err)
		}
		for k := range keys {
			for _, known := range []string{"order_ref", "refund_initiated_at", "reason", "requested_by"} {
				if k != known && strings.EqualFold(k, known) {
					t.Fatalf("Decode accepts key %q for %q", k, known)
				}
			}
		}
		// A decoded payload round-trips and builds a task.
		again, _ := json.Marshal(p)
		if q, err := tasks.DecodeStrict(again); err != nil || q.OrderRef != p.OrderRef || !q.RefundInitiatedAt.Equal(p.RefundInitiatedAt) ||
			q.Reason != p.Reason || q.RequestedBy != p.RequestedBy {
			t.Fatalf("round trip %s: %v", again, err)
		}
	})
}

func TestNewTask(t *testing.T) {
	p := tasks.CancelRefund{OrderRef: "A1", RefundInitiatedAt: now.In(time.FixedZone("x", 3600))}
	task, err := tasks.NewTask(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if task.Type() != "refund:cancel" || !strings.Contains(string(task.Payload()), `"refund_initiated_at":"2026-11-25T11:00:00Z"`) {
		t.Fatalf("%s %s", task.Type(), task.Payload())
	}
	if _, err := tasks.NewTask(tasks.CancelRefund{}, now); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("invalid payload built: %v", err)
	}
}

func TestEnqueue(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	e, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	p := tasks.CancelRefund{OrderRef: "E1", RefundInitiatedAt: now.Add(-time.Hour), Reason: "dup"}
	info, err := e.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != "refund:cancel:E1:20261125T100000Z" || info.Queue != q || info.State != asynq.TaskStatePending || info.Retention != tasks.DefaultRetention || info.MaxRetry != tasks.DefaultMaxRetry {
		t.Fatalf("%+v", info)
	}
	_, err = e.Enqueue(ctx, p)
	var aq *tasks.AlreadyQueuedError
	if !errors.As(err, &aq) || !errors.Is(err, tasks.ErrAlreadyQueued) || aq.State() != "pending" {
		t.Fatalf("second enqueue: %v", err)
	}
	if got, err := e.Status("E1", p.RefundInitiatedAt.Add(999*time.Millisecond)); err != nil || got.ID != info.ID {
		t.Fatalf("status by refund: %v %v", got, err)
	}
	// The same refund with sub-seconds is the same refund; a later refund on
	// the order is a new cancellation.
	same := p
	same.RefundInitiatedAt = p.RefundInitiatedAt.Add(300 * time.Millisecond)
	if _, err := e.Enqueue(ctx, same); !errors.Is(err, tasks.ErrAlreadyQueued) {
		t.Fatalf("same refund, sub-seconds: %v", err)
	}
	later := p
	later.RefundInitiatedAt = p.RefundInitiatedAt.Add(time.Second)
	if info2, err := e.Enqueue(ctx, later); err != nil || info2.ID != "refund:cancel:E1:20261125T100001Z" {
		t.Fatalf("a later refund: %v %v", info2, err)
	}
	// Window edges: closing exactly now is closed; one ns later is open.
	_, err = e.Enqueue(ctx, tasks.CancelRefund{OrderRef: "E2", RefundInitiatedAt: now.Add(-2 * time.Hour)})
	var wc *tasks.WindowClosedError
	if !errors.As(err, &wc) || !errors.Is(err, tasks.ErrWindowClosed) || !wc.ClosedAt.Equal(now) {
		t.Fatalf("closed window: %v", err)
	}
	if _, err := e.Status("E2", now.Add(-2*time.Hour)); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("closed-window task was queued: %v", err)
	}
	if _, err := e.Enqueue(ctx, tasks.CancelRefund{OrderRef: "E3", RefundInitiatedAt: now.Add(-2*time.Hour + time.Nanosecond)}); err != nil {
		t.Fatalf("open window refused: %v", err)
	}
	if _, err := e.Enqueue(ctx, tasks.CancelRefund{OrderRef: "bad ref"}); !errors.Is(err, tasks.ErrInvalidPayload) {
		t.Fatalf("invalid: %v", err)
	}
}

func BenchmarkDecodeStrict(b *testing.B) {
	payload := []byte(`{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z","reason":"duplicate request","requested_by":"support-tool"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tasks.DecodeStrict(payload); err != nil {
			b.Fatal(err)
		}
	}
}
