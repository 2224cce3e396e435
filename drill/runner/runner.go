package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/newbieha/newbieha/drill"
)

// ErrNotSupported is what Faults.Check wraps for a fault kind the runner
// cannot inject yet ("not supported by this runner yet: partition").
var ErrNotSupported = errors.New("not supported by this runner yet")

// Transition is one committed change of active node, from the history.
type Transition struct {
	// Index is the Raft index that committed it: it orders transitions
	// and tells the ones committed during the drill.
	Index  uint64
	To     string
	Reason string
}

// Phase is the part of a drill a Record marks.
type Phase string

// The phases recorded in the history.
const (
	PhaseStart Phase = "start"
	PhaseEnd   Phase = "end"
)

// Record is what the runner commits to the replicated history at a
// drill's start and at its end.
type Record struct {
	// ID names the run; its report is stored under it.
	ID      string
	Runbook string
	Phase   Phase
	// Until is, at the start, the latest the drill can end (its time
	// limit): a drill recorded as started is running until its end is
	// recorded or Until passes, for no-drill-running.
	Until time.Time
	// Summary is, at the end, the report in one line.
	Summary string
}

// Cluster is the cluster as the runner reads and records it.
type Cluster interface {
	// View reads the cluster now. With full it also reads what only the
	// preconditions need (the hold-down, a running drill); the poll during
	// a run asks for status only.
	View(ctx context.Context, full bool) (drill.ClusterView, error)
	// History lists the committed changes of active node, oldest first.
	History(ctx context.Context) ([]Transition, error)
	// Record commits a drill's start or end to the replicated history.
	Record(ctx context.Context, r Record) error
}

// Undo puts one fault back.
type Undo func(ctx context.Context) error

// Faults injects faults.
type Faults interface {
	// Check says whether ps's fault can be injected on this cluster, before
	// anything changes; an error (ErrNotSupported for a kind the runner
	// lacks) refuses the drill.
	Check(ctx context.Context, ps drill.PlannedStep) error
	// Inject starts ps's fault, bounded by its duration where the system
	// allows it (check injections carry their end), and returns its undo;
	// nil when it has none (a planned failover without a duration).
	Inject(ctx context.Context, ps drill.PlannedStep) (Undo, error)
}

// Prober sends one steady-state request.
type Prober interface {
	// Probe sends one request through the VIP and reports it, bounded by
	// the probe's timeout; At is when it was sent.
	Probe(ctx context.Context) drill.ProbeResult
}

// ARPWatcher asks who answers ARP for the VIP.
type ARPWatcher interface {
	// Round sends one ARP request for the VIP and returns the MACs that
	// answered within wait.
	Round(ctx context.Context, wait time.Duration) ([]string, error)
}

