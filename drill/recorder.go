package drill

import (
	"sync"
	"time"
)

// Recorder collects a run's observations from the runner's goroutines (the
// step loop, the prober, the ARP watcher, the status poller). It is safe
// for concurrent use; it does no I/O and reads time only through the clock
// it is given.
type Recorder struct {
	now func() time.Time

	mu  sync.Mutex
	obs Observations
}

// NewRecorder starts recording at now(); now is time.Now in the runner and
// a fake clock in tests.
func NewRecorder(now func() time.Time, operator string) *Recorder {
	return &Recorder{now: now, obs: Observations{Start: now(), Operator: operator}}
}

func (r *Recorder) event(e Event) {
	e.At = r.now()
	r.mu.Lock()
	r.obs.Events = append(r.obs.Events, e)
	r.mu.Unlock()
}

// StepStart records that steps[i] started.
func (r *Recorder) StepStart(i int) { r.event(Event{Kind: EventStepStart, Step: i}) }

// StepEnd records that steps[i] ended, and whether it succeeded.
func (r *Recorder) StepEnd(i int, ok bool, detail string) {
	r.event(Event{Kind: EventStepEnd, Step: i, OK: ok, Detail: detail})
}

// FaultUndone records that the fault of steps[i] was undone (ok) or that
// undoing it failed.
func (r *Recorder) FaultUndone(i int, ok bool, detail string) {
	r.event(Event{Kind: EventFaultUndone, Step: i, OK: ok, Detail: detail})
}

// Holder records that the VIP's holder is now node ("" for nobody); the
// caller reports changes only.
func (r *Recorder) Holder(node string) { r.event(Event{Kind: EventHolder, Node: node}) }

// History records a committed change of active node.
func (r *Recorder) History(to, reason string) {
	r.event(Event{Kind: EventHistory, Node: to, Reason: reason})
}

// Note records a line for the timeline.
func (r *Recorder) Note(detail string) { r.event(Event{Kind: EventNote, Detail: detail}) }

// Abort records that the run is aborted and why. The first reason wins.
func (r *Recorder) Abort(why string) {
	r.event(Event{Kind: EventAbort, Detail: why})
	r.mu.Lock()
	if r.obs.Aborted == "" {
		r.obs.Aborted = why
	}
	r.mu.Unlock()
}

// Probe records one steady-state request; pr.At is when it was sent.
func (r *Recorder) Probe(pr ProbeResult) {
	r.mu.Lock()
	r.obs.Probes = append(r.obs.Probes, pr)
	r.mu.Unlock()
}

// ARP records one ARP round.
func (r *Recorder) ARP(round ARPRound) {
	round.MACs = append([]string(nil), round.MACs...)
	r.mu.Lock()
	r.obs.ARP = append(r.obs.ARP, round)
	r.mu.Unlock()
}

// Observations returns a copy of what was recorded so far, with End set to
// now: the input to Evaluate.
func (r *Recorder) Observations() *Observations {
	end := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.obs
	o.End = end
	o.Events = append([]Event(nil), r.obs.Events...)
	o.Probes = append([]ProbeResult(nil), r.obs.Probes...)
	o.ARP = append([]ARPRound(nil), r.obs.ARP...)
	return &o
}
