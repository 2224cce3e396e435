package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/newbieha/newbieha/drill"
)

// fakeCluster is a cluster in memory: node1 active, node2 standby, a
// witness. Faults change it as the real cluster would.
type fakeCluster struct {
	mu      sync.Mutex
	view    drill.ClusterView
	history []Transition
	records []Record
	reads   int
	// outage makes probes fail while set.
	outage bool
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{
		view: drill.ClusterView{
			Members: []drill.Member{
				{Name: "node1", Role: drill.RoleGPU, Voter: true, Reachable: true, Healthy: true},
				{Name: "node2", Role: drill.RoleGPU, Voter: true, Reachable: true, Healthy: true},
				{Name: "witness", Role: drill.RoleWitness, Voter: true, Reachable: true, Healthy: true},
			},
			Active: "node1", Holder: "node1", Leader: "witness", VIP: "10.0.0.100",
		},
		history: []Transition{{Index: 5, To: "node1", Reason: "bootstrap"}},
	}
}

func (c *fakeCluster) View(_ context.Context, _ bool) (drill.ClusterView, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	v := c.view
	v.Members = append([]drill.Member(nil), c.view.Members...)
	return v, nil
}

func (c *fakeCluster) History(context.Context) ([]Transition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Transition(nil), c.history...), nil
}

func (c *fakeCluster) Record(_ context.Context, r Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, r)
	return nil
}

func (c *fakeCluster) update(f func(v *drill.ClusterView)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.view)
}

// moveTo makes node the active node and holder, with a history entry.
func (c *fakeCluster) moveTo(node, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.view.Active, c.view.Holder = node, node
	c.history = append(c.history, Transition{Index: c.history[len(c.history)-1].Index + 1, To: node, Reason: reason})
}

func (c *fakeCluster) setOutage(on bool) {
	c.mu.Lock()
	c.outage = on
	c.mu.Unlock()
}

func (c *fakeCluster) setHealthy(node string, ok bool, why string) {
	c.update(func(v *drill.ClusterView) {
		for i := range v.Members {
			if v.Members[i].Name == node {
				v.Members[i].Healthy, v.Members[i].Why = ok, why
			}
		}
	})
}

// Probe answers from the holder unless an outage is on.
func (c *fakeCluster) Probe(context.Context) drill.ProbeResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	pr := drill.ProbeResult{At: time.Now(), Latency: time.Millisecond}
	if c.outage || c.view.Holder == "" {
		pr.Err = "connection refused"
		return pr
	}
	pr.Status, pr.Node = 200, c.view.Holder
	return pr
}

// Round hears one MAC per holder.
func (c *fakeCluster) Round(ctx context.Context, wait time.Duration) ([]string, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(wait):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view.Holder == "" {
		return nil, nil
	}
	return []string{"02:00:00:00:00:0" + c.view.Holder[len(c.view.Holder)-1:]}, nil
}

// fakeFaults injects by calling on, and counts injections and undos.
type fakeFaults struct {
	mu       sync.Mutex
	on       func(ps drill.PlannedStep)
	off      func(ps drill.PlannedStep)
	undoErr  error
	injected []int
	undone   []int
}

func (f *fakeFaults) Check(_ context.Context, ps drill.PlannedStep) error {
	switch ps.Step.Fault.Kind {
	case drill.FaultCheckFail, drill.FaultGPUFail, drill.FaultPlannedFailover:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotSupported, ps.Step.Fault.Kind)
}

func (f *fakeFaults) Inject(_ context.Context, ps drill.PlannedStep) (Undo, error) {
	f.mu.Lock()
	f.injected = append(f.injected, ps.Index)
	f.mu.Unlock()
	if f.on != nil {
		f.on(ps)
	}
	if ps.Step.Fault.Duration == 0 {
		return nil, nil
	}
	return func(context.Context) error {
		f.mu.Lock()
		f.undone = append(f.undone, ps.Index)
		f.mu.Unlock()
		if f.off != nil {
			f.off(ps)
		}
		return f.undoErr
	}, nil
}

