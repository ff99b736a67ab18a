package soak

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
	"github.com/refundd/refund-canceller/tasks"
)

// report prints figures beside their targets and remembers any missed.
type report struct {
	w       io.Writer
	section string // the run the rows are of, named in missed
	missed  []string
}

// row prints one figure; an empty target makes it informational.
func (r *report) row(name, value, target string, met bool) {
	verdict := ""
	if target != "" {
		verdict = "met"
		if !met {
			verdict = "MISSED"
			r.missed = append(r.missed, r.section+name)
		}
	}
	fmt.Fprintf(r.w, "  %-46s %10s   %-6s %s\n", name, value, target, verdict)
}

func (r *report) count(name string, refs []string) {
	r.row(name, fmt.Sprint(len(refs)), "0", len(refs) == 0)
}

func rate(v float64) string { return fmt.Sprintf("%.1f", v) }

// header prints what happened in the run: its disruptions, calls, tasks.
func (r *report) header(ev *evidence, f figures) {
	s := ev.Spec
	faults := "none"
	if s.Mix {
		faults = "the 20% mix (rpctest.FaultMix)"
	}
	for _, r := range s.Faults {
		if r.Kind == rpctest.FaultLatency {
			faults += fmt.Sprintf(", every call answered in %v + up to %v", time.Duration(r.Latency), time.Duration(r.Jitter))
		}
	}
	fmt.Fprintf(r.w, "\n== %s / %s: %d refunds, %d replicas, faults %s, queue %s\n", s.Scenario, s.Name, s.Refunds, s.Replicas, faults, ev.Queue)
	if len(s.Env) > 0 {
		fmt.Fprintf(r.w, "   env %s\n", kv(s.Env))
	}
	for _, e := range ev.Events {
		took := ""
		if e.Took > 0 {
			took = fmt.Sprintf(", unavailable %.1fs", e.Took.Seconds())
		}
		fmt.Fprintf(r.w, "   +%6.1fs %s (%d cancelled%s)\n", e.At.Sub(ev.Start).Seconds(), e.What, e.Cancelled, took)
	}
	fmt.Fprintf(r.w, "   ledger: %d calls, %d cancelRefund, %d hit by a fault (%.1f%%): %s\n", f.Calls, f.Cancels, f.Faulted,
		100*float64(f.Faulted)/float64(max(f.Cancels, 1)), kvInt(f.Faults))
	fmt.Fprintf(r.w, "   tasks: %s; final records: %s\n", kvInt(f.States), kvInt(f.Outcomes))
	if s.Mix {
		fmt.Fprintf(r.w, "   the last 10%% cancelled (after 90%%), by the faults their calls met first: %s\n", kvInt(tail(ev.Ledger, f.Refunds, 0.9)))
		fmt.Fprintf(r.w, "   the last 1%% (after 99%%): %s\n", kvInt(tail(ev.Ledger, f.Refunds, 0.99)))
	}
	fmt.Fprintf(r.w, "   replicas started to all finished: %.1fs%s\n", ev.End.Sub(ev.Start).Seconds(), map[bool]string{true: " (TIME LIMIT)"}[ev.TimedOut])
	for _, fd := range ev.Findings {
		fmt.Fprintf(r.w, "   FINDING: %s\n", fd)
	}
}

// correctness prints the figures every run is held to.
func (r *report) correctness(f figures) {
	r.count("refunds lost (not CANCELED)", f.Lost)
	r.count("refunds cancelled twice", f.Twice)
	r.count("late cancels (after initiated + 2h)", f.Late)
	r.row("false records (record vs sandbox)", fmt.Sprint(len(f.False)), "0", len(f.False) == 0)
	r.count("tasks not completed/archived in time", f.NotTerminal)
}