// Config is what a run uses.
type Config struct {
	Cluster Cluster
	Faults  Faults
	Probe   Prober
	// ARP is nil when no ARP watch can run here; a runbook that asks for
	// one then gets a note "ARP watch off" and no ARP rounds.
	ARP ARPWatcher
	// ARPOff says why ARP is nil, for that note.
	ARPOff string
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Poll is how often status is read during the run (holder changes,
	// conditions, abort conditions); 25 ms by default.
	Poll time.Duration
	// HistoryPoll is how often the history is read; 250 ms by default.
	HistoryPoll time.Duration
	// ReadTimeout bounds one read of the cluster; 2 s by default.
	ReadTimeout time.Duration
	// UndoTimeout bounds one fault's undo; 10 s by default.
	UndoTimeout time.Duration
	// FirstProbe is how long the steady state may take to hold before the
	// drill starts; 2 s by default.
	FirstProbe time.Duration
	// AbortAfter is how long an abort condition read from status must go
	// on holding, over consecutive reads, before the run aborts: one read
	// taken during a Raft election says "no leader" although nothing is
	// lost. 1 s by default (an election takes about that long); the steady
	// state has its own steady_state_lost_for.
	AbortAfter time.Duration
	// Operator is who runs the drill, for the report.
	Operator string
	// Progress receives a line for each thing that happens; nil: none.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Poll <= 0 {
		c.Poll = 25 * time.Millisecond
	}
	if c.HistoryPoll <= 0 {
		c.HistoryPoll = 250 * time.Millisecond
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2 * time.Second
	}
	if c.UndoTimeout <= 0 {
		c.UndoTimeout = 10 * time.Second
	}
	if c.FirstProbe <= 0 {
		c.FirstProbe = 2 * time.Second
	}
	if c.AbortAfter <= 0 {
		c.AbortAfter = time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// RefusedError says why a drill did not start; nothing was changed.
type RefusedError struct {
	// Reasons are every reason found: a target that does not resolve, a
	// fault not supported, a precondition that does not hold.
	Reasons []error
}

// Error lists the reasons one a line.
func (e *RefusedError) Error() string {
	s := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		s[i] = "  " + r.Error()
	}
	return "drill refused, nothing was changed:\n" + strings.Join(s, "\n")
}

// Unwrap gives the reasons to errors.Is.
func (e *RefusedError) Unwrap() []error { return e.Reasons }

// Prepare reads the cluster and makes the plan of rb. It returns a
// *RefusedError naming every reason the drill may not start: a target that
// does not resolve (no plan then), a fault that cannot be injected, a
// precondition that fails (the plan is returned with these, for --dry-run).
// It changes nothing.
func Prepare(ctx context.Context, cfg Config, rb *drill.Runbook) (*drill.Plan, error) {
	cfg.setDefaults()
	rctx, cancel := context.WithTimeout(ctx, cfg.ReadTimeout)
	view, err := cfg.Cluster.View(rctx, true)
	cancel()
	if err != nil {
		return nil, &RefusedError{Reasons: []error{fmt.Errorf("read the cluster: %w", err)}}
	}
	plan, errs := drill.NewPlan(rb, view)
	if len(errs) > 0 {
		return nil, &RefusedError{Reasons: errs}
	}
	var reasons []error
	for _, ps := range plan.Steps {
		if ps.Step.Kind != drill.StepFault {
			continue
		}
		if err := cfg.Faults.Check(ctx, ps); err != nil {
			reasons = append(reasons, fmt.Errorf("steps[%d] %s: %w", ps.Index, ps.Step.Fault.Kind, err))
		}
	}
	for _, pe := range drill.CheckPreconditions(view, rb.Preconditions) {
		reasons = append(reasons, pe)
	}
	if len(reasons) > 0 {
		return plan, &RefusedError{Reasons: reasons}
	}
	return plan, nil
}

// Result is a finished run.
type Result struct {
	Report       *drill.Report
	Observations *drill.Observations
	// RecordErr is set when the end could not be recorded in the history;
	// the run itself happened and its report is complete.
	RecordErr error
}

// Run runs plan (made by Prepare) as the drill id and returns its report.
// Its error means the drill did not start (the steady state did not hold,
// or the start could not be recorded): nothing was injected then. Once
// started, Run always ends with every fault undone and a report; cancel
// ctx (Ctrl-C) to abort.
func Run(ctx context.Context, cfg Config, plan *drill.Plan, id string) (*Result, error) {
	cfg.setDefaults()
	r := &run{cfg: cfg, plan: plan, abortCh: make(chan struct{}), faults: map[int]*activeFault{}}
	rb := plan.Runbook

	// Base of the history: only transitions after it were made during the
	// drill.
	hctx, hcancel := context.WithTimeout(ctx, cfg.ReadTimeout)
	hist, err := cfg.Cluster.History(hctx)
	hcancel()
	if err != nil {
		return nil, fmt.Errorf("read the history: %w", err)
	}
	r.seen = map[uint64]bool{}
	for _, t := range hist {
		r.seen[t.Index] = true
	}

	r.rec = drill.NewRecorder(cfg.Now, cfg.Operator)
	r.start = cfg.Now()
	r.lastHolder = plan.Active
	r.view = plan.View

	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	bgWG.Add(2)
	go func() { defer bgWG.Done(); r.probeLoop(bg) }()
	go func() { defer bgWG.Done(); r.pollLoop(bg) }()
	if rb.SteadyState.ARPWatch {
		if cfg.ARP != nil {
			bgWG.Add(1)
			go func() { defer bgWG.Done(); r.arpLoop(bg) }()
		} else {
			why := "ARP watch off"
			if cfg.ARPOff != "" {
				why += ": " + cfg.ARPOff
			}
			r.rec.Note(why)
			r.say("%s", why)
		}
	}
	stop := func() { stopBG(); bgWG.Wait() }

	// The steady state must hold before anything is injected.
	if err := r.awaitSteady(ctx); err != nil {
		stop()
		return nil, err
	}
	until := r.start.Add(rb.TimeLimit)
	rctx, rcancel := context.WithTimeout(ctx, cfg.ReadTimeout)
	err = cfg.Cluster.Record(rctx, Record{ID: id, Runbook: rb.Name, Phase: PhaseStart, Until: until})
	rcancel()
	if err != nil {
		stop()
		return nil, fmt.Errorf("record the drill's start in the history: %w", err)
	}
	r.started.Store(true)
	r.say("drill %s (%s) started; active %s, standby %s", id, rb.Name, dash(plan.Active), dash(plan.Standby))

	runCtx, cancelRun := context.WithDeadline(ctx, until)
	defer cancelRun()
	finished := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		select {
		case <-runCtx.Done():
			if ctx.Err() != nil {
				r.abort("interrupted by the operator (Ctrl-C)")
			} else {
				r.abort(fmt.Sprintf("time limit %s reached", rb.TimeLimit))
			}
		case <-finished:
		}
	}()

	for _, ps := range plan.Steps {
		if r.aborted() {
			break
		}
		r.rec.StepStart(ps.Index)
		r.say("steps[%d] %s", ps.Index, ps.Describe())
		switch ps.Step.Kind {
		case drill.StepFault:
			r.fault(runCtx, ctx, ps)
		case drill.StepWait:
			r.wait(ps)
		case drill.StepExpect:
			r.expect(runCtx, ps)
		}
	}
	// Every fault runs out (or is undone by an abort), then the steady
	// state has its time to come back.
	r.faultWG.Wait()
	if tail := longestRecovery(rb); tail > 0 && !r.aborted() {
		select {
		case <-time.After(tail):
		case <-r.abortCh:
		}
	}
	close(finished)
	watchWG.Wait()
	stop()
	r.readHistory(context.WithoutCancel(ctx))

	obs := r.rec.Observations()
	rep := drill.Evaluate(plan, obs)
	res := &Result{Report: rep, Observations: obs}
	r.say("drill %s %s", rb.Name, rep.Verdict)
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ReadTimeout)
	res.RecordErr = cfg.Cluster.Record(ectx, Record{ID: id, Runbook: rb.Name, Phase: PhaseEnd, Summary: rep.Summary(800)})
	ecancel()
	return res, nil
}

