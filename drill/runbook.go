package drill

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Version is the only runbook format version this package reads.
const Version = 1

// Bounds on a runbook. Every fault is bounded in time so that a drill whose
// runner dies leaves nothing behind for long (AWS FIS bounds every action
// the same way).
const (
	// MaxFaultDuration is the longest one fault may last.
	MaxFaultDuration = 10 * time.Minute
	// MaxTimeLimit is the longest time_limit a runbook may set.
	MaxTimeLimit = time.Hour
	// MaxSteps is the most steps a runbook may have.
	MaxSteps = 32
	// MaxExpectations is the most expectations a runbook may have.
	MaxExpectations = 32
	// MaxSize is the largest runbook file, in bytes.
	MaxSize = 64 << 10
	// MaxProbeInterval bounds steady_state.probe.interval; MinProbeInterval
	// keeps a probe from flooding the service (vipwatch and the benchmarks
	// in docs/benchmarks.md use 20 ms).
	MaxProbeInterval = 10 * time.Second
	MinProbeInterval = 5 * time.Millisecond
	// MaxProbeTimeout bounds steady_state.probe.timeout.
	MaxProbeTimeout = 30 * time.Second
)

const (
	maxDepth  = 16
	maxErrors = 50
)

// Defaults filled in where a runbook leaves a key out.
const (
	DefaultProbeMethod   = "GET"
	DefaultProbeInterval = 20 * time.Millisecond  // docs/benchmarks.md's client
	DefaultProbeTimeout  = 200 * time.Millisecond // vipwatch's default
	DefaultExpectStatus  = 200
	DefaultARPInterval   = 50 * time.Millisecond // docs/benchmarks.md's ARP watch
	DefaultCheck         = "http:service"        // the required check service.health_url makes
	DefaultErrorStatus   = 500                   // the stub's fault switch default
	DefaultAbortLostFor  = 30 * time.Second
)

// Target names a node by its role when the drill starts ("active",
// "standby", "witness") or by its name.
type Target string

// The role targets. Any other value is a node name.
const (
	TargetActive  Target = "active"
	TargetStandby Target = "standby"
	TargetWitness Target = "witness"
)

// IsRole reports whether t names a role rather than a node.
func (t Target) IsRole() bool {
	return t == TargetActive || t == TargetStandby || t == TargetWitness
}

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Precondition is one check made before a drill may start.
type Precondition string

// The preconditions. A runbook that lists none gets all of them.
const (
	// PreGPUNodesHealthy: both GPU nodes are reachable and healthy.
	PreGPUNodesHealthy Precondition = "gpu-nodes-healthy"
	// PreQuorum: there is a leader and every voter is reachable, so the
	// drill can take one down and keep a majority.
	PreQuorum Precondition = "quorum"
	// PreNoMaintenance: maintenance mode is off.
	PreNoMaintenance Precondition = "no-maintenance"
	// PreNoDrillRunning: no other drill is running.
	PreNoDrillRunning Precondition = "no-drill-running"
	// PreNotInHoldDown: no hold-down after the last move is running, so
	// a health-driven move can happen at once.
	PreNotInHoldDown Precondition = "not-in-hold-down"
)

// AllPreconditions is every precondition, in the order they are checked.
var AllPreconditions = []Precondition{PreGPUNodesHealthy, PreQuorum, PreNoMaintenance, PreNoDrillRunning, PreNotInHoldDown}

func knownPrecondition(p Precondition) bool {
	for _, q := range AllPreconditions {
		if p == q {
			return true
		}
	}
	return false
}

// FaultKind names a fault.
type FaultKind string

// The faults.
const (
	// FaultCheckFail forces a health check of the target to fail (drill
	// injection); undo: clear the injection, which also expires by itself.
	FaultCheckFail FaultKind = "check-fail"
	// FaultServiceStop stops the target's service container; undo: start it.
	FaultServiceStop FaultKind = "service-stop"
	// FaultServicePause freezes the target's service container (it hangs);
	// undo: unpause it.
	FaultServicePause FaultKind = "service-pause"
	// FaultServiceErrors switches the target's service into answering
	// errors (the stub model server's fault switch); undo: switch it back.
	FaultServiceErrors FaultKind = "service-errors"
	// FaultGPUFail forces the target's GPU check to fail; undo: clear it.
	FaultGPUFail FaultKind = "gpu-fail"
	// FaultAgentCrash makes the target's agent exit at once, without
	// cleanup; its service manager restarts it. Undo: start it if it is
	// still down when the duration ends.
	FaultAgentCrash FaultKind = "agent-crash"
	// FaultPartition cuts the target off from the nodes in From with
	// firewall rules that expire by themselves; undo: remove them.
	FaultPartition FaultKind = "partition"
	// FaultPlannedFailover hands the active role to To. With a duration
	// it hands it back when the duration ends; without one it has no undo.
	FaultPlannedFailover FaultKind = "planned-failover"
)

