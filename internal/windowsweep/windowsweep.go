// Package windowsweep holds the cancellation window for every task in
// refundd's queue, whatever options its producer set: a periodic sweep of
// the queue that hands back to the worker's handler the tasks asynq would
// otherwise keep from it or let end without the window's word.
//
// asynq alone lets a task slip past its window in three ways:
//
//   - An expired asynq.Deadline: the task never reaches the handler again
//     (asynq #751); it loops "context deadline exceeded" until its retries
//     are used up. The sweep replaces it by a copy without the deadline
//     (same ID, payload, queue, retention; the record of its earlier
//     attempts carried in the worker.PriorHeader header), which the handler
//     then runs — and, past the cut-off, archives with "window closed at …".
//   - A task scheduled, or waiting to retry, beyond its cut-off: the sweep
//     runs it now, so the handler archives it with the window as its reason
//     within a sweep interval of the cut-off.
//   - A task archived by asynq's retry counter (a producer's small
//     MaxRetry, timeouts, crash re-deliveries) with no final record from the
//     handler: the sweep runs it again once its next attempt is due. While
//     the window is open the handler retries it (uncounted, see
//     worker.Handler.IsFailure); once it is closed the handler archives it
//     with the window as its reason (after confirming with getOrder when an
//     attempt may have reached 2Checkout).
//
// The sweep never calls 2Checkout and never decides an outcome: the handler
// does. Tasks of other types and tasks being processed are left alone.
package windowsweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Config configures a Sweeper.
type Config struct {
	// Redis is the queue's Redis. Required.
	Redis asynq.RedisConnOpt
	// Queue to sweep. Default tasks.DefaultQueue.
	Queue string
	// Policy gives the cut-off; use the handler's. Zero fields take defaults.
	Policy worker.Policy
	// Interval between sweeps. Default 20s, so a task past its cut-off is
	// archived within a minute of it (an interval, plus the handler's run).
	Interval time.Duration
	// PageSize is how many tasks one listing reads. Default 500.
	PageSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs what the sweep does. Default zap.NewNop().
	Logger *zap.Logger
	// OnSweep, if set, is handed each sweep's report (metrics).
	OnSweep func(Report)
}

// Defaults of Config.
const (
	DefaultInterval = 20 * time.Second
	DefaultPageSize = 500
)

// Sweeper sweeps one queue. Run it with Run; Sweep makes one pass.
type Sweeper struct {
	cfg    Config
	policy worker.Policy
	insp   *asynq.Inspector
	client *asynq.Client
	log    *zap.Logger
}

// New validates cfg and connects a Sweeper. Close it when done.
func New(cfg Config) (*Sweeper, error) {
	if cfg.Redis == nil {
		return nil, errors.New("windowsweep: Config.Redis is required")
	}
	if cfg.Queue == "" {
		cfg.Queue = tasks.DefaultQueue
	}
	if cfg.Interval < 0 || cfg.PageSize < 0 {
		return nil, errors.New("windowsweep: Config.Interval and PageSize must not be negative")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	p, err := cfg.Policy.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("windowsweep: %w", err)
	}
	return &Sweeper{cfg: cfg, policy: p, insp: asynq.NewInspector(cfg.Redis), client: asynq.NewClient(cfg.Redis), log: cfg.Logger}, nil
}

// Close releases the Redis connections.
func (s *Sweeper) Close() error { return errors.Join(s.insp.Close(), s.client.Close()) }

// Report counts what one sweep did, and what it saw.
type Report struct {
	// Replaced: tasks with an expired deadline, re-enqueued without it.
	Replaced int
	// Run: tasks moved to pending so the handler runs them now.
	Run int
	// Backlog: the cancellations not finished (active, pending, scheduled
	// or waiting to retry) as the sweep found them.
	Backlog Backlog
}

// Backlog is what a sweep saw of the cancellations not finished.
type Backlog struct {
	Tasks int
	// Earliest is the soonest cut-off among them (zero when none); it may
	// have passed, for a task about to be archived.
	Earliest time.Time
	// AtRisk5m and AtRisk15m count those whose cut-off comes within 5 and
	// 15 minutes (or has passed).
	AtRisk5m, AtRisk15m int
}

// add counts a task with cut-off c, seen at now.
func (b *Backlog) add(c, now time.Time) {
	b.Tasks++
	if b.Earliest.IsZero() || c.Before(b.Earliest) {
		b.Earliest = c
	}
	if c.Before(now.Add(5 * time.Minute)) {
		b.AtRisk5m++
	}
	if c.Before(now.Add(15 * time.Minute)) {
		b.AtRisk15m++
	}
}

