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
//     (same ID, payload, queue, retention), which the handler then runs —
//     and, past the cut-off, archives with "window closed at …". The
//     refund's record (internal/records) is not the task's: the copy finds
//     it as the original left it.
//   - A task scheduled, or waiting to retry, beyond its cut-off: the sweep
//     runs it now, so the handler archives it with the window as its reason
//     within a sweep interval of the cut-off.
//   - A task asynq archived on its own — its retry counter used up (a
//     producer's small MaxRetry, timeouts, crash re-deliveries) — with no
//     final record, or with a final record not yet announced: the sweep runs
//     it again once its next attempt is due. The refund's record tells such
//     a task from one the handler archived (final) or an operator archived
//     (the record says the handler ended its delivery and did not park it):
//     those are never run.
//
// Every move is one script that checks the task is still where it was
// judged (records.Store.Run): a task that moved meanwhile — finished, or
// archived or deleted by an operator — is left where it is.
//
// The sweep never calls 2Checkout and never decides an outcome: the handler
// does. Tasks of other types and tasks being processed are left alone.
//
// Replicas share the work through Redis (see Tick): one replica sweeps, at
// its own interval, and another takes over when it stops, stalls or runs a
// longer interval than the taker's; the others read the backlog it
// published, so every replica's metrics show the queue's figure for the
// cost of one sweep per interval, not one per replica. A sweep reads the
// queue a page at a time and keeps only the IDs of the tasks it will act
// on. The fleet's keys for a queue are
// refundd:windowsweep:{<queue>}:lease (a hash: the sweeping replica, and
// the Redis time of its last sign of life) and
// refundd:windowsweep:{<queue>}:backlog (the last sweep's Backlog and end
// time as JSON, kept a day).
package windowsweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/records"
	"github.com/refundd/refund-canceller/internal/redisconn"
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
	// Interval between this replica's ticks (see Tick): the sweeping
	// replica sweeps at every tick, and this one takes over when the
	// sweeper has shown no sign of life for nine tenths of this Interval.
	// Default 20s, so a task past its cut-off is archived within a minute of
	// it (an interval, plus the handler's run). Give every replica the same.
	Interval time.Duration
	// PageSize is how many tasks one listing reads. Default 500.
	PageSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs what the sweep does. Default zap.NewNop().
	Logger *zap.Logger
	// OnSweep, if set, is handed each interval's report (metrics): this
	// replica's sweep, or the backlog another replica's sweep published.
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
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	client *asynq.Client
	recs   *records.Store
	log    *zap.Logger
	// The fleet's keys for this queue: the lease, and the last backlog.
	leaseKey, backlogKey string
	owner                string // this Sweeper's value in the lease
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
	rdb := redisconn.NewClient(cfg.Redis)
	keys := Keys(cfg.Queue)
	return &Sweeper{cfg: cfg, policy: p, rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb), client: asynq.NewClientFromRedisClient(rdb),
		recs: records.New(rdb, cfg.Queue, 0), log: cfg.Logger, leaseKey: keys[0], backlogKey: keys[1], owner: newOwner()}, nil
}

// Keys answers the Redis keys the fleet's sweepers of queue share: the
// lease and the published backlog (one hash tag: one Redis Cluster slot).
func Keys(queue string) []string {
	prefix := "refundd:windowsweep:{" + queue + "}:"
	return []string{prefix + "lease", prefix + "backlog"}
}

// Close releases the Redis connection.
func (s *Sweeper) Close() error { return s.rdb.Close() }

// Report counts what one sweep did, and what it saw.
type Report struct {
	// Shared: another replica sweeps; Backlog and SweptAt are what its
	// last sweep published, and this replica changed nothing.
	Shared bool
	// SweptAt is when the sweep that saw Backlog ended (by the sweeping
	// replica's clock).
	SweptAt time.Time
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
	Tasks int `json:"tasks"`
	// Earliest is the soonest cut-off among them (zero when none); it may
	// have passed, for a task about to be archived.
	Earliest time.Time `json:"earliest"`
	// AtRisk5m and AtRisk15m count those whose cut-off comes within 5 and
	// 15 minutes (or has passed) of the sweep.
	AtRisk5m  int `json:"at_risk_5m"`
	AtRisk15m int `json:"at_risk_15m"`
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

// Run calls Tick every Interval until ctx ends. A failed sweep is logged
// and the next interval tries again.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if r, err := s.Tick(ctx); errors.Is(err, ErrNotPublished) {
			s.log.Debug("another replica is sweeping", zap.Error(err))
		} else if err != nil {
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
			s.release(ctx) // a rolling restart hands the sweep over at once
			return
		case <-t.C:
		}
	}
}

