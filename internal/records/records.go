// Package records is refundd's memory of each refund: one Redis hash per
// refund (order reference and initiation second), written by the worker
// alone, that every delivery of the refund's task reads before it does
// anything. asynq's retry counter, a task's headers and its options are
// the producer's or asynq's; this record is the only thing the worker
// trusts about what happened before.
//
// For a queue q and a refund of order R initiated at second S (UTC,
// tasks.TaskIDTimeLayout) the keys are
//
//	refundd:{q}:refund:R:S   a hash: owner (the task that claimed the refund),
//	                         token (the delivery that may write), record (the
//	                         tasks.Result as JSON), final, run, delivery
//	                         (running | done | parked), announced (the run whose
//	                         ending is complete), run:N (the final record of an
//	                         earlier run)
//	refundd:{q}:order:R      a sorted set: the initiation seconds of R's refunds
//
// Both carry the queue as their hash tag, like asynq's own keys, so every
// script below touches one Redis Cluster slot, the queue's. Each is kept
// Retention after its last write: the outcome ledger outlives asynq's
// archive (10,000 tasks, 90 days) and its retention of completed tasks.
package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/keys"
	"github.com/refundd/refund-canceller/tasks"
	"github.com/refundd/refund-canceller/worker"
)

// DefaultRetention is how long a refund's record is kept after its last
// write (OUTCOME_RETENTION).
const DefaultRetention = 30 * 24 * time.Hour

// Store reads and writes the records of one queue.
type Store struct {
	rdb       redis.UniversalClient
	queue     string
	retention time.Duration
}

// New answers the Store of queue on rdb; retention 0 means DefaultRetention.
func New(rdb redis.UniversalClient, queue string, retention time.Duration) *Store {
	if queue == "" {
		queue = tasks.DefaultQueue
	}
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{rdb: rdb, queue: queue, retention: retention}
}

// Key answers the record's key of the refund of orderRef initiated at
// initiated (keys.Refund).
func Key(queue, orderRef string, initiated time.Time) string {
	return keys.Refund(queue, orderRef, initiated)
}

// claimScript: KEYS refund, order; ARGV task ID, token, retention ms,
// initiation stamp, initiation unix seconds. The first task to claim a
// refund owns it (and indexes it under its order); the owner's claim takes
// the delivery token and marks a delivery running, unless the record is
// final. An order's index lives as long as its newest refund's record; a
// member whose record expired is skipped by the lookup.
var claimScript = redis.NewScript(`
local v = redis.call("HMGET", KEYS[1], "owner", "final", "record", "run", "announced")
if v[1] and v[1] ~= ARGV[1] then
	return {v[1]}
end
if not v[1] then
	v[4] = "1"
	redis.call("HSET", KEYS[1], "owner", ARGV[1], "run", 1, "token", ARGV[2], "delivery", "running")
	redis.call("ZADD", KEYS[2], ARGV[5], ARGV[4])
	redis.call("PEXPIRE", KEYS[2], ARGV[3])
elseif v[2] ~= "1" then
	redis.call("HSET", KEYS[1], "token", ARGV[2], "delivery", "running")
end
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return {ARGV[1], v[3] or "", v[4], v[5] or ""}`)

// Claim claims the refund of p for taskID with the delivery token token,
// and reads its record (worker.Memory). Only the owner's claim changes
// anything.
func (s *Store) Claim(ctx context.Context, p tasks.CancelRefund, taskID, token string) (worker.Claim, error) {
	key := Key(s.queue, p.OrderRef, p.RefundInitiatedAt)
	v, err := claimScript.Run(ctx, s.rdb, []string{key, keys.Order(s.queue, p.OrderRef)}, taskID, token, s.retention.Milliseconds(),
		keys.Stamp(p.RefundInitiatedAt), p.RefundInitiatedAt.Unix()).StringSlice()
	if err != nil {
		return worker.Claim{}, fmt.Errorf("claim refund record %s: %w", key, err)
	}
	c := worker.Claim{Owner: v[0]}
	if c.Owner != taskID {
		return c, nil
	}
	c.Token = token
	if v[1] != "" {
		if c.Record, err = decode(v[1]); err != nil {
			return c, fmt.Errorf("refund record %s: %w", key, err)
		}
	}
	c.Run, _ = strconv.Atoi(v[2])
	c.Announced = v[3] != "" && v[3] == v[2]
	return c, nil
}

