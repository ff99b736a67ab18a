package soak

import (
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func cancelCall(s float64, ref, outcome, fault string) rpctest.Call {
	return rpctest.Call{Time: at(s), Method: "cancelRefund", OrderRef: ref, Outcome: outcome, Fault: fault}
}

func TestAppliedTwiceAndLate(t *testing.T) {
	calls := []rpctest.Call{
		{Time: at(0), Method: "login", Outcome: "ok"},
		cancelCall(1, "A", "ok", ""),
		cancelCall(2, "B", "ok", rpctest.FaultApplyThenDrop), // applied, answer lost
		cancelCall(3, "B", "ok", ""),                         // a second applied cancel
		cancelCall(4, "C", "not_applied", rpctest.FaultDrop),
		cancelCall(5, "C", "REFUND_NOT_CANCELLABLE", ""),
		cancelCall(7200, "D", "ok", ""), // exactly at initiated + 2h: late
		cancelCall(7199, "E", "ok", ""),
	}
	applies := appliedTimes(calls)
	if got := cancelledTwice(applies); !slices.Equal(got, []string{"B"}) {
		t.Errorf("twice = %v, want [B]", got)
	}
	if got := lateCancels(applies, func(string) time.Time { return t0 }, 2*time.Hour); !slices.Equal(got, []string{"D"}) {
		t.Errorf("late = %v, want [D]", got)
	}
	if _, ok := applies["C"]; ok {
		t.Errorf("C was never applied: %v", applies["C"])
	}
}

func TestLost(t *testing.T) {
	status := map[string]string{"A": rpctest.StatusCanceled, "B": rpctest.StatusPending}
	if got := lost([]string{"A", "B", "C"}, status); !slices.Equal(got, []string{"B", "C"}) {
		t.Errorf("lost = %v, want [B C]", got)
	}
}

func TestFalseRecordStrictReading(t *testing.T) {
	done := func(outcome string) taskEvidence {
		return taskEvidence{State: asynq.TaskStateCompleted, Record: &tasks.Result{Outcome: outcome}}
	}
	archived := func(outcome string) taskEvidence {
		return taskEvidence{State: asynq.TaskStateArchived, Record: &tasks.Result{Outcome: outcome}}
	}
	const canceled, pending = rpctest.StatusCanceled, rpctest.StatusPending
	cases := []struct {
		name    string
		te      taskEvidence
		status  string
		applied int
		isFalse bool
	}{
		{"cancelled, true", done(tasks.OutcomeCancelled), canceled, 1, false},
		{"cancelled, refund pending", done(tasks.OutcomeCancelled), pending, 0, true},
		{"cancelled, no applied call", done(tasks.OutcomeCancelled), canceled, 0, true},
		{"already_cancelled, true", done(tasks.OutcomeAlreadyCancelled), canceled, 1, false},
		{"already_cancelled, refund pending", done(tasks.OutcomeAlreadyCancelled), pending, 0, true},
		{"duplicate of a cancelled refund", done(tasks.OutcomeDuplicate), canceled, 1, false},
		{"duplicate, refund pending", done(tasks.OutcomeDuplicate), pending, 0, true},
		{"refused, refund pending", archived(tasks.OutcomeRefused), pending, 0, false},
		{"refused, cancelled by this task", archived(tasks.OutcomeRefused), canceled, 1, true},
		{"unknown, cancelled by this task", archived(tasks.OutcomeUnknown), canceled, 1, true},
		{"unknown, refund pending", archived(tasks.OutcomeUnknown), pending, 0, false},
		{"window_closed, cancelled by this task", archived(tasks.OutcomeWindowClosed), canceled, 1, true},
		{"finished without a record", taskEvidence{State: asynq.TaskStateArchived, RecordErr: "no result record"}, pending, 0, true},
		{"finished with a retry record", archived(tasks.OutcomeRetry), pending, 0, true},
		{"still retrying: not judged here", taskEvidence{State: asynq.TaskStateRetry, Record: &tasks.Result{Outcome: tasks.OutcomeRetry}}, canceled, 1, false},
	}
	for _, tc := range cases {
		why := falseRecordWhy(tc.te, tc.status, tc.applied)
		if (why != "") != tc.isFalse {
			t.Errorf("%s: falseRecordWhy = %q, want false record %v", tc.name, why, tc.isFalse)
		}
	}
}

func TestRateTo(t *testing.T) {
	var firsts []time.Time
	for i := 1; i <= 10; i++ {
		firsts = append(firsts, at(float64(i)))
	}
	if got := rateTo(t0, firsts, 10, 0.9); got != 1 { // the 9th at 9s
		t.Errorf("rate to 90%% = %v, want 1", got)
	}
	if got := rateTo(t0, firsts, 20, 0.99); got != 0 { // never reached
		t.Errorf("rate to a share never reached = %v, want 0", got)
	}
	if got := rateTo(t0, firsts, 10, 1); got != 1 {
		t.Errorf("rate to all = %v, want 1", got)
	}
}

func TestLongestStall(t *testing.T) {
	s := func(sec float64, pending, active, finished int) sample {
		return sample{At: at(sec), OK: true, Pending: pending, Active: active, Finished: finished}
	}
	down := func(sec float64) sample { return sample{At: at(sec)} }
	pending := func(x sample) bool { return x.Pending > 0 }
	unfinished := func(x sample) bool { return x.Unfinished() > 0 }
	cases := []struct {
		name    string
		samples []sample
		busy    func(sample) bool
		want    time.Duration
		from    float64
	}{
		{"none", nil, pending, 0, 0},
		{"progress every second", []sample{s(0, 5, 0, 0), s(1, 4, 0, 1), s(2, 3, 0, 2)}, pending, 0, 0},
		{"stall while pending", []sample{s(0, 5, 0, 0), s(1, 5, 0, 1), s(2, 5, 0, 1), s(3, 5, 0, 1), s(4, 4, 0, 2)}, pending, 2 * time.Second, 1},
		{"no pending is no stall", []sample{s(0, 0, 3, 7), s(50, 0, 3, 7), s(90, 0, 3, 7)}, pending, 0, 0},
		{"orphaned active tasks stall the other figure", []sample{s(0, 0, 3, 7), s(50, 0, 3, 7), s(90, 0, 3, 7), s(91, 0, 0, 10)}, unfinished, 90 * time.Second, 0},
		{"pending stops, then resumes: a new stretch", []sample{s(0, 2, 0, 0), s(10, 2, 0, 0), s(11, 0, 2, 0), s(12, 2, 0, 0), s(15, 2, 0, 0)}, pending, 10 * time.Second, 0},
		{"Redis down inside a stall counts", []sample{s(0, 2, 0, 4), down(1), down(2), s(3, 2, 0, 4)}, pending, 3 * time.Second, 0},
	}
	for _, tc := range cases {
		got := longestStall(tc.samples, tc.busy)
		if got.Len != tc.want || (tc.want > 0 && !got.From.Equal(at(tc.from))) {
			t.Errorf("%s: %v from %v, want %v from +%vs", tc.name, got.Len, got.From, tc.want, tc.from)
		}
	}
}

func TestPlanRuns(t *testing.T) {
	runs, err := Plan{Scenario: "all", Kills: 3, RedisRestart: true}.runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].Refunds != 10000 || !slices.Equal(runs[0].Events, runs[1].Events) || runs[2].Refunds != 5000 {
		t.Fatalf("runs %+v", runs)
	}
	var kinds []string
	for _, e := range runs[1].Events {
		kinds = append(kinds, e.Kind)
	}
	want := []string{eventKill, eventKill, eventRedisRestart, eventKill} // 15%, 35%, 45%, 55%
	if !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for _, bad := range []Plan{{Scenario: "soak"}, {Scenario: "mix", Refunds: -1}, {Scenario: "mix", Kills: 4}} {
		if _, err := bad.runs(); err == nil {
			t.Errorf("plan %+v: no error", bad)
		}
	}
}

func TestTailSortsLateRefundsByFault(t *testing.T) {
	calls := []rpctest.Call{
		cancelCall(1, "A", "ok", ""),
		cancelCall(1, "B", "not_applied", rpctest.FaultStatus),
		cancelCall(4, "B", "ok", ""),
		cancelCall(2, "C", "not_applied", rpctest.FaultDrop),
		cancelCall(3, "C", "not_applied", rpctest.FaultStatus),
		cancelCall(5, "C", "ok", ""),
		cancelCall(70, "D", "ok", ""), // a killed replica's task: no fault
	}
	got := tail(calls, 4, 0.25) // after A
	want := map[string]int{"status": 1, "drop+status": 1, "none": 1}
	if len(got) != len(want) {
		t.Fatalf("tail = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("tail = %v, want %v", got, want)
		}
	}
}

// The latency every call of the soak meets is not one of the mix's faults.
func TestFaultLeavesOutLatency(t *testing.T) {
	for in, want := range map[string]string{"": "", "latency": "", "latency+status": "status", "drop": "drop", "latency+expire_session+status": "expire_session+status"} {
		if got := fault(in); got != want {
			t.Errorf("fault(%q) = %q, want %q", in, got, want)
		}
	}
}
