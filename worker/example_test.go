package worker_test

import (
	"fmt"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/rpcclient"
	"github.com/refundd/refund-canceller/worker"
)

// A worker process: a 2Checkout client, the handler that uses it, and the
// asynq server that runs that handler (and only it) until SIGTERM.
func ExampleNewServer() {
	log := zap.NewExample()
	api, err := rpcclient.New(rpcclient.Config{MerchantCode: "YOUR_CODE", SecretKey: "YOUR_SECRET_KEY", Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err := worker.NewHandler(worker.HandlerConfig{API: api, Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := worker.NewServer(worker.ServerConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}, Logger: log}, h)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Run(); err != nil { // Start and Shutdown where the caller owns the lifetime
		fmt.Println(err)
	}
}
