package drill

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Member roles in a ClusterView.
const (
	RoleGPU     = "gpu"
	RoleWitness = "witness"
)

// Member is one member as the runner saw it when the drill started.
type Member struct {
	Name string
	// Role is RoleGPU or RoleWitness.
	Role string
	// Voter: the member votes in Raft.
	Voter bool
	// Reachable: the member's agent answered.
	Reachable bool
	// Healthy: the member's required checks pass. A witness has no
	// service checks: the runner sets it to Reachable.
	Healthy bool
	// Why is the reason it is not healthy, from status ("http:service").
	Why string
}

// ClusterView is what the runner read from the cluster before a drill: the
// input to NewPlan and CheckPreconditions. It is a plain struct so that
// both are pure and tested without a cluster.
type ClusterView struct {
	Members []Member
	// Active is the node the replicated state names active; "" if none.
	Active string
	// Holder is the node that holds the VIP now, per status; "" if none.
	// Conditions (holder: X) read it; plans read Active.
	Holder string
	// Leader is the Raft leader; "" if there is none.
	Leader string
	// VIP is the VIP's address without the prefix length ("10.0.0.100"),
	// used for ${vip} in the probe URL.
	VIP string
	// Maintenance is on since MaintenanceSince, for MaintenanceReason.
	Maintenance       bool
	MaintenanceSince  time.Time
	MaintenanceReason string
	// HoldDownRemaining is how long the hold-down after the last move
	// still runs; 0 when none.
	HoldDownRemaining time.Duration
	// DrillRunning names the drill that is running ("" when none).
	DrillRunning string
}