// details prints, for each failing category, up to 10 refunds with their
// ledger calls and records: the evidence an owner needs.
func (r *report) details(ev *evidence, f figures) {
	var falses []string
	for _, fr := range f.False {
		falses = append(falses, fr.Ref)
	}
	for _, c := range []struct {
		what string
		refs []string
	}{{"lost", f.Lost}, {"cancelled twice", f.Twice}, {"late", f.Late}, {"false record", falses}, {"not terminal", f.NotTerminal}} {
		for _, ref := range c.refs[:min(len(c.refs), 10)] {
			r.refund(ev, c.what, ref)
		}
		if len(c.refs) > 10 {
			fmt.Fprintf(r.w, "   … and %d more %s\n", len(c.refs)-10, c.what)
		}
	}
	for _, fr := range f.False[:min(len(f.False), 10)] {
		fmt.Fprintf(r.w, "   false record %s: %s\n", fr.Ref, fr.Why)
	}
}

// refund prints one refund's evidence.
func (r *report) refund(ev *evidence, what, ref string) {
	te := ev.Tasks[ref]
	fmt.Fprintf(r.w, "   %s %s: sandbox %s, task %v %s%s\n", what, ref, ev.Status[ref], te.State, te.Err, recordLine(te.Record))
	for _, c := range ev.Ledger {
		if c.OrderRef == ref {
			fmt.Fprintf(r.w, "      +%7.2fs %s %s %s\n", c.Time.Sub(ev.Start).Seconds(), c.Method, c.Outcome, c.Fault)
		}
	}
}

func recordLine(rec *tasks.Result) string {
	if rec == nil {
		return ", no record"
	}
	return fmt.Sprintf(", record %s attempts %d sent %d finished %s reason %q", rec.Outcome, rec.Attempts, rec.Sent,
		rec.FinishedAt.Format("15:04:05.000"), rec.Reason)
}

// slowest prints the n tasks that finished last (their records'
// FinishedAt), with how long after the replicas started.
func (r *report) slowest(ev *evidence, n int) {
	refs := slices.Clone(ev.Refs)
	at := func(ref string) time.Time {
		if rec := ev.Tasks[ref].Record; rec != nil {
			return rec.FinishedAt
		}
		return time.Time{}
	}
	slices.SortFunc(refs, func(a, b string) int { return at(b).Compare(at(a)) })
	fmt.Fprintf(r.w, "   last to finish:")
	for _, ref := range refs[:min(n, len(refs))] {
		rec := ev.Tasks[ref].Record
		if rec == nil {
			continue
		}
		fmt.Fprintf(r.w, " %s +%.1fs %s (attempts %d);", ref, rec.FinishedAt.Sub(ev.Start).Seconds(), rec.Outcome, rec.Attempts)
	}
	fmt.Fprintln(r.w)
}

// dump writes the run's per-second series of ledger outcomes and queue
// samples into dir, for a reader who wants the timeline.
func dump(dir string, ev *evidence) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("series-%s.txt", strings.ToLower(ev.Spec.Prefix)))
	var b strings.Builder
	fmt.Fprintf(&b, "# second since the replicas started: ledger calls by method:outcome[:fault]; queue pending/active/waiting/finished\n")
	by := map[int]map[string]int{}
	last := 0
	for _, c := range ev.Ledger {
		s := int(c.Time.Sub(ev.Start) / time.Second)
		if by[s] == nil {
			by[s] = map[string]int{}
		}
		key := c.Method + ":" + c.Outcome
		if k := fault(c.Fault); k != "" {
			key += ":" + k
		}
		by[s][key]++
		last = max(last, s)
	}
	queue := map[int]sample{}
	for _, s := range ev.Samples {
		sec := int(s.At.Sub(ev.Start) / time.Second)
		queue[sec] = s
		last = max(last, sec)
	}
	for s := 0; s <= last; s++ {
		q, ok := queue[s]
		qs := "-"
		if ok && q.OK {
			qs = fmt.Sprintf("%d/%d/%d/%d", q.Pending, q.Active, q.Waiting, q.Finished)
		}
		fmt.Fprintf(&b, "%4d %-18s %s\n", s, qs, kvInt(by[s]))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, dumpLedger(dir, ev)
}

// dumpLedger writes the run's ledger, a JSON call per line.
func dumpLedger(dir string, ev *evidence) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, c := range ev.Ledger {
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(dir, fmt.Sprintf("ledger-%s.jsonl", strings.ToLower(ev.Spec.Prefix))), b.Bytes(), 0o600)
}

func kv(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func kvInt(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
