package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

// drillAgent is an operator API on a data dir's socket with just what
// drill run calls: status, config, events, history, drill inject, drill
// event and failover. A failover moves the active role and the VIP at once.
type drillAgent struct {
	mu      sync.Mutex
	dir     string
	active  string
	events  []fsm.Event
	history []fsm.Transition
	posts   []string // "path body" of every POST
	runtime string   // service.runtime in the settings
	// down is a member status shows unreachable, until downUntil.
	down      string
	downUntil time.Time
}

func newDrillAgent(t *testing.T) *drillAgent {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "nbdr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &drillAgent{dir: dir, active: "node1", history: []fsm.Transition{{Epoch: 1, To: "node1", Reason: "bootstrap", Index: 3}}}
	ln, err := net.Listen("unix", cluster.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(a.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *drillAgent) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var body map[string]any
	if r.Method == http.MethodPost {
		_ = json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		a.posts = append(a.posts, r.URL.Path+" "+string(b))
	}
	var out any = struct{}{}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/status":
		m := func(name string, role fsm.Role, raft string) cluster.MemberStatus {
			if name == a.down && time.Now().Before(a.downUntil) {
				raft = cluster.RaftUnreachable
			}
			return cluster.MemberStatus{Name: name, Role: role, Raft: raft, Voter: true, Healthy: role == fsm.RoleGPU, HoldsVIP: name == a.active}
		}
		out = cluster.Status{Node: "node1", Leader: "node1", Active: fsm.Assignment{Node: a.active, Since: time.Now().Add(-time.Hour)},
			VIP:     cluster.VIPStatus{Address: "127.0.0.1/8", Holder: a.active},
			Members: []cluster.MemberStatus{m("node1", fsm.RoleGPU, cluster.RaftLeader), m("node2", fsm.RoleGPU, cluster.RaftFollower), m("witness", fsm.RoleWitness, cluster.RaftFollower)}}
	case "GET /v1/config":
		out = cluster.ConfigResponse{Settings: cluster.Settings{Failover: cluster.FailoverSettings{HoldDown: cluster.Duration(30 * time.Second)},
			Service: cluster.ServiceSettings{Runtime: a.runtime, HealthURL: "http://127.0.0.1:8080/health"},
			Checks:  []any{map[string]any{"name": "gpus", "kind": "gpu", "required": true}}}}
	case "GET /v1/events":
		out = append([]fsm.Event{}, a.events...)
	case "GET /v1/history":
		out = append([]fsm.Transition{}, a.history...)
	case "POST /v1/drill/event":
		d := fmt.Sprintf("root@node1: drill %s end: %s", body["id"], body["summary"])
		if body["phase"] == cluster.DrillPhaseStart {
			d = fmt.Sprintf("root@node1: drill %s start, runbook %s, until %s", body["id"], body["runbook"], body["until"])
		}
		a.events = append(a.events, fsm.Event{Kind: cluster.DrillEventKind, Node: "node1", Detail: d})
	case "POST /v1/drill/inject", "POST /v1/drill/partition", "POST /v1/drill/service":
	case "POST /v1/drill/crash":
		// The target's agent is down for a moment, then its service
		// manager has it back.
		a.down, _ = body["node"].(string)
		a.downUntil = time.Now().Add(300 * time.Millisecond)
	case "POST /v1/failover":
		to, _ := body["to"].(string)
		last := a.history[len(a.history)-1]
		a.history = append(a.history, fsm.Transition{Epoch: last.Epoch + 1, From: a.active, To: to, Reason: body["reason"].(string), Index: last.Index + 1})
		out = cluster.FailoverResponse{From: a.active, To: to, Epoch: last.Epoch + 1}
		a.active = to
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (a *drillAgent) postsSoFar() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.posts...)
}

// service answers 200 with X-Served-By, the node the agent says is active.
func (a *drillAgent) service(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		w.Header().Set("X-Served-By", a.active)
		a.mu.Unlock()
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	return port
}

