package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBudgetMetrics(t *testing.T) {
	m := New(nil)
	m.Refused("cancelRefund", "rate_limit")
	m.Refused("login", "rate_limit")
	m.Waited("cancelRefund", 40*time.Millisecond)
	if got := testutil.ToFloat64(m.budgetRefused.WithLabelValues("rate_limit")); got != 2 {
		t.Fatalf("refused %v, want 2", got)
	}
	if n := testutil.CollectAndCount(m.budgetWait); n != 1 {
		t.Fatalf("wait histogram: %d series", n)
	}
	pause := func() float64 {
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "refundd_tco_pause_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no refundd_tco_pause_seconds")
		return 0
	}
	if p := pause(); p != 0 {
		t.Fatalf("pause %v before any", p)
	}
	m.Paused(time.Now().Add(3 * time.Second))
	m.Paused(time.Now().Add(time.Second)) // an older view never shortens it
	if p := pause(); p < 2.5 || p > 3 {
		t.Fatalf("pause %v, want about 3s", p)
	}
	m.Paused(time.Now().Add(-time.Second))
	if p := pause(); p < 2.5 {
		t.Fatalf("pause %v after a past end was reported", p)
	}
}