// longestRecovery is the longest steady-state-within: how long the run
// goes on after the last fault has ended.
func longestRecovery(rb *drill.Runbook) time.Duration {
	var d time.Duration
	for _, e := range rb.Expectations {
		if e.Kind == drill.ExpSteadyStateWithin && e.Max > d {
			d = e.Max
		}
	}
	return d
}

// run is one drill under way.
type run struct {
	cfg   Config
	plan  *drill.Plan
	rec   *drill.Recorder
	start time.Time

	abortOnce sync.Once
	abortCh   chan struct{}

	faultWG sync.WaitGroup
	outMu   sync.Mutex
	// started is set once the start is recorded: the abort conditions do
	// not apply while the runner waits for the steady state before it.
	started atomic.Bool

	mu         sync.Mutex
	view       drill.ClusterView // the last status read
	lastHolder string
	probed     bool
	steady     bool      // the last probe passed
	failSince  time.Time // start of the first failed probe in a row
	failedRun  int
	faults     map[int]*activeFault
	seen       map[uint64]bool // history indexes already seen
	viewErr    bool
	arpErr     bool
	// abortSeen is when the abort conditions began to hold over
	// consecutive reads; zero while they do not.
	abortSeen time.Time
}

// activeFault is a fault in place, undone once.
type activeFault struct {
	ps   drill.PlannedStep
	undo Undo
	once sync.Once
}

