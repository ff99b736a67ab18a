// Package deadlinefirst is the order in which refundd's replicas, together,
// call 2Checkout when they cannot call for every due task at once: the task
// whose cut-off comes first goes first, and a task already past its cut-off
// takes nothing from the others (earliest deadline first, skipping the
// late: for equal-length jobs on one rate-limited resource, the schedule
// that meets the most deadlines).
//
// asynq keeps every task's state, as before; this package adds, in Redis,
// beside the queue:
//
//   - turns: the tasks allowed to call 2Checkout now, at most Slots for the
//     fleet (a sorted set of task IDs by lease expiry). Slots is what the
//     fleet's budget sends in a short while (2 s of TCO_RATE_LIMIT), so a
//     task with a turn waits little at the budget, and the order of turns
//     is the order of calls.
//   - waiting: the tasks held for a turn, by cut-off (a sorted set).
//
// A task asks for a turn (Take) before its attempt's first call. It gets one
// if fewer tasks with an earlier cut-off wait than there are free turns —
// with no backlog that is at once, in one round trip. Otherwise it joins
// waiting and its handler ends the run: asynq holds it as a retry that is
// not counted (tasks.OutcomeHeld), due at its cut-off or HoldMax, whichever
// comes first. When a turn is given back (Release), or on the dispatcher's
// tick (Run), the most urgent waiting tasks are woken — moved to pending —
// as many as turns are free — and their run takes the turn.
//
// Every fast path and slow path keeps asynq's guarantees: a task is never
// taken out of asynq, only moved (Runner.Run) from where it was
// judged to be held to pending; a lost
// wake (a replica killed between its Release and its RunTask) is repaired
// by the next tick of any replica, and at worst by the task's own due time;
// a turn whose holder died lapses with its lease: Lease (seconds), renewed
// every Lease/3 by the replica that holds it while its attempt runs (Run),
// never tied to the task's window or asynq's task timeout — so a replica
// killed while it holds every turn stops the fleet for Lease at most, and
// a task re-delivered after its holder died, which ends at its cut-off
// check without taking a turn, leaves nothing behind.
package deadlinefirst

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// Runner reads a held task's state and moves it to pending if it is still
// where it was judged held (one script); records.Mover is one.
type Runner interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	Run(ctx context.Context, info *asynq.TaskInfo, p tasks.CancelRefund) (bool, error)
}

// Config configures a Dispatcher. The zero value of each optional field
// means the default written beside it.
type Config struct {
	// Redis holds the shared order. Required: the queue's Redis, shared by
	// every replica of the queue.
	Redis redis.UniversalClient
	// Runner reads and wakes held tasks. Required.
	Runner Runner
	// Queue is the asynq queue. Default tasks.DefaultQueue.
	Queue string
	// Slots is how many tasks of the fleet hold a turn at once. Required
	// (positive). Every replica of the queue must use the same value.
	Slots int
	// HoldMax: a held task runs again at the latest this long after it was
	// held (or at its cut-off, if sooner), whether or not it was woken.
	// Default 1m.
	HoldMax time.Duration
	// Lease is how long a turn outlives a holder that stopped renewing it
	// (a replica killed, or stopped without releasing): the holder renews
	// its turns every Lease/3 while its attempt runs (Run). Default 6s.
	Lease time.Duration
	// Tick is how often a replica with held tasks wakes those whose turn
	// has come, beside the wakes Release does. Default 250ms.
	Tick time.Duration
	// RedisTimeout bounds each Redis script. Default 1s.
	RedisTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs wakes that fail. Default zap.NewNop().
	Logger *zap.Logger
}

// Defaults of Config.
const (
	DefaultHoldMax      = time.Minute
	DefaultLease        = 6 * time.Second
	DefaultTick         = 250 * time.Millisecond
	DefaultRedisTimeout = time.Second
	// wokenFor: a woken task is not woken again (and holds its place among
	// the free turns) for this long, the time asynq may take to hand it to
	// a worker.
	wokenFor = 5 * time.Second
)

// Dispatcher is one replica's part of the fleet's deadline-first order. It
// implements worker.Turns.
type Dispatcher struct {
	cfg  Config
	keys []string // waiting, turns, woken
	// held is set when this replica held a task since its last tick, or
	// when the last tick saw tasks waiting (and at start): only then does
	// the tick ask Redis.
	held atomic.Bool
	// kick asks Run to tick now.
	kick chan struct{}
	// unreleased holds turns whose Release could not reach Redis; the tick
	// gives them back. mine holds the turns this replica's attempts hold,
	// renewed every Lease/3 (renewed: when last).
	mu         sync.Mutex
	unreleased []string
	mine       map[string]int
	renewed    time.Time
	jitter     func() float64
}

