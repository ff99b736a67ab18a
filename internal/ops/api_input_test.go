package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/tasks"
)

// fakeProducer answers without Redis: order refs starting with DUP are
// already queued, DOWN means Redis is unavailable.
type fakeProducer struct{}

func (fakeProducer) Enqueue(_ context.Context, p tasks.CancelRefund, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	if err := p.Validate(time.Now()); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(p.OrderRef, "DUP"):
		return nil, &tasks.AlreadyQueuedError{TaskID: "refund:cancel:" + p.OrderRef}
	case strings.HasPrefix(p.OrderRef, "DOWN"):
		return nil, errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	return &asynq.TaskInfo{ID: "refund:cancel:" + p.OrderRef, Queue: "refunds", State: asynq.TaskStatePending}, nil
}
func (fakeProducer) Refund(context.Context, string, time.Time) (taskview.View, error) {
	return taskview.View{}, taskview.ErrNotFound
}
func (fakeProducer) Order(context.Context, string) ([]taskview.View, error) {
	return nil, taskview.ErrNotFound
}
func (fakeProducer) Queue() string { return "refunds" }

func apiHandler() http.Handler {
	mux := http.NewServeMux()
	ops.NewAPI(fakeProducer{}, fakeProducer{}, token, nil).Register(mux)
	return ops.NewGuard(nil).Handler(mux)
}

func post(h http.Handler, path, contentType, body string) (int, map[string]any) {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Host = "localhost"
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// TestAPIStrictInput: the API takes exactly one JSON payload shape, and
// says what is wrong in words naming the field.
func TestAPIStrictInput(t *testing.T) {
	h := apiHandler()
	now := time.Now().UTC().Format(time.RFC3339)
	good := fmt.Sprintf(`{"order_ref":"S1","refund_initiated_at":%q}`, now)
	const js = "application/json"
	cases := []struct {
		name, path, ctype, body string
		want                    int
		says                    string // a substring of the answer
	}{
		{"good", "/v1/cancellations", js, good, 202, ""},
		{"charset utf-8", "/v1/cancellations", "application/json; charset=UTF-8", good, 202, ""},
		{"text/plain", "/v1/cancellations", "text/plain", good, 415, "application/json"},
		{"form", "/v1/cancellations", "application/x-www-form-urlencoded", "order_ref=S1", 415, "application/json"},
		{"no content type", "/v1/cancellations", "", good, 415, "none was given"},
		{"latin-1", "/v1/cancellations", "application/json; charset=latin1", good, 415, "UTF-8"},
		{"batch as text/plain", "/v1/cancellations:batch", "text/plain", "[" + good + "]", 415, "application/json"},
		{"duplicate key", "/v1/cancellations", js, fmt.Sprintf(`{"order_ref":"S1","order_ref":"S2","refund_initiated_at":%q}`, now), 400, "appears more than once"},
		{"upper-case key", "/v1/cancellations", js, fmt.Sprintf(`{"ORDER_REF":"S1","refund_initiated_at":%q}`, now), 400, `did you mean \"order_ref\"`},
		{"newline in reason", "/v1/cancellations", js, fmt.Sprintf(`{"order_ref":"S1","refund_initiated_at":%q,"reason":"a\nb"}`, now), 400, "control characters"},
		{"number as time", "/v1/cancellations", js, `{"order_ref":"S1","refund_initiated_at":1764064800}`, 400, "must be an RFC 3339 time string"},
		{"zero time", "/v1/cancellations", js, `{"order_ref":"S1","refund_initiated_at":"0001-01-01T00:00:00Z"}`, 400, "zero time"},
		{"BOM", "/v1/cancellations", js, "\xEF\xBB\xBF" + good, 400, "byte-order mark"},
		{"10 KiB", "/v1/cancellations", js, `{"order_ref":"S1","reason":"` + strings.Repeat("x", 10<<10) + `"}`, 413, "8192"},
		{"just over the limit", "/v1/cancellations", js, good[:len(good)-1] + `,"x":"` + strings.Repeat("x", tasks.MaxPayloadBytes-len(good)-6) + `"}`, 413, ""},
		{"at the limit", "/v1/cancellations", js, good[:len(good)-1] + `,"x":"` + strings.Repeat("x", tasks.MaxPayloadBytes-len(good)-7) + `"}`, 400, "is not a field"},
		{"queue down", "/v1/cancellations", js, fmt.Sprintf(`{"order_ref":"DOWN1","refund_initiated_at":%q}`, now), 503, "nothing was enqueued"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := post(h, tc.path, tc.ctype, tc.body)
			b, _ := json.Marshal(out)
			if code != tc.want || !strings.Contains(string(b), tc.says) {
				t.Fatalf("status %d, want %d saying %q: %s", code, tc.want, tc.says, b)
			}
			for _, goSpeak := range []string{"time.Time", "UnmarshalJSON", "json:"} {
				if strings.Contains(string(b), goSpeak) {
					t.Fatalf("answer speaks Go: %s", b)
				}
			}
		})
	}
}