func writeRunbook(t *testing.T, port, steps, expectations string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rb.yaml")
	src := `version: 1
name: cli-test
description: drill run against a fake agent
steady_state:
  probe:
    url: http://${vip}:` + port + `/health
    interval: 10ms
  arp_watch: false
preconditions: [gpu-nodes-healthy, quorum, no-maintenance, no-drill-running]
steps:
` + steps + `expectations:
` + expectations + `abort: {steady_state_lost_for: 5s}
time_limit: 20s
`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// drill run end to end in-process: the planned failover goes through the
// operator API with a manual:drill: reason, the drill's start and end are
// recorded, the report is stored and listed, exit 0.
func TestDrillRunCLI_PlannedFailoverPasses(t *testing.T) {
	a := newDrillAgent(t)
	rb := writeRunbook(t, a.service(t), `  - fault: planned-failover
    to: standby
  - wait: {until: {holder: standby}, timeout: 2s}
  - wait: 200ms
`, `  - holder-becomes: standby
    within: 2s
  - failed-requests-max: 0
  - history-reason: '^manual:drill:cli-test$'
  - steady-state-within: 100ms
`)
	out, errOut, err := runOut(t, "drill", "run", rb, "--data-dir", a.dir)
	if err != nil || exitCode(err) != 1 && err != nil {
		t.Fatalf("drill run: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "drill cli-test: PASSED") || !strings.Contains(errOut, "holder node1 → node2") {
		t.Fatalf("report:\n%s\nprogress:\n%s", out, errOut)
	}
	posts := a.postsSoFar()
	if len(posts) != 3 || !strings.HasPrefix(posts[0], "/v1/drill/event ") || !strings.Contains(posts[1], `"reason":"manual:drill:cli-test"`) || !strings.Contains(posts[1], `"to":"node2"`) ||
		!strings.Contains(posts[2], `"phase":"end"`) || !strings.Contains(posts[2], "cli-test passed") {
		t.Fatalf("posts %q", posts)
	}
	list, _, err := runOut(t, "drill", "list", "--data-dir", a.dir)
	if err != nil || !strings.Contains(list, "-cli-test  cli-test") || !strings.Contains(list, "passed") {
		t.Fatalf("drill list: %v\n%s", err, list)
	}
	id := strings.Fields(strings.Split(strings.TrimSpace(list), "\n")[1])[0]
	js, _, err := runOut(t, "drill", "report", id, "-o", "json", "--data-dir", a.dir)
	var rep struct{ Verdict, Runbook string }
	if err != nil || json.Unmarshal([]byte(js), &rep) != nil || rep.Verdict != "passed" || rep.Runbook != "cli-test" {
		t.Fatalf("drill report %s -o json: %v\n%s", id, err, js)
	}
	fi, err := os.Stat(filepath.Join(a.dir, "drills", id+".json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored report: %v %v", fi, err)
	}
	// A second run has the first beside it; a drill recorded as started
	// and not ended (its runner died) blocks the next until its limit.
	a.mu.Lock()
	a.events = append(a.events, fsm.Event{Kind: cluster.DrillEventKind, Detail: "alice: drill X start, runbook other, until " + time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)})
	a.mu.Unlock()
	_, errOut, err = runOut(t, "drill", "run", rb, "--data-dir", a.dir)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `precondition no-drill-running: drill "other (X, until`) {
		t.Fatalf("a drill while another runs: exit %d, %v\n%s", exitCode(err), err, errOut)
	}
}