// New validates cfg and returns a Dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Redis == nil || cfg.Runner == nil {
		return nil, errors.New("deadlinefirst: Config.Redis and Config.Runner are required")
	}
	if cfg.Slots <= 0 {
		return nil, fmt.Errorf("deadlinefirst: Config.Slots %d must be positive", cfg.Slots)
	}
	if cfg.Queue == "" {
		cfg.Queue = tasks.DefaultQueue
	}
	for _, err := range []error{
		defaults.Fill("HoldMax", &cfg.HoldMax, DefaultHoldMax),
		defaults.Fill("Lease", &cfg.Lease, DefaultLease),
		defaults.Fill("Tick", &cfg.Tick, DefaultTick),
		defaults.Fill("RedisTimeout", &cfg.RedisTimeout, DefaultRedisTimeout),
	} {
		if err != nil {
			return nil, fmt.Errorf("deadlinefirst: Config.%w", err)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	d := &Dispatcher{cfg: cfg, keys: Keys(cfg.Queue), kick: make(chan struct{}, 1), jitter: rand.Float64, mine: map[string]int{}}
	d.held.Store(true) // the first tick looks: tasks may wait from before this replica started
	return d, nil
}

// Keys answers the Redis keys of queue's order: waiting, turns and woken
// (sorted sets; empty ones vanish). One hash tag puts them on one Redis
// Cluster slot, as the scripts need.
func Keys(queue string) []string {
	prefix := "refundd:deadlinefirst:{" + queue + "}:"
	return []string{prefix + "waiting", prefix + "turns", prefix + "woken"}
}

// takeScript gives ARGV[1] (cut-off ARGV[2] ms) a turn if fewer tasks with
// an earlier cut-off wait than turns are free (or it holds one already),
// until ARGV[5] ms; else it joins waiting. Tasks past their cut-off (now:
// ARGV[3]) leave waiting, and lapsed turns are freed. Answers {granted,
// ahead}.
var takeScript = redis.NewScript(`
local now = tonumber(ARGV[3])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
local cutoff = tonumber(ARGV[2])
local ahead = redis.call("ZCOUNT", KEYS[1], "-inf", "(" .. cutoff)
local free = tonumber(ARGV[4]) - redis.call("ZCARD", KEYS[2])
redis.call("ZREM", KEYS[3], ARGV[1])
if ahead < free or redis.call("ZSCORE", KEYS[2], ARGV[1]) then
  redis.call("ZREM", KEYS[1], ARGV[1])
  redis.call("ZADD", KEYS[2], ARGV[5], ARGV[1])
  return {1, ahead}
end
redis.call("ZADD", KEYS[1], cutoff, ARGV[1])
return {0, ahead}
`)

// wakeScript frees ARGV[4]'s turn (if set) and lapsed turns, forgets the
// late and old wakes, and picks the most urgent waiting tasks not woken
// lately, as many as turns are free (less the tasks woken and not yet
// arrived), marking them woken. Answers {waiting, id…}.
var wakeScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if ARGV[4] ~= "" then redis.call("ZREM", KEYS[2], ARGV[4]) end
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now - tonumber(ARGV[3]))
local waiting = redis.call("ZCARD", KEYS[1])
local woken = redis.call("ZCARD", KEYS[3])
local free = tonumber(ARGV[2]) - redis.call("ZCARD", KEYS[2]) - woken
local out = {tostring(waiting)}
if free <= 0 or waiting == 0 then return out end
for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, free + woken - 1)) do
  if not redis.call("ZSCORE", KEYS[3], id) then
    redis.call("ZADD", KEYS[3], now, id)
    table.insert(out, id)
    if #out > free then break end
  end