// Run sweeps every Interval until ctx ends. A failed sweep is logged and
// the next one tries again.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if r, err := s.Sweep(ctx); err != nil {
			s.log.Warn("window sweep failed; trying again next interval", zap.Error(err))
		} else {
			if r.Replaced+r.Run > 0 {
				s.log.Info("window sweep", zap.Int("replaced", r.Replaced), zap.Int("run", r.Run))
			}
			if s.cfg.OnSweep != nil {
				s.cfg.OnSweep(r)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep makes one pass over the queue's active, pending, scheduled, retry
// and archived tasks.
func (s *Sweeper) Sweep(ctx context.Context) (Report, error) {
	var r Report
	lists := []struct {
		state string
		list  func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}{
		{"active", s.insp.ListActiveTasks},
		{"pending", s.insp.ListPendingTasks},
		{"scheduled", s.insp.ListScheduledTasks},
		{"retry", s.insp.ListRetryTasks},
		{"archived", s.insp.ListArchivedTasks},
	}
	for _, l := range lists {
		infos, err := s.listAll(ctx, l.list)
		if err != nil {
			return r, fmt.Errorf("list %s tasks: %w", l.state, err)
		}
		now := s.cfg.Now()
		for _, info := range infos {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if info.State != asynq.TaskStateArchived && info.Type == tasks.TypeCancelRefund {
				if p, err := tasks.Decode(info.Payload); err == nil {
					r.Backlog.add(s.policy.Cutoff(p.RefundInitiatedAt), now)
				}
			}
			switch s.decide(info) {
			case actReplace:
				if err := s.replace(info); err != nil {
					s.log.Error("could not replace a task with an expired deadline", zap.String("task_id", info.ID), zap.Error(err))
					continue
				}
				r.Replaced++
			case actRun:
				if err := s.insp.RunTask(info.Queue, info.ID); err != nil {
					if !errors.Is(err, asynq.ErrTaskNotFound) { // it moved on meanwhile
						s.log.Warn("could not run a task", zap.String("task_id", info.ID), zap.Error(err))
					}
					continue
				}
				r.Run++
				s.log.Info("task handed back to the worker", zap.String("task_id", info.ID), zap.String("was", info.State.String()))
			}
		}
	}
	return r, nil
}

func (s *Sweeper) listAll(ctx context.Context, list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)) ([]*asynq.TaskInfo, error) {
	var all []*asynq.TaskInfo
	for page := 1; ; page++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		infos, err := list(s.cfg.Queue, asynq.PageSize(s.cfg.PageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		all = append(all, infos...)
		if len(infos) < s.cfg.PageSize {
			return all, nil
		}
	}
}

type action int

const (
	actNone action = iota
	actReplace
	actRun
)

// decide answers what the sweep does with one task.
func (s *Sweeper) decide(info *asynq.TaskInfo) action {
	if info.Type != tasks.TypeCancelRefund {
		return actNone
	}
	now := s.cfg.Now()
	deadlineExpired := !info.Deadline.IsZero() && !now.Before(info.Deadline)
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry:
		if deadlineExpired {
			return actReplace
		}
		if info.State == asynq.TaskStatePending {
			return actNone // the workers take it next
		}
		p, err := tasks.Decode(info.Payload)
		if err != nil || (!now.Before(s.policy.Cutoff(p.RefundInitiatedAt)) && info.NextProcessAt.After(now)) {
			return actRun // the handler archives it: invalid, or past its cut-off
		}
	case asynq.TaskStateArchived:
		if info.Retried < info.MaxRetry {
			return actNone // archived by the handler (or an operator)
		}
		var res worker.Result
		if len(info.Result) > 0 && json.Unmarshal(info.Result, &res) == nil && (res.Final() || res.NextAttemptAt.After(now)) {
			return actNone // final, or its next attempt is not due yet
		}
		if deadlineExpired {
			return actReplace
		}
		return actRun
	}
	return actNone
}

// replace re-enqueues the task without its deadline: same ID, payload,
// queue, retention, MaxRetry and timeout, the record of earlier attempts in
// the worker.PriorHeader header. The delete comes first (task IDs are
// unique); if the enqueue then fails, the task's payload is logged so
// nothing is lost silently.
func (s *Sweeper) replace(info *asynq.TaskInfo) error {
	headers := make(map[string]string, len(info.Headers)+1)
	for k, v := range info.Headers {
		headers[k] = v
	}
	if prior := priorRecord(info); prior != nil {
		b, _ := json.Marshal(prior)
		headers[worker.PriorHeader] = string(b)
	}
	timeout := info.Timeout
	if timeout <= 0 {
		timeout = tasks.DefaultTimeout
	}
	task := asynq.NewTaskWithHeaders(info.Type, info.Payload, headers,
		asynq.TaskID(info.ID), asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry), asynq.Timeout(timeout), asynq.Retention(info.Retention))
	if err := s.insp.DeleteTask(info.Queue, info.ID); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	var err error
	for try := 0; try < 3; try++ {
		if _, err = s.client.Enqueue(task); err == nil || errors.Is(err, asynq.ErrTaskIDConflict) {
			s.log.Info("task with an expired deadline re-enqueued without it", zap.String("task_id", info.ID), zap.Time("deadline", info.Deadline))
			return nil
		}
	}
	s.log.Error("task deleted but not re-enqueued: enqueue it again by hand", zap.String("task_id", info.ID),
		zap.ByteString("payload", info.Payload), zap.Error(err))
	return fmt.Errorf("re-enqueue: %w", err)
}

// priorRecord answers the record the copy carries: the task's own record,
// and, when retries happened that left none, the note that an attempt may
// have reached 2Checkout (the handler then settles the outcome with getOrder).
func priorRecord(info *asynq.TaskInfo) *worker.Result {
	var r worker.Result
	has := len(info.Result) > 0 && json.Unmarshal(info.Result, &r) == nil && !r.Final()
	if !has && info.Retried == 0 {
		return nil
	}
	if !has {
		r = worker.Result{Outcome: worker.OutcomeRetry}
	}
	if r.MaybeApplied == "" && info.Retried > r.Retried+1 || (!has && info.Retried > 0) {
		r.MaybeApplied = "earlier attempts ended without a record (a crash, a timeout, or an expired deadline; last error: " + info.LastErr + ")"
	}
	return &r
}
