package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
)

func TestZZCycle(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	b := &bench{opts: Options{}.withDefaults()}
	defer b.close()
	if err := b.setup(); err != nil {
		t.Fatal(err)
	}
	b.rpc.SetLatency(100 * time.Millisecond)
	var mu sync.Mutex
	var handler, post []time.Duration
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}, Timeout: 15 * time.Second}
	q, _ := b.queue()
	srv := asynq.NewServer(b.redis.Opt, asynq.Config{Concurrency: 200, Queues: map[string]int{q: 1}, Logger: zap.NewNop().Sugar(), LogLevel: asynq.ErrorLevel})
	_ = srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		t0 := time.Now()
		var p struct {
			OrderRef string `json:"order_ref"`
		}
		_ = json.Unmarshal(task.Payload(), &p)
		t1 := time.Now()
		res, err := rawPost(ctx, hc, b.rpc.URL, p.OrderRef)
		t2 := time.Now()
		if err != nil {
			return err
		}
		_, err = task.ResultWriter().Write(res)
		mu.Lock()
		handler = append(handler, time.Since(t0))
		post = append(post, t2.Sub(t1))
		mu.Unlock()
		return err
	}))
	defer srv.Shutdown()
	for range 3 {
		mu.Lock()
		handler, post = nil, nil
		mu.Unlock()
		res, err := b.timedRound(context.Background(), q, 12000)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		sort.Slice(handler, func(i, j int) bool { return handler[i] < handler[j] })
		sort.Slice(post, func(i, j int) bool { return post[i] < post[j] })
		var sum time.Duration
		for _, h := range handler {
			sum += h
		}
		t.Logf("rate %.0f/s → cycle per slot %v; handler mean %v p50 %v p99 %v; post p50 %v p99 %v",
			res.rate, time.Duration(200/res.rate*float64(time.Second)), sum/time.Duration(len(handler)), handler[len(handler)/2], handler[len(handler)*99/100], post[len(post)/2], post[len(post)*99/100])
		mu.Unlock()
	}
}