// AllFaults is every fault kind.
var AllFaults = []FaultKind{FaultCheckFail, FaultServiceStop, FaultServicePause, FaultServiceErrors, FaultGPUFail, FaultAgentCrash, FaultPartition, FaultPlannedFailover}

// onGPUNode reports whether the fault acts on a GPU node's service or
// checks, so that its target must be a GPU node.
func (k FaultKind) onGPUNode() bool {
	switch k {
	case FaultCheckFail, FaultServiceStop, FaultServicePause, FaultServiceErrors, FaultGPUFail:
		return true
	}
	return false
}

// StepKind says what a step does.
type StepKind string

// The step kinds.
const (
	StepFault  StepKind = "fault"
	StepWait   StepKind = "wait"
	StepExpect StepKind = "expect"
)

// Runbook is a parsed, validated runbook.
type Runbook struct {
	Version     int
	Name        string
	Description string
	SteadyState SteadyState
	// Preconditions to check before starting; AllPreconditions when the
	// runbook leaves the key out, none when it writes [].
	Preconditions []Precondition
	Steps         []Step
	Expectations  []Expectation
	Abort         Abort
	TimeLimit     time.Duration
}

// SteadyState is what "the service works" means during a drill.
type SteadyState struct {
	Probe Probe
	// ARPWatch asks for an ARP watch of who answers for the VIP.
	ARPWatch bool
	// ARPInterval is the time between ARP probes.
	ARPInterval time.Duration
}

// Probe is a client request through the VIP.
type Probe struct {
	// URL may contain ${vip}, replaced by the VIP's address.
	URL          string
	Method       string
	Body         string
	Interval     time.Duration
	Timeout      time.Duration
	ExpectStatus int
	// From is where the probe runs; the witness by default: it is off the
	// GPU hosts and on the same segment.
	From Target
}

// Step is one step of a runbook, run in order. Exactly one of Fault, Wait
// and Expect is set, as Kind says.
type Step struct {
	// Name is an optional label shown in the plan and the report.
	Name   string
	Kind   StepKind
	Fault  *Fault
	Wait   *Wait
	Expect *Condition
	// Line is the step's line in the runbook.
	Line int
}

// Fault is a fault step. A fault starts when its step runs and lasts
// Duration in the background while the next steps run; then it is undone.
type Fault struct {
	Kind FaultKind
	// Target is the node the fault acts on; empty for planned-failover.
	Target Target
	// Duration is how long the fault lasts. Zero only for a
	// planned-failover without a hand-back.
	Duration time.Duration
	// From is, for a partition, the nodes the target is cut off from.
	From []Target
	// To is, for a planned-failover, the node that takes the role.
	To Target
	// Check is, for check-fail, the check to force ("http:service").
	Check string
	// Status is, for service-errors, the HTTP status the service answers.
	Status int
}

// Wait is a wait step: either a fixed time (For) or until a condition
// holds, at most Timeout. A wait whose condition does not hold in time
// fails the drill; the run goes on.
type Wait struct {
	For     time.Duration
	Until   *Condition
	Timeout time.Duration
}

// Condition is a state of the cluster at one moment; every field that is
// set must hold.
type Condition struct {
	// Holder: this node holds the VIP.
	Holder Target
	// Healthy: this node is reachable and healthy.
	Healthy Target
	// SteadyState: the last probe passed (true) or failed (false).
	SteadyState *bool
}

// ExpectationKind names an expectation.
type ExpectationKind string

// The expectations.
const (
	// ExpHolderBecomes: Node holds the VIP within Within of the start of
	// the first fault.
	ExpHolderBecomes ExpectationKind = "holder-becomes"
	// ExpHolderStays: Node holds the VIP throughout.
	ExpHolderStays ExpectationKind = "holder-stays"
	// ExpOutageMax: the longest run of failed requests lasts at most Max.
	ExpOutageMax ExpectationKind = "outage-max"
	// ExpFailedRequestsMax: at most Count requests failed.
	ExpFailedRequestsMax ExpectationKind = "failed-requests-max"
	// ExpNeverTwoHolders: no ARP round heard two MACs for the VIP.
	ExpNeverTwoHolders ExpectationKind = "never-two-holders"
	// ExpHistoryReason: a change of active node during the drill has a
	// reason matching Pattern.
	ExpHistoryReason ExpectationKind = "history-reason"
	// ExpSteadyStateWithin: the steady state holds again at most Max after
	// the last fault ends.
	ExpSteadyStateWithin ExpectationKind = "steady-state-within"
)