// check-fail and gpu-fail are drill injections with the fault's duration
// and a clear at its end; the gpu check is the required one in the
// settings. A partition goes to the target with the peers' names, and is
// cleared at its end too.
func TestDrillRunCLI_InjectionsAndTheirClear(t *testing.T) {
	a := newDrillAgent(t)
	rb := writeRunbook(t, a.service(t), `  - fault: check-fail
    target: standby
    duration: 200ms
  - fault: gpu-fail
    target: standby
    duration: 200ms
  - fault: partition
    target: active
    from: [standby, witness]
    duration: 200ms
`, `  - holder-stays: active
`)
	out, errOut, err := runOut(t, "drill", "run", rb, "--data-dir", a.dir, "-o", "markdown")
	if err != nil {
		t.Fatalf("drill run: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "## drill cli-test: PASSED") {
		t.Fatalf("markdown:\n%s", out)
	}
	var inj []string
	for _, p := range a.postsSoFar() {
		if strings.HasPrefix(p, "/v1/drill/inject ") {
			inj = append(inj, strings.TrimPrefix(p, "/v1/drill/inject "))
		}
	}
	want := []string{
		`{"check":"http:service","for":"200ms","node":"node2","passing":false}`,
		`{"check":"gpu:gpus","for":"200ms","node":"node2","passing":false}`,
	}
	if len(inj) != 4 || inj[0] != want[0] || inj[1] != want[1] {
		t.Fatalf("injections %q, want %q then two clears", inj, want)
	}
	for _, c := range inj[2:] {
		if !strings.Contains(c, `"clear":true`) || !strings.Contains(c, `"node":"node2"`) {
			t.Errorf("undo %s", c)
		}
	}
	var cut []string
	for _, p := range a.postsSoFar() {
		if strings.HasPrefix(p, "/v1/drill/partition ") {
			cut = append(cut, strings.TrimPrefix(p, "/v1/drill/partition "))
		}
	}
	if len(cut) != 2 || cut[0] != `{"for":"200ms","from":["node2","witness"],"node":"node1"}` || !strings.Contains(cut[1], `"clear":true`) {
		t.Fatalf("partition posts %q", cut)
	}
}

// Service faults go to the target with their kind, status and duration,
// and are undone at their end; an agent crash goes to its target, and its
// undo waits until status shows the agent back.
func TestDrillRunCLI_ServiceFaultsAndCrash(t *testing.T) {
	a := newDrillAgent(t)
	a.runtime = "docker"
	rb := writeRunbook(t, a.service(t), `  - fault: service-stop
    target: standby
    duration: 200ms
  - fault: service-pause
    target: standby
    duration: 200ms
  - fault: service-errors
    target: standby
    status: 503
    duration: 200ms
  - fault: agent-crash
    target: standby
    duration: 100ms
`, `  - holder-stays: active
`)
	out, errOut, err := runOut(t, "drill", "run", rb, "--data-dir", a.dir)
	if err != nil {
		t.Fatalf("drill run: %v\n%s\n%s", err, out, errOut)
	}
	var svc, crash []string
	for _, p := range a.postsSoFar() {
		if b, ok := strings.CutPrefix(p, "/v1/drill/service "); ok {
			svc = append(svc, b)
		}
		if b, ok := strings.CutPrefix(p, "/v1/drill/crash "); ok {
			crash = append(crash, b)
		}
	}
	want := []string{
		`{"fault":"stop","for":"200ms","node":"node2"}`,
		`{"fault":"pause","for":"200ms","node":"node2"}`,
		`{"fault":"errors","for":"200ms","node":"node2","status":503}`,
	}
	if len(svc) != 6 || svc[0] != want[0] || svc[1] != want[1] || svc[2] != want[2] {
		t.Fatalf("service posts %q, want %q then three undos", svc, want)
	}
	undone := map[string]bool{}
	for _, u := range svc[3:] {
		var r cluster.DrillServiceRequest
		if err := json.Unmarshal([]byte(u), &r); err != nil || !r.Clear || r.Node != "node2" {
			t.Errorf("undo %s", u)
		}
		undone[r.Fault] = true
	}
	if len(undone) != 3 {
		t.Errorf("undos %q", svc[3:])
	}
	if len(crash) != 1 || crash[0] != `{"node":"node2"}` {
		t.Fatalf("crash posts %q", crash)
	}
	// The crash's undo found node2 down, then back.
	if !strings.Contains(errOut, "steps[3] fault undone") {
		t.Fatalf("progress:\n%s", errOut)
	}
}

// Refusals exit 2 and change nothing: a fault that cannot be injected
// here, a dry run that only prints the plan.
func TestDrillRunCLI_RefusalsChangeNothing(t *testing.T) {
	a := newDrillAgent(t)
	port := a.service(t)
	rb := writeRunbook(t, port, `  - fault: agent-crash
    target: active
    duration: 1s
  - fault: service-stop
    target: standby
    duration: 1s
`, `  - holder-stays: active
`)
	_, _, err := runOut(t, "drill", "run", rb, "--data-dir", a.dir)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "steps[0] agent-crash: node1 is the member this CLI talks to") ||
		!strings.Contains(err.Error(), `steps[1] service-stop: needs service.runtime: docker (the settings have "")`) {
		t.Fatalf("agent-crash and service-stop: exit %d, %v", exitCode(err), err)
	}
	rb = writeRunbook(t, port, `  - fault: planned-failover
    to: standby
`, `  - holder-becomes: standby
    within: 1s
`)
	out, _, err := runOut(t, "drill", "run", rb, "--dry-run", "--data-dir", a.dir)
	if err != nil || !strings.Contains(out, "steps[0] planned-failover from node1 to node2 (standby)") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if p := a.postsSoFar(); len(p) != 0 {
		t.Fatalf("refused and dry runs posted %q", p)
	}
	if _, _, err := runOut(t, "drill", "run", rb, "-o", "yaml", "--data-dir", a.dir); exitCode(err) != 2 {
		t.Fatalf("-o yaml: %v", err)
	}
}
