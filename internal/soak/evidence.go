package soak

import (
	"context"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// evidence is what a run left in the independent witnesses: the sandbox's
// ledger and refund states, and asynq's tasks and their result records
// (through the Inspector), with the queue samples and the disruptions.
type evidence struct {
	Spec      runSpec
	Queue     string
	Initiated time.Time
	Refs      []string
	Ledger    []rpctest.Call
	Status    map[string]string // the sandbox's refund status by order
	Tasks     map[string]taskEvidence
	Samples   []sample
	Events    []event
	Start     time.Time // the replicas were started
	End       time.Time // every task finished, or the time limit
	TimedOut  bool
	Findings  []string // what happened beside the figures (a replica's crash)
	Logs      []string // the replicas' log files
}

// taskEvidence is one refund's task as asynq's Inspector shows it.
type taskEvidence struct {
	// State is the task's asynq state, "" if it could not be read (Err).
	State   asynq.TaskState
	Err     string
	LastErr string
	// Record is the task's result record (tasks.DecodeResult), nil if it
	// has none (RecordErr).
	Record    *tasks.Result
	RecordErr string
}

// Terminal reports whether the task is completed or archived.
func (t taskEvidence) Terminal() bool {
	return t.State == asynq.TaskStateCompleted || t.State == asynq.TaskStateArchived
}

// collect reads the evidence of a finished run.
func (rs *runState) collect(ctx context.Context, start time.Time, timedOut bool) (*evidence, error) {
	ev := &evidence{Spec: rs.spec, Queue: rs.queue, Initiated: rs.initiated, Refs: rs.refs, Ledger: rs.sb.Ledger(),
		Status: map[string]string{}, Samples: rs.smp.Samples(), Events: rs.events, Start: start, End: time.Now(),
		TimedOut: timedOut, Findings: rs.findings, Logs: rs.fleet.Logs()}
	for _, ref := range rs.refs {
		rf, ok := rs.sb.Refund(ref)
		if !ok {
			ev.Status[ref] = "NOT_SEEDED"
			continue
		}
		ev.Status[ref] = rf.Status
	}
	ev.Tasks = rs.readTasks(ctx)
	return ev, ctx.Err()
}

// readTasks reads every refund's task (8 readers at once).
func (rs *runState) readTasks(ctx context.Context) map[string]taskEvidence {
	out := make(map[string]taskEvidence, len(rs.refs))
	var mu sync.Mutex
	refs := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ref := range refs {
				te := readTask(rs.enq, ref, rs.initiated)
				mu.Lock()
				out[ref] = te
				mu.Unlock()
			}
		})
	}
	for _, ref := range rs.refs {
		if ctx.Err() != nil {
			break
		}
		refs <- ref
	}
	close(refs)
	wg.Wait()
	return out
}

func readTask(enq *tasks.Enqueuer, ref string, initiated time.Time) taskEvidence {
	info, err := enq.Status(ref, initiated)
	if err != nil {
		return taskEvidence{Err: err.Error()}
	}
	te := taskEvidence{State: info.State, LastErr: info.LastErr}
	if te.Record, err = tasks.DecodeResult(info.Result); err != nil {
		te.RecordErr = err.Error()
	}
	return te
}
