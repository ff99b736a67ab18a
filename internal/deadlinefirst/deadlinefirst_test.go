package deadlinefirst

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/tasks"
)

// runs is the queue as the dispatcher sees it: every task waits to retry
// unless state says otherwise (gone: deleted). It records the tasks run.
type runs struct {
	mu     sync.Mutex
	ids    []string
	gone   map[string]bool
	state  map[string]asynq.TaskState
	parked map[string]bool // archived tasks whose record says parked
}

func (r *runs) GetTaskInfo(_, id string) (*asynq.TaskInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone[id] {
		return nil, fmt.Errorf("get %s: %w", id, asynq.ErrTaskNotFound)
	}
	st, ok := r.state[id]
	if !ok {
		st = asynq.TaskStateRetry
	}
	return &asynq.TaskInfo{ID: id, State: st}, nil
}

// Run moves a task as records.Store.Run does: only from retry, or from
// the archive when its record says asynq's counter parked it.
func (r *runs) Run(_ context.Context, info *asynq.TaskInfo, _ tasks.CancelRefund) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if info.State == asynq.TaskStateArchived && !r.parked[info.ID] {
		return false, nil
	}
	r.ids = append(r.ids, info.ID)
	return true, nil
}

func (r *runs) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := r.ids
	r.ids = nil
	return ids
}

type fixture struct {
	d    *Dispatcher
	runs *runs
	now  time.Time
}