// AllExpectations is every expectation kind.
var AllExpectations = []ExpectationKind{ExpHolderBecomes, ExpHolderStays, ExpOutageMax, ExpFailedRequestsMax, ExpNeverTwoHolders, ExpHistoryReason, ExpSteadyStateWithin}

// Expectation is one expected outcome, checked after the run.
type Expectation struct {
	Kind ExpectationKind
	// Node for holder-becomes and holder-stays.
	Node Target
	// Within for holder-becomes.
	Within time.Duration
	// After is, for holder-becomes, the index of the fault step whose
	// start Within counts from; nil: the first fault.
	After *int
	// Max for outage-max and steady-state-within.
	Max time.Duration
	// Count for failed-requests-max.
	Count int
	// Pattern for history-reason, a regular expression (RE2) in which
	// ${active}, ${standby} and ${witness} stand for the resolved names.
	Pattern string
	// Line is the expectation's line in the runbook.
	Line int
}

// String is the expectation as the plan and the report show it, with
// targets unresolved: "outage-max 1s".
func (e Expectation) String() string {
	switch e.Kind {
	case ExpHolderBecomes:
		if e.After != nil {
			return fmt.Sprintf("%s %s within %s after steps[%d]", e.Kind, e.Node, e.Within, *e.After)
		}
		return fmt.Sprintf("%s %s within %s", e.Kind, e.Node, e.Within)
	case ExpHolderStays:
		return fmt.Sprintf("%s %s", e.Kind, e.Node)
	case ExpOutageMax, ExpSteadyStateWithin:
		return fmt.Sprintf("%s %s", e.Kind, e.Max)
	case ExpFailedRequestsMax:
		return fmt.Sprintf("%s %d", e.Kind, e.Count)
	case ExpHistoryReason:
		return fmt.Sprintf("%s %q", e.Kind, e.Pattern)
	}
	return string(e.Kind)
}

// Abort holds the conditions that stop a run and undo every fault at once.
type Abort struct {
	// SteadyStateLostFor: the steady state has been lost this long.
	SteadyStateLostFor time.Duration
	// StandbyUnhealthy: the node that was the standby when the drill
	// started is unreachable or unhealthy (nobody could take over).
	StandbyUnhealthy bool
	// QuorumLost: there is no leader or fewer than a majority of voters
	// answer.
	QuorumLost bool
}

// ParseFile reads and parses a runbook file.
func ParseFile(path string) (*Runbook, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read runbook: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read runbook %s: %w", path, err)
	}
	rb, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("runbook %s: %w", path, err)
	}
	return rb, nil
}

