package taskview_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/taskview"
	"github.com/refundd/refund-canceller/tasks"
)

func TestOf(t *testing.T) {
	next := time.Date(2026, 11, 25, 10, 30, 0, 0, time.FixedZone("x", 3600))
	payload := []byte(`{"order_ref":"V1","refund_initiated_at":"2026-11-25T10:00:00Z"}`)
	cases := []struct {
		name string
		info asynq.TaskInfo
		want taskview.View
	}{
		{"retry shows the next try in UTC", asynq.TaskInfo{ID: "t1", Queue: "q", State: asynq.TaskStateRetry, Retried: 2, LastErr: "EOF",
			LastFailedAt: next, NextProcessAt: next, Payload: payload},
			taskview.View{TaskID: "t1", OrderRef: "V1", RefundInitiatedAt: "2026-11-25T10:00:00Z", Queue: "q", State: "retry", Retried: 2, LastError: "EOF", LastFailedAt: "2026-11-25T09:30:00Z",
				NextProcessAt: "2026-11-25T09:30:00Z", WindowClosesAt: "2026-11-25T12:00:00Z", Payload: payload}},
		{"pending hides next_process_at", asynq.TaskInfo{ID: "t2", Queue: "q", State: asynq.TaskStatePending, NextProcessAt: next, Payload: payload},
			taskview.View{TaskID: "t2", OrderRef: "V1", RefundInitiatedAt: "2026-11-25T10:00:00Z", Queue: "q", State: "pending", WindowClosesAt: "2026-11-25T12:00:00Z", Payload: payload}},
		{"invalid payload and result left out", asynq.TaskInfo{ID: "t3", Queue: "q", State: asynq.TaskStateArchived, Payload: []byte("junk"), Result: []byte("{")},
			taskview.View{TaskID: "t3", Queue: "q", State: "archived"}},
		{"result kept", asynq.TaskInfo{ID: "t4", Queue: "q", State: asynq.TaskStateCompleted, Payload: payload, Result: []byte(`{"outcome":"cancelled","order_ref":"V1","refund_id":"R1","attempts":1}`)},
			taskview.View{TaskID: "t4", OrderRef: "V1", RefundInitiatedAt: "2026-11-25T10:00:00Z", Queue: "q", State: "completed", Outcome: "cancelled", WindowClosesAt: "2026-11-25T12:00:00Z", Payload: payload, Result: &tasks.Result{Outcome: "cancelled", OrderRef: "V1", RefundID: "R1", Attempts: 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := json.Marshal(taskview.Of(&tc.info))
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
