package soak

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// figures are a run's results, judged from its evidence alone.
type figures struct {
	Refunds                 int
	Calls, Cancels, Faulted int            // ledger: every call, cancelRefund calls, those a fault touched
	GetOrders, Logins       int            // ledger: getOrder and login calls
	Faults                  map[string]int // cancelRefund calls by fault kind
	Applied                 map[string]int // applied cancels by order: outcome "ok", apply_then_drop included
	Lost                    []string       // not CANCELED in the sandbox
	Twice                   []string       // more than one applied cancel
	Late                    []string       // an applied cancel after initiation + the window
	False                   []falseRecord
	NotTerminal             []string       // not completed or archived at the end
	Outcomes                map[string]int // final records by outcome ("(no record)" if none)
	States                  map[string]int // tasks by asynq state
	Rate90, Rate99, RateAll float64        // successful cancels/s from the first call to 90%, 99%, the last
	PendingStall, AnyStall  stretch
}

// falseRecord is a task whose record disagrees with the sandbox.
type falseRecord struct {
	Ref, Why string
}

// stretch is a time the queue made no progress.
type stretch struct {
	From time.Time
	Len  time.Duration
}

// judge computes a run's figures.
func judge(ev *evidence) figures {
	f := figures{Refunds: len(ev.Refs), Faults: map[string]int{}, Outcomes: map[string]int{}, States: map[string]int{}}
	f.countCalls(ev.Ledger)
	applies := appliedTimes(ev.Ledger)
	f.Applied = map[string]int{}
	for ref, ts := range applies {
		f.Applied[ref] = len(ts)
	}
	f.Twice = cancelledTwice(applies)
	f.Late = lateCancels(applies, func(string) time.Time { return ev.Initiated }, tasks.Window)
	f.Lost = lost(ev.Refs, ev.Status)
	for _, ref := range ev.Refs {
		te := ev.Tasks[ref]
		f.countTask(ref, te)
		if why := falseRecordWhy(te, ev.Status[ref], f.Applied[ref]); why != "" {
			f.False = append(f.False, falseRecord{Ref: ref, Why: why})
		}
	}
	first := firstCall(ev.Ledger)
	firsts := firstApplies(applies)
	f.Rate90 = rateTo(first, firsts, f.Refunds, 0.90)
	f.Rate99 = rateTo(first, firsts, f.Refunds, 0.99)
	f.RateAll = rateTo(first, firsts, len(firsts), 1)
	f.PendingStall = longestStall(ev.Samples, func(s sample) bool { return s.Pending > 0 })
	f.AnyStall = longestStall(ev.Samples, func(s sample) bool { return s.Unfinished() > 0 })
	return f
}

func (f *figures) countCalls(calls []rpctest.Call) {
	for _, c := range calls {
		f.Calls++
		switch c.Method {
		case "getOrder":
			f.GetOrders++
		case "login":
			f.Logins++
		}
		if c.Method != "cancelRefund" {
			continue
		}
		f.Cancels++
		if k := fault(c.Fault); k != "" {
			f.Faulted++
			f.Faults[k]++
		}
	}
}

func (f *figures) countTask(ref string, te taskEvidence) {
	state := te.State.String()
	if te.State == 0 {
		state = "(unreadable)"
	}
	f.States[state]++
	if !te.Terminal() {
		f.NotTerminal = append(f.NotTerminal, ref)
		return
	}
	if te.Record == nil {
		f.Outcomes["(no record)"]++
		return
	}
	f.Outcomes[te.Record.Outcome]++
}

// appliedTimes answers, by order, the times of its applied cancels: calls
// to cancelRefund the sandbox applied ("ok", which includes
// apply_then_drop: applied, its answer lost).
func appliedTimes(calls []rpctest.Call) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, c := range calls {
		if c.Method == "cancelRefund" && c.Outcome == "ok" {
			out[c.OrderRef] = append(out[c.OrderRef], c.Time)
		}
	}
	return out
}