func (f *fakeFaults) counts() (injected, undone []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.injected...), append([]int(nil), f.undone...)
}

func parse(t *testing.T, src string) *drill.Runbook {
	t.Helper()
	rb, err := drill.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

func config(c *fakeCluster, f *fakeFaults) Config {
	return Config{Cluster: c, Faults: f, Probe: c, ARP: c, Poll: 5 * time.Millisecond, HistoryPoll: 20 * time.Millisecond, Operator: "tester"}
}

func runDrill(t *testing.T, ctx context.Context, cfg Config, src string) *Result {
	t.Helper()
	plan, err := Prepare(ctx, cfg, parse(t, src))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, cfg, plan, "test-1")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

const switchover = `version: 1
name: switchover
description: a planned failover
steady_state:
  probe:
    url: http://${vip}:8080/health
    interval: 5ms
  arp_interval: 10ms
steps:
  - fault: planned-failover
    to: standby
  - wait:
      until: {holder: standby}
      timeout: 5s
  - wait: 100ms
  - expect: {holder: standby, steady_state: true}
expectations:
  - holder-becomes: standby
    within: 5s
  - outage-max: 5s
  - failed-requests-max: 1000
  - never-two-holders: true
  - history-reason: '^manual:'
  - steady-state-within: 100ms
preconditions: [gpu-nodes-healthy, quorum, no-maintenance, no-drill-running]
abort: {steady_state_lost_for: 5s}
time_limit: 10s
`

func TestRun_PlannedFailoverPasses(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{on: func(ps drill.PlannedStep) {
		if ps.To != "node2" || ps.Target != "node1" {
			t.Errorf("planned failover %s -> %s, want node1 -> node2", ps.Target, ps.To)
		}
		go func() {
			c.update(func(v *drill.ClusterView) { v.Holder = "" })
			time.Sleep(10 * time.Millisecond)
			c.moveTo("node2", "manual:failover")
		}()
	}}
	var progress strings.Builder
	cfg := config(c, f)
	cfg.Progress = &lockedWriter{b: &progress}
	res := runDrill(t, context.Background(), cfg, switchover)
	rep := res.Report
	if !rep.Passed() {
		t.Fatalf("verdict %s:\n%s", rep.Verdict, rep.Text(nil))
	}
	if rep.Figures.HolderChanges != 2 || rep.Figures.FailoverMs == nil || rep.Figures.ARPRounds == 0 {
		t.Errorf("figures %+v", rep.Figures)
	}
	if len(c.records) != 2 || c.records[0].Phase != PhaseStart || c.records[1].Phase != PhaseEnd ||
		c.records[0].ID != "test-1" || !strings.HasPrefix(c.records[1].Summary, "switchover passed") {
		t.Errorf("records %+v", c.records)
	}
	if c.records[0].Until.IsZero() {
		t.Error("the start record has no Until")
	}
	for _, want := range []string{"steps[0] planned-failover from node1 to node2 (standby)", "holder node1 → nobody", "holder nobody → node2", "history: active → node2, reason manual:failover", "drill switchover passed"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

const checkFail = `version: 1
name: check-fails
description: a forced check failure
steady_state:
  probe:
    url: http://${vip}:8080/health
    interval: 5ms
  arp_watch: false
steps:
  - fault: check-fail
    target: active
    duration: 1s
  - wait:
      until: {holder: standby}
      timeout: 5s
expectations:
  - holder-becomes: standby
    within: 5s
  - outage-max: 10ms
  - steady-state-within: 100ms
preconditions: []
abort: {steady_state_lost_for: 5s}
time_limit: 10s
`

// The service fails for about 100 ms during the move: outage-max 10ms
// cannot hold, and the report says by how much.
func TestRun_ExpectationFailsWithTheFigure(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{on: func(drill.PlannedStep) {
		go func() {
			time.Sleep(20 * time.Millisecond)
			c.setOutage(true)
			time.Sleep(300 * time.Millisecond)
			c.moveTo("node2", "health:node1:http:service (drill)")
			c.setOutage(false)
		}()
	}}
	res := runDrill(t, context.Background(), config(c, f), checkFail)
	rep := res.Report
	if rep.Verdict != drill.VerdictFailed {
		t.Fatalf("verdict %s:\n%s", rep.Verdict, rep.Text(nil))
	}
	var outage drill.Check
	for _, e := range rep.Expectations {
		if strings.Contains(e.Key, "outage-max") {
			outage = e
		} else if !e.Passed {
			t.Errorf("%s failed: %s %s", e.Key, e.Measured, e.Miss)
		}
	}
	if outage.Passed || outage.Value == nil || *outage.Value < 200 || !strings.HasPrefix(outage.Miss, "by ") {
		t.Fatalf("outage-max: %+v", outage)
	}
	if rep.Figures.FailedRequests == 0 {
		t.Errorf("no failed requests counted: %+v", rep.Figures)
	}
	if inj, und := f.counts(); len(inj) != 1 || len(und) != 1 {
		t.Errorf("injected %v, undone %v", inj, und)
	}
	if !strings.Contains(rep.Text(nil), "ARP watch") && len(rep.Timeline) == 0 {
		t.Error("empty timeline")
	}
}

const twoFaults = `version: 1
name: two-faults
description: two long faults at once
steady_state:
  probe:
    url: http://${vip}:8080/health
    interval: 5ms
  arp_watch: false
steps:
  - fault: check-fail
    target: active
    duration: 20s
  - fault: gpu-fail
    target: active
    duration: 20s
  - wait: 20s
expectations:
  - holder-stays: active
abort:
  standby_unhealthy: true
preconditions: []
time_limit: 1m
`

// The standby turning unhealthy aborts the run: both faults are undone at
// once, long before their 20 s, and the report says aborted and why.
func TestRun_StandbyUnhealthyAbortsAndUndoesEveryFault(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{}
	f.on = func(ps drill.PlannedStep) {
		if ps.Index == 1 {
			go func() {
				time.Sleep(50 * time.Millisecond)
				c.setHealthy("node2", false, "http:service")
			}()
		}
	}
	begin := time.Now()
	res := runDrill(t, context.Background(), config(c, f), twoFaults)
	if took := time.Since(begin); took > 6*time.Second {
		t.Fatalf("the abort took %v", took)
	}
	rep := res.Report
	if rep.Verdict != drill.VerdictAborted || rep.AbortReason != "standby node2 unhealthy (http:service)" {
		t.Fatalf("verdict %s (%s):\n%s", rep.Verdict, rep.AbortReason, rep.Text(nil))
	}
	inj, und := f.counts()
	if len(inj) != 2 || len(und) != 2 {
		t.Fatalf("injected %v, undone %v", inj, und)
	}
	for _, s := range rep.Steps[:2] {
		if !strings.HasPrefix(s.Measured, "undone after") {
			t.Errorf("%s: %s", s.Key, s.Measured)
		}
	}
	if !strings.Contains(rep.Text(nil), "abort: standby node2 unhealthy") {
		t.Errorf("timeline lacks the abort:\n%s", rep.Text(nil))
	}
	if len(c.records) != 2 || !strings.Contains(c.records[1].Summary, "aborted (standby node2 unhealthy") {
		t.Errorf("records %+v", c.records)
	}
}

// Ctrl-C (the caller's context) aborts and undoes too.
func TestRun_InterruptUndoesEveryFault(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.on = func(ps drill.PlannedStep) {
		if ps.Index == 1 {
			time.AfterFunc(50*time.Millisecond, cancel)
		}
	}
	cfg := config(c, f)
	plan, err := Prepare(ctx, cfg, parse(t, twoFaults))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, cfg, plan, "test-2")
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Verdict != drill.VerdictAborted || !strings.Contains(res.Report.AbortReason, "Ctrl-C") {
		t.Fatalf("verdict %s (%s)", res.Report.Verdict, res.Report.AbortReason)
	}
	if inj, und := f.counts(); len(und) != len(inj) || len(inj) != 2 {
		t.Fatalf("injected %v, undone %v", inj, und)
	}
	if len(c.records) != 2 {
		t.Errorf("the end was not recorded after Ctrl-C: %+v", c.records)
	}
}

// The time limit aborts the run: here an undo that takes longer than the
// limit leaves.
func TestRun_TimeLimitAborts(t *testing.T) {
	src := `version: 1
name: slow-undo
description: an undo slower than the limit
steady_state:
  probe:
    url: http://${vip}:8080/health
    interval: 5ms
  arp_watch: false
steps:
  - fault: check-fail
    target: active
    duration: 100ms
expectations:
  - holder-stays: active
preconditions: []
abort: {steady_state_lost_for: 1s}
time_limit: 1s
`
	c := newFakeCluster()
	f := &fakeFaults{off: func(drill.PlannedStep) { time.Sleep(2 * time.Second) }}
	res := runDrill(t, context.Background(), config(c, f), src)
	rep := res.Report
	if rep.Verdict != drill.VerdictAborted || rep.AbortReason != "time limit 1s reached" {
		t.Fatalf("verdict %s (%s):\n%s", rep.Verdict, rep.AbortReason, rep.Text(nil))
	}
	if inj, und := f.counts(); len(und) != len(inj) {
		t.Fatalf("injected %v, undone %v", inj, und)
	}
}

// Each precondition refuses on its own, with its own message, and nothing
// is injected or recorded.
func TestPrepare_RefusesEachPrecondition(t *testing.T) {
	src := strings.Replace(checkFail, "preconditions: []", "preconditions: [gpu-nodes-healthy, quorum, no-maintenance, no-drill-running, not-in-hold-down]", 1)
	cases := []struct {
		name string
		set  func(v *drill.ClusterView)
		want string
	}{
		{"gpu", func(v *drill.ClusterView) { v.Members[1].Healthy, v.Members[1].Why = false, "gpu:gpus" }, "precondition gpu-nodes-healthy: node2 unhealthy (gpu:gpus)"},
		{"quorum", func(v *drill.ClusterView) { v.Members[2].Reachable = false }, "precondition quorum: 2 of 3 voters reachable (witness down)"},
		{"maintenance", func(v *drill.ClusterView) { v.Maintenance = true }, "precondition no-maintenance: maintenance is on"},
		{"drill", func(v *drill.ClusterView) { v.DrillRunning = "other" }, `precondition no-drill-running: drill "other" is running`},
		{"hold-down", func(v *drill.ClusterView) { v.HoldDownRemaining = 12 * time.Second }, "precondition not-in-hold-down: the hold-down after the last move runs 12s more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeCluster()
			c.update(tc.set)
			f := &fakeFaults{}
			plan, err := Prepare(context.Background(), config(c, f), parse(t, src))
			var re *RefusedError
			if !errors.As(err, &re) || len(re.Reasons) != 1 || !strings.HasPrefix(re.Reasons[0].Error(), tc.want) {
				t.Fatalf("err %v, want one reason %q", err, tc.want)
			}
			if plan == nil {
				t.Error("no plan with a refused precondition: --dry-run has nothing to print")
			}
			if inj, _ := f.counts(); len(inj) != 0 || len(c.records) != 0 {
				t.Fatalf("a refused drill changed something: injected %v, records %v", inj, c.records)
			}
		})
	}
}

// A fault this runner cannot inject is refused at plan time.
func TestPrepare_RefusesUnsupportedFaults(t *testing.T) {
	src := strings.Replace(checkFail, "  - fault: check-fail\n    target: active\n    duration: 1s\n",
		"  - fault: partition\n    target: active\n    from: [standby, witness]\n    duration: 300ms\n  - fault: agent-crash\n    target: active\n    duration: 300ms\n", 1)
	src = strings.Replace(src, "time_limit: 10s", "time_limit: 30s", 1)
	c := newFakeCluster()
	_, err := Prepare(context.Background(), config(c, &fakeFaults{}), parse(t, src))
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Reasons) != 2 || !errors.Is(err, ErrNotSupported) {
		t.Fatalf("err %v", err)
	}
	for i, want := range []string{"steps[0] partition: not supported by this runner yet: partition", "steps[1] agent-crash: not supported by this runner yet: agent-crash"} {
		if re.Reasons[i].Error() != want {
			t.Errorf("reason %d: %q, want %q", i, re.Reasons[i], want)
		}
	}
}