// Parse decodes and validates a runbook. Its error is an Errors listing
// every problem, each naming the line and the key path.
func Parse(data []byte) (*Runbook, error) {
	if len(data) > MaxSize {
		return nil, Errors{{Msg: fmt.Sprintf("runbook is %d bytes; at most %d", len(data), MaxSize)}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Msg: "empty runbook"}}
		}
		return nil, Errors{{Line: yamlErrLine(err), Msg: "not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Line: extra.Line, Msg: "more than one YAML document; a runbook is one"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, Errors{{Line: yamlErrLine(err), Msg: "not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	d := &decoder{}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errors{{Msg: "empty runbook"}}
	}
	root := doc.Content[0]
	d.noAliases(root, 0)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	rb := d.runbook(root)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return rb, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlErrLine pulls the line out of a yaml.v3 syntax error, which says
// "yaml: line 3: ...".
func yamlErrLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	n := 0
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

var runbookNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (d *decoder) runbook(n *yaml.Node) *Runbook {
	f, ok := d.mapping(n, "", "version", "name", "description", "steady_state", "preconditions", "steps", "expectations", "abort", "time_limit")
	if !ok {
		return nil
	}
	rb := &Runbook{}
	// version first: a runbook of another version is not read further.
	if v, ok := f["version"]; !ok {
		d.errorf(n, "version", "required (write version: %d)", Version)
		return nil
	} else if ver, ok := d.integer(v.value, "version", 0, 1<<30); !ok {
		return nil
	} else if ver != Version {
		d.errorf(v.value, "version", "%d is not supported; this newbieha reads version %d", ver, Version)
		return nil
	} else {
		rb.Version = ver
	}
	if v, ok := f["name"]; !ok {
		d.errorf(n, "name", "required")
	} else if s, ok := d.str(v.value, "name"); ok {
		if !runbookNameRE.MatchString(s) {
			d.errorf(v.value, "name", "%q must be lowercase letters, digits and -, at most 63", s)
		}
		rb.Name = s
	}
	if v, ok := f["description"]; !ok {
		d.errorf(n, "description", "required: say what the drill does and what clients will see")
	} else if s, ok := d.str(v.value, "description"); ok {
		if strings.TrimSpace(s) == "" {
			d.errorf(v.value, "description", "must not be empty")
		}
		rb.Description = strings.TrimSpace(s)
	}
	if v, ok := f["time_limit"]; !ok {
		d.errorf(n, "time_limit", "required: the longest the whole drill may take (at most %s)", MaxTimeLimit)
	} else if t, ok := d.duration(v.value, "time_limit", MaxTimeLimit); ok {
		rb.TimeLimit = t
	}
	if v, ok := f["steady_state"]; !ok {
		d.errorf(n, "steady_state", "required: the probe that tells whether clients are served")
	} else {
		rb.SteadyState = d.steadyState(v.value, "steady_state")
	}
	rb.Preconditions = AllPreconditions
	if v, ok := f["preconditions"]; ok {
		rb.Preconditions = d.preconditions(v.value, "preconditions")
	}
	if v, ok := f["steps"]; !ok {
		d.errorf(n, "steps", "required: at least one step")
	} else {
		rb.Steps = d.steps(v.value, "steps")
	}
	if v, ok := f["expectations"]; !ok {
		d.errorf(n, "expectations", "required: at least one expectation")
	} else {
		rb.Expectations = d.expectations(v.value, "expectations")
	}
	rb.Abort = Abort{SteadyStateLostFor: DefaultAbortLostFor, StandbyUnhealthy: true, QuorumLost: true}
	if v, ok := f["abort"]; ok {
		rb.Abort = d.abort(v.value, "abort")
	}
	if len(d.errs) == 0 {
		d.crossChecks(rb, n.Line)
	}
	return rb
}

func (d *decoder) steadyState(n *yaml.Node, path string) SteadyState {
	ss := SteadyState{ARPWatch: true, ARPInterval: DefaultARPInterval}
	f, ok := d.mapping(n, path, "probe", "arp_watch", "arp_interval")
	if !ok {
		return ss
	}
	if v, ok := f["probe"]; !ok {
		d.errorf(n, join(path, "probe"), "required")
	} else {
		ss.Probe = d.probe(v.value, join(path, "probe"))
	}
	if v, ok := f["arp_watch"]; ok {
		if b, ok := d.boolean(v.value, join(path, "arp_watch")); ok {
			ss.ARPWatch = b
		}
	}
	if v, ok := f["arp_interval"]; ok {
		if t, ok := d.duration(v.value, join(path, "arp_interval"), MaxProbeInterval); ok {
			if t < MinProbeInterval {
				d.errorf(v.value, join(path, "arp_interval"), "%s is shorter than %s", t, MinProbeInterval)
			}
			ss.ARPInterval = t
		}
	}
	return ss
}

func (d *decoder) probe(n *yaml.Node, path string) Probe {
	p := Probe{Method: DefaultProbeMethod, Interval: DefaultProbeInterval, Timeout: DefaultProbeTimeout, ExpectStatus: DefaultExpectStatus, From: TargetWitness}
	f, ok := d.mapping(n, path, "url", "method", "body", "interval", "timeout", "expect_status", "from")
	if !ok {
		return p
	}
	if v, ok := f["url"]; !ok {
		d.errorf(n, join(path, "url"), "required (for example http://${vip}:8080/health)")
	} else if s, ok := d.str(v.value, join(path, "url")); ok {
		if err := checkProbeURL(s); err != nil {
			d.errorf(v.value, join(path, "url"), "%q: %v", s, err)
		}
		p.URL = s
	}
	if v, ok := f["method"]; ok {
		if s, ok := d.str(v.value, join(path, "method")); ok {
			switch m := strings.ToUpper(s); m {
			case "GET", "HEAD", "POST", "PUT":
				p.Method = m
			default:
				d.errorf(v.value, join(path, "method"), "%q is not one of GET, HEAD, POST, PUT", s)
			}
		}
	}
	if v, ok := f["body"]; ok {
		if s, ok := d.str(v.value, join(path, "body")); ok {
			p.Body = s
			if p.Method != "POST" && p.Method != "PUT" {
				d.errorf(v.value, join(path, "body"), "a body needs method POST or PUT, not %s", p.Method)
			}
		}
	}
	if v, ok := f["interval"]; ok {
		if t, ok := d.duration(v.value, join(path, "interval"), MaxProbeInterval); ok {
			if t < MinProbeInterval {
				d.errorf(v.value, join(path, "interval"), "%s is shorter than %s", t, MinProbeInterval)
			}
			p.Interval = t
		}
	}
	if v, ok := f["timeout"]; ok {
		if t, ok := d.duration(v.value, join(path, "timeout"), MaxProbeTimeout); ok {
			p.Timeout = t
		}
	}
	if v, ok := f["expect_status"]; ok {
		if c, ok := d.integer(v.value, join(path, "expect_status"), 100, 599); ok {
			p.ExpectStatus = c
		}
	}
	if v, ok := f["from"]; ok {
		p.From = d.target(v.value, join(path, "from"))
	}
	return p
}

// checkProbeURL accepts http and https URLs with a host, ${vip} standing
// for the VIP's address.
func checkProbeURL(s string) error {
	rest, ok := strings.CutPrefix(s, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(s, "https://")
	}
	if !ok {
		return errors.New("want an http:// or https:// URL")
	}
	host, _, _ := strings.Cut(rest, "/")
	if host == "" {
		return errors.New("no host")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return errors.New("contains white space")
	}
	return nil
}

func (d *decoder) target(n *yaml.Node, path string) Target {
	s, ok := d.str(n, path)
	if !ok {
		return ""
	}
	if t := Target(s); t.IsRole() || nodeNameRE.MatchString(s) {
		return t
	}
	d.errorf(n, path, "%q is not active, standby, witness or a node name", s)
	return ""
}

func (d *decoder) preconditions(n *yaml.Node, path string) []Precondition {
	items, ok := d.sequence(n, path, len(AllPreconditions))
	if !ok {
		return nil
	}
	out := []Precondition{}
	seen := map[Precondition]bool{}
	for i, it := range items {
		p := index(path, i)
		s, ok := d.str(it, p)
		if !ok {
			continue
		}
		pc := Precondition(s)
		switch {
		case !knownPrecondition(pc):
			d.errorf(it, p, "unknown precondition %q (want %s)", s, joinPre(AllPreconditions))
		case seen[pc]:
			d.errorf(it, p, "%s listed twice", s)
		default:
			seen[pc] = true
			out = append(out, pc)
		}
	}
	return out
}

func joinPre(ps []Precondition) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

func (d *decoder) steps(n *yaml.Node, path string) []Step {
	items, ok := d.sequence(n, path, MaxSteps)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(n, path, "at least one step")
		return nil
	}
	out := make([]Step, 0, len(items))
	for i, it := range items {
		out = append(out, d.step(it, index(path, i)))
	}
	return out
}

