package soak

import (
	"context"
	"sync"
	"time"

	"github.com/hibiken/asynq"
)

// sample is the queue as asynq's Inspector showed it at one moment.
type sample struct {
	At time.Time
	// OK is false when the Inspector could not answer (Redis restarting).
	OK bool
	// Pending: ready to run. Active: leased to a worker (a killed
	// worker's stay active until asynq's recoverer returns them).
	// Waiting: scheduled or retry. Finished: completed or archived.
	Pending, Active, Waiting, Finished int
}

// Unfinished answers the tasks not yet completed or archived.
func (s sample) Unfinished() int { return s.Pending + s.Active + s.Waiting }

// sampler reads the queue's info every interval until stopped.
type sampler struct {
	insp     *asynq.Inspector
	queue    string
	interval time.Duration

	mu      sync.Mutex
	samples []sample
}

func newSampler(insp *asynq.Inspector, queue string, interval time.Duration) *sampler {
	return &sampler{insp: insp, queue: queue, interval: interval}
}

// Run samples until ctx ends.
func (s *sampler) Run(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		s.take()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *sampler) take() {
	smp := sample{At: time.Now()}
	if qi, err := s.insp.GetQueueInfo(s.queue); err == nil {
		smp = sample{At: smp.At, OK: true, Pending: qi.Pending, Active: qi.Active,
			Waiting: qi.Scheduled + qi.Retry + qi.Aggregating, Finished: qi.Completed + qi.Archived}
	}
	s.mu.Lock()
	s.samples = append(s.samples, smp)
	s.mu.Unlock()
}

// Last answers the latest sample that the Inspector answered.
func (s *sampler) Last() (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.samples) - 1; i >= 0; i-- {
		if s.samples[i].OK {
			return s.samples[i], true
		}
	}
	return sample{}, false
}

// Samples answers every sample taken.
func (s *sampler) Samples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}
