package drill

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verdict is a run's outcome.
type Verdict string

// The verdicts. The CLI exits 0 only on VerdictPassed.
const (
	VerdictPassed  Verdict = "passed"
	VerdictFailed  Verdict = "failed"
	VerdictAborted Verdict = "aborted"
)

// Figures are a run's measured numbers, the ones set beside the previous
// run's in a report.
type Figures struct {
	DurationMs float64 `json:"duration_ms"`
	Requests   int     `json:"requests"`
	// FailedRequests is how many probes failed (no answer, or a status
	// other than expect_status).
	FailedRequests int `json:"failed_requests"`
	// OutageMs runs from the start of the first failed request to the end
	// of the last one: the whole disturbed stretch.
	OutageMs float64 `json:"outage_ms"`
	// LongestOutageMs is the longest run of consecutive failed requests,
	// from the first one's start to the start of the next request that
	// passed (or the last one's end, when none passed after it): the
	// longest time a client could not be served. outage-max checks this.
	LongestOutageMs float64 `json:"longest_outage_ms"`
	ARPRounds       int     `json:"arp_rounds"`
	// ARPDoubleRounds is how many ARP rounds heard two or more MACs.
	ARPDoubleRounds int `json:"arp_double_rounds"`
	HolderChanges   int `json:"holder_changes"`
	// FailoverMs is from the start of the first fault to the first change
	// to a node other than the one active at the start; nil when the role
	// did not move.
	FailoverMs *float64 `json:"failover_ms,omitempty"`
}

// Check is the outcome of one expectation or one step.
type Check struct {
	// Key identifies the check across runs of one runbook
	// ("expectations[1] outage-max 1s", "steps[2]").
	Key string `json:"key"`
	// What is the check in words, targets resolved.
	What   string `json:"what"`
	Passed bool   `json:"passed"`
	// Measured is what the run saw ("569ms", "2 requests", "never").
	Measured string `json:"measured"`
	// Value is Measured as a number (ms, requests or rounds) when it is
	// one, for comparing runs.
	Value *float64 `json:"value,omitempty"`
	// Miss says by how much a failed check missed ("by 112ms").
	Miss string `json:"miss,omitempty"`
}

// TimelineEntry is one line of a report's timeline.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// OffsetMs is At after the run's start.
	OffsetMs float64 `json:"offset_ms"`
	What     string  `json:"what"`
}