var faultKeys = []string{"name", "fault", "target", "duration", "from", "to", "check", "status"}

func (d *decoder) step(n *yaml.Node, path string) Step {
	st := Step{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping with one of fault, wait or expect, got %s", describe(n))
		return st
	}
	// Which kind of step is it? Exactly one of the three keys.
	var kinds []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "fault", "wait", "expect":
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		d.errorf(n, path, "a step needs one of fault, wait or expect")
		return st
	case 1:
	default:
		d.errorf(n, path, "a step has one of fault, wait or expect, not %s", strings.Join(kinds, " and "))
		return st
	}
	var f map[string]field
	switch kinds[0] {
	case "fault":
		f, ok := d.mapping(n, path, faultKeys...)
		if !ok {
			return st
		}
		st.Kind = StepFault
		st.Fault = d.fault(n, f, path)
		st.Name = d.stepName(f, path)
		return st
	case "wait":
		var ok bool
		if f, ok = d.mapping(n, path, "name", "wait"); !ok {
			return st
		}
		st.Kind = StepWait
		st.Wait = d.wait(f["wait"].value, join(path, "wait"))
	case "expect":
		var ok bool
		if f, ok = d.mapping(n, path, "name", "expect"); !ok {
			return st
		}
		st.Kind = StepExpect
		st.Expect = d.condition(f["expect"].value, join(path, "expect"))
	}
	st.Name = d.stepName(f, path)
	return st
}

func (d *decoder) stepName(f map[string]field, path string) string {
	v, ok := f["name"]
	if !ok {
		return ""
	}
	s, ok := d.str(v.value, join(path, "name"))
	if ok && (len(s) > 80 || strings.ContainsAny(s, "\r\n")) {
		d.errorf(v.value, join(path, "name"), "one line of at most 80 characters")
		return ""
	}
	return s
}