// writeScript: KEYS refund; ARGV token, record, final (0|1), delivery,
// retention ms, announced (0|1). A final record is never overwritten; it
// keeps the record Retention from now (the claim did for the others).
var writeScript = redis.NewScript(`
local v = redis.call("HMGET", KEYS[1], "token", "final", "run")
if v[1] ~= ARGV[1] or v[2] == "1" then
	return 0
end
if ARGV[3] ~= "1" then
	redis.call("HSET", KEYS[1], "record", ARGV[2], "delivery", ARGV[4])
	return 1
end
if ARGV[6] == "1" then
	redis.call("HSET", KEYS[1], "record", ARGV[2], "delivery", ARGV[4], "final", "1", "announced", v[3])
else
	redis.call("HSET", KEYS[1], "record", ARGV[2], "delivery", ARGV[4], "final", "1")
end
redis.call("PEXPIRE", KEYS[1], ARGV[5])
return 1`)

// Write writes r as the refund's record, if the claim's delivery may:
// delivery says how the delivery ends (Delivery…); announced, for a final
// record, that its ending needs no announcement. worker.ErrFenced if not:
// a later delivery claimed the refund, or the record is final (a final
// record is never overwritten; its claim takes no token).
func (s *Store) Write(ctx context.Context, c worker.Claim, r *tasks.Result, delivery string, announced bool) error {
	p := r.Refund()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode refund record: %w", err)
	}
	ok, err := writeScript.Run(ctx, s.rdb, []string{Key(s.queue, p.OrderRef, p.RefundInitiatedAt)}, c.Token, b, flag(r.Final()), delivery,
		s.retention.Milliseconds(), flag(announced)).Bool()
	switch {
	case err != nil:
		return fmt.Errorf("write refund record: %w", err)
	case !ok:
		return worker.ErrFenced
	}
	return nil
}

// announceScript: KEYS refund; ARGV run. Marks run's ending announced.
var announceScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "run") == ARGV[1] and redis.call("HGET", KEYS[1], "final") == "1" then
	redis.call("HSET", KEYS[1], "announced", ARGV[1])
	return 1