func (r *run) say(format string, args ...any) {
	off := r.cfg.Now().Sub(r.start).Seconds()
	r.outMu.Lock()
	fmt.Fprintf(r.cfg.Progress, "+%7.3fs  %s\n", off, fmt.Sprintf(format, args...))
	r.outMu.Unlock()
}

func (r *run) aborted() bool {
	select {
	case <-r.abortCh:
		return true
	default:
		return false
	}
}

// abort stops the run: every fault in place is undone at once (each
// fault's goroutine wakes on abortCh), waits and the tail end. The first
// reason wins.
func (r *run) abort(why string) {
	r.abortOnce.Do(func() {
		r.rec.Abort(why)
		r.say("ABORT: %s; undoing every fault", why)
		close(r.abortCh)
	})
}

// snapshot is the last status read and whether the last probe passed.
func (r *run) snapshot() (drill.ClusterView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view, r.steady
}

func (r *run) lostFor(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.probed || r.steady {
		return 0
	}
	return max(now.Sub(r.failSince), 0)
}

// awaitSteady waits for a passing probe, at most FirstProbe.
func (r *run) awaitSteady(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.FirstProbe + r.plan.Runbook.SteadyState.Probe.Timeout)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		r.mu.Lock()
		ok := r.probed && r.steady
		r.mu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			probes := r.rec.Observations().Probes
			why := "no answer"
			if n := len(probes); n > 0 {
				pr := probes[n-1]
				why = pr.Err
				if why == "" {
					why = fmt.Sprintf("status %d, want %d", pr.Status, r.plan.Runbook.SteadyState.Probe.ExpectStatus)
				}
			}
			return &RefusedError{Reasons: []error{fmt.Errorf("the steady state does not hold before the drill: %s %s: %s", r.plan.Runbook.SteadyState.Probe.Method, r.plan.ProbeURL, why)}}
		}
		select {
		case <-ctx.Done():
			return &RefusedError{Reasons: []error{fmt.Errorf("interrupted before the drill started: %w", ctx.Err())}}
		case <-t.C:
		}
	}
}

// fault injects ps's fault and, when it has a duration, leaves a goroutine
// that undoes it when the duration ends or the run aborts. base is the
// caller's context, for undos that must run after an abort.
func (r *run) fault(ctx, base context.Context, ps drill.PlannedStep) {
	undo, err := r.cfg.Faults.Inject(ctx, ps)
	if err != nil {
		r.rec.StepEnd(ps.Index, false, "could not inject: "+err.Error())
		r.say("steps[%d] could not inject: %v", ps.Index, err)
		return
	}
	r.rec.StepEnd(ps.Index, true, "")
	d := ps.Step.Fault.Duration
	if d <= 0 {
		return
	}
	af := &activeFault{ps: ps, undo: undo}
	r.mu.Lock()
	r.faults[ps.Index] = af
	r.mu.Unlock()
	r.faultWG.Add(1)
	go func() {
		defer r.faultWG.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		natural := false
		select {
		case <-t.C:
			natural = true
		case <-r.abortCh:
		}
		r.undo(base, af, natural)
	}()
}

// selfExpiring reports whether a fault of kind k ends by itself when its
// duration does (docs/drills.md): the injections carry their end, the
// partition rules their kernel timeout, the reconciler's hold and the
// stub's fault switch their bound.
func selfExpiring(k drill.FaultKind) bool {
	switch k {
	case drill.FaultCheckFail, drill.FaultGPUFail, drill.FaultPartition,
		drill.FaultServiceStop, drill.FaultServicePause, drill.FaultServiceErrors:
		return true
	}
	return false
}