func (d *decoder) fault(n *yaml.Node, f map[string]field, path string) *Fault {
	flt := &Fault{}
	v := f["fault"]
	s, ok := d.str(v.value, join(path, "fault"))
	if !ok {
		return flt
	}
	flt.Kind = FaultKind(s)
	known := false
	for _, k := range AllFaults {
		known = known || k == flt.Kind
	}
	if !known {
		all := make([]string, len(AllFaults))
		for i, k := range AllFaults {
			all[i] = string(k)
		}
		d.errorf(v.value, join(path, "fault"), "unknown fault %q (want %s)", s, strings.Join(all, ", "))
		return flt
	}
	// Keys that belong to one fault only.
	only := map[string]FaultKind{"from": FaultPartition, "to": FaultPlannedFailover, "check": FaultCheckFail, "status": FaultServiceErrors}
	for key, kind := range only {
		if x, ok := f[key]; ok && flt.Kind != kind {
			d.errorf(x.key, join(path, key), "only a %s fault takes %s", kind, key)
		}
	}
	if flt.Kind == FaultPlannedFailover {
		if x, ok := f["target"]; ok {
			d.errorf(x.key, join(path, "target"), "a planned-failover acts on the active node; give the new one as to")
		}
		if x, ok := f["to"]; !ok {
			d.errorf(n, join(path, "to"), "required: the node that takes the role (a name or standby)")
		} else {
			flt.To = d.target(x.value, join(path, "to"))
			if flt.To == TargetActive || flt.To == TargetWitness {
				d.errorf(x.value, join(path, "to"), "%s cannot take the role; want standby or a GPU node's name", flt.To)
			}
		}
		if x, ok := f["duration"]; ok {
			if t, ok := d.duration(x.value, join(path, "duration"), MaxFaultDuration); ok {
				flt.Duration = t
			}
		}
		return flt
	}
	if x, ok := f["target"]; !ok {
		d.errorf(n, join(path, "target"), "required: active, standby, witness or a node name")
	} else {
		flt.Target = d.target(x.value, join(path, "target"))
		if flt.Kind.onGPUNode() && flt.Target == TargetWitness {
			d.errorf(x.value, join(path, "target"), "a %s fault needs a GPU node; the witness runs no service", flt.Kind)
		}
	}
	if x, ok := f["duration"]; !ok {
		d.errorf(n, join(path, "duration"), "required: every fault is bounded (at most %s)", MaxFaultDuration)
	} else if t, ok := d.duration(x.value, join(path, "duration"), MaxFaultDuration); ok {
		flt.Duration = t
	}
	switch flt.Kind {
	case FaultPartition:
		x, ok := f["from"]
		if !ok {
			d.errorf(n, join(path, "from"), "required: the nodes the target is cut off from, as a list")
			break
		}
		items, ok := d.sequence(x.value, join(path, "from"), 8)
		if !ok {
			break
		}
		if len(items) == 0 {
			d.errorf(x.value, join(path, "from"), "at least one node")
		}
		seen := map[Target]bool{}
		for i, it := range items {
			p := index(join(path, "from"), i)
			t := d.target(it, p)
			switch {
			case t == "":
			case t == flt.Target:
				d.errorf(it, p, "%s is the target itself", t)
			case seen[t]:
				d.errorf(it, p, "%s listed twice", t)
			default:
				seen[t] = true
				flt.From = append(flt.From, t)
			}
		}
	case FaultCheckFail:
		flt.Check = DefaultCheck
		if x, ok := f["check"]; ok {
			if s, ok := d.str(x.value, join(path, "check")); ok {
				if !checkNameRE.MatchString(s) {
					d.errorf(x.value, join(path, "check"), "%q is not a check name (name or kind:name)", s)
				}
				flt.Check = s
			}
		}
	case FaultServiceErrors:
		flt.Status = DefaultErrorStatus
		if x, ok := f["status"]; ok {
			if c, ok := d.integer(x.value, join(path, "status"), 400, 599); ok {
				flt.Status = c
			}
		}
	}
	return flt
}