// A batch answers each item on its own: a string where a payload belongs,
// an item over the payload limit (413, as alone), a duplicate key.
func TestAPIBatchItems(t *testing.T) {
	h := apiHandler()
	now := time.Now().UTC().Format(time.RFC3339)
	items := []string{
		fmt.Sprintf(`{"order_ref":"S1","refund_initiated_at":%q}`, now),
		`"S2"`,
		`{"order_ref":"S3","reason":"` + strings.Repeat("x", 10<<10) + `"}`,
		fmt.Sprintf(`{"order_ref":"S4","order_ref":"S5","refund_initiated_at":%q}`, now),
		`12`,
	}
	code, out := post(h, "/v1/cancellations:batch", "application/json", "["+strings.Join(items, ",")+"]")
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	b, _ := json.Marshal(out["results"])
	var results []ops.Item
	_ = json.Unmarshal(b, &results)
	want := []struct {
		status int
		says   string
	}{{202, ""}, {400, "must be a JSON object, got a string"}, {413, "larger than 8192"}, {400, "appears more than once"}, {400, "got a number"}}
	if len(results) != len(want) {
		t.Fatalf("results %s", b)
	}
	for i, w := range want {
		r, _ := json.Marshal(results[i])
		if results[i].Status != w.status || !strings.Contains(string(r), w.says) {
			t.Errorf("item %d: %s, want %d saying %q", i, r, w.status, w.says)
		}
	}
}

// FuzzAPI: whatever the body, content type and route, the API answers one
// of its statuses with a JSON body, and accepts (202) only what the shared
// decoder accepts.
func FuzzAPI(f *testing.F) {
	now := time.Now().UTC().Format(time.RFC3339)
	f.Add("/v1/cancellations", "application/json", fmt.Sprintf(`{"order_ref":"F1","refund_initiated_at":%q}`, now))
	f.Add("/v1/cancellations", "application/json", `{"order_ref":"F1","order_ref":"F1"}`)
	f.Add("/v1/cancellations", "text/plain", `{}`)
	f.Add("/v1/cancellations", "application/json; charset=utf-8", "\xEF\xBB\xBF{}")
	f.Add("/v1/cancellations:batch", "application/json", fmt.Sprintf(`[{"order_ref":"DUP1","refund_initiated_at":%q},"x",null,{"ORDER_REF":1}]`, now))
	f.Add("/v1/cancellations:batch", "application/json", `[]`)
	f.Add("/v1/cancellations:batch", "application/json", `{"a":[1,2]}`)
	f.Add("/v1/cancellations", "application/json", fmt.Sprintf(`{"order_ref":"DOWN","refund_initiated_at":%q,"reason":"\u202e"}`, now))
	h := apiHandler()
	f.Fuzz(func(t *testing.T, path, ctype, body string) {
		if path != "/v1/cancellations:batch" {
			path = "/v1/cancellations"
		}
		code, out := post(h, path, ctype, body)
		if out == nil {
			t.Fatalf("status %d without a JSON object body", code)
		}
		switch code {
		case 200, 202, 400, 409, 413, 415, 422, 503:
		default:
			t.Fatalf("status %d: %v", code, out)
		}
		if code == 202 {
			if _, err := tasks.DecodeStrict([]byte(body)); err != nil {
				t.Fatalf("accepted what the decoder refuses (%v): %q", err, body)
			}
		}
	})
}
