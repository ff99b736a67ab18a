// Package warmstack runs functions on long-lived goroutines whose stacks
// have already grown to what the functions need.
//
// asynq starts a goroutine per task, and a new goroutine gets the
// runtime's smallest stack (8 KiB). A handler that goes deeper — an HTTP
// round trip, a JSON log line — makes the runtime copy its stack as it
// grows, on every task: in refundbench that was about a tenth of a
// cancellation's CPU. A Pool hands the work to a goroutine that ran such
// work before (its stack is still grown) at the price of two channel
// operations. Goroutines idle for longer than the Pool's idle time end.
package warmstack

import (
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// DefaultIdle is how long an idle goroutine of a Pool waits for work
// before it ends, when New is given 0.
const DefaultIdle = 30 * time.Second

// Pool runs functions on warm goroutines. The zero value is not usable;
// make one with New. It is safe for concurrent use.
type Pool struct {
	work    chan *call
	idle    time.Duration
	onPanic func(value any, stack []byte)
}

type call struct {
	fn       func()
	done     chan struct{} // one value per call: the call is reused
	returned bool          // fn returned (neither panicked nor called runtime.Goexit)
	panicked bool
	value    any
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// New returns a Pool whose goroutines end after idle without work
// (DefaultIdle if 0). onPanic, if not nil, is told of a panic in a
// function, with the stack where it happened, before Run re-raises it.
func New(idle time.Duration, onPanic func(value any, stack []byte)) *Pool {
	if idle <= 0 {
		idle = DefaultIdle
	}
	return &Pool{work: make(chan *call), idle: idle, onPanic: onPanic}
}

// Run calls fn on a warm goroutine (a new one if none is idle) and returns
// when fn has returned. If fn panics, Run panics with the same value in
// the caller's goroutine, as if fn had run there (so asynq's recovery
// still turns it into the task's error; the panic's site, for asynq, is
// Run: onPanic has the stack where it happened). If fn calls
// runtime.Goexit, Run does too.
func (p *Pool) Run(fn func()) {
	c := calls.Get().(*call)
	c.fn = fn
	select {
	case p.work <- c:
	default:
		go p.serve(c)
	}
	<-c.done
	returned, panicked, value := c.returned, c.panicked, c.value
	*c = call{done: c.done}
	calls.Put(c)
	switch {
	case panicked:
		panic(value)
	case !returned:
		runtime.Goexit()
	}
}

// serve runs c, then whatever work comes, until idle without any.
func (p *Pool) serve(c *call) {
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		p.call(c)
		idle.Reset(p.idle)
		select {
		case c = <-p.work:
		case <-idle.C:
			return
		}
	}
}

func (p *Pool) call(c *call) {
	defer func() { c.done <- struct{}{} }() // last, whatever happens before
	defer func() {
		if v := recover(); v != nil {
			c.panicked, c.value = true, v
			p.tell(v, debug.Stack())
		}
	}()
	c.fn()
	c.returned = true
}

// tell calls onPanic, if any; a panic in it is dropped, not the process.
func (p *Pool) tell(v any, stack []byte) {
	if p.onPanic == nil {
		return
	}
	defer func() { _ = recover() }()
	p.onPanic(v, stack)
}