// Prepare (all --dry-run does) only reads.
func TestPrepare_DryRunChangesNothing(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{}
	plan, err := Prepare(context.Background(), config(c, f), parse(t, switchover))
	if err != nil {
		t.Fatal(err)
	}
	if s := plan.String(); !strings.Contains(s, "steps[0] planned-failover from node1 to node2 (standby)") {
		t.Fatalf("plan:\n%s", s)
	}
	if inj, _ := f.counts(); len(inj) != 0 || len(c.records) != 0 || c.reads != 1 {
		t.Fatalf("dry run: injected %v, records %v, %d reads", inj, c.records, c.reads)
	}
}

// A steady state that does not hold before the drill refuses it.
func TestRun_RefusesWithoutSteadyState(t *testing.T) {
	c := newFakeCluster()
	c.setOutage(true)
	f := &fakeFaults{}
	cfg := config(c, f)
	cfg.FirstProbe = 100 * time.Millisecond
	plan, err := Prepare(context.Background(), cfg, parse(t, checkFail))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, plan, "test-4")
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "the steady state does not hold before the drill") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %v", err)
	}
	if inj, _ := f.counts(); len(inj) != 0 || len(c.records) != 0 {
		t.Fatalf("injected %v, records %v", inj, c.records)
	}
}

// Without an ARP watcher the report says the watch was off.
func TestRun_ARPWatchOff(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{on: func(drill.PlannedStep) { go c.moveTo("node2", "manual:failover") }}
	cfg := config(c, f)
	cfg.ARP, cfg.ARPOff = nil, "no --arp-iface"
	res := runDrill(t, context.Background(), cfg, switchover)
	rep := res.Report
	if rep.Figures.ARPRounds != 0 || !strings.Contains(rep.Text(nil), "ARP watch off: no --arp-iface") {
		t.Fatalf("report:\n%s", rep.Text(nil))
	}
	for _, e := range rep.Expectations {
		if strings.Contains(e.Key, "never-two-holders") && (e.Passed || e.Measured != "no ARP round observed") {
			t.Errorf("never-two-holders without a watch: %+v", e)
		}
	}
}

