package ops_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/ops"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
)

// skewedClock is the real clock moved by an offset the test sets.
type skewedClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *skewedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *skewedClock) Set(d time.Duration) {
	c.mu.Lock()
	c.offset = d
	c.mu.Unlock()
}

// TestClockSkewMakesUnready: measured against a real Redis's TIME, a
// replica clock 10s ahead (or behind) makes /readyz answer 503 saying why,
// and one within bound is ready; before the first measurement it is not.
func TestClockSkewMakesUnready(t *testing.T) {
	r := redistest.New(t)
	rc := r.Client()
	defer rc.Close()
	clock := &skewedClock{}
	skew, err := ops.NewClockSkew(ops.SkewConfig{Max: 5 * time.Second, Now: clock.Now,
		RedisTime: func(ctx context.Context) (time.Time, error) { return rc.Time(ctx).Result() }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ops.NewHealth(ops.Checks{ClockSkew: skew.Err}).Register(mux)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body struct {
			Checks map[string]struct {
				Detail string `json:"detail"`
			} `json:"checks"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body.Checks["clock"].Detail
	}
	if code, detail := readyz(); code != 503 || !strings.Contains(detail, "not been measured") {
		t.Fatalf("before measuring: %d %q", code, detail)
	}
	for _, tc := range []struct {
		offset time.Duration
		want   int
		detail string
	}{
		{0, 200, ""},
		{10 * time.Second, 503, "ahead of Redis's (TIME), more than CLOCK_SKEW_MAX 5s"},
		{2 * time.Second, 200, ""},
		{-10 * time.Second, 503, "behind Redis's (TIME), more than CLOCK_SKEW_MAX 5s"},
		{-2 * time.Second, 200, ""},
	} {
		clock.Set(tc.offset)
		got, err := skew.Measure(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if (got - tc.offset).Abs() > time.Second {
			t.Errorf("offset %v: measured %v", tc.offset, got)
		}
		if code, detail := readyz(); code != tc.want || !strings.Contains(detail, tc.detail) || (tc.detail == "") != (detail == "") {
			t.Errorf("offset %v: /readyz %d %q, want %d %q", tc.offset, code, detail, tc.want, tc.detail)
		}
	}
}

// TestClockSkewRunMeasuresAtStart: Run measures at once, without waiting
// an interval.
func TestClockSkewRunMeasuresAtStart(t *testing.T) {
	measured := make(chan time.Time, 1)
	skew, err := ops.NewClockSkew(ops.SkewConfig{Interval: time.Hour,
		RedisTime: func(context.Context) (time.Time, error) {
			now := time.Now()
			select {
			case measured <- now:
			default:
			}
			return now, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { skew.Run(ctx); close(done) }()
	<-measured
	testutil.Eventually(t, 10*time.Second, "the first measurement recorded", func() bool { return skew.Err() == nil })
	cancel()
	<-done
}
