package soak

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// fleet supervises the replicas of one run: it starts them, SIGKILLs one
// and starts its replacement at once (as systemd or Kubernetes would), and
// stops them all at the end.
type fleet struct {
	bin, dir, run string
	env           []string

	mu       sync.Mutex
	replicas []*replica
	started  int      // processes started, for names and log files
	logs     []string // every replica's log file
}

// replicaEnv answers a replica's environment: the soak's own (PATH, HOME)
// with settings over it.
func replicaEnv(settings map[string]string) []string {
	env := slices.Clone(os.Environ())
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		env = append(env, k+"="+settings[k]) // the last value wins
	}
	return env
}

func newFleet(bin, dir, run string, settings map[string]string) *fleet {
	return &fleet{bin: bin, dir: dir, run: run, env: replicaEnv(settings)}
}

// Start starts n replicas.
func (f *fleet) Start(n int) error {
	for range n {
		r, err := f.spawn()
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.replicas = append(f.replicas, r)
		f.mu.Unlock()
	}
	return nil
}

func (f *fleet) spawn() (*replica, error) {
	f.mu.Lock()
	f.started++
	name := fmt.Sprintf("%s-%d", f.run, f.started)
	f.mu.Unlock()
	log := filepath.Join(f.dir, "refundd-"+name+".log")
	r, err := startReplica(name, f.bin, f.env, log)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.logs = append(f.logs, log)
	f.mu.Unlock()
	return r, nil
}

// KillAndReplace SIGKILLs replica i (mod the fleet's size) and starts its
// replacement; it answers the killed replica's name.
func (f *fleet) KillAndReplace(i int) (string, error) {
	f.mu.Lock()
	if len(f.replicas) == 0 {
		f.mu.Unlock()
		return "", errors.New("no replica to kill")
	}
	i %= len(f.replicas)
	victim := f.replicas[i]
	f.mu.Unlock()
	victim.Kill()
	r, err := f.spawn()
	if err != nil {
		return victim.name, fmt.Errorf("replace %s: %w", victim.name, err)
	}
	f.mu.Lock()
	f.replicas[i] = r
	f.mu.Unlock()
	return victim.name, nil
}

// ExitedIndexes answers the replicas that ended on their own (a crash the
// soak did not cause).
func (f *fleet) ExitedIndexes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, r := range f.replicas {
		if r.Exited() {
			out = append(out, i)
		}
	}
	return out
}

// Stop stops every replica (SIGTERM, SIGKILL after 15 s).
func (f *fleet) Stop() error {
	f.mu.Lock()
	rs := f.replicas
	f.replicas = nil
	f.mu.Unlock()
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { errs[i] = r.Stop(15 * time.Second) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Logs answers every replica's log file.
func (f *fleet) Logs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logs)
}