end
return 0`)

// Announced marks the final record of r's run announced.
func (s *Store) Announced(ctx context.Context, r *tasks.Result) error {
	p := r.Refund()
	if err := announceScript.Run(ctx, s.rdb, []string{Key(s.queue, p.OrderRef, p.RefundInitiatedAt)}, r.Run).Err(); err != nil {
		return fmt.Errorf("mark the refund's ending announced: %w", err)
	}
	return nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func decode(s string) (*tasks.Result, error) { return tasks.DecodeResult([]byte(s)) }

// Entry is what the store holds of one refund.
type Entry struct {
	Owner    string
	Record   *tasks.Result // nil before the first write
	Run      int
	Delivery string
	// QueuedAfter: with Delivery worker.DeliveryQueued, the task's last
	// failure (asynq's LastFailedAt, Unix seconds) when it was moved: a
	// later one is asynq's, after the move; the same one, with the task
	// archived again, was an operator's Archive.
	QueuedAfter int64
	// Done: the current run's record is final and its ending announced.
	Done bool
	// Earlier holds the final records of earlier runs, oldest first.
	Earlier []*tasks.Result
}

// Get reads the refund's entry; ok is false if there is none.
func (s *Store) Get(ctx context.Context, orderRef string, initiated time.Time) (e Entry, ok bool, err error) {
	key := Key(s.queue, orderRef, initiated)
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return e, false, fmt.Errorf("read refund record %s: %w", key, err)
	}
	if len(m) == 0 || m["owner"] == "" {
		return e, false, nil
	}
	if e, err = entryOf(func(f string) string { return m[f] }); err != nil {
		return e, true, fmt.Errorf("refund record %s: %w", key, err)
	}
	for n := 1; n < e.Run; n++ {
		if rec := m["run:"+strconv.Itoa(n)]; rec != "" {
			if r, err := decode(rec); err == nil {
				e.Earlier = append(e.Earlier, r)
			}
		}
	}
	return e, true, nil
}

// Judge reads, in one round trip, what the sweep needs of each refund in
// ps to judge an archived task (see Entry.Due): its owner, record,
// delivery and whether its ending is done. A refund with no entry answers
// the zero Entry.
func (s *Store) Judge(ctx context.Context, ps []tasks.CancelRefund) ([]Entry, error) {
	cmds := make([]*redis.SliceCmd, len(ps))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range ps {
			cmds[i] = pipe.HMGet(ctx, Key(s.queue, p.OrderRef, p.RefundInitiatedAt), entryFields...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read refund records: %w", err)
	}
	out := make([]Entry, len(ps))
	for i, c := range cmds {
		v := c.Val()
		out[i], _ = entryOf(func(f string) string {
			s, _ := v[slices.Index(entryFields, f)].(string)
			return s
		})
	}
	return out, nil
}

// entryFields are the hash's fields an Entry is made of (Earlier aside).
var entryFields = []string{"owner", "record", "run", "delivery", "final", "announced", "queued_after"}

// entryOf makes an Entry of the hash's fields as field answers them.
func entryOf(field func(string) string) (Entry, error) {
	e := Entry{Owner: field("owner"), Delivery: field("delivery")}
	e.Run, _ = strconv.Atoi(field("run"))
	e.QueuedAfter, _ = strconv.ParseInt(field("queued_after"), 10, 64)
	e.Done = field("final") == "1" && field("announced") == field("run")
	var err error
	if rec := field("record"); rec != "" {
		e.Record, err = decode(rec)
	}
	return e, err
}

// Order answers the initiation times of the order's refunds that the
// store knows of, newest first.
func (s *Store) Order(ctx context.Context, orderRef string) ([]time.Time, error) {
	stamps, err := s.rdb.ZRevRange(ctx, keys.Order(s.queue, orderRef), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read order %s's refunds: %w", orderRef, err)
	}
	out := make([]time.Time, 0, len(stamps))
	for _, st := range stamps {
		if t, err := time.Parse(keys.StampLayout, st); err == nil {
			out = append(out, t)
		}
	}
	return out, nil
}

// ErrNotFinal: a new run was asked for a refund whose run has not ended.
var ErrNotFinal = errors.New("the refund's cancellation has not ended: nothing to try again")

// ErrCancelled: a new run was asked for a refund its record says cancelled.
var ErrCancelled = errors.New("the refund is cancelled: nothing to try again")

// ErrUnannounced: a new run was asked before the ending of the run before
// was announced (the task is retried, or the sweep runs it, until it is).
var ErrUnannounced = errors.New("the cancellation's outcome has not been announced yet: try again once it is")

// rerunScript: KEYS refund; ARGV run expected, the new run's record,
// retention ms. Keeps the final record as run:N and starts run N+1.
var rerunScript = redis.NewScript(`
local run = redis.call("HGET", KEYS[1], "run")
if run ~= ARGV[1] or redis.call("HGET", KEYS[1], "final") ~= "1" or redis.call("HGET", KEYS[1], "announced") ~= run then
	return 0
