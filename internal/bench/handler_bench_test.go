package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/logging"
	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// BenchmarkHandler is one cancellation's work outside the queue, one at a
// time against the no-op server: refundd's handler (decode and validate,
// claim, 'sending' and the end's record in Redis (redistest: a redis-server of its own), client call, JSON log line, metrics, result JSON) beside the minimal
// pipeline's (read order_ref, one raw POST). Allocations include the
// server's side, which is the same for both.
//
//	go test ./internal/bench -run '^$' -bench Handler -benchmem
func BenchmarkHandler(b *testing.B) {
	s, err := newRPCServer()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rds := redistest.New(b) // the record's scripts: a real redis-server where there is one
	queue := rds.Queue(b)
	payload, _ := json.Marshal(tasks.CancelRefund{OrderRef: "B001-000001", RefundInitiatedAt: time.Now().UTC(), RequestedBy: "refundbench"})
	b.Run("refundd", func(b *testing.B) {
		m := metrics.New(nil)
		log, _ := logging.NewTo(io.Discard, "info", "json")
		api, err := rpcclient.New(rpcclient.Config{URL: s.URL, MerchantCode: merchantCode, SecretKey: secretKey, Observer: m})
		if err != nil {
			b.Fatal(err)
		}
		rc := rds.Client()
		defer rc.Close()
		recs := records.New(rc, queue, 0)
		h, err := worker.NewHandler(worker.HandlerConfig{API: api, Memory: recs, Logger: log, Observer: m})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		start := time.Now().UTC().Truncate(time.Second)
		ref := fmt.Sprint("B", start.UnixNano()/1e6%1e9) // each run its own refunds
		i := 0
		for b.Loop() {
			// A refund of its own each time: the record makes a second
			// delivery of one refund a re-announcement, not an attempt.
			i++
			p, _ := json.Marshal(tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: start.Add(-time.Duration(i) * time.Second), RequestedBy: "refundbench"})
			res, err := h.Deliver(context.Background(), worker.Delivery{Type: tasks.TypeCancelRefund, TaskID: fmt.Sprint(ref, "-", i), MaxRetry: tasks.DefaultMaxRetry, Payload: p})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(res); err != nil { // as ProcessTask copies it
				b.Fatal(err)
			}
		}
	})
	b.Run("minimal", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 15 * time.Second}
		b.ReportAllocs()
		for b.Loop() {
			var p struct {
				OrderRef string `json:"order_ref"`
			}
			if err := json.Unmarshal(payload, &p); err != nil {
				b.Fatal(err)
			}
			if _, err := rawPost(context.Background(), hc, s.URL, p.OrderRef); err != nil {
				b.Fatal(err)
			}
		}
	})
}