// undo puts af back, once. natural is true when its duration ran out: an
// undo that fails then (the target out of reach at that moment) is only
// a note for a fault that has expired by itself at the same time; after
// an abort it is a failure.
func (r *run) undo(base context.Context, af *activeFault, natural bool) {
	af.once.Do(func() {
		i := af.ps.Index
		if af.undo == nil {
			r.rec.FaultUndone(i, true, "expired by itself")
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(base), r.cfg.UndoTimeout)
		defer cancel()
		if err := af.undo(ctx); err != nil {
			if natural && selfExpiring(af.ps.Step.Fault.Kind) {
				r.rec.FaultUndone(i, true, "expired by itself; the undo failed: "+err.Error())
				r.say("steps[%d] fault expired by itself (the undo failed: %v)", i, err)
				return
			}
			r.rec.FaultUndone(i, false, err.Error())
			r.say("steps[%d] UNDO FAILED: %v (%s)", i, err, af.ps.Undo())
			return
		}
		r.rec.FaultUndone(i, true, "")
		r.say("steps[%d] fault undone", i)
	})
}

func (r *run) wait(ps drill.PlannedStep) {
	w := ps.Step.Wait
	if w.Until == nil {
		t := time.NewTimer(w.For)
		defer t.Stop()
		select {
		case <-t.C:
			r.rec.StepEnd(ps.Index, true, "")
		case <-r.abortCh:
			r.rec.StepEnd(ps.Index, false, "aborted")
		}
		return
	}
	begin := r.cfg.Now()
	deadline := time.NewTimer(w.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(r.cfg.Poll)
	defer tick.Stop()
	for {
		view, steady := r.snapshot()
		ok, why := ps.Cond.Holds(view, steady)
		if ok {
			detail := fmt.Sprintf("%s after %s", ps.Cond, fmtDur(r.cfg.Now().Sub(begin)))
			r.rec.StepEnd(ps.Index, true, detail)
			r.say("steps[%d] %s", ps.Index, detail)
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			detail := fmt.Sprintf("not within %s: %s", w.Timeout, why)
			r.rec.StepEnd(ps.Index, false, detail)
			r.say("steps[%d] FAILED %s", ps.Index, detail)
			return
		case <-r.abortCh:
			r.rec.StepEnd(ps.Index, false, "aborted: "+why)
			return
		}
	}
}

// expect checks ps's condition on a fresh read of status.
func (r *run) expect(ctx context.Context, ps drill.PlannedStep) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	view, err := r.cfg.Cluster.View(rctx, false)
	cancel()
	if err != nil {
		r.rec.StepEnd(ps.Index, false, "read status: "+err.Error())
		return
	}
	_, steady := r.snapshot()
	if ok, why := ps.Cond.Holds(view, steady); !ok {
		r.rec.StepEnd(ps.Index, false, why)
		r.say("steps[%d] FAILED: %s", ps.Index, why)
		return
	}
	r.rec.StepEnd(ps.Index, true, "held")
}