// One status read without a leader (a read during an election) does not
// abort; a lost quorum that lasts does.
func TestRun_AbortConditionMustLast(t *testing.T) {
	src := strings.Replace(twoFaults, "standby_unhealthy: true", "quorum_lost: true", 1)
	for _, tc := range []struct {
		name  string
		blip  time.Duration
		abort bool
	}{{"blip", 30 * time.Millisecond, false}, {"lasting", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(src, "  - wait: 20s\n", "  - wait: 1500ms\n", 1)
			src = strings.Replace(src, "duration: 20s", "duration: 1s", -1)
			c := newFakeCluster()
			f := &fakeFaults{on: func(ps drill.PlannedStep) {
				if ps.Index != 0 {
					return
				}
				c.update(func(v *drill.ClusterView) { v.Leader = "" })
				if tc.blip > 0 {
					time.AfterFunc(tc.blip, func() { c.update(func(v *drill.ClusterView) { v.Leader = "witness" }) })
				}
			}}
			cfg := config(c, f)
			cfg.AbortAfter = 300 * time.Millisecond
			res := runDrill(t, context.Background(), cfg, src)
			rep := res.Report
			if got := rep.Verdict == drill.VerdictAborted; got != tc.abort {
				t.Fatalf("aborted %v (%s), want %v", got, rep.AbortReason, tc.abort)
			}
			if tc.abort && rep.AbortReason != "quorum lost: no Raft leader" {
				t.Errorf("reason %q", rep.AbortReason)
			}
		})
	}
}