var t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, slots int) *fixture {
	t.Helper()
	r := redistest.New(t)
	rc := r.Client()
	t.Cleanup(func() { _ = rc.Close() })
	f := &fixture{runs: &runs{gone: map[string]bool{}, state: map[string]asynq.TaskState{}}, now: t0}
	q := r.Queue(t)
	t.Cleanup(func() { rc.Del(context.Background(), Keys(q)...) })
	d, err := New(Config{Redis: rc, Runner: f.runs, Queue: q, Slots: slots, HoldMax: time.Minute, Lease: time.Minute,
		Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	d.jitter = func() float64 { return 0.5 } // HoldMax exactly
	f.d = d
	return f
}

// take asks for id's turn, its cut-off at t0+cut.
func (f *fixture) take(t *testing.T, id string, cut time.Duration) (granted bool, ahead int, until time.Time, release func()) {
	t.Helper()
	turn, err := f.d.Take(context.Background(), id, t0.Add(cut))
	if err != nil {
		t.Fatal(err)
	}
	return turn.Granted(), turn.Ahead, turn.HeldUntil, turn.Release
}

func TestTurnsGoEarliestCutoffFirst(t *testing.T) {
	f := newFixture(t, 2)
	// No backlog: turns at once.
	okA, _, _, releaseA := f.take(t, "A", 10*time.Minute)
	okB, _, _, releaseB := f.take(t, "B", 20*time.Minute)
	if !okA || !okB {
		t.Fatalf("with free turns: A %v, B %v, want both at once", okA, okB)
	}
	// Turns spent: later tasks are held, each until its cut-off or HoldMax.
	for _, c := range []struct {
		id        string
		cut       time.Duration
		wantAhead int
		wantUntil time.Time
	}{
		{"C", 30 * time.Minute, 0, t0.Add(time.Minute)},
		{"D", 30 * time.Second, 0, t0.Add(30 * time.Second)}, // its cut-off comes before HoldMax
		{"E", 15 * time.Minute, 1, t0.Add(time.Minute)},      // D waits with an earlier cut-off
	} {
		ok, ahead, until, _ := f.take(t, c.id, c.cut)
		if ok || ahead != c.wantAhead || !until.Equal(c.wantUntil) {
			t.Fatalf("%s: granted %v ahead %d until %v, want held, ahead %d, until %v", c.id, ok, ahead, until, c.wantAhead, c.wantUntil)
		}
	}
	// A turn given back wakes the most urgent waiting task, D — not C, held first.
	releaseA()
	if got := f.runs.take(); !slices.Equal(got, []string{"D"}) {
		t.Fatalf("woken %v, want [D]", got)
	}
	// A fresh task less urgent than D does not jump it: the free turn is D's.
	if ok, ahead, _, _ := f.take(t, "F", 12*time.Minute); ok || ahead != 1 {
		t.Fatalf("F beside woken D: granted %v ahead %d, want held behind D", ok, ahead)
	}
	// A tick does not wake D twice while it is on its way.
	f.d.wake("")
	if got := f.runs.take(); len(got) != 0 {
		t.Fatalf("woken again %v before D arrived", got)
	}
	// D arrives and takes its turn.
	if ok, _, _, _ := f.take(t, "D", 30*time.Second); !ok {
		t.Fatal("woken D was not given its turn")
	}
	// B gives its turn back: F goes first, its cut-off (12m) the soonest.
	releaseB()
	if got := f.runs.take(); !slices.Equal(got, []string{"F"}) {
		t.Fatalf("woken %v, want [F] (12m before E 15m and C 30m)", got)
	}
}

func TestLateTasksAndLapsedTurnsFreeTheirPlace(t *testing.T) {
	f := newFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // asynq's default task timeout: not the lease
	defer cancel()
	if turn, err := f.d.Take(ctx, "A", t0.Add(time.Hour)); err != nil || !turn.Granted() {
		t.Fatalf("A: %+v %v", turn, err)
	}
	// B's cut-off is 5s away: held; then its cut-off passes.
	if ok, _, _, _ := f.take(t, "B", 5*time.Second); ok {
		t.Fatal("B granted beside A's turn")
	}
	if ok, ahead, _, _ := f.take(t, "C", 10*time.Minute); ok || ahead != 1 {
		t.Fatalf("C: granted %v ahead %d, want held behind B", ok, ahead)
	}
	f.now = t0.Add(10 * time.Second) // B is late; A still holds its turn
	if ok, ahead, _, _ := f.take(t, "C", 10*time.Minute); ok || ahead != 0 {
		t.Fatalf("C after B's cut-off: granted %v ahead %d, want held, nobody ahead", ok, ahead)
	}
	// A's holder died: its turn lapses Lease (1m here) after it was
	// granted, whatever the attempt's deadline.
	f.now = t0.Add(time.Minute - time.Millisecond)
	f.d.wake("")
	if got := f.runs.take(); len(got) != 0 {
		t.Fatalf("woken %v before A's lease ran out", got)
	}
	f.now = t0.Add(time.Minute)
	f.d.wake("")
	if got := f.runs.take(); !slices.Equal(got, []string{"C"}) {
		t.Fatalf("woken %v, want [C] (B is late, A's turn lapsed)", got)
	}
}

// A holder that is alive renews its turns every Lease/3 (Run does), so a
// turn lasts as long as its attempt; once it stops renewing (killed), the
// turn lapses Lease after the last renewal. Released turns are not renewed,
// nor are lapsed ones taken back.
func TestLiveHoldersRenewAndDeadOnesLapse(t *testing.T) {
	f := newFixture(t, 1)
	ok, _, _, release := f.take(t, "A", time.Hour)
	if !ok {
		t.Fatal("A not granted")
	}
	if ok, _, _, _ := f.take(t, "B", 30*time.Minute); ok {
		t.Fatal("B granted beside A")
	}
	f.now = t0.Add(20 * time.Second)
	f.d.renew() // Lease/3 passed: renewed until t0+80s
	f.now = t0.Add(70 * time.Second)
	f.d.wake("")
	if got := f.runs.take(); len(got) != 0 {
		t.Fatalf("woken %v while A's holder renews its turn", got)
	}
	f.now = t0.Add(75 * time.Second)
	f.d.renew() // renewed until t0+135s; then A's holder dies
	f.now = t0.Add(135*time.Second - time.Millisecond)
	f.d.wake("")
	if got := f.runs.take(); len(got) != 0 {
		t.Fatalf("woken %v before the dead holder's lease ran out", got)
	}
	f.now = t0.Add(135 * time.Second)
	f.d.wake("")
	if got := f.runs.take(); !slices.Equal(got, []string{"B"}) {
		t.Fatalf("woken %v, want [B] once A's lease lapsed", got)
	}
	// B takes the turn; the late Release of A's attempt (and a renewal)
	// neither frees B's turn nor brings A's back.
	if ok, _, _, _ := f.take(t, "B", 30*time.Minute); !ok {
		t.Fatal("B not granted after A lapsed")
	}
	f.now = t0.Add(200 * time.Second)
	f.d.renew()
	if err := f.d.cfg.Redis.ZScore(context.Background(), f.d.keys[1], "A").Err(); err != redis.Nil {
		t.Fatalf("A's lapsed turn after a renewal: %v, want none", err)
	}
	release()
	if n, err := f.d.cfg.Redis.ZCard(context.Background(), f.d.keys[1]).Result(); err != nil || n != 1 {
		t.Fatalf("turns held: %d %v, want B's alone", n, err)
	}
	if ok, _, _, _ := f.take(t, "C", time.Minute); ok {
		t.Fatal("C granted beside B")
	}
}

func TestWakingATaskThatIsGoneForgetsIt(t *testing.T) {
	f := newFixture(t, 1)
	_, _, _, release := f.take(t, "A", time.Hour)
	f.take(t, "B", 10*time.Minute)
	f.take(t, "C", 20*time.Minute)
	f.runs.gone["B"] = true // an operator deleted it
	release()
	if got := f.runs.take(); len(got) != 0 {
		t.Fatalf("ran %v, want nothing: B is gone", got)
	}
	// B is forgotten at once, so its turn goes to C without waiting out the wake.
	f.d.wake("")
	if got := f.runs.take(); !slices.Equal(got, []string{"C"}) {
		t.Fatalf("ran %v, want [C]", got)
	}
}

// A woken task is run only if it is still held: waiting to retry, or
// archived by asynq's counter at its hold (MaxRetry 0: its record says
// parked; TestWakeRunsAParkedHold). One that finished (its run went on
// without a turn when Redis hiccuped) or that an operator archived is
// forgotten, never run again; one whose holding run has not ended is tried
// again on the next tick; one already pending keeps its place.
func TestWakeRunsAParkedHold(t *testing.T) {
	f := newFixture(t, 1)
	_, _, _, release := f.take(t, "A", time.Hour)
	f.take(t, "B", 10*time.Minute)
	f.runs.state["B"] = asynq.TaskStateArchived
	f.runs.parked = map[string]bool{"B": true}
	release()
	if got := f.runs.take(); !slices.Equal(got, []string{"B"}) {
		t.Fatalf("ran %v, want B: a MaxRetry 0 hold is archived by asynq's counter and still waits its turn", got)
	}
}

func TestWakeRunsOnlyHeldTasks(t *testing.T) {
	cases := []struct {
		state     asynq.TaskState
		wantRun   bool
		wantAgain bool // woken again by the next wake
	}{
		{asynq.TaskStateRetry, true, false},
		{asynq.TaskStateCompleted, false, false},
		{asynq.TaskStateArchived, false, false}, // an operator's archive
		{asynq.TaskStateActive, false, true},
		{asynq.TaskStatePending, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.state.String(), func(t *testing.T) {
			f := newFixture(t, 1)
			_, _, _, release := f.take(t, "A", time.Hour)
			f.take(t, "B", 10*time.Minute)
			f.runs.state["B"] = tc.state
			release()
			if got := f.runs.take(); slices.Equal(got, []string{"B"}) != tc.wantRun {
				t.Fatalf("ran %v, want B run: %v", got, tc.wantRun)
			}
			f.runs.state["B"] = asynq.TaskStateRetry // as it is once its run ends
			f.d.wake("")
			if got := f.runs.take(); slices.Equal(got, []string{"B"}) != tc.wantAgain {
				t.Fatalf("next wake ran %v, want B run again: %v", got, tc.wantAgain)
			}
		})
	}
}

func TestConfigRefused(t *testing.T) {
	r := redistest.New(t)
	rc := r.Client()
	defer rc.Close()
	for name, cfg := range map[string]Config{
		"no redis":       {Runner: &runs{}, Slots: 1},
		"no runner":      {Redis: rc, Slots: 1},
		"no slots":       {Redis: rc, Runner: &runs{}},
		"negative lease": {Redis: rc, Runner: &runs{}, Slots: 1, Lease: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	r := redistest.Start(t)
	rc := r.Client()
	defer rc.Close()
	d, err := New(Config{Redis: rc, Runner: &runs{}, Slots: 1, RedisTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if _, err := d.Take(context.Background(), "A", time.Now().Add(time.Hour)); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Take with Redis down: %v, want an error", err)
	}
}
