package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/refundd/refund-canceller/internal/logging"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// With LOG_FORMAT=json, what go-redis and asynq's metrics collector log on
// their own during a Redis outage arrives as JSON lines of the logger.
func TestRouteGlobalJSON(t *testing.T) {
	var buf syncBuffer
	log, err := logging.NewTo(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	logging.RouteGlobal(log)
	t.Cleanup(func() { logging.RouteGlobal(zap.NewNop()) })

	addr := closedAddr(t)
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	_ = rc.Ping(context.Background()).Err()
	_ = rc.Close()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: addr})
	defer insp.Close()
	ch := make(chan prometheus.Metric, 100)
	asynqmetrics.NewQueueMetricsCollector(insp).Collect(ch)

	testutil.Eventually(t, 10*time.Second, "both libraries' lines", func() bool {
		s := buf.String()
		return strings.Contains(s, "failed to dial") && strings.Contains(s, "Failed to collect metrics data")
	})
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if m["level"] != "warn" || (m["logger"] != "redis" && m["logger"] != "stdlog") {
			t.Errorf("line %q", line)
		}
	}
}

func TestForAsynqLowersRetryExhausted(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := logging.ForAsynq(zap.New(core)).With(zap.String("component", "asynq")).Sugar()
	s.Warnf("Retry exhausted for task id=%s", "refund:cancel:A1")
	s.Warnf("Could not remove task id=%s", "x")
	if logs.Len() != 1 || logs.All()[0].Message != "Could not remove task id=x" {
		t.Fatalf("%v", logs.All())
	}
	core, logs = observer.New(zapcore.DebugLevel)
	logging.ForAsynq(zap.New(core)).Sugar().Warnf("Retry exhausted for task id=%s", "refund:cancel:A1")
	if logs.Len() != 1 || logs.All()[0].Level != zapcore.DebugLevel {
		t.Fatalf("%v", logs.All())
	}
}

// refusingAPI is 2Checkout refusing every cancellation for good.
type refusingAPI struct{}

func (refusingAPI) CancelRefund(context.Context, string, func(context.Context) error) (string, error) {
	return "", &rpcclient.APIError{Method: "cancelRefund", Code: 400, Name: "ORDER_NOT_FOUND", Message: "no such order", HTTPStatus: 200}
}
func (refusingAPI) GetOrder(context.Context, string) (*rpcclient.Order, error) {
	return nil, &rpcclient.APIError{Method: "getOrder", Code: 400, Name: "ORDER_NOT_FOUND", Message: "no such order", HTTPStatus: 200}
}

// A permanent refusal is logged once, as the refusal: asynq's own "Retry
// exhausted" warning does not follow it. The task's state is judged by
// asynq's Inspector.
func TestPermanentRefusalLoggedOnce(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	rc := r.Client()
	defer rc.Close()
	h, err := worker.NewHandler(worker.HandlerConfig{API: refusingAPI{}, Memory: records.New(rc, q, 0), Logger: log.Named("worker")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Logger: logging.ForAsynq(log)}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: r.Opt, Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer enq.Close()
	info, err := enq.Enqueue(context.Background(), tasks.CancelRefund{OrderRef: "P1", RefundInitiatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	testutil.Eventually(t, 15*time.Second, "the task to be archived", func() bool {
		ti, err := insp.GetTaskInfo(q, info.ID)
		return err == nil && ti.State == asynq.TaskStateArchived
	})
	var warnings []string
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if len(warnings) != 1 || warnings[0] != "refund cancellation archived" {
		t.Fatalf("warnings %q, want the refusal once", warnings)
	}
}