// An undo that fails when a self-expiring fault's duration has run out is
// a note (the fault ended by itself); after an abort it fails the step.
func TestRun_FailedUndoOfAnExpiredFault(t *testing.T) {
	src := strings.Replace(strings.Replace(twoFaults, "duration: 20s", "duration: 100ms", -1), "  - wait: 20s\n", "  - wait: 300ms\n", 1)
	c := newFakeCluster()
	f := &fakeFaults{undoErr: errors.New("unreachable")}
	res := runDrill(t, context.Background(), config(c, f), src)
	if rep := res.Report; !rep.Passed() {
		t.Fatalf("verdict %s:\n%s", rep.Verdict, rep.Text(nil))
	}
	notes := 0
	for _, ev := range res.Observations.Events {
		if ev.Kind == drill.EventFaultUndone && ev.OK && ev.Detail == "expired by itself; the undo failed: unreachable" {
			notes++
		}
	}
	if notes != 2 {
		t.Errorf("undo events %+v", res.Observations.Events)
	}
	c = newFakeCluster()
	f = &fakeFaults{undoErr: errors.New("unreachable")}
	f.on = func(ps drill.PlannedStep) {
		if ps.Index == 1 {
			c.setHealthy("node2", false, "http:service")
		}
	}
	rep := runDrill(t, context.Background(), config(c, f), twoFaults).Report
	if rep.Verdict != drill.VerdictAborted || rep.Steps[0].Passed || !strings.Contains(rep.Steps[0].Measured, "undo failed: unreachable") {
		t.Fatalf("after an abort: %s %+v", rep.Verdict, rep.Steps[0])
	}
}