// probeLoop sends a steady-state request every interval, one at a time
// (a request that times out delays the next, as for a client).
func (r *run) probeLoop(ctx context.Context) {
	t := time.NewTicker(r.plan.Runbook.SteadyState.Probe.Interval)
	defer t.Stop()
	for {
		pr := r.cfg.Probe.Probe(ctx)
		if ctx.Err() != nil {
			return
		}
		r.rec.Probe(pr)
		r.noteProbe(pr)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *run) noteProbe(pr drill.ProbeResult) {
	failed := r.plan.ProbeFailed(pr)
	r.mu.Lock()
	wasSteady, first := r.steady, !r.probed
	r.probed = true
	var line string
	switch {
	case failed && (wasSteady || first):
		r.failSince, r.failedRun = pr.At, 1
		if !first {
			line = "requests fail: " + probeWhy(pr)
		}
	case failed:
		r.failedRun++
	case !wasSteady && !first:
		line = fmt.Sprintf("requests pass again after %d failed, %s", r.failedRun, fmtDur(pr.At.Sub(r.failSince)))
		if pr.Node != "" {
			line += " (answered by " + pr.Node + ")"
		}
	}
	r.steady = !failed
	r.mu.Unlock()
	if line != "" {
		r.say("%s", line)
	}
}

func probeWhy(pr drill.ProbeResult) string {
	if pr.Err != "" {
		return pr.Err
	}
	return fmt.Sprintf("status %d", pr.Status)
}

// pollLoop reads status every Poll: holder changes go to the recorder,
// the view to the conditions, and the abort conditions are checked. The
// history is read every HistoryPoll.
func (r *run) pollLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	lastHist := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
		view, err := r.cfg.Cluster.View(rctx, false)
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.noteView(view, err)
		if time.Since(lastHist) >= r.cfg.HistoryPoll {
			lastHist = time.Now()
			r.readHistory(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *run) noteView(view drill.ClusterView, err error) {
	r.mu.Lock()
	if err != nil {
		first := !r.viewErr
		r.viewErr = true
		view = r.view
		r.mu.Unlock()
		if first {
			r.rec.Note("status unreadable: " + err.Error())
			r.say("status unreadable: %v", err)
		}
	} else {
		recovered := r.viewErr
		r.viewErr = false
		// A holder that does not answer (crashed, cut off, slow) is not
		// known to have stopped: it is taken to hold until another member
		// says it holds, or it answers that it does not.
		if view.Holder == "" && r.lastHolder != "" {
			if m, ok := view.Member(r.lastHolder); ok && !m.Reachable {
				view.Holder = r.lastHolder
			}
		}
		r.view = view
		changed := view.Holder != r.lastHolder
		from := r.lastHolder
		r.lastHolder = view.Holder
		r.mu.Unlock()
		if recovered {
			r.rec.Note("status readable again")
		}
		if changed {
			r.rec.Holder(view.Holder)
			r.say("holder %s → %s", nobody(from), nobody(view.Holder))
		}
	}
	// The abort conditions count only while the drill runs. The steady
	// state's is a duration already; the others must go on holding for
	// AbortAfter.
	if !r.started.Load() {
		return
	}
	now := r.cfg.Now()
	lost := r.lostFor(now)
	if why := r.plan.AbortReason(view, lost); why != "" {
		if ab := r.plan.Runbook.Abort; ab.SteadyStateLostFor > 0 && lost > ab.SteadyStateLostFor {
			r.abort(why)
			return
		}
		r.mu.Lock()
		if r.abortSeen.IsZero() {
			r.abortSeen = now
		}
		held := now.Sub(r.abortSeen)
		r.mu.Unlock()
		if held >= r.cfg.AbortAfter {
			r.abort(why)
		}
		return
	}
	r.mu.Lock()
	r.abortSeen = time.Time{}
	r.mu.Unlock()
}

// readHistory records every transition not seen before.
func (r *run) readHistory(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	hist, err := r.cfg.Cluster.History(rctx)
	cancel()
	if err != nil {
		return
	}
	for _, t := range hist {
		r.mu.Lock()
		seen := r.seen[t.Index]
		r.seen[t.Index] = true
		r.mu.Unlock()
		if !seen {
			r.rec.History(t.To, t.Reason)
			r.say("history: active → %s, reason %s", nobody(t.To), t.Reason)
		}
	}
}

// arpLoop asks who answers for the VIP, one round every arp_interval (each
// round waits that long for answers).
func (r *run) arpLoop(ctx context.Context) {
	every := r.plan.Runbook.SteadyState.ARPInterval
	for ctx.Err() == nil {
		at := r.cfg.Now()
		macs, err := r.cfg.ARP.Round(ctx, every)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.mu.Lock()
			first := !r.arpErr
			r.arpErr = true
			r.mu.Unlock()
			if first {
				r.rec.Note("ARP watch: " + err.Error())
				r.say("ARP watch: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			continue
		}
		r.rec.ARP(drill.ARPRound{At: at, MACs: macs})
		if len(distinct(macs)) > 1 {
			r.say("ARP: %d MACs answer for the VIP: %s", len(distinct(macs)), strings.Join(macs, ", "))
		}
	}
}

func distinct(macs []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range macs {
		m[strings.ToLower(s)] = true
	}
	return m
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func fmtDur(d time.Duration) string { return d.Round(time.Millisecond).String() }
