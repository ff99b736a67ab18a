package worker

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/refundd/refund-canceller/tasks"
)

// fakeMemory is Memory in a map, with the semantics of internal/records'
// scripts (claim, fence, final is final), for the handler's unit tests;
// the model-based test runs the real store.
type fakeMemory struct {
	mu      sync.Mutex
	refunds map[string]*fakeEntry
}

type fakeEntry struct {
	owner, token, delivery string
	record                 []byte
	final                  bool
	run, announced         int
}

func newFakeMemory() *fakeMemory {
	return &fakeMemory{refunds: map[string]*fakeEntry{}}
}

func key(p tasks.CancelRefund) string { return p.TaskID() }

func (m *fakeMemory) Claim(_ context.Context, p tasks.CancelRefund, taskID, token string) (Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.refunds[key(p)]
	if e == nil {
		e = &fakeEntry{owner: taskID, run: 1}
		m.refunds[key(p)] = e
	}
	if e.owner != taskID {
		return Claim{Owner: e.owner}, nil
	}
	if !e.final {
		e.token, e.delivery = token, DeliveryRunning
	}
	c := Claim{Owner: taskID, Token: token, Run: e.run, Announced: e.final && e.announced == e.run}
	if e.record != nil {
		c.Record = &tasks.Result{}
		_ = json.Unmarshal(e.record, c.Record)
	}
	return c, nil
}

func (m *fakeMemory) Write(_ context.Context, c Claim, r *tasks.Result, delivery string, announced bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.refunds[key(r.Refund())]
	if e == nil || e.token != c.Token || e.final {
		return ErrFenced
	}
	e.record, _ = json.Marshal(r)
	e.delivery = delivery
	if r.Final() {
		e.final = true
		if announced {
			e.announced = e.run
		}
	}
	return nil
}

func (m *fakeMemory) Announced(_ context.Context, r *tasks.Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.refunds[key(r.Refund())]; e != nil && e.final && e.run == r.Run {
		e.announced = r.Run
	}
	return nil
}

// record answers the refund's record as the memory holds it.
func (m *fakeMemory) record(p tasks.CancelRefund) *tasks.Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.refunds[key(p)]
	if e == nil || e.record == nil {
		return nil
	}
	var r tasks.Result
	_ = json.Unmarshal(e.record, &r)
	return &r
}

// seed sets the refund's record as if taskID's earlier delivery wrote it.
func (m *fakeMemory) seed(p tasks.CancelRefund, taskID string, r *tasks.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _ := json.Marshal(r)
	m.refunds[key(p)] = &fakeEntry{owner: taskID, run: max(r.Run, 1), record: b, final: r.Final(), delivery: DeliveryDone}
}