// holderEvents lists the holder changes the run recorded.
func holderEvents(obs *drill.Observations) []string {
	var out []string
	for _, e := range obs.Events {
		if e.Kind == drill.EventHolder {
			out = append(out, nobody(e.Node))
		}
	}
	return out
}

const crashLike = `version: 1
name: crash-like
description: the holder stops answering status, the standby takes over
steady_state:
  probe:
    url: http://${vip}:8080/health
    interval: 5ms
steps:
  - fault: check-fail
    target: active
    duration: 400ms
  - wait:
      until: {holder: standby}
      timeout: 2s
expectations:
  - holder-becomes: standby
    within: 2s
preconditions: []
abort: {steady_state_lost_for: 5s}
time_limit: 10s
`

// A holder that stops answering status (status then names no holder) is
// not taken for nobody: the timeline goes from it straight to the member
// that says it holds. A holder that answers that it no longer holds is
// nobody.
func TestRun_UnansweredHolderIsNotTakenForNobody(t *testing.T) {
	c := newFakeCluster()
	f := &fakeFaults{}
	reach := func(v *drill.ClusterView, node string, ok bool) {
		for i := range v.Members {
			if v.Members[i].Name == node {
				v.Members[i].Reachable = ok
			}
		}
	}
	f.on = func(drill.PlannedStep) {
		c.update(func(v *drill.ClusterView) { reach(v, "node1", false); v.Holder = "" })
		go func() {
			time.Sleep(60 * time.Millisecond)
			c.update(func(v *drill.ClusterView) { v.Holder, v.Active = "node2", "node2" })
			time.Sleep(60 * time.Millisecond)
			// node2 answers that it holds nothing: nobody holds.
			c.update(func(v *drill.ClusterView) { v.Holder = "" })
			time.Sleep(60 * time.Millisecond)
			c.update(func(v *drill.ClusterView) { v.Holder = "node2"; reach(v, "node1", true) })
		}()
	}
	res := runDrill(t, context.Background(), config(c, f), crashLike)
	got := strings.Join(holderEvents(res.Observations), " ")
	if got != "node2 nobody node2" {
		t.Fatalf("holder changes %q, want node2 nobody node2:\n%s", got, res.Report.Text(nil))
	}
}
