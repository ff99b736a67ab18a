package warmstack_test

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/testutil"
	"github.com/refundd/refund-canceller/internal/warmstack"
)

// goid answers the calling goroutine's number (tests only).
func goid() int {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	n, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return n
}

// deep uses about n KiB of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n <= 1 {
		return pad[0]
	}
	return deep(n-1) + pad[n%1024]
}

// Runs one after the other reuse a few goroutines (a run may come before
// the last one's goroutine is back waiting: then a second one starts).
func TestRunsOnWarmGoroutines(t *testing.T) {
	p := warmstack.New(time.Minute, nil)
	caller := goid()
	seen := map[int]bool{}
	for range 100 {
		var got int
		p.Run(func() { got = goid(); deep(32) })
		if got == caller {
			t.Fatal("ran on the caller's goroutine")
		}
		seen[got] = true
	}
	if len(seen) > 10 {
		t.Fatalf("100 runs one after the other on %d goroutines: they are not reused", len(seen))
	}
}

// A function that calls runtime.Goexit ends the caller's goroutine too
// (as it would have without the pool), and the pool goes on.
func TestGoexitEndsTheCaller(t *testing.T) {
	p := warmstack.New(time.Minute, nil)
	returned := make(chan bool)
	go func() {
		defer func() { returned <- false }()
		p.Run(runtime.Goexit)
		returned <- true
	}()
	if <-returned {
		t.Fatal("Run returned after its function called runtime.Goexit")
	}
	ran := false
	p.Run(func() { ran = true })
	if !ran {
		t.Fatal("no run after a Goexit")
	}
}

// A panic in onPanic does not take the process down.
func TestPanickyOnPanic(t *testing.T) {
	p := warmstack.New(time.Minute, func(any, []byte) { panic("in onPanic") })
	if got := panicOf(p, "boom"); got != "boom" {
		t.Fatalf("recovered %v, want boom", got)
	}
}

func TestConcurrentRuns(t *testing.T) {
	p := warmstack.New(time.Minute, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	sum := 0
	for i := range 64 {
		wg.Go(func() {
			for range 50 {
				p.Run(func() {
					deep(8)
					mu.Lock()
					sum += i
					mu.Unlock()
				})
			}
		})
	}
	wg.Wait()
	if want := 50 * 63 * 64 / 2; sum != want {
		t.Fatalf("sum %d, want %d: a run was lost or ran twice", sum, want)
	}
}

// panicOf runs a function that panics with v on p, and answers what the
// caller recovers.
func panicOf(p *warmstack.Pool, v any) (got any) {
	defer func() { got = recover() }()
	p.Run(func() { panic(v) })
	return nil
}

// A panic reaches the caller with its value (so asynq's recovery still
// makes it the task's error), and onPanic gets the stack where it happened.
func TestPanicReachesTheCaller(t *testing.T) {
	var stack []byte
	p := warmstack.New(time.Minute, func(v any, s []byte) { stack = s })
	if got := panicOf(p, "boom"); got != "boom" {
		t.Fatalf("recovered %v, want boom", got)
	}
	if !strings.Contains(string(stack), "warmstack_test.panicOf") { // where the panic happened
		t.Fatalf("stack does not show where it panicked:\n%s", stack)
	}
	// The pool still works after a panic.
	ran := false
	p.Run(func() { ran = true })
	if !ran {
		t.Fatal("no run after a panic")
	}
}

// Goroutines idle for longer than the idle time end.
func TestIdleGoroutinesEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	p := warmstack.New(20*time.Millisecond, nil)
	var wg, running sync.WaitGroup
	release := make(chan struct{})
	running.Add(10)
	for range 10 { // 10 at once: 10 of the pool's goroutines
		wg.Go(func() { p.Run(func() { running.Done(); <-release }) })
	}
	running.Wait()
	if n := runtime.NumGoroutine(); n < before+20 {
		t.Fatalf("%d goroutines while 10 run, %d before: want the 10 callers and 10 of the pool's", n, before)
	}
	close(release)
	wg.Wait()
	testutil.Eventually(t, 5*time.Second, "the idle goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// BenchmarkDeepWork is work that needs ~32 KiB of stack, started on a new
// goroutine per run (as asynq runs a task) or handed to a warm one.
//
//	go test ./internal/warmstack -run '^$' -bench DeepWork -benchmem
func BenchmarkDeepWork(b *testing.B) {
	b.Run("new-goroutine", func(b *testing.B) {
		for b.Loop() {
			done := make(chan struct{})
			go func() { deep(32); close(done) }()
			<-done
		}
	})
	b.Run("warm-goroutine", func(b *testing.B) {
		p := warmstack.New(time.Minute, nil)
		for b.Loop() {
			done := make(chan struct{})
			go func() { p.Run(func() { deep(32) }); close(done) }()
			<-done
		}
	})
}