// Member returns the member called name.
func (v ClusterView) Member(name string) (Member, bool) {
	for _, m := range v.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// standby is the GPU member other than the active node when there is
// exactly one; otherwise "".
func (v ClusterView) standby() string {
	var out []string
	for _, m := range v.Members {
		if m.Role == RoleGPU && m.Name != v.Active {
			out = append(out, m.Name)
		}
	}
	if len(out) != 1 || v.Active == "" {
		return ""
	}
	return out[0]
}

func (v ClusterView) witness() string {
	var out []string
	for _, m := range v.Members {
		if m.Role == RoleWitness {
			out = append(out, m.Name)
		}
	}
	if len(out) != 1 {
		return ""
	}
	return out[0]
}

// PreconditionError is one precondition that does not hold.
type PreconditionError struct {
	Precondition Precondition
	// Msg says what was found.
	Msg string
}

// Error reads "precondition no-maintenance: maintenance is on since ...".
func (e *PreconditionError) Error() string {
	return fmt.Sprintf("precondition %s: %s", e.Precondition, e.Msg)
}

// CheckPreconditions checks each precondition in which against v and
// returns one error per precondition that fails, in the order given; nil
// when all hold. A drill starts only when it returns nil.
func CheckPreconditions(v ClusterView, which []Precondition) []*PreconditionError {
	var out []*PreconditionError
	for _, p := range which {
		if msg := checkPrecondition(v, p); msg != "" {
			out = append(out, &PreconditionError{Precondition: p, Msg: msg})
		}
	}
	return out
}

func checkPrecondition(v ClusterView, p Precondition) string {
	switch p {
	case PreGPUNodesHealthy:
		var gpus, bad []string
		for _, m := range v.Members {
			if m.Role != RoleGPU {
				continue
			}
			gpus = append(gpus, m.Name)
			switch {
			case !m.Reachable:
				bad = append(bad, m.Name+" unreachable")
			case !m.Healthy && m.Why != "":
				bad = append(bad, fmt.Sprintf("%s unhealthy (%s)", m.Name, m.Why))
			case !m.Healthy:
				bad = append(bad, m.Name+" unhealthy")
			}
		}
		if len(gpus) != 2 {
			return fmt.Sprintf("want 2 GPU nodes, the cluster has %d", len(gpus))
		}
		if len(bad) > 0 {
			return strings.Join(bad, ", ")
		}
	case PreQuorum:
		var voters, down []string
		for _, m := range v.Members {
			if !m.Voter {
				continue
			}
			voters = append(voters, m.Name)
			if !m.Reachable {
				down = append(down, m.Name)
			}
		}
		if v.Leader == "" {
			return "no Raft leader"
		}
		if len(voters) < 3 {
			return fmt.Sprintf("%d voters; a drill needs 3 so that one can be lost", len(voters))
		}
		if len(down) > 0 {
			up := len(voters) - len(down)
			return fmt.Sprintf("%d of %d voters reachable (%s down); losing one more would lose quorum", up, len(voters), strings.Join(down, ", "))
		}
	case PreNoMaintenance:
		if v.Maintenance {
			s := "maintenance is on"
			if !v.MaintenanceSince.IsZero() {
				s += " since " + v.MaintenanceSince.UTC().Format(time.RFC3339)
			}
			if v.MaintenanceReason != "" {
				s += fmt.Sprintf(" (reason %q)", v.MaintenanceReason)
			}
			return s + "; nothing moves by itself in maintenance"
		}
	case PreNoDrillRunning:
		if v.DrillRunning != "" {
			return fmt.Sprintf("drill %q is running", v.DrillRunning)
		}
	case PreNotInHoldDown:
		if v.HoldDownRemaining > 0 {
			return fmt.Sprintf("the hold-down after the last move runs %s more; no health-driven move can happen before", v.HoldDownRemaining.Round(time.Millisecond))
		}
	default:
		return "unknown precondition"
	}
	return ""
}

// Plan is a runbook resolved against a cluster: every target is a node
// name. Its String is the --dry-run output.
type Plan struct {
	Runbook *Runbook
	View    ClusterView
	// Active, Standby and Witness are the roles' nodes when the plan was
	// made; the runbook's role targets mean these nodes for the whole run.
	Active, Standby, Witness string
	// ProbeURL is the steady-state URL with ${vip} replaced.
	ProbeURL string
	// ProbeFrom is the node the probe runs on.
	ProbeFrom string
	Steps     []PlannedStep
	// Expectations are the runbook's, resolved, in order.
	Expectations []PlannedExpectation
}

// PlannedStep is a step with its targets resolved.
type PlannedStep struct {
	// Index is the step's index in the runbook (steps[Index]).
	Index int
	Step  Step
	// Target is the node a fault acts on (for a planned-failover, the
	// active node).
	Target string
	// From is a partition's resolved peers.
	From []string
	// To is a planned-failover's resolved new holder.
	To string
	// Cond is the resolved condition of a wait or expect step.
	Cond *ResolvedCondition
}

// ResolvedCondition is a Condition with node names.
type ResolvedCondition struct {
	Holder      string
	Healthy     string
	SteadyState *bool
}

// String reads "holder is node2 and steady state passes".
func (c *ResolvedCondition) String() string {
	var s []string
	if c.Holder != "" {
		s = append(s, "holder is "+c.Holder)
	}
	if c.Healthy != "" {
		s = append(s, c.Healthy+" is healthy")
	}
	if c.SteadyState != nil {
		if *c.SteadyState {
			s = append(s, "steady state passes")
		} else {
			s = append(s, "steady state fails")
		}
	}
	return strings.Join(s, " and ")
}

// PlannedExpectation is an expectation with its node resolved and its
// pattern compiled.
type PlannedExpectation struct {
	Expectation
	// Index is the expectation's index in the runbook.
	Index int
	// NodeName is the resolved Node.
	NodeName string
	// Reason is the compiled history-reason pattern.
	Reason *regexp.Regexp
}

// Key identifies the expectation across runs of the same runbook
// ("expectations[2] outage-max 1s"), to set the previous run's figure
// beside this one's.
func (e PlannedExpectation) Key() string {
	return fmt.Sprintf("expectations[%d] %s", e.Index, e.Expectation)
}

// Describe is the expectation with its node resolved.
func (e PlannedExpectation) Describe() string {
	switch e.Kind {
	case ExpHolderBecomes:
		if e.After != nil {
			return fmt.Sprintf("holder becomes %s within %s of steps[%d]", nodeRole(e.NodeName, e.Node), e.Within, *e.After)
		}
		return fmt.Sprintf("holder becomes %s within %s of the first fault", nodeRole(e.NodeName, e.Node), e.Within)
	case ExpHolderStays:
		return fmt.Sprintf("holder stays %s", nodeRole(e.NodeName, e.Node))
	case ExpOutageMax:
		return fmt.Sprintf("longest outage ≤ %s", e.Max)
	case ExpFailedRequestsMax:
		return fmt.Sprintf("failed requests ≤ %d", e.Count)
	case ExpNeverTwoHolders:
		return "never two MACs answering for the VIP"
	case ExpHistoryReason:
		return fmt.Sprintf("a change of active node with a reason matching %s", e.Reason)
	case ExpSteadyStateWithin:
		return fmt.Sprintf("steady state again within %s after the last fault ends", e.Max)
	}
	return string(e.Kind)
}

func nodeRole(name string, t Target) string {
	if t.IsRole() && name != string(t) {
		return fmt.Sprintf("%s (%s)", name, t)
	}
	return name
}

// PlanError is a target that cannot be resolved against the cluster.
type PlanError struct {
	// Path is the runbook key ("steps[1].target").
	Path string
	Line int
	Msg  string
}

// Error reads "line 9: steps[1].target: standby: no standby ...".
func (e *PlanError) Error() string {
	return (&FieldError{Line: e.Line, Path: e.Path, Msg: e.Msg}).Error()
}

// NewPlan resolves rb's targets against v. Role targets mean the node in
// that role now, for the whole run: "standby" stays the node that was
// standby when the drill started, even after it has taken over. Every
// target that cannot be resolved is returned, each as a *PlanError.
func NewPlan(rb *Runbook, v ClusterView) (*Plan, []error) {
	p := &Plan{Runbook: rb, View: v, Active: v.Active, Standby: v.standby(), Witness: v.witness()}
	var errs []error
	fail := func(path string, line int, format string, args ...any) {
		errs = append(errs, &PlanError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	resolve := func(t Target, path string, line int) string {
		var name string
		switch t {
		case TargetActive:
			if name = p.Active; name == "" {
				fail(path, line, "active: no node is active")
			}
		case TargetStandby:
			if name = p.Standby; name == "" {
				fail(path, line, "standby: the cluster has no single GPU node besides the active one")
			}
		case TargetWitness:
			if name = p.Witness; name == "" {
				fail(path, line, "witness: the cluster has no single witness")
			}
		default:
			if _, ok := v.Member(string(t)); !ok {
				fail(path, line, "%s is not a member", t)
				return ""
			}
			name = string(t)
		}
		return name
	}
	gpu := func(name, path string, line int, what string) {
		if m, ok := v.Member(name); ok && m.Role != RoleGPU {
			fail(path, line, "%s is a %s; %s needs a GPU node", name, m.Role, what)
		}
	}

	ss := rb.SteadyState.Probe
	p.ProbeURL = ss.URL
	if strings.Contains(ss.URL, "${vip}") {
		if v.VIP == "" {
			fail("steady_state.probe.url", 0, "${vip}: the cluster has no VIP configured")
		} else {
			host := v.VIP
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			p.ProbeURL = strings.ReplaceAll(ss.URL, "${vip}", host)
		}
	}
	p.ProbeFrom = resolve(ss.From, "steady_state.probe.from", 0)

	current := ""
	for i, st := range rb.Steps {
		path := index("steps", i)
		ps := PlannedStep{Index: i, Step: st}
		switch st.Kind {
		case StepFault:
			f := st.Fault
			if f.Kind == FaultPlannedFailover {
				// From the node active at this point: a planned failover
				// without a hand-back leaves the role on its To.
				ps.Target = resolve(TargetActive, path, st.Line)
				if current != "" {
					ps.Target = current
				}
				ps.To = resolve(f.To, path+".to", st.Line)
				gpu(ps.To, path+".to", st.Line, "taking the role")
				if ps.To != "" && ps.To == ps.Target {
					fail(path+".to", st.Line, "%s is already active at this step", ps.To)
				}
				if f.Duration == 0 && ps.To != "" {
					current = ps.To
				}
				break
			}
			ps.Target = resolve(f.Target, path+".target", st.Line)
			if f.Kind.onGPUNode() {
				gpu(ps.Target, path+".target", st.Line, "a "+string(f.Kind)+" fault")
			}
			for j, t := range f.From {
				n := resolve(t, index(path+".from", j), st.Line)
				if n == "" {
					continue
				}
				if n == ps.Target {
					fail(index(path+".from", j), st.Line, "%s (%s) is the target itself", t, n)
					continue
				}
				dup := false
				for _, o := range ps.From {
					dup = dup || o == n
				}
				if dup {
					fail(index(path+".from", j), st.Line, "%s (%s) listed twice", t, n)
					continue
				}
				ps.From = append(ps.From, n)
			}
		case StepWait:
			if st.Wait.Until != nil {
				ps.Cond = resolveCond(st.Wait.Until, path+".wait.until", st.Line, resolve)
			}
		case StepExpect:
			ps.Cond = resolveCond(st.Expect, path+".expect", st.Line, resolve)
		}
		p.Steps = append(p.Steps, ps)
	}

	for i, e := range rb.Expectations {
		pe := PlannedExpectation{Expectation: e, Index: i}
		path := index("expectations", i)
		switch e.Kind {
		case ExpHolderBecomes, ExpHolderStays:
			pe.NodeName = resolve(e.Node, path+"."+string(e.Kind), e.Line)
			gpu(pe.NodeName, path+"."+string(e.Kind), e.Line, "holding the VIP")
		case ExpHistoryReason:
			re, err := compileReason(e.Pattern, p.Active, p.Standby, p.Witness)
			if err != nil {
				fail(path+".history-reason", e.Line, "%v", err)
			}
			pe.Reason = re
		}
		p.Expectations = append(p.Expectations, pe)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func resolveCond(c *Condition, path string, line int, resolve func(Target, string, int) string) *ResolvedCondition {
	rc := &ResolvedCondition{SteadyState: c.SteadyState}
	if c.Holder != "" {
		rc.Holder = resolve(c.Holder, path+".holder", line)
	}
	if c.Healthy != "" {
		rc.Healthy = resolve(c.Healthy, path+".healthy", line)
	}
	return rc
}

// Undo says how the runner puts a fault back, in the plan's words.
func (s PlannedStep) Undo() string {
	if s.Step.Kind != StepFault {
		return ""
	}
	f := s.Step.Fault
	switch f.Kind {
	case FaultCheckFail:
		return fmt.Sprintf("clear the injection on %s (it also expires by itself)", s.Target)
	case FaultServiceStop:
		return fmt.Sprintf("start the service container on %s", s.Target)
	case FaultServicePause:
		return fmt.Sprintf("unpause the service container on %s", s.Target)
	case FaultServiceErrors:
		return fmt.Sprintf("switch the service on %s back to normal answers", s.Target)
	case FaultGPUFail:
		return fmt.Sprintf("clear the GPU check injection on %s (it also expires by itself)", s.Target)
	case FaultAgentCrash:
		return fmt.Sprintf("start the agent on %s if its service manager has not", s.Target)
	case FaultPartition:
		return fmt.Sprintf("remove the firewall rules on %s (the kernel also expires them)", s.Target)
	case FaultPlannedFailover:
		if f.Duration == 0 {
			return fmt.Sprintf("none: the role stays on %s", s.To)
		}
		return fmt.Sprintf("planned failover back to %s", s.Target)
	}
	return ""
}

// Describe is the step in the plan's words, without its undo.
func (s PlannedStep) Describe() string {
	st := s.Step
	var b strings.Builder
	switch st.Kind {
	case StepFault:
		f := st.Fault
		switch f.Kind {
		case FaultPlannedFailover:
			fmt.Fprintf(&b, "planned-failover from %s to %s", s.Target, nodeRole(s.To, f.To))
		case FaultPartition:
			from := make([]string, len(s.From))
			for i, n := range s.From {
				from[i] = nodeRole(n, f.From[i])
			}
			fmt.Fprintf(&b, "partition %s from %s", nodeRole(s.Target, f.Target), strings.Join(from, ", "))
		case FaultCheckFail:
			fmt.Fprintf(&b, "check-fail %s on %s", f.Check, nodeRole(s.Target, f.Target))
		case FaultServiceErrors:
			fmt.Fprintf(&b, "service-errors (status %d) on %s", f.Status, nodeRole(s.Target, f.Target))
		default:
			fmt.Fprintf(&b, "%s on %s", f.Kind, nodeRole(s.Target, f.Target))
		}
		if f.Duration > 0 {
			fmt.Fprintf(&b, " for %s", f.Duration)
		}
	case StepWait:
		if st.Wait.Until == nil {
			fmt.Fprintf(&b, "wait %s", st.Wait.For)
		} else {
			fmt.Fprintf(&b, "wait until %s, at most %s", s.Cond, st.Wait.Timeout)
		}
	case StepExpect:
		fmt.Fprintf(&b, "expect %s", s.Cond)
	}
	if st.Name != "" {
		fmt.Fprintf(&b, " (%s)", st.Name)
	}
	return b.String()
}

// String is the --dry-run text: the cluster as resolved, the steady state,
// the preconditions, the steps in order with their targets, durations and
// undo, the expectations, the abort conditions and the time limit.
func (p *Plan) String() string {
	rb := p.Runbook
	var b strings.Builder
	fmt.Fprintf(&b, "drill %s (runbook version %d), time limit %s\n", rb.Name, rb.Version, rb.TimeLimit)
	leader := p.View.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(&b, "cluster: active %s, standby %s, witness %s, leader %s\n", dash(p.Active), dash(p.Standby), dash(p.Witness), leader)
	pr := rb.SteadyState.Probe
	fmt.Fprintf(&b, "steady state: %s %s every %s from %s, timeout %s, expect status %d\n", pr.Method, p.ProbeURL, pr.Interval, nodeRole(p.ProbeFrom, pr.From), pr.Timeout, pr.ExpectStatus)
	if rb.SteadyState.ARPWatch {
		fmt.Fprintf(&b, "ARP watch: who answers for %s, every %s, from %s\n", dash(p.View.VIP), rb.SteadyState.ARPInterval, p.ProbeFrom)
	} else {
		b.WriteString("ARP watch: off\n")
	}
	if len(rb.Preconditions) == 0 {
		b.WriteString("preconditions: none\n")
	} else {
		fmt.Fprintf(&b, "preconditions: %s\n", joinPre(rb.Preconditions))
	}
	b.WriteString("steps:\n")
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "  steps[%d] %s\n", s.Index, s.Describe())
		if u := s.Undo(); u != "" {
			fmt.Fprintf(&b, "           undo: %s\n", u)
		}
	}
	b.WriteString("expectations:\n")
	for _, e := range p.Expectations {
		fmt.Fprintf(&b, "  expectations[%d] %s\n", e.Index, e.Describe())
	}
	var ab []string
	if rb.Abort.SteadyStateLostFor > 0 {
		ab = append(ab, fmt.Sprintf("steady state lost for %s", rb.Abort.SteadyStateLostFor))
	}
	if rb.Abort.StandbyUnhealthy {
		ab = append(ab, fmt.Sprintf("standby %s unhealthy", dash(p.Standby)))
	}
	if rb.Abort.QuorumLost {
		ab = append(ab, "quorum lost")
	}
	ab = append(ab, "the operator's Ctrl-C", "time limit "+rb.TimeLimit.String())
	fmt.Fprintf(&b, "abort (undo every fault at once) on: %s\n", strings.Join(ab, "; "))
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