// claimScript takes the fleet's sweep for this replica (ARGV[1]) and
// answers 1, when this replica swept last, or when nobody has swept or
// been sweeping in the last ARGV[2] ms (by Redis's clock, so replicas'
// clocks need not agree); else 0. The lease is a hash: owner, and at (the
// Redis time of its last sign of life), kept ARGV[3] ms.
//
// A last sign of life in Redis's future (its clock went back, as after a
// failover to a primary whose clock lags) counts as stale, so the fleet
// never waits on it. redis.replicate_commands lets Redis 4 write after
// TIME (Redis 5 and later do anyway).
var claimScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = redis.call("HMGET", KEYS[1], "owner", "at")
local at = tonumber(lease[2])
if lease[1] == ARGV[1] or not at or now < at or now - at >= tonumber(ARGV[2]) then
	redis.call("HSET", KEYS[1], "owner", ARGV[1], "at", now)
	redis.call("PEXPIRE", KEYS[1], ARGV[3])
	return 1
end
return 0`)

// releaseScript gives the lease up if this replica (ARGV[1]) holds it.
var releaseScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "owner") == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// release gives the lease up if this replica holds it: the next replica to
// tick sweeps. It has a context of its own, as ctx may be what ended.
func (s *Sweeper) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := releaseScript.Run(rctx, s.rdb, []string{s.leaseKey}, s.owner).Err(); err != nil {
		s.log.Warn("could not give the window sweep's lease up; another replica takes over when it is stale", zap.Error(err))
	}
}

// claim takes, or renews, the fleet's sweep for this replica.
func (s *Sweeper) claim(ctx context.Context) (bool, error) {
	gap := s.cfg.Interval * 9 / 10
	return claimScript.Run(ctx, s.rdb, []string{s.leaseKey}, s.owner, gap.Milliseconds(), (3 * s.cfg.Interval).Milliseconds()).Bool()
}

// Tick is one interval's share of the fleet's work. This replica sweeps,
// and publishes the backlog it saw, when it swept last or when no replica
// has swept (or been sweeping) for nine tenths of this replica's Interval:
// the replica that sweeps keeps sweeping at its own pace, and another takes
// over if it dies, stalls, or runs a longer Interval. Otherwise Tick
// answers the backlog the last sweep published (Report.Shared), with no
// sweep.
//
// The lease is not a lock: sweeps may overlap at a hand-over, which costs
// work and little else, as each act re-reads its task first (the race
// left is replace's: see there). A sweep renews the
// lease at every page, every 100 acts and at its end; a failed one, and Run
// when its context ends, give it up, so the next replica to tick sweeps.
func (s *Sweeper) Tick(ctx context.Context) (Report, error) {
	mine, err := s.claim(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("lease: %w", err)
	}
	if !mine {
		return s.published(ctx)
	}
	alive := func() { _, _ = s.claim(ctx) } // a failed renewal: at worst another replica sweeps too
	r, err := s.sweep(ctx, alive)
	if err != nil {
		s.release(ctx)
		return r, err
	}
	alive()
	b, _ := json.Marshal(published{Backlog: r.Backlog, SweptAt: r.SweptAt}) // numbers and times: cannot fail
	if err := s.rdb.Set(ctx, s.backlogKey, b, 24*time.Hour).Err(); err != nil {
		s.log.Warn("could not publish the backlog to the other replicas", zap.Error(err))
	}
	return r, nil
}

// published is the backlog a sweep leaves for the other replicas.
type published struct {
	Backlog
	SweptAt time.Time `json:"swept_at"`
}

// ErrNotPublished is Tick's answer when another replica holds the lease
// but no sweep has published a backlog yet (the fleet's first sweep is
// under way): nothing to report, and the next interval tells.
var ErrNotPublished = errors.New("windowsweep: another replica is sweeping; no backlog published yet")

// published answers the backlog the last sweep of the fleet published.
func (s *Sweeper) published(ctx context.Context) (Report, error) {
	r := Report{Shared: true}
	b, err := s.rdb.Get(ctx, s.backlogKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return r, ErrNotPublished
	}
	if err != nil {
		return r, fmt.Errorf("read the published backlog: %w", err)
	}
	var p published
	if err := json.Unmarshal(b, &p); err != nil {
		return r, fmt.Errorf("the published backlog %s: %w", s.backlogKey, err)
	}
	r.Backlog, r.SweptAt = p.Backlog, p.SweptAt
	return r, nil
}

// newOwner names this Sweeper in the lease (for an operator reading Redis).
func newOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())
}

// Sweep makes one pass over the queue's active, pending, scheduled, retry
// and archived tasks, whatever the other replicas do (Run calls it through
// Tick). Each state is listed whole before any of its tasks is acted on,
// so that the acts do not shift the pages still to read; a task is read
// again just before its act, and left alone if it no longer calls for it.
func (s *Sweeper) Sweep(ctx context.Context) (Report, error) { return s.sweep(ctx, func() {}) }

// sweep is Sweep, calling alive after each page it reads and every 100
// acts.
func (s *Sweeper) sweep(ctx context.Context, alive func()) (Report, error) {
	var r Report
	type taskList struct {
		state string
		list  func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	}
	lists := []taskList{
		{"active", s.insp.ListActiveTasks},
		{"pending", s.insp.ListPendingTasks},
		{"scheduled", s.insp.ListScheduledTasks},
		{"retry", s.insp.ListRetryTasks},
		{"archived", s.insp.ListArchivedTasks},
	}
	// A raw producer's asynq.Group puts a task in its group's
	// "aggregating" set, which refundd (no group aggregator) never hands
	// to a worker: each is replaced without its group (decide).
	groups, err := s.insp.Groups(s.cfg.Queue)
	if err != nil {
		return r, fmt.Errorf("list groups: %w", err)
	}
	for _, g := range groups {
		lists = append(lists, taskList{"aggregating (group " + g.Group + ")", func(q string, o ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
			return s.insp.ListAggregatingTasks(q, g.Group, o...)
		}})
	}
	for _, l := range lists {
		var acts []string // the IDs of the tasks to act on, not the pages
		var judgeErr error
		err := s.eachPage(ctx, l.list, func(infos []*asynq.TaskInfo) {
			alive()
			now := s.cfg.Now()
			decided, parked, err := s.decideAll(ctx, infos)
			if err != nil {
				judgeErr = err
			}
			for i, info := range infos {
				if (info.State != asynq.TaskStateArchived || parked[i]) && info.Type == tasks.TypeCancelRefund {
					if p, err := tasks.Decode(info.Payload); err == nil {
						r.Backlog.add(s.policy.Cutoff(p.RefundInitiatedAt), now)
					}
				}
			}
			for i, info := range infos {
				if decided[i] != actNone {
					acts = append(acts, info.ID)
				}
			}
		})
		if err == nil {
			err = judgeErr
		}
		if err != nil {
			return r, fmt.Errorf("list %s tasks: %w", l.state, err)
		}
		for i, id := range acts {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if i > 0 && i%100 == 0 {
				alive()
			}
			info, err := s.insp.GetTaskInfo(s.cfg.Queue, id)
			if err != nil {
				if !errors.Is(err, asynq.ErrTaskNotFound) { // else it ended meanwhile
					s.log.Warn("could not read a task again before acting on it", zap.String("task_id", id), zap.Error(err))
				}
				continue
			}
			decided, _, err := s.decideAll(ctx, []*asynq.TaskInfo{info})
			if err != nil {
				s.log.Warn("could not read a task's record before acting on it", zap.String("task_id", id), zap.Error(err))
				continue
			}
			switch decided[0] {
			case actReplace:
				if err := s.replace(info); err != nil {
					s.log.Error("could not replace a task with an expired deadline or a group", zap.String("task_id", info.ID), zap.Error(err))
					continue
				}
				r.Replaced++
			case actRun, actRunUnclaimed:
				p, _ := tasks.Decode(info.Payload) // an invalid payload's zero value names a key in the queue's slot
				moved, err := s.recs.Run(ctx, info, p, decided[0] == actRunUnclaimed)
				if err != nil {
					s.log.Warn("could not run a task", zap.String("task_id", info.ID), zap.Error(err))
				}
				if !moved {
					continue // it moved on meanwhile
				}
				r.Run++
				s.log.Info("task handed back to the worker", zap.String("task_id", info.ID), zap.String("was", info.State.String()))
			}
		}
	}
	r.SweptAt = s.cfg.Now()
	return r, nil
}

// eachPage hands each page of a listing to fn, in order.
func (s *Sweeper) eachPage(ctx context.Context, list func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error), fn func([]*asynq.TaskInfo)) error {
	for page := 1; ; page++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		infos, err := list(s.cfg.Queue, asynq.PageSize(s.cfg.PageSize), asynq.Page(page))
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(infos)
		if len(infos) < s.cfg.PageSize {
			return nil
		}
	}
}

type action int

const (
	actNone action = iota
	actReplace
	actRun
	// actRunUnclaimed: run an archived task whose last delivery could not
	// claim its refund (its last error says so).
	actRunUnclaimed
)

// decideAll answers what the sweep does with each task: an archived one
// is judged by its refund's record (one round trip for them all). parked
// says which archived tasks asynq's retry counter parked (a hold or a
// retry of a MaxRetry-bound task): still the fleet's to run, so part of
// the backlog.
func (s *Sweeper) decideAll(ctx context.Context, infos []*asynq.TaskInfo) (out []action, parked []bool, err error) {
	out, parked = make([]action, len(infos)), make([]bool, len(infos))
	var archived []int
	var refunds []tasks.CancelRefund
	for i, info := range infos {
		if info.State != asynq.TaskStateArchived {
			out[i] = s.decide(info)
			continue
		}
		if info.Type != tasks.TypeCancelRefund {
			continue
		}
		if p, err := tasks.Decode(info.Payload); err == nil {
			archived, refunds = append(archived, i), append(refunds, p)
		}
	}
	if len(refunds) == 0 {
		return out, parked, nil
	}
	entries, err := s.recs.Judge(ctx, refunds)
	if err != nil {
		return out, parked, err
	}
	now := s.cfg.Now()
	for j, i := range archived {
		info, e := infos[i], entries[j]
		if e.Owner == info.ID && e.Delivery == worker.DeliveryQueued && info.LastFailedAt.Unix() == e.QueuedAfter {
			// The sweep or the wake moved it to pending, and it is archived
			// again with no failure of asynq's since: an operator's Archive.
			continue
		}
		// asynq archived it on its own: the record says so (see
		// records.Entry.Due), or the delivery could not claim the refund
		// or died before it did (it wrote nothing; the handler's error or
		// asynq's "lease expired" says why — an operator's Archive of a
		// task that never ran leaves none).
		unclaimed := e.Owner == "" && info.LastErr != "" ||
			e.Owner == info.ID && !e.Record.Final() &&
				AsynqsOwn(info.LastErr)
		parked[i] = e.Owner == info.ID && e.Delivery == worker.DeliveryParked && info.LastErr != ""
		switch {
		case info.LastErr == "" || !unclaimed && (e.Owner != info.ID || !e.Due(now)):
			// the handler's word, an operator's (asynq never archives a task
			// without an error: one with none is an operator's), a
			// duplicate, or not due yet
		case !info.Deadline.IsZero() && !now.Before(info.Deadline):
			out[i] = actReplace
		case unclaimed:
			out[i] = actRunUnclaimed
		default:
			out[i] = actRun
		}
	}
	return out, parked, nil
}

// AsynqsOwn reports whether lastErr is what a delivery that wrote nothing
// of how it ended leaves on its task: the handler could not read the
// refund's record (worker.NoRecord), or asynq gave up on it — its lease
// expired (a crash), or its Timeout. asynq archives such a task on its
// own at MaxRetry; an operator's Archive keeps whatever error the task
// had, which is why an Archive right after a crash or a timeout cannot be
// told from asynq's (docs/window-and-outcomes.md, known limits).
func AsynqsOwn(lastErr string) bool {
	return strings.HasPrefix(lastErr, worker.NoRecord) || lastErr == asynq.ErrLeaseExpired.Error() || lastErr == context.DeadlineExceeded.Error()
}

// decide answers what the sweep does with a task not archived.
func (s *Sweeper) decide(info *asynq.TaskInfo) action {
	if info.Type != tasks.TypeCancelRefund {
		return actNone
	}
	now := s.cfg.Now()
	deadlineExpired := !info.Deadline.IsZero() && !now.Before(info.Deadline)
	switch info.State {
	case asynq.TaskStateAggregating:
		return actReplace
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
	}
	return actNone
}

// replace re-enqueues the task without its deadline: same ID, payload,
// headers, queue, retention, MaxRetry and timeout (the refund's record is
// not the task's, and stays). The delete comes first (task IDs are
// unique); if the enqueue then fails, the task's payload is logged so
// nothing is lost silently. The caller's read of the task and the delete
// are two commands: two overlapping sweeps replacing one task in between
// leave the second's copy, which is harmless (the record fences and
// remembers).
func (s *Sweeper) replace(info *asynq.TaskInfo) error {
	timeout := info.Timeout
	if timeout <= 0 {
		timeout = tasks.DefaultTimeout
	}
	task := asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers,
		asynq.TaskID(info.ID), asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry), asynq.Timeout(timeout), asynq.Retention(info.Retention))
	if err := s.insp.DeleteTask(info.Queue, info.ID); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	var err error
	for try := 0; try < 3; try++ {
		if _, err = s.client.Enqueue(task); err == nil || errors.Is(err, asynq.ErrTaskIDConflict) {
			s.log.Info("task re-enqueued without its expired deadline or its group", zap.String("task_id", info.ID), zap.Time("deadline", info.Deadline), zap.String("group", info.Group))
			return nil
		}
	}
	s.log.Error("task deleted but not re-enqueued: enqueue it again by hand", zap.String("task_id", info.ID),
		zap.ByteString("payload", info.Payload), zap.Error(err))
	return fmt.Errorf("re-enqueue: %w", err)
}
