package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/refundd/refund-canceller/rpcclient"
)

// The cached children count in the same series as WithLabelValues, known
// labels or not.
func TestCachedChildrenCount(t *testing.T) {
	m := New(nil)
	for range 3 {
		m.ObserveRequest(rpcclient.MethodCancelRefund, rpcclient.ClassNone, time.Millisecond)
	}
	m.ObserveRequest(rpcclient.MethodCancelRefund, rpcclient.ClassTransient, time.Millisecond)
	m.ObserveRequest("someMethod", rpcclient.ClassNone, time.Millisecond)
	m.ObserveRequest(rpcclient.MethodLogin, rpcclient.ClassCredentials, time.Millisecond)
	m.Attempted("cancelled", time.Minute)
	m.Attempted("cancelled", time.Minute)
	m.Attempted("retry", time.Minute)
	m.Attempted("odd", time.Minute)
	for _, c := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("cancelRefund", "ok")), 3, "cancelRefund ok"},
		{testutil.ToFloat64(m.requests.WithLabelValues("cancelRefund", "transient")), 1, "cancelRefund transient"},
		{testutil.ToFloat64(m.requests.WithLabelValues("someMethod", "ok")), 1, "someMethod ok"},
		{testutil.ToFloat64(m.requests.WithLabelValues("login", "credentials")), 1, "login credentials"},
		{testutil.ToFloat64(m.logins.WithLabelValues("credentials")), 1, "logins credentials"},
		{float64(testutil.CollectAndCount(m.latency)), 3, "latency series"},
		{testutil.ToFloat64(m.attempts.WithLabelValues("cancelled")), 2, "attempts cancelled"},
		{testutil.ToFloat64(m.attempts.WithLabelValues("retry")), 1, "attempts retry"},
		{testutil.ToFloat64(m.attempts.WithLabelValues("odd")), 1, "attempts odd"},
		{testutil.ToFloat64(m.cancellations.WithLabelValues("cancelled")), 2, "cancellations cancelled"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}
