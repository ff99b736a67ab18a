// Package soak is the soak of issue 23 with real processes: a redis-server
// of its own (append-only file on, restarted mid-run), refundd replicas
// built from cmd/refundd and run as child processes (SIGKILLed and
// replaced mid-run, as a supervisor would), and the sandbox 2Checkout
// in-process, which outlives them all and is, with asynq's Inspector, the
// only evidence the soak judges from: never the replicas' logs.
//
// One concern per file: redis.go runs the Redis, replica.go builds and
// runs refundd processes (procattr_*.go: they die with the soak), fleet.go
// supervises them, scenario.go defines the scenarios, run.go drives one
// run (seed, enqueue, kill, restart, wait), sampler.go samples the queue
// every second, evidence.go collects what the sandbox and the Inspector
// show, judge.go turns evidence into figures (pure functions), report.go
// prints them beside their targets, soak.go ties it together for
// cmd/refundsoak.
package soak