end
redis.call("HSET", KEYS[1], "run:" .. run, redis.call("HGET", KEYS[1], "record"))
redis.call("HSET", KEYS[1], "run", tonumber(run) + 1, "record", ARGV[2], "delivery", "done", "token", "")
redis.call("HDEL", KEYS[1], "final", "announced")
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1`)

// Rerun opens a new run of a refund whose run ended and was announced (an
// operator's "try again"): the final record is kept as the earlier run's,
// and the new
// run starts from what every earlier run learned — if any may have
// reached 2Checkout, its first attempt checks the order with getOrder
// before it cancels. A cancelled refund has nothing to try again. The
// caller then enqueues the task again (its old task, completed or
// archived, deleted first).
func (s *Store) Rerun(ctx context.Context, orderRef string, initiated time.Time) (*tasks.Result, error) {
	e, ok, err := s.Get(ctx, orderRef, initiated)
	switch {
	case err != nil:
		return nil, err
	case !ok || e.Record == nil || !e.Record.Final():
		return nil, ErrNotFinal
	case e.Record.Cancelled():
		return nil, ErrCancelled
	case !e.Done:
		return nil, ErrUnannounced
	}
	next := e.Record.NextRun()
	b, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	done, err := rerunScript.Run(ctx, s.rdb, []string{Key(s.queue, orderRef, initiated)}, e.Run, b, s.retention.Milliseconds()).Bool()
	switch {
	case err != nil:
		return nil, fmt.Errorf("open a new run: %w", err)
	case !done:
		return nil, fmt.Errorf("open a new run: the record changed meanwhile (%w)", ErrNotFinal)
	}
	return next, nil
}

// runScript: KEYS asynq task hash, asynq pending list, asynq zset of the
// state the task was judged in, refund record; ARGV task ID, state,
// unclaimed (0|1). Moves the task to pending (as asynq's RunTask does) only
// if it is still in that state and, when archived, only if its record says
// asynq put it there (a delivery that crashed, timed out or was parked by
// the retry counter) or its ending is yet to be announced — never a task
// an operator archived, nor one the handler ended. With unclaimed, the
// caller vouches that the task's last delivery could not claim the refund
// (its last error says so, and an archived task's last error does not
// change): then a record with no final word, or none, is enough.
var runScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "state") ~= ARGV[2] then
	return 0
end
local queued = false
if ARGV[2] == "archived" then
	local v = redis.call("HMGET", KEYS[4], "owner", "final", "delivery", "announced", "run")
	if v[1] and v[1] ~= ARGV[1] then
		return 0
	end
	queued = v[1] and v[2] ~= "1"
	if v[2] == "1" then
		if v[4] == v[5] then
			return 0
		end
	elseif ARGV[3] ~= "1" and v[3] ~= "running" and v[3] ~= "parked" then
		return 0
	end
end
if redis.call("ZREM", KEYS[3], ARGV[1]) == 0 then
	return 0
end
redis.call("LPUSH", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[1], "state", "pending")
if queued then
	redis.call("HSET", KEYS[4], "delivery", "queued", "queued_after", ARGV[4])
end
return 1`)

// Run moves the task info shows to pending, so a worker runs it now, if it
// is still in the state info shows (scheduled, retry or archived) — one
// script: what was judged is what is moved, never a task that moved
// since. An archived task moves only if its record says asynq archived it,
// or, with unclaimed, if its last delivery could not claim the refund (see
// runScript); its record then says so (worker.DeliveryQueued), so that
// an operator's Archive before a worker takes it stands. It answers
// whether the task moved. It relies on asynq v0.26's
// keys (asynq:{q}:t:<id>, asynq:{q}:pending, asynq:{q}:<state>).
func (s *Store) Run(ctx context.Context, info *asynq.TaskInfo, p tasks.CancelRefund, unclaimed bool) (bool, error) {
	state := info.State.String()
	switch info.State {
	case asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateArchived:
	default:
		return false, fmt.Errorf("run task %s: cannot move a %s task", info.ID, state)
	}
	q := "asynq:{" + info.Queue + "}:"
	keys := []string{q + "t:" + info.ID, q + "pending", q + state, Key(info.Queue, p.OrderRef, p.RefundInitiatedAt)}
	moved, err := runScript.Run(ctx, s.rdb, keys, info.ID, state, flag(unclaimed), info.LastFailedAt.Unix()).Bool()
	if err != nil {
		return false, fmt.Errorf("run task %s: %w", info.ID, err)
	}
	return moved, nil
}

// Mover reads tasks with its Inspector and moves them with its Store
// (deadlinefirst.Runner): a held task, from retry, or from the archive
// when its record says asynq's counter parked it.
type Mover struct {
	Inspector *asynq.Inspector
	Store     *Store
}

// GetTaskInfo reads a task.
func (m Mover) GetTaskInfo(queue, id string) (*asynq.TaskInfo, error) {
	return m.Inspector.GetTaskInfo(queue, id)
}

// Run moves a held task (Store.Run, judged by its record alone).
func (m Mover) Run(ctx context.Context, info *asynq.TaskInfo, p tasks.CancelRefund) (bool, error) {
	return m.Store.Run(ctx, info, p, false)
}

// Due reports whether the task asynq archived (see Run) should run now:
// its record is not final and its next attempt is due, or its ending is
// yet to be announced.
func (e Entry) Due(now time.Time) bool {
	switch {
	case e.Record != nil && e.Record.Final():
		return !e.Done
	case e.Delivery == worker.DeliveryRunning:
		return true
	case e.Delivery == worker.DeliveryParked:
		return e.Record == nil || !e.Record.NextAttemptAt.After(now)
	}
	return false
}
