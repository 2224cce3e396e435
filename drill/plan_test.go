package drill

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleView is a healthy three-node cluster: node1 active, the witness
// leading, no maintenance, no hold-down.
func sampleView() ClusterView {
	return ClusterView{
		Members: []Member{
			{Name: "node1", Role: RoleGPU, Voter: true, Reachable: true, Healthy: true},
			{Name: "node2", Role: RoleGPU, Voter: true, Reachable: true, Healthy: true},
			{Name: "witness", Role: RoleWitness, Voter: true, Reachable: true, Healthy: true},
		},
		Active: "node1",
		Leader: "witness",
		VIP:    "10.0.0.100",
	}
}

func mustParse(t *testing.T, src string) *Runbook {
	t.Helper()
	rb, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

func mustPlan(t *testing.T, rb *Runbook, v ClusterView) *Plan {
	t.Helper()
	p, errs := NewPlan(rb, v)
	if errs != nil {
		t.Fatal(errors.Join(errs...))
	}
	return p
}

func TestCheckPreconditions_AllHoldOnAHealthyCluster(t *testing.T) {
	if errs := CheckPreconditions(sampleView(), AllPreconditions); errs != nil {
		t.Fatalf("%v", errs)
	}
}

func TestCheckPreconditions_OneByOne(t *testing.T) {
	since := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	cases := []struct {
		pre    Precondition
		break_ func(v *ClusterView)
		want   string
	}{
		{PreGPUNodesHealthy, func(v *ClusterView) { v.Members[1].Healthy, v.Members[1].Why = false, "http:service" }, "precondition gpu-nodes-healthy: node2 unhealthy (http:service)"},
		{PreGPUNodesHealthy, func(v *ClusterView) { v.Members[0].Reachable = false }, "precondition gpu-nodes-healthy: node1 unreachable"},
		{PreGPUNodesHealthy, func(v *ClusterView) { v.Members = v.Members[1:] }, "precondition gpu-nodes-healthy: want 2 GPU nodes, the cluster has 1"},
		{PreQuorum, func(v *ClusterView) { v.Members[2].Reachable = false }, "precondition quorum: 2 of 3 voters reachable (witness down); losing one more would lose quorum"},
		{PreQuorum, func(v *ClusterView) { v.Leader = "" }, "precondition quorum: no Raft leader"},
		{PreQuorum, func(v *ClusterView) { v.Members[2].Voter = false }, "precondition quorum: 2 voters; a drill needs 3 so that one can be lost"},
		{PreNoMaintenance, func(v *ClusterView) {
			v.Maintenance, v.MaintenanceSince, v.MaintenanceReason = true, since, "kernel upgrade"
		},
			`precondition no-maintenance: maintenance is on since 2026-12-01T20:00:00Z (reason "kernel upgrade"); nothing moves by itself in maintenance`},
		{PreNoDrillRunning, func(v *ClusterView) { v.DrillRunning = "holder-crashes" }, `precondition no-drill-running: drill "holder-crashes" is running`},
		{PreNotInHoldDown, func(v *ClusterView) { v.HoldDownRemaining = 12345 * time.Millisecond },
			"precondition not-in-hold-down: the hold-down after the last move runs 12.345s more; no health-driven move can happen before"},
	}
	for _, tc := range cases {
		t.Run(string(tc.pre), func(t *testing.T) {
			v := sampleView()
			tc.break_(&v)
			errs := CheckPreconditions(v, AllPreconditions)
			var mine []*PreconditionError
			for _, e := range errs {
				if e.Precondition == tc.pre {
					mine = append(mine, e)
				}
			}
			if len(mine) != 1 || mine[0].Error() != tc.want {
				t.Fatalf("got %v, want one %q", errs, tc.want)
			}
			// Only the precondition asked for is checked.
			others := []Precondition{}
			for _, p := range AllPreconditions {
				if p != tc.pre {
					others = append(others, p)
				}
			}
			for _, e := range CheckPreconditions(v, others) {
				if e.Precondition == tc.pre {
					t.Errorf("%s checked though not asked for", tc.pre)
				}
			}
		})
	}
}

func TestCheckPreconditions_EachFailureItsOwnMessage(t *testing.T) {
	v := sampleView()
	v.Maintenance = true
	v.DrillRunning = "x"
	v.HoldDownRemaining = time.Second
	errs := CheckPreconditions(v, AllPreconditions)
	if len(errs) != 3 || errs[0].Precondition != PreNoMaintenance || errs[1].Precondition != PreNoDrillRunning || errs[2].Precondition != PreNotInHoldDown {
		t.Fatalf("got %v", errs)
	}
}

func TestNewPlan_ResolvesTargets(t *testing.T) {
	rb := mustParse(t, minimal+"preconditions: []\n")
	p := mustPlan(t, rb, sampleView())
	if p.Active != "node1" || p.Standby != "node2" || p.Witness != "witness" || p.ProbeFrom != "witness" {
		t.Errorf("roles: %+v", p)
	}
	if p.ProbeURL != "http://10.0.0.100:8080/health" {
		t.Errorf("ProbeURL = %q", p.ProbeURL)
	}
	if p.Steps[0].Target != "node1" || p.Steps[1].Cond.Holder != "node2" || p.Expectations[0].NodeName != "node2" {
		t.Errorf("steps: %+v %+v", p.Steps[0], p.Steps[1].Cond)
	}
	// The other way round: node2 active.
	v := sampleView()
	v.Active = "node2"
	p = mustPlan(t, rb, v)
	if p.Steps[0].Target != "node2" || p.Steps[1].Cond.Holder != "node1" {
		t.Errorf("node2 active: %+v %+v", p.Steps[0], p.Steps[1].Cond)
	}
}

func TestNewPlan_IPv6VIP(t *testing.T) {
	v := sampleView()
	v.VIP = "fd00::100"
	p := mustPlan(t, mustParse(t, minimal), v)
	if p.ProbeURL != "http://[fd00::100]:8080/health" {
		t.Errorf("ProbeURL = %q", p.ProbeURL)
	}
}

func TestNewPlan_Errors(t *testing.T) {
	cases := []struct {
		name string
		src  string
		view func(v *ClusterView)
		want string
	}{
		{"no active", minimal, func(v *ClusterView) { v.Active = "" }, "line 8: steps[0].target: active: no node is active"},
		{"no standby", minimal, func(v *ClusterView) { v.Members = append(v.Members[:1], v.Members[2]) }, "steps[1].wait.until.holder: standby: the cluster has no single GPU node"},
		{"unknown node", strings.Replace(minimal, "target: active", "target: node9", 1), nil, "line 8: steps[0].target: node9 is not a member"},
		{"gpu fault on the witness by name", strings.Replace(minimal, "fault: agent-crash\n    target: active", "fault: service-stop\n    target: witness-1", 1),
			func(v *ClusterView) { v.Members[2].Name = "witness-1" }, "steps[0].target: witness-1 is a witness; a service-stop fault needs a GPU node"},
		{"partition from itself by name", strings.Replace(minimal, "fault: agent-crash\n    target: active\n", "fault: partition\n    target: active\n    from: [node1]\n", 1), nil, "steps[0].from[0]: node1 (node1) is the target itself"},
		{"failover to the active node", strings.Replace(minimal, "fault: agent-crash\n    target: active\n    duration: 10s\n", "fault: planned-failover\n    to: node1\n", 1), nil, "steps[0].to: node1 is already active at this step"},
		{"no VIP", minimal, func(v *ClusterView) { v.VIP = "" }, "steady_state.probe.url: ${vip}: the cluster has no VIP configured"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := sampleView()
			if tc.view != nil {
				tc.view(&v)
			}
			p, errs := NewPlan(mustParse(t, tc.src), v)
			if p != nil || errs == nil {
				t.Fatalf("planned: %v", p)
			}
			if got := errors.Join(errs...).Error(); !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanString_DryRun(t *testing.T) {
	src := `version: 1
name: all-faults
description: every fault once
steady_state:
  probe: {url: "http://${vip}:8080/health", from: standby}
steps:
  - {fault: check-fail, target: active, duration: 10s}
  - {fault: service-errors, target: node2, duration: 10s, status: 503}
  - {fault: partition, target: active, from: [standby, witness], duration: 10s, name: cut}
  - {fault: planned-failover, to: standby, duration: 20s}
  - {fault: planned-failover, to: standby}
  - wait: 2s
  - expect: {holder: standby, steady_state: true}
expectations:
  - history-reason: '^holder-lost:${active}$'
time_limit: 1m
`
	p := mustPlan(t, mustParse(t, src), sampleView())
	got := p.String()
	for _, want := range []string{
		"drill all-faults (runbook version 1), time limit 1m0s\n",
		"cluster: active node1, standby node2, witness witness, leader witness\n",
		"steady state: GET http://10.0.0.100:8080/health every 20ms from node2 (standby), timeout 200ms, expect status 200\n",
		"ARP watch: who answers for 10.0.0.100, every 50ms, from node2\n",
		"preconditions: gpu-nodes-healthy, quorum, no-maintenance, no-drill-running, not-in-hold-down\n",
		"  steps[0] check-fail http:service on node1 (active) for 10s\n           undo: clear the injection on node1 (it also expires by itself)\n",
		"  steps[1] service-errors (status 503) on node2 for 10s\n",
		"  steps[2] partition node1 (active) from node2 (standby), witness for 10s (cut)\n           undo: remove the firewall rules on node1 (the kernel also expires them)\n",
		"  steps[3] planned-failover from node1 to node2 (standby) for 20s\n           undo: planned failover back to node1\n",
		"  steps[4] planned-failover from node1 to node2 (standby)\n           undo: none: the role stays on node2\n",
		"  steps[5] wait 2s\n",
		"  steps[6] expect holder is node2 and steady state passes\n",
		"  expectations[0] a change of active node with a reason matching ^holder-lost:node1$\n",
		"abort (undo every fault at once) on: steady state lost for 30s; standby node2 unhealthy; quorum lost; the operator's Ctrl-C; time limit 1m0s\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("plan lacks %q:\n%s", want, got)
		}
	}
}

// TestShippedRunbooks parses every runbook in docs/runbooks and plans it
// against a sample view, both ways round; and checks that docs/drills.md
// explains each.
func TestShippedRunbooks(t *testing.T) {
	files, err := filepath.Glob("../docs/runbooks/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gpu-fails", "gpu-nodes-split", "holder-crashes", "holder-isolated", "planned-switchover", "service-dies", "service-hangs", "witness-lost"}
	if len(files) != len(want) {
		t.Fatalf("found %d runbooks %v, want %d", len(files), files, len(want))
	}
	page, err := os.ReadFile("../docs/drills.md")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if name != want[i] {
			t.Errorf("runbook %s, want %s", name, want[i])
		}
		t.Run(name, func(t *testing.T) {
			rb, err := ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if rb.Name != name {
				t.Errorf("name %q in %s", rb.Name, f)
			}
			for _, active := range []string{"node1", "node2"} {
				v := sampleView()
				v.Active = active
				p := mustPlan(t, rb, v)
				s := p.String()
				if !strings.Contains(s, "cluster: active "+active) || strings.Contains(s, "${") {
					t.Errorf("plan:\n%s", s)
				}
				if errs := CheckPreconditions(v, rb.Preconditions); errs != nil {
					t.Errorf("preconditions on a healthy cluster: %v", errs)
				}
			}
			if !strings.Contains(string(page), "## "+name) {
				t.Errorf("docs/drills.md has no section \"## %s\"", name)
			}
		})
	}
}

// TestDocsExample keeps the format example in docs/drills.md valid.
func TestDocsExample(t *testing.T) {
	page, err := os.ReadFile("../docs/drills.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(page), "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in docs/drills.md")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("unterminated yaml block")
	}
	rb, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("the example in docs/drills.md: %v", err)
	}
	mustPlan(t, rb, sampleView())
}