// Report is the evaluation of one run.
type Report struct {
	Runbook     string    `json:"runbook"`
	Operator    string    `json:"operator,omitempty"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Verdict     Verdict   `json:"verdict"`
	AbortReason string    `json:"abort_reason,omitempty"`
	// Active, Standby and Witness are the roles' nodes at the start.
	Active  string  `json:"active"`
	Standby string  `json:"standby"`
	Witness string  `json:"witness"`
	Figures Figures `json:"figures"`
	// Expectations holds one Check per runbook expectation, in order.
	Expectations []Check `json:"expectations"`
	// Steps holds one Check per step: a fault that could not be injected
	// or undone, a wait that timed out, an expect that did not hold fail.
	Steps    []Check         `json:"steps"`
	Timeline []TimelineEntry `json:"timeline"`
}

// Passed reports whether the verdict is passed: the CLI's exit code 0.
func (r *Report) Passed() bool { return r.Verdict == VerdictPassed }

// Evaluate judges a run. It is pure: the same plan and observations give
// the same report.
func Evaluate(p *Plan, obs *Observations) *Report {
	e := newEvaluation(p, obs)
	rep := &Report{
		Runbook:  p.Runbook.Name,
		Operator: obs.Operator,
		Start:    obs.Start,
		End:      obs.End,
		Active:   p.Active,
		Standby:  p.Standby,
		Witness:  p.Witness,
		Figures:  e.figures(),
	}
	for _, pe := range p.Expectations {
		rep.Expectations = append(rep.Expectations, e.expectation(pe))
	}
	for _, ps := range p.Steps {
		rep.Steps = append(rep.Steps, e.step(ps))
	}
	rep.Timeline = e.timeline()
	rep.Verdict = VerdictPassed
	for _, c := range append(append([]Check(nil), rep.Expectations...), rep.Steps...) {
		if !c.Passed {
			rep.Verdict = VerdictFailed
		}
	}
	if obs.Aborted != "" {
		rep.Verdict = VerdictAborted
		rep.AbortReason = obs.Aborted
	}
	return rep
}

// evaluation holds the observations sorted, and what is derived from them.
type evaluation struct {
	p      *Plan
	obs    *Observations
	events []Event
	probes []ProbeResult
	arp    []ARPRound
}

func newEvaluation(p *Plan, obs *Observations) *evaluation {
	e := &evaluation{p: p, obs: obs}
	e.events = append([]Event(nil), obs.Events...)
	sort.SliceStable(e.events, func(i, j int) bool { return e.events[i].At.Before(e.events[j].At) })
	e.probes = append([]ProbeResult(nil), obs.Probes...)
	sort.SliceStable(e.probes, func(i, j int) bool { return e.probes[i].At.Before(e.probes[j].At) })
	e.arp = append([]ARPRound(nil), obs.ARP...)
	sort.SliceStable(e.arp, func(i, j int) bool { return e.arp[i].At.Before(e.arp[j].At) })
	return e
}

func (e *evaluation) failed(pr ProbeResult) bool { return e.p.ProbeFailed(pr) }

// end is when a probe was over: its start plus its latency (a timeout's
// latency is the timeout).
func probeEnd(pr ProbeResult) time.Time { return pr.At.Add(pr.Latency) }

// outage is the first failed request's start to the last one's end.
func (e *evaluation) outage() (time.Duration, *ProbeResult, *ProbeResult) {
	var first, last *ProbeResult
	for i := range e.probes {
		if e.failed(e.probes[i]) {
			if first == nil {
				first = &e.probes[i]
			}
			last = &e.probes[i]
		}
	}
	if first == nil {
		return 0, nil, nil
	}
	return probeEnd(*last).Sub(first.At), first, last
}

// longestOutage is the longest run of consecutive failed requests (see
// Figures.LongestOutageMs).
func (e *evaluation) longestOutage() time.Duration {
	var longest time.Duration
	for i := 0; i < len(e.probes); {
		if !e.failed(e.probes[i]) {
			i++
			continue
		}
		j := i
		for j+1 < len(e.probes) && e.failed(e.probes[j+1]) {
			j++
		}
		end := probeEnd(e.probes[j])
		if j+1 < len(e.probes) {
			end = e.probes[j+1].At
		}
		longest = max(longest, end.Sub(e.probes[i].At))
		i = j + 1
	}
	return longest
}

func (e *evaluation) doubleRounds() int {
	n := 0
	for _, r := range e.arp {
		seen := map[string]bool{}
		for _, m := range r.MACs {
			seen[strings.ToLower(m)] = true
		}
		if len(seen) >= 2 {
			n++
		}
	}
	return n
}

func (e *evaluation) isFault(step int) bool {
	return step >= 0 && step < len(e.p.Steps) && e.p.Steps[step].Step.Kind == StepFault
}

// firstFault is when the first fault started.
func (e *evaluation) firstFault() (time.Time, bool) {
	for _, ev := range e.events {
		if ev.Kind == EventStepStart && e.isFault(ev.Step) {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// stepStart is when steps[i] started.
func (e *evaluation) stepStart(i int) (time.Time, bool) {
	for _, ev := range e.events {
		if ev.Kind == EventStepStart && ev.Step == i {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// lastFaultEnd is when the last fault ended: its undo, or, for one
// without a recorded undo, its start plus its duration (a planned failover
// without a hand-back ends when its step does).
func (e *evaluation) lastFaultEnd() (time.Time, bool) {
	var last time.Time
	found := false
	for i, ps := range e.p.Steps {
		if ps.Step.Kind != StepFault {
			continue
		}
		var start, undo, stepEnd time.Time
		for _, ev := range e.events {
			if ev.Step != i {
				continue
			}
			switch ev.Kind {
			case EventStepStart:
				if start.IsZero() {
					start = ev.At
				}
			case EventStepEnd:
				if stepEnd.IsZero() {
					stepEnd = ev.At
				}
			case EventFaultUndone:
				undo = ev.At
			}
		}
		if start.IsZero() {
			continue
		}
		end := undo
		if end.IsZero() {
			switch {
			case ps.Step.Fault.Duration > 0:
				end = start.Add(ps.Step.Fault.Duration)
				if !e.obs.End.IsZero() && end.After(e.obs.End) {
					end = e.obs.End
				}
			case !stepEnd.IsZero():
				end = stepEnd
			default:
				end = start
			}
		}
		if !found || end.After(last) {
			last, found = end, true
		}
	}
	return last, found
}

// holderAt replays holder events up to and including t.
func (e *evaluation) holderAt(t time.Time) string {
	h := e.p.Active
	for _, ev := range e.events {
		if ev.Kind == EventHolder && !ev.At.After(t) {
			h = ev.Node
		}
	}
	return h
}

func (e *evaluation) figures() Figures {
	f := Figures{Requests: len(e.probes), ARPRounds: len(e.arp), ARPDoubleRounds: e.doubleRounds()}
	if !e.obs.End.IsZero() {
		f.DurationMs = ms(e.obs.End.Sub(e.obs.Start))
	}
	for _, pr := range e.probes {
		if e.failed(pr) {
			f.FailedRequests++
		}
	}
	o, _, _ := e.outage()
	f.OutageMs = ms(o)
	f.LongestOutageMs = ms(e.longestOutage())
	t0, ok := e.firstFault()
	for _, ev := range e.events {
		if ev.Kind != EventHolder {
			continue
		}
		f.HolderChanges++
		if ok && f.FailoverMs == nil && ev.Node != "" && ev.Node != e.p.Active && !ev.At.Before(t0) {
			v := ms(ev.At.Sub(t0))
			f.FailoverMs = &v
		}
	}
	return f
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fptr(v float64) *float64 { return &v }

// fmtDur rounds to the millisecond (to the microsecond below one).
func fmtDur(d time.Duration) string {
	if d < time.Millisecond && d > -time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (e *evaluation) expectation(pe PlannedExpectation) Check {
	c := Check{Key: pe.Key(), What: pe.Describe()}
	noProbes := len(e.probes) == 0
	switch pe.Kind {
	case ExpHolderBecomes:
		t0, ok := e.firstFault()
		if pe.After != nil {
			t0, ok = e.stepStart(*pe.After)
		}
		if !ok {
			c.Measured = "no fault ran"
			if pe.After != nil {
				c.Measured = fmt.Sprintf("steps[%d] did not run", *pe.After)
			}
			break
		}
		at, found := time.Time{}, false
		if e.holderAt(t0) == pe.NodeName {
			at, found = t0, true
		} else {
			for _, ev := range e.events {
				if ev.Kind == EventHolder && ev.Node == pe.NodeName && !ev.At.Before(t0) {
					at, found = ev.At, true
					break
				}
			}
		}
		if !found {
			c.Measured = "never"
			if !e.obs.End.IsZero() {
				c.Miss = fmt.Sprintf("not within the %s the run lasted after the fault", fmtDur(e.obs.End.Sub(t0)))
			}
			break
		}
		d := at.Sub(t0)
		c.Measured, c.Value = fmtDur(d), fptr(ms(d))
		c.Passed = d <= pe.Within
		if !c.Passed {
			c.Miss = "by " + fmtDur(d-pe.Within)
		}
	case ExpHolderStays:
		if h := e.p.Active; h != pe.NodeName {
			c.Measured = fmt.Sprintf("%s held at the start", dash(h))
			break
		}
		c.Passed, c.Measured = true, "stayed"
		for _, ev := range e.events {
			if ev.Kind == EventHolder && ev.Node != pe.NodeName {
				c.Passed = false
				c.Measured = fmt.Sprintf("moved to %s at +%s", nobody(ev.Node), fmtDur(ev.At.Sub(e.obs.Start)))
				break
			}
		}
	case ExpOutageMax:
		if noProbes {
			c.Measured = "no requests observed"
			break
		}
		d := e.longestOutage()
		c.Measured, c.Value = fmtDur(d), fptr(ms(d))
		c.Passed = d <= pe.Max
		if !c.Passed {
			c.Miss = "by " + fmtDur(d-pe.Max)
		}
	case ExpFailedRequestsMax:
		if noProbes {
			c.Measured = "no requests observed"
			break
		}
		n := 0
		for _, pr := range e.probes {
			if e.failed(pr) {
				n++
			}
		}
		c.Measured, c.Value = plural(n, "request", "requests"), fptr(float64(n))
		c.Passed = n <= pe.Count
		if !c.Passed {
			c.Miss = "by " + plural(n-pe.Count, "request", "requests")
		}
	case ExpNeverTwoHolders:
		if len(e.arp) == 0 {
			c.Measured = "no ARP round observed"
			break
		}
		n := e.doubleRounds()
		c.Measured, c.Value = fmt.Sprintf("%d of %s with two MACs", n, plural(len(e.arp), "ARP round", "ARP rounds")), fptr(float64(n))
		c.Passed = n == 0
		if !c.Passed {
			c.Miss = "by " + plural(n, "round", "rounds")
		}
	case ExpHistoryReason:
		var seen []string
		for _, ev := range e.events {
			if ev.Kind != EventHistory {
				continue
			}
			seen = append(seen, ev.Reason)
			if pe.Reason != nil && pe.Reason.MatchString(ev.Reason) {
				c.Passed, c.Measured = true, ev.Reason
				break
			}
		}
		if !c.Passed {
			if len(seen) == 0 {
				c.Measured = "no change of active node"
			} else {
				c.Measured = "reasons " + strings.Join(seen, ", ")
			}
		}
	case ExpSteadyStateWithin:
		end, ok := e.lastFaultEnd()
		if !ok {
			c.Measured = "no fault ran"
			break
		}
		d, ok, why := e.recovery(end)
		if !ok {
			c.Measured = why
			break
		}
		c.Measured, c.Value = fmtDur(d), fptr(ms(d))
		c.Passed = d <= pe.Max
		if !c.Passed {
			c.Miss = "by " + fmtDur(d-pe.Max)
		}
	}
	return c
}

func nobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// recovery is how long after end the steady state held again for good:
// from end to the first passed request after the last failed one; zero
// when no request failed after end.
func (e *evaluation) recovery(end time.Time) (time.Duration, bool, string) {
	lastFail := -1
	after := 0
	for i, pr := range e.probes {
		if !pr.At.Before(end) {
			after++
		}
		if e.failed(pr) {
			lastFail = i
		}
	}
	if after == 0 {
		return 0, false, "no request after the last fault ended"
	}
	if lastFail < 0 || probeEnd(e.probes[lastFail]).Before(end) {
		return 0, true, ""
	}
	if lastFail+1 == len(e.probes) {
		return 0, false, "never: the last request failed"
	}
	d := e.probes[lastFail+1].At.Sub(end)
	return max(d, 0), true, ""
}

func (e *evaluation) step(ps PlannedStep) Check {
	c := Check{Key: index("steps", ps.Index), What: ps.Describe()}
	var started, ended bool
	var end Event
	var undo *Event
	for i, ev := range e.events {
		if ev.Step != ps.Index {
			continue
		}
		switch ev.Kind {
		case EventStepStart:
			started = true
		case EventStepEnd:
			if !ended {
				ended, end = true, ev
			}
		case EventFaultUndone:
			undo = &e.events[i]
		}
	}
	switch {
	case !started:
		c.Measured = "not run"
		if e.obs.Aborted != "" {
			c.Measured = "not run (aborted)"
		}
		return c
	case !ended:
		c.Measured = "did not end"
		return c
	case !end.OK:
		c.Measured = dashDetail(end.Detail, "failed")
		return c
	}
	c.Passed, c.Measured = true, dashDetail(end.Detail, "ok")
	if ps.Step.Kind == StepFault {
		switch {
		case undo != nil && !undo.OK:
			c.Passed, c.Measured = false, "undo failed: "+dashDetail(undo.Detail, "unknown")
		case undo == nil && ps.Step.Fault.Duration > 0:
			c.Passed, c.Measured = false, "no undo recorded"
		case undo != nil:
			c.Measured = fmt.Sprintf("undone after %s", fmtDur(undo.At.Sub(end.At)))
		}
	}
	return c
}

func dashDetail(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (e *evaluation) timeline() []TimelineEntry {
	var out []TimelineEntry
	add := func(at time.Time, format string, args ...any) {
		out = append(out, TimelineEntry{At: at, OffsetMs: ms(at.Sub(e.obs.Start)), What: fmt.Sprintf(format, args...)})
	}
	add(e.obs.Start, "start: active %s, standby %s", dash(e.p.Active), dash(e.p.Standby))
	describe := func(i int) string {
		if i >= 0 && i < len(e.p.Steps) {
			return e.p.Steps[i].Describe()
		}
		return "unknown step"
	}
	holder := e.p.Active
	for _, ev := range e.events {
		switch ev.Kind {
		case EventStepStart:
			add(ev.At, "steps[%d] %s", ev.Step, describe(ev.Step))
		case EventStepEnd:
			if !ev.OK {
				add(ev.At, "steps[%d] failed: %s", ev.Step, dashDetail(ev.Detail, "no detail"))
			} else if e.isFault(ev.Step) {
				add(ev.At, "steps[%d] fault in place", ev.Step)
			} else if ev.Detail != "" {
				add(ev.At, "steps[%d] %s", ev.Step, ev.Detail)
			}
		case EventFaultUndone:
			if ev.OK {
				add(ev.At, "steps[%d] fault undone", ev.Step)
			} else {
				add(ev.At, "steps[%d] undo failed: %s", ev.Step, dashDetail(ev.Detail, "no detail"))
			}
		case EventHolder:
			add(ev.At, "holder %s → %s", nobody(holder), nobody(ev.Node))
			if ev.Node != "" {
				for _, pr := range e.probes {
					if !pr.At.Before(ev.At) && !e.failed(pr) && pr.Node == ev.Node {
						add(pr.At, "first answer from %s", ev.Node)
						break
					}
				}
			}
			holder = ev.Node
		case EventHistory:
			add(ev.At, "history: active → %s, reason %s", nobody(ev.Node), ev.Reason)
		case EventAbort:
			add(ev.At, "abort: %s", dashDetail(ev.Detail, e.obs.Aborted))
		case EventNote:
			add(ev.At, "%s", ev.Detail)
		}
	}
	if _, first, last := e.outage(); first != nil {
		add(first.At, "first failed request (%s)", probeWhy(*first))
		if last != first {
			add(last.At, "last failed request (%s)", probeWhy(*last))
		}
	}
	if !e.obs.End.IsZero() {
		add(e.obs.End, "end")
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

func probeWhy(pr ProbeResult) string {
	if pr.Err != "" {
		return pr.Err
	}
	return fmt.Sprintf("status %d", pr.Status)
}
