package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/logging"
	"github.com/refundd/refund-canceller/internal/metrics"
	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// BenchmarkHandler is one cancellation's work outside the queue, one at a
// time against the no-op server: refundd's handler (decode and validate,
// client call, JSON log line, metrics, result JSON) beside the minimal
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
	payload, _ := json.Marshal(tasks.CancelRefund{OrderRef: "B001-000001", RefundInitiatedAt: time.Now().UTC(), RequestedBy: "refundbench"})
	b.Run("refundd", func(b *testing.B) {
		m := metrics.New(nil)
		log, _ := logging.NewTo(io.Discard, "info", "json")
		api, err := rpcclient.New(rpcclient.Config{URL: s.URL, MerchantCode: merchantCode, SecretKey: secretKey, Observer: m})
		if err != nil {
			b.Fatal(err)
		}
		h, err := worker.NewHandler(worker.HandlerConfig{API: api, Logger: log, Observer: m})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			res, err := h.Handle(context.Background(), worker.Attempt{TaskID: "refund:cancel:B001-000001", Payload: payload})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tasks.EncodeResult(res); err != nil { // as ProcessTask writes it
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
