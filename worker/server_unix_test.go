//go:build unix

package worker_test

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/worker"
)

// Run, as asynq's: SIGTSTP stops taking new tasks (the queue keeps them),
// SIGTERM shuts every server down and returns.
func TestRunStopsOnTSTPAndEndsOnTERM(t *testing.T) {
	r := redistest.New(t)
	q := r.Queue(t)
	insp := asynq.NewInspector(r.Opt)
	t.Cleanup(func() { _ = insp.Close() })
	client := asynq.NewClient(r.Opt)
	t.Cleanup(func() { _ = client.Close() })
	h := newBlockingHandler()
	close(h.release)
	srv, err := worker.NewServer(worker.ServerConfig{Redis: r.Opt, Queue: q, Concurrency: 4, Fetchers: 2,
		TaskCheckInterval: 10 * time.Millisecond, Logger: zaptest.NewLogger(t)}, h)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- srv.Run() }()
	t.Cleanup(srv.Shutdown)
	// Run listens for signals before it starts the servers: once they beat,
	// a signal reaches Run, not the default action.
	testutil.Eventually(t, 10*time.Second, "both servers' heartbeats", func() bool { return len(serversOf(t, insp, q)) == 2 })
	if _, err := client.Enqueue(asynq.NewTask("test", nil), asynq.Queue(q), asynq.TaskID("before"), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitTask(t, insp, q, "before", 10*time.Second, func(i *asynq.TaskInfo) bool { return i.State == asynq.TaskStateCompleted })

	if err := syscall.Kill(os.Getpid(), syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "both servers stopped", func() bool {
		stopped := 0
		for _, s := range queueServers(t, insp, q) {
			if s.Status == "stopped" {
				stopped++
			}
		}
		return stopped == 2
	})
	if _, err := client.Enqueue(asynq.NewTask("test", nil), asynq.Queue(q), asynq.TaskID("after"), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after SIGTERM")
	}
	if info, err := insp.GetTaskInfo(q, "after"); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("a task enqueued after SIGTSTP: %+v, %v; want it still pending", info, err)
	}
	if n := len(serversOf(t, insp, q)); n != 0 {
		t.Errorf("%d servers still in Redis after Run returned", n)
	}
}