var checkNameRE = regexp.MustCompile(`^([a-z][a-z0-9-]{0,31}:)?[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (d *decoder) wait(n *yaml.Node, path string) *Wait {
	w := &Wait{}
	if n.Kind == yaml.ScalarNode {
		if t, ok := d.duration(n, path, MaxTimeLimit); ok {
			w.For = t
		}
		return w
	}
	f, ok := d.mapping(n, path, "for", "until", "timeout")
	if !ok {
		return w
	}
	forF, hasFor := f["for"]
	untilF, hasUntil := f["until"]
	timeoutF, hasTimeout := f["timeout"]
	switch {
	case hasFor && hasUntil:
		d.errorf(untilF.key, join(path, "until"), "a wait is either for a time or until a condition, not both")
	case hasFor:
		if t, ok := d.duration(forF.value, join(path, "for"), MaxTimeLimit); ok {
			w.For = t
		}
		if hasTimeout {
			d.errorf(timeoutF.key, join(path, "timeout"), "only a wait until a condition takes a timeout")
		}
	case hasUntil:
		w.Until = d.condition(untilF.value, join(path, "until"))
		if !hasTimeout {
			d.errorf(n, join(path, "timeout"), "required: how long to wait for the condition at most")
		} else if t, ok := d.duration(timeoutF.value, join(path, "timeout"), MaxTimeLimit); ok {
			w.Timeout = t
		}
	default:
		d.errorf(n, path, "a wait needs a duration (wait: 5s, or for: 5s) or a condition (until: ..., timeout: ...)")
	}
	return w
}

func (d *decoder) condition(n *yaml.Node, path string) *Condition {
	c := &Condition{}
	f, ok := d.mapping(n, path, "holder", "healthy", "steady_state")
	if !ok {
		return c
	}
	if len(f) == 0 {
		d.errorf(n, path, "a condition needs at least one of holder, healthy, steady_state")
	}
	if v, ok := f["holder"]; ok {
		c.Holder = d.target(v.value, join(path, "holder"))
		if c.Holder == TargetWitness {
			d.errorf(v.value, join(path, "holder"), "the witness never holds the VIP")
		}
	}
	if v, ok := f["healthy"]; ok {
		c.Healthy = d.target(v.value, join(path, "healthy"))
	}
	if v, ok := f["steady_state"]; ok {
		if b, ok := d.boolean(v.value, join(path, "steady_state")); ok {
			c.SteadyState = &b
		}
	}
	return c
}

func (d *decoder) expectations(n *yaml.Node, path string) []Expectation {
	items, ok := d.sequence(n, path, MaxExpectations)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(n, path, "at least one expectation; a drill that expects nothing cannot fail")
		return nil
	}
	out := make([]Expectation, 0, len(items))
	for i, it := range items {
		if e, ok := d.expectation(it, index(path, i)); ok {
			out = append(out, e)
		}
	}
	return out
}

func (d *decoder) expectation(n *yaml.Node, path string) (Expectation, bool) {
	e := Expectation{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping such as {outage-max: 1s}, got %s", describe(n))
		return e, false
	}
	var kinds []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		for _, k := range AllExpectations {
			if n.Content[i].Value == string(k) {
				kinds = append(kinds, string(k))
			}
		}
	}
	if len(kinds) != 1 {
		all := make([]string, len(AllExpectations))
		for i, k := range AllExpectations {
			all[i] = string(k)
		}
		if len(kinds) == 0 {
			// Name the first key, so that a misspelling is found.
			if len(n.Content) > 0 {
				k := n.Content[0]
				d.errorf(k, join(path, k.Value), "unknown expectation (want %s)", strings.Join(all, ", "))
			} else {
				d.errorf(n, path, "empty expectation (want one of %s)", strings.Join(all, ", "))
			}
		} else {
			d.errorf(n, path, "one expectation per item, not %s", strings.Join(kinds, " and "))
		}
		return e, false
	}
	e.Kind = ExpectationKind(kinds[0])
	keys := []string{kinds[0]}
	if e.Kind == ExpHolderBecomes {
		keys = append(keys, "within", "after")
	}
	f, ok := d.mapping(n, path, keys...)
	if !ok {
		return e, false
	}
	v := f[kinds[0]].value
	p := join(path, kinds[0])
	before := len(d.errs)
	switch e.Kind {
	case ExpHolderBecomes, ExpHolderStays:
		e.Node = d.target(v, p)
		if e.Node == TargetWitness {
			d.errorf(v, p, "the witness never holds the VIP")
		}
		if e.Kind == ExpHolderBecomes {
			if w, ok := f["within"]; !ok {
				d.errorf(n, join(path, "within"), "required: how soon after the first fault starts")
			} else if t, ok := d.duration(w.value, join(path, "within"), MaxTimeLimit); ok {
				e.Within = t
			}
			if a, ok := f["after"]; ok {
				if i, ok := d.integer(a.value, join(path, "after"), 0, MaxSteps-1); ok {
					e.After = &i
				}
			}
		}
	case ExpOutageMax, ExpSteadyStateWithin:
		if t, ok := d.duration(v, p, MaxTimeLimit); ok {
			e.Max = t
		}
	case ExpFailedRequestsMax:
		if c, ok := d.integer(v, p, 0, 1_000_000); ok {
			e.Count = c
		}
	case ExpNeverTwoHolders:
		if b, ok := d.boolean(v, p); ok && !b {
			d.errorf(v, p, "write true, or leave the expectation out")
		}
	case ExpHistoryReason:
		if s, ok := d.str(v, p); ok {
			e.Pattern = s
			if _, err := compileReason(s, "node1", "node2", "witness"); err != nil {
				d.errorf(v, p, "%q is not a regular expression: %v", s, err)
			}
		}
	}
	return e, len(d.errs) == before
}

// compileReason expands ${active}, ${standby} and ${witness} (quoted, so a
// name's dots match only dots) and compiles the pattern.
func compileReason(pattern, active, standby, witness string) (*regexp.Regexp, error) {
	r := strings.NewReplacer("${active}", regexp.QuoteMeta(active), "${standby}", regexp.QuoteMeta(standby), "${witness}", regexp.QuoteMeta(witness))
	re, err := regexp.Compile(r.Replace(pattern))
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s", se.Code)
		}
		return nil, err
	}
	return re, nil
}

func (d *decoder) abort(n *yaml.Node, path string) Abort {
	a := Abort{SteadyStateLostFor: DefaultAbortLostFor, StandbyUnhealthy: true, QuorumLost: true}
	f, ok := d.mapping(n, path, "steady_state_lost_for", "standby_unhealthy", "quorum_lost")
	if !ok {
		return a
	}
	if v, ok := f["steady_state_lost_for"]; ok {
		if t, ok := d.duration(v.value, join(path, "steady_state_lost_for"), MaxTimeLimit); ok {
			a.SteadyStateLostFor = t
		}
	}
	if v, ok := f["standby_unhealthy"]; ok {
		if b, ok := d.boolean(v.value, join(path, "standby_unhealthy")); ok {
			a.StandbyUnhealthy = b
		}
	}
	if v, ok := f["quorum_lost"]; ok {
		if b, ok := d.boolean(v.value, join(path, "quorum_lost")); ok {
			a.QuorumLost = b
		}
	}
	return a
}

// WorstCase is the longest a run of rb can take before its expectations
// are judged: the steps in order (a fixed wait its time, a conditional
// wait its timeout, a fault nothing, as it runs in the background), every
// fault's end, and then the longest steady-state-within.
func (rb *Runbook) WorstCase() time.Duration {
	var t, end time.Duration
	for _, st := range rb.Steps {
		switch st.Kind {
		case StepFault:
			end = max(end, t+st.Fault.Duration)
		case StepWait:
			t += st.Wait.For + st.Wait.Timeout
		}
		end = max(end, t)
	}
	var tail time.Duration
	for _, e := range rb.Expectations {
		if e.Kind == ExpSteadyStateWithin {
			tail = max(tail, e.Max)
		}
	}
	return end + tail
}

// crossChecks applies the rules that tie keys together: durations and
// time_limit, an ARP expectation and the ARP watch, a holder-becomes's
// after and the step it names.
func (d *decoder) crossChecks(rb *Runbook, rootLine int) {
	limitLine := d.lineOf("time_limit", rootLine)
	abortLine := d.lineOf("abort.steady_state_lost_for", d.lineOf("abort", rootLine))
	var sum time.Duration
	faults := 0
	for _, st := range rb.Steps {
		if st.Kind == StepFault {
			sum += st.Fault.Duration
			faults++
		}
	}
	if sum > rb.TimeLimit {
		d.errs = append(d.errs, &FieldError{Line: limitLine, Path: "time_limit", Msg: fmt.Sprintf("%s is less than the faults' durations together (%s)", rb.TimeLimit, sum)})
	} else if w := rb.WorstCase(); w > rb.TimeLimit {
		d.errs = append(d.errs, &FieldError{Line: limitLine, Path: "time_limit", Msg: fmt.Sprintf("%s is less than the run can take: %s (waits, faults and the longest steady-state-within)", rb.TimeLimit, w)})
	}
	if rb.Abort.SteadyStateLostFor > rb.TimeLimit {
		d.errs = append(d.errs, &FieldError{Line: abortLine, Path: "abort.steady_state_lost_for", Msg: fmt.Sprintf("%s is longer than time_limit (%s)", rb.Abort.SteadyStateLostFor, rb.TimeLimit)})
	}
	if faults == 0 {
		d.errs = append(d.errs, &FieldError{Line: rb.Steps[0].Line, Path: "steps", Msg: "no fault: a drill needs at least one"})
	}
	for i, e := range rb.Expectations {
		if e.Kind == ExpNeverTwoHolders && !rb.SteadyState.ARPWatch {
			d.errs = append(d.errs, &FieldError{Line: e.Line, Path: index("expectations", i) + ".never-two-holders", Msg: "needs steady_state.arp_watch: true, which watches who answers"})
		}
		p := index("expectations", i)
		if e.Kind == ExpHolderBecomes && e.Within > rb.TimeLimit {
			d.errs = append(d.errs, &FieldError{Line: d.lineOf(p+".within", e.Line), Path: p + ".within", Msg: fmt.Sprintf("%s is longer than time_limit (%s)", e.Within, rb.TimeLimit)})
		}
		if e.After != nil {
			switch a := *e.After; {
			case a >= len(rb.Steps):
				d.errs = append(d.errs, &FieldError{Line: d.lineOf(p+".after", e.Line), Path: p + ".after", Msg: fmt.Sprintf("steps[%d] does not exist; the runbook has %d steps", a, len(rb.Steps))})
			case rb.Steps[a].Kind != StepFault:
				d.errs = append(d.errs, &FieldError{Line: d.lineOf(p+".after", e.Line), Path: p + ".after", Msg: fmt.Sprintf("steps[%d] is a %s, not a fault", a, rb.Steps[a].Kind)})
			}
		}
	}
}
