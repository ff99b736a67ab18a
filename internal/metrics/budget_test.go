package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refundd/refund-canceller/internal/vendorbudget"
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
	if a, o := testutil.ToFloat64(m.answered.WithLabelValues("cancelRefund")), testutil.ToFloat64(m.outage.WithLabelValues("cancelRefund")); a != 1 || o != 0 {
		t.Fatalf("before any state: answered %v outage %v, want 1 and 0", a, o)
	}
	m.Fleet(vendorbudget.FleetState{Rate: 40, Methods: map[string]vendorbudget.MethodState{
		"cancelRefund": {Sent: 100, Unavailable: 10, Refused: 30, Out: true, Throttled: true, Rate: 25},
		"getOrder":     {Sent: 10},
	}})
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"cancelRefund allowed rate: the throttle's", testutil.ToFloat64(m.allowedRate.WithLabelValues("cancelRefund")), 25},
		{"getOrder allowed rate: the ceiling", testutil.ToFloat64(m.allowedRate.WithLabelValues("getOrder")), 40},
		{"login allowed rate: the ceiling", testutil.ToFloat64(m.allowedRate.WithLabelValues("login")), 40},
		{"cancelRefund answered", testutil.ToFloat64(m.answered.WithLabelValues("cancelRefund")), 0.6},
		{"cancelRefund out", testutil.ToFloat64(m.outage.WithLabelValues("cancelRefund")), 1},
		{"getOrder answered", testutil.ToFloat64(m.answered.WithLabelValues("getOrder")), 1},
		{"getOrder out", testutil.ToFloat64(m.outage.WithLabelValues("getOrder")), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	// A method that left the window is answered and not out again.
	m.Fleet(vendorbudget.FleetState{})
	if a, o := testutil.ToFloat64(m.answered.WithLabelValues("cancelRefund")), testutil.ToFloat64(m.outage.WithLabelValues("cancelRefund")); a != 1 || o != 0 {
		t.Fatalf("after the window: answered %v outage %v, want 1 and 0", a, o)
	}
}