// cancelledTwice answers the orders with more than one applied cancel.
func cancelledTwice(applies map[string][]time.Time) []string {
	var out []string
	for ref, ts := range applies {
		if len(ts) > 1 {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out
}

// lateCancels answers the orders with an applied cancel at or after their
// refund's initiation + window.
func lateCancels(applies map[string][]time.Time, initiated func(ref string) time.Time, window time.Duration) []string {
	var out []string
	for ref, ts := range applies {
		closes := initiated(ref).Add(window)
		if slices.ContainsFunc(ts, func(t time.Time) bool { return !t.Before(closes) }) {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out
}

// lost answers the refunds the sandbox does not show CANCELED.
func lost(refs []string, status map[string]string) []string {
	var out []string
	for _, ref := range refs {
		if status[ref] != rpctest.StatusCanceled {
			out = append(out, ref)
		}
	}
	return out
}

// falseRecordWhy says how a finished task's record disagrees with the
// sandbox ("" if it does not, or the task is not finished). The strict
// reading, with one task per refund as in the soak:
//   - a finished task must have a final record;
//   - "cancelled" needs the refund CANCELED and an applied cancel in the
//     ledger (2Checkout answered success to one of them);
//   - "already_cancelled" and "duplicate" (another task owns the refund:
//     its outcome is the refund's) need the refund CANCELED;
//   - any other ending (refused, window_closed, invalid, superseded,
//     unknown) is false when the sandbox shows the refund CANCELED by this
//     task's cancel: "unknown" too, since getOrder could have told.
func falseRecordWhy(te taskEvidence, status string, applied int) string {
	if !te.Terminal() {
		return ""
	}
	r := te.Record
	switch {
	case r == nil:
		return "finished task without a record: " + te.RecordErr
	case !r.Final():
		return "finished task whose record is not final: " + r.Outcome
	}
	cancelled := status == rpctest.StatusCanceled
	switch r.Outcome {
	case tasks.OutcomeCancelled:
		if !cancelled {
			return "says cancelled; the sandbox shows " + status
		}
		if applied == 0 {
			return "says cancelled; the ledger has no applied cancelRefund"
		}
	case tasks.OutcomeAlreadyCancelled, tasks.OutcomeDuplicate:
		if !cancelled {
			return "says " + r.Outcome + "; the sandbox shows " + status
		}
	default:
		if cancelled && applied > 0 {
			return "says " + r.Outcome + " (not cancelled); the sandbox shows it CANCELED by this task's cancelRefund"
		}
	}
	return ""
}

// firstCall answers the ledger's earliest call (login included).
func firstCall(calls []rpctest.Call) time.Time {
	var first time.Time
	for _, c := range calls {
		if first.IsZero() || c.Time.Before(first) {
			first = c.Time
		}
	}
	return first
}

// firstApplies answers each order's first applied cancel, sorted.
func firstApplies(applies map[string][]time.Time) []time.Time {
	out := make([]time.Time, 0, len(applies))
	for _, ts := range applies {
		out = append(out, slices.MinFunc(ts, time.Time.Compare))
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// rateTo answers the refunds cancelled per second from first until frac
// of n refunds were (sorted: each refund's first applied cancel); 0 if
// they never were.
func rateTo(first time.Time, sorted []time.Time, n int, frac float64) float64 {
	k := int(math.Ceil(frac * float64(n)))
	if k == 0 || k > len(sorted) {
		return 0
	}
	d := sorted[k-1].Sub(first).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(k) / d
}

// longestStall answers the longest stretch of samples, all busy, over
// which no task finished (the finished count stayed the same). Samples
// the Inspector could not answer (Redis restarting) neither end nor
// extend a stretch; the next answered one measures it.
func longestStall(samples []sample, busy func(sample) bool) stretch {
	var best stretch
	var from time.Time
	finished, in := 0, false
	for _, s := range samples {
		switch {
		case !s.OK:
			continue
		case !busy(s):
			in = false
		case !in || s.Finished != finished:
			in, from, finished = true, s.At, s.Finished
		default:
			if d := s.At.Sub(from); d > best.Len {
				best = stretch{From: from, Len: d}
			}
		}
	}
	return best
}

// tail sorts the refunds cancelled after the first frac of them by what
// delayed them, from the ledger: the fault kinds their calls met before
// their first applied cancel ("none" for a refund whose calls met no
// fault: a killed replica's task, back through asynq's recoverer, or one
// that waited its turn).
func tail(calls []rpctest.Call, n int, frac float64) map[string]int {
	applies := appliedTimes(calls)
	firsts := firstApplies(applies)
	k := int(math.Ceil(frac * float64(n)))
	if k == 0 || k > len(firsts) {
		return nil
	}
	cut := firsts[k-1]
	late := map[string]time.Time{}
	for ref, ts := range applies {
		if first := slices.MinFunc(ts, time.Time.Compare); first.After(cut) {
			late[ref] = first
		}
	}
	hit := map[string]map[string]bool{}
	for _, c := range calls {
		first, ok := late[c.OrderRef]
		if !ok || fault(c.Fault) == "" || !c.Time.Before(first) {
			continue
		}
		if hit[c.OrderRef] == nil {
			hit[c.OrderRef] = map[string]bool{}
		}
		hit[c.OrderRef][fault(c.Fault)] = true
	}
	out := map[string]int{}
	for ref := range late {
		kinds := slices.Sorted(maps.Keys(hit[ref]))
		if len(kinds) == 0 {
			kinds = []string{"none"}
		}
		out[strings.Join(kinds, "+")]++
	}
	return out
}

// fault answers the fault kinds a call met ("status", "latency+drop"),
// without the latency every call of the soak meets: the faults of the mix.
func fault(kinds string) string {
	return strings.Join(slices.DeleteFunc(strings.Split(kinds, "+"), func(k string) bool { return k == "" || k == rpctest.FaultLatency }), "+")
}