end
return out
`)

// forgetScript drops ARGV[1] from waiting and woken (its task is gone).
var forgetScript = redis.NewScript(`
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
return 0
`)

// unwakeScript drops ARGV[1] from woken: it may be woken again.
var unwakeScript = redis.NewScript(`
redis.call("ZREM", KEYS[3], ARGV[1])
return 0
`)

// Take implements worker.Turns: a turn for taskID at once if its cut-off
// ranks among the free turns, else a hold.
func (d *Dispatcher) Take(ctx context.Context, taskID string, cutoff time.Time) (worker.Turn, error) {
	now := d.cfg.Now()
	lease := now.Add(d.cfg.Lease)
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RedisTimeout)
	defer cancel()
	res, err := takeScript.Run(rctx, d.cfg.Redis, d.keys, taskID, cutoff.UnixMilli(), now.UnixMilli(), d.cfg.Slots, lease.UnixMilli()).Int64Slice()
	if err != nil {
		return worker.Turn{}, fmt.Errorf("deadline-first turn: %w", err)
	}
	if res[0] == 1 {
		d.mu.Lock()
		d.mine[taskID]++
		d.mu.Unlock()
		var once sync.Once
		release := func() {
			once.Do(func() {
				d.mu.Lock()
				if d.mine[taskID]--; d.mine[taskID] <= 0 {
					delete(d.mine, taskID)
				}
				d.mu.Unlock()
				d.wake(taskID)
			})
		}
		return worker.Turn{Release: release, Ahead: int(res[1])}, nil
	}
	d.held.Store(true)
	select {
	case d.kick <- struct{}{}:
	default:
	}
	// Jittered, so that tasks held together do not all come due together.
	hold := time.Duration(float64(d.cfg.HoldMax) * (0.8 + 0.4*d.jitter()))
	return worker.Turn{HeldUntil: minTime(now.Add(hold), cutoff), Ahead: int(res[1])}, nil
}

// wake frees release's turn (if set) and runs the tasks whose turn has come.
func (d *Dispatcher) wake(release string) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RedisTimeout)
	out, err := wakeScript.Run(ctx, d.cfg.Redis, d.keys, d.cfg.Now().UnixMilli(), d.cfg.Slots, wokenFor.Milliseconds(), release).StringSlice()
	cancel()
	if err != nil {
		d.cfg.Logger.Warn("deadline-first wake failed; the next tick tries again", zap.Error(err))
		if release != "" {
			d.mu.Lock()
			d.unreleased = append(d.unreleased, release)
			d.mu.Unlock()
		}
		d.held.Store(true)
		return
	}
	if n, _ := strconv.Atoi(out[0]); n > 0 {
		d.held.Store(true) // keep ticking while tasks wait
	}
	for _, id := range out[1:] {
		d.run(id)
	}
}

// run moves a woken task to pending if it is still held: waiting to retry,
// or archived by asynq's retry counter at its hold (a MaxRetry 0 task; its
// record says parked). The move is one script that checks the state it
// was judged in (records.Store.Run): a task that finished, or that an
// operator archived or deleted, is forgotten, never run again.
func (d *Dispatcher) run(id string) {
	info, err := d.cfg.Runner.GetTaskInfo(d.cfg.Queue, id)
	if err == nil && (info.State == asynq.TaskStateRetry || info.State == asynq.TaskStateArchived) {
		p, _ := tasks.Decode(info.Payload)
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RedisTimeout)
		moved, rerr := d.cfg.Runner.Run(ctx, info, p)
		cancel()
		if moved {
			return
		}
		err = rerr
		if err == nil {
			info, err = d.cfg.Runner.GetTaskInfo(d.cfg.Queue, id) // it moved meanwhile: to where?
		}
	}
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || err == nil && info.State != asynq.TaskStateActive && info.State != asynq.TaskStatePending && info.State != asynq.TaskStateRetry:
		d.script(forgetScript, id) // gone, finished or archived
	case err == nil && info.State == asynq.TaskStatePending:
		// On its way to a worker (its own due time came): it takes its turn then.
	default:
		// Most often the run that held it has not ended yet (asynq has not
		// moved it to retry), or Redis hiccuped: wake it on the next tick.
		d.cfg.Logger.Debug("deadline-first wake: task not run yet", zap.String("task_id", id), zap.Error(err))
		d.script(unwakeScript, id)
		d.held.Store(true)
	}
}

// script runs a one-member script on the order's keys.
func (d *Dispatcher) script(s *redis.Script, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RedisTimeout)
	defer cancel()
	if err := s.Run(ctx, d.cfg.Redis, d.keys, id).Err(); err != nil && !errors.Is(err, redis.Nil) {
		d.cfg.Logger.Warn("deadline-first: Redis", zap.String("task_id", id), zap.Error(err))
	}
}

// tick gives back the turns whose Release failed, and wakes.
func (d *Dispatcher) tick() {
	d.mu.Lock()
	pending := d.unreleased
	d.unreleased = nil
	d.mu.Unlock()
	for _, id := range pending {
		d.wake(id)
	}
	if d.held.Swap(false) {
		d.wake("")
	}
}

// renew extends the leases of the turns this replica holds to Lease from
// now, once Lease/3 has passed since it last did: only turns still held
// (ZADD XX), so a turn that lapsed meanwhile is not taken back.
func (d *Dispatcher) renew() {
	now := d.cfg.Now()
	d.mu.Lock()
	if len(d.mine) == 0 || now.Sub(d.renewed) < d.cfg.Lease/3 {
		d.mu.Unlock()
		return
	}
	d.renewed = now
	members := make([]redis.Z, 0, len(d.mine))
	for id := range d.mine {
		members = append(members, redis.Z{Score: float64(now.Add(d.cfg.Lease).UnixMilli()), Member: id})
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RedisTimeout)
	defer cancel()
	if err := d.cfg.Redis.ZAddArgs(ctx, d.keys[1], redis.ZAddArgs{XX: true, Members: members}).Err(); err != nil {
		d.cfg.Logger.Warn("deadline-first: could not renew this replica's turns; they lapse unless the next renewal reaches Redis", zap.Error(err))
	}
}

// Run wakes, every Tick while tasks are held, those whose turn has come:
// the repair for wakes lost with a replica, and for turns that lapsed; and
// renews the leases of the turns this replica holds. It returns when ctx
// ends. An idle replica asks Redis nothing.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		d.renew()
		d.tick()
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

var _ worker.Turns = (*Dispatcher)(nil)
