package worker

import (
	"errors"
	"sync"

	"github.com/hibiken/asynq"
)

// Servers is one process's share of the queue: several asynq servers, each
// made by NewServer with a part of ServerConfig.Concurrency. An asynq server
// takes tasks from Redis one at a time (one round trip each), which caps
// what it can start per second whatever its concurrency; Servers take tasks
// side by side. Each is what another replica would be — same queue, same
// handler, same retry delays, its own lease keeping and recovery — so every
// guarantee that holds across replicas holds here.
type Servers struct {
	srvs []*asynq.Server
}

// NewServers builds cfg.Dequeuers servers (default DequeuersFor(cfg.Concurrency))
// sharing cfg.Concurrency. cfg is validated by NewServer.
func NewServers(cfg ServerConfig, h *Handler) (*Servers, error) {
	conc := cfg.Concurrency
	if conc == 0 {
		conc = DefaultConcurrency
	}
	n := cfg.Dequeuers
	if n < 0 {
		return nil, errors.New("worker: ServerConfig.Dequeuers must not be negative")
	}
	if n == 0 {
		n = DequeuersFor(conc)
	}
	n = max(min(n, conc), 1)
	s := &Servers{}
	for i := range n {
		c := cfg
		if conc > 0 {
			c.Concurrency = conc / n
			if i < conc%n {
				c.Concurrency++
			}
		}
		srv, err := NewServer(c, h)
		if err != nil {
			return nil, err
		}
		s.srvs = append(s.srvs, srv)
	}
	return s, nil
}

// DequeuersFor answers the default number of asynq servers for a
// concurrency: one per ConcurrencyPerDequeuer tasks at once, at least one.
func DequeuersFor(concurrency int) int {
	return max((concurrency+ConcurrencyPerDequeuer-1)/ConcurrencyPerDequeuer, 1)
}

// Len answers how many asynq servers there are.
func (s *Servers) Len() int { return len(s.srvs) }

// Start starts every server with handler. If one fails to start, those
// already started are shut down.
func (s *Servers) Start(handler asynq.Handler) error {
	for i, srv := range s.srvs {
		if err := srv.Start(handler); err != nil {
			shutdown(s.srvs[:i])
			return err
		}
	}
	return nil
}

// Shutdown stops every server at once: each stops taking tasks, gives its
// running ones ShutdownTimeout to finish, and puts the rest back to
// pending. It returns when all have stopped, so within one ShutdownTimeout.
func (s *Servers) Shutdown() { shutdown(s.srvs) }

func shutdown(srvs []*asynq.Server) {
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}
