package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// secretKey is every run's sandbox secret.
const secretKey = "soak-secret"

// env is what every run shares: the Redis, the refundd binary, the temp
// dir, the time limit of a run, and where progress lines go.
type env struct {
	redis    *redisServer
	bin, dir string
	timeout  time.Duration
	progress io.Writer
}

// event is a disruption as it happened.
type event struct {
	At        time.Time
	What      string
	Cancelled int           // refunds cancelled in the sandbox when it began
	Took      time.Duration // Redis: how long it was unavailable
}

// runState is one run in progress: its sandbox, queue and replicas.
type runState struct {
	spec      runSpec
	env       env
	sb        *rpctest.Server
	queue     string
	initiated time.Time
	refs      []string
	enq       *tasks.Enqueuer
	insp      *asynq.Inspector
	fleet     *fleet
	smp       *sampler
	events    []event
	findings  []string
}

// execute runs spec to the end (every task finished, or the time limit)
// and answers its evidence.
func execute(ctx context.Context, e env, spec runSpec) (*evidence, error) {
	rs, err := prepare(e, spec)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	e.logf("%s/%s: seeding and enqueuing %d refunds on queue %s", spec.Scenario, spec.Name, spec.Refunds, rs.queue)
	if err := rs.seedAndEnqueue(ctx); err != nil {
		return nil, err
	}
	smpCtx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { rs.smp.Run(smpCtx) })
	start := time.Now()
	if err := rs.fleet.Start(spec.Replicas); err != nil {
		stopSampling()
		wg.Wait()
		return nil, err
	}
	timedOut, driveErr := rs.drive(ctx, start.Add(e.timeout))
	stopSampling()
	wg.Wait()
	if err := rs.fleet.Stop(); err != nil {
		rs.findings = append(rs.findings, "stopping the replicas: "+err.Error())
	}
	if driveErr != nil {
		return nil, driveErr
	}
	e.logf("%s/%s: collecting evidence", spec.Scenario, spec.Name)
	return rs.collect(ctx, start, timedOut)
}

func prepare(e env, spec runSpec) (*runState, error) {
	sb := rpctest.NewServer(rpctest.Config{MerchantCode: spec.Prefix, SecretKey: secretKey})
	if err := sb.SetFaults(spec.Faults...); err != nil {
		sb.Close()
		return nil, fmt.Errorf("sandbox faults: %w", err)
	}
	queue := "soak-" + strings.ToLower(spec.Prefix) + "-" + randomHex(4)
	opt := asynq.RedisClientOpt{Addr: e.redis.Addr()}
	enq, err := tasks.NewEnqueuer(tasks.EnqueuerConfig{Redis: opt, Queue: queue})
	if err != nil {
		sb.Close()
		return nil, fmt.Errorf("enqueuer: %w", err)
	}
	settings := maps.Clone(replicaBase)
	maps.Copy(settings, spec.Env)
	maps.Copy(settings, map[string]string{"REDIS_URL": e.redis.URL(), "TCO_API_URL": sb.RPCURL, "TCO_MERCHANT_CODE": spec.Prefix,
		"TCO_SECRET_KEY": secretKey, "REFUND_QUEUE": queue})
	insp := asynq.NewInspector(opt)
	return &runState{spec: spec, env: e, sb: sb, queue: queue, enq: enq, insp: insp,
		fleet: newFleet(e.bin, e.dir, strings.ToLower(spec.Prefix), settings),
		smp:   newSampler(insp, queue, time.Second)}, nil
}

func (rs *runState) close() {
	_ = rs.enq.Close()
	_ = rs.insp.Close()
	rs.sb.Close()
}

// seedAndEnqueue seeds each refund pending in the sandbox, initiated a
// minute ago, and enqueues its cancellation (8 producers at once).
func (rs *runState) seedAndEnqueue(ctx context.Context) error {
	rs.initiated = time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	rs.refs = make([]string, rs.spec.Refunds)
	seed := make([]rpctest.Refund, len(rs.refs))
	for i := range rs.refs {
		rs.refs[i] = fmt.Sprintf("%s%05d", rs.spec.Prefix, i)
		seed[i] = rpctest.Refund{OrderRef: rs.refs[i], InitiatedAt: rs.initiated}
	}
	if err := rs.sb.Seed(seed...); err != nil {
		return fmt.Errorf("seed the sandbox: %w", err)
	}
	refs := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ref := range refs {
				p := tasks.CancelRefund{OrderRef: ref, RefundInitiatedAt: rs.initiated}
				if _, err := rs.enq.Enqueue(ctx, p); err != nil {
					errs <- fmt.Errorf("enqueue %s: %w", ref, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for _, ref := range rs.refs {
		select {
		case refs <- ref:
		case err = <-errs:
			break feed
		}
	}
	close(refs)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	return err
}

// drive fires the planned disruptions as the sandbox's cancels reach them,
// replaces any replica that died on its own, and returns when every task
// is finished (asynq's queue info) or at the deadline.
func (rs *runState) drive(ctx context.Context, deadline time.Time) (timedOut bool, err error) {
	planned := rs.spec.Events
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%s/%s: %w", rs.spec.Scenario, rs.spec.Name, ctx.Err())
		case <-tick.C:
		}
		cancelled := rs.sb.Stats().Calls["cancelRefund"]["ok"]
		for len(planned) > 0 && float64(cancelled) >= planned[0].At*float64(rs.spec.Refunds) {
			if err := rs.disrupt(ctx, planned[0], cancelled); err != nil {
				return false, err
			}
			planned = planned[1:]
		}
		rs.superviseCrashes(cancelled)
		if last, ok := rs.smp.Last(); ok && last.Finished >= rs.spec.Refunds {
			return false, nil
		}
		if time.Now().After(deadline) {
			return true, nil
		}
	}
}

// disrupt carries out one planned event.
func (rs *runState) disrupt(ctx context.Context, pe plannedEvent, cancelled int) error {
	ev := event{At: time.Now(), Cancelled: cancelled}
	switch pe.Kind {
	case eventKill:
		name, err := rs.fleet.KillAndReplace(pe.Index)
		if err != nil {
			return err
		}
		ev.What = "SIGKILL " + name + ", replacement started"
	case eventRedisRestart:
		took, err := rs.env.redis.Restart(ctx)
		if err != nil {
			return err
		}
		ev.What, ev.Took = "Redis restarted (SIGTERM, start, PING)", took
	}
	rs.events = append(rs.events, ev)
	rs.env.logf("%s/%s: %s at %d cancelled", rs.spec.Scenario, rs.spec.Name, ev.What, cancelled)
	return nil
}

// superviseCrashes replaces replicas that exited without being told to:
// a finding, not something the soak caused.
func (rs *runState) superviseCrashes(cancelled int) {
	for _, i := range rs.fleet.ExitedIndexes() {
		name, err := rs.fleet.KillAndReplace(i)
		msg := fmt.Sprintf("replica %s exited on its own at %d cancelled; replaced", name, cancelled)
		if err != nil {
			msg += " (replacement failed: " + err.Error() + ")"
		}
		rs.findings = append(rs.findings, msg)
		rs.events = append(rs.events, event{At: time.Now(), What: "crash of " + name, Cancelled: cancelled})
	}
}

func (e env) logf(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
