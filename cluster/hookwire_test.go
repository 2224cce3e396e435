package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// hookLine is one line the test's exec hook wrote.
type hookLine struct{ node, event, role, epoch, prev, holder, id, extra string }

func readHookLines(t *testing.T, path string) []hookLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []hookLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "|")
		if len(f) == 8 {
			out = append(out, hookLine{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]})
		}
	}
	return out
}

func readHookLinesOf(t *testing.T, path, node string) []hookLine {
	var out []hookLine
	for _, l := range readHookLines(t, path) {
		if l.node == node {
			out = append(out, l)
		}
	}
	return out
}

func findHook(lines []hookLine, node, event, epoch string) (int, bool) {
	for i, l := range lines {
		if l.node == node && l.event == event && (epoch == "" || l.epoch == epoch) {
			return i, true
		}
	}
	return -1, false
}

// Three in-process agents with an exec hook (a real script) on every
// event: the events of a planned failover, of joins, of maintenance and
// of a health flip run on the nodes the docs say, with the epoch.
func TestHooks_InProcessClusterRunsTheEventsWhereTheyHappen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$NEWBIEHA_NODE|$NEWBIEHA_EVENT|$NEWBIEHA_ROLE|$NEWBIEHA_EPOCH|$NEWBIEHA_PREVIOUS_HOLDER|$NEWBIEHA_HOLDER|$NEWBIEHA_EVENT_ID|$NEWBIEHA_MEMBER$NEWBIEHA_HEALTHY\" >> "+out+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	c := newTestCluster(t)
	c.settings = []byte("hooks:\n  - name: log\n    exec:\n      command: [" + script + "]\n      timeout: 10s\n")
	c.health["node2"] = &fakeHealth{}
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	n1 := c.nodes["node1"].agent
	ctx := context.Background()
	waitFor(t, 20*time.Second, "node1 to hold and node2 to be standby", func() error {
		lines := readHookLines(t, out)
		for _, want := range [][3]string{{"node1", "became-holder", "1"}, {"node2", "became-standby", "1"}, {"node1", "member-joined", ""}} {
			if _, ok := findHook(lines, want[0], want[1], want[2]); !ok {
				return fmt.Errorf("no %v in %v", want, lines)
			}
		}
		return nil
	})
	if n1.Leader() != "node1" {
		t.Skipf("leader moved to %s: the cluster events would run there", n1.Leader())
	}
	if _, err := NewLocalClient(c.nodes["node1"].dataDir).Failover(ctx, FailoverRequest{To: "node2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the failover's events", func() error {
		lines := readHookLines(t, out)
		for _, want := range [][3]string{{"node1", "released", "1"}, {"node2", "became-holder", "2"}, {"node1", "failover-committed", "2"}, {"node1", "became-standby", "2"}} {
			if _, ok := findHook(lines, want[0], want[1], want[2]); !ok {
				return fmt.Errorf("no %v in %v", want, lines)
			}
		}
		return nil
	})
	lines := readHookLines(t, out)
	held, _ := findHook(lines, "node1", "became-holder", "1")
	rel, _ := findHook(lines, "node1", "released", "1")
	standby, _ := findHook(lines, "node1", "became-standby", "2")
	if held > rel || rel > standby {
		t.Fatalf("node1's events out of order (want became-holder, released, became-standby): %v", lines)
	}
	i, _ := findHook(lines, "node2", "became-holder", "2")
	if l := lines[i]; l.prev != "node1" || l.role != "holder" || l.holder != "node2" {
		t.Fatalf("node2's became-holder: %+v", l)
	}
	i, _ = findHook(lines, "node1", "failover-committed", "2")
	if l := lines[i]; l.prev != "node1" || l.holder != "node2" || !strings.HasPrefix(l.id, "failover-committed-") {
		t.Fatalf("failover-committed: %+v", l)
	}
	joined := []string{}
	for _, l := range lines {
		if l.event == "member-joined" {
			joined = append(joined, l.extra)
		}
	}
	if !slices.Contains(joined, "node2") || !slices.Contains(joined, "witness") {
		t.Fatalf("member-joined for %v, want node2 and witness", joined)
	}

	// Maintenance, on the leader; a health flip, on node2 (the holder now).
	if err := NewLocalClient(c.nodes["node1"].dataDir).Maintenance(ctx, true, "hooks test"); err != nil {
		t.Fatal(err)
	}
	c.health["node2"].set("http:service")
	waitFor(t, 20*time.Second, "maintenance-on and health-changed", func() error {
		lines := readHookLines(t, out)
		if _, ok := findHook(lines, "node1", "maintenance-on", "2"); !ok {
			return fmt.Errorf("no maintenance-on in %v", lines)
		}
		if i, ok := findHook(lines, "node2", "health-changed", "2"); !ok || lines[i].extra != "false" {
			return fmt.Errorf("no unhealthy health-changed on node2 in %v", lines)
		}
		return nil
	})
	// Each run is counted in the node's metrics.
	waitFor(t, 10*time.Second, "node2's hook metrics", func() error {
		m := c.scrapeLocal("node2")
		delivered, _ := m.value("newbieha_hook_events_total", "hook", "log", "outcome", "delivered")
		ok, _ := m.value("newbieha_hook_attempts_total", "hook", "log", "kind", "exec", "result", "ok")
		if n := float64(len(readHookLinesOf(t, out, "node2"))); delivered != n || ok != n {
			return fmt.Errorf("node2 delivered %v, ok attempts %v, want %v each", delivered, ok, n)
		}
		if q, found := m.value("newbieha_hook_queue_length", "hook", "log"); !found || q != 0 {
			return fmt.Errorf("queue length %v (%v)", q, found)
		}
		return nil
	})
	// A drill recorded on node2 runs there.
	until := time.Now().Add(time.Minute)
	if err := NewLocalClient(c.nodes["node2"].dataDir).DrillEvent(ctx, DrillEventRequest{ID: "d1", Runbook: "kill-holder", Phase: DrillPhaseStart, Until: until}); err != nil {
		t.Fatal(err)
	}
	// A member that joins and is removed, on the leader.
	c.join("node3", "127.0.0.4", fsm.RoleGPU, "node1")
	waitFor(t, 20*time.Second, "node3 to be a voter", func() error {
		return healthyStatus(n1.Status(ctx), "node1", "node2", "node3", "witness")
	})
	if err := NewLocalClient(c.nodes["node1"].dataDir).Remove(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	c.stop("node3")
	waitFor(t, 20*time.Second, "drill-started, member-joined and member-removed", func() error {
		lines := readHookLines(t, out)
		for _, w := range [][2]string{{"node2", "drill-started"}, {"node1", "member-removed"}} {
			if _, ok := findHook(lines, w[0], w[1], ""); !ok {
				return fmt.Errorf("no %v in %v", w, lines)
			}
		}
		for _, l := range lines {
			if l.node == "node1" && l.event == "member-joined" && l.extra == "node3" {
				return nil
			}
		}
		return fmt.Errorf("no member-joined of node3 in %v", lines)
	})

	// At least once across leaders: the witness, made leader, posts the
	// recent failover-committed again under the same id.
	i, _ = findHook(readHookLines(t, out), "node1", "failover-committed", "2")
	first := readHookLines(t, out)[i]
	if err := NewLocalClient(c.nodes["node1"].dataDir).TransferLeader(ctx, "witness"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the new leader's replay", func() error {
		for _, l := range readHookLines(t, out) {
			if l.node == "witness" && l.event == "failover-committed" && l.epoch == "2" {
				if l.id != first.id {
					return fmt.Errorf("replayed as %s, first as %s", l.id, first.id)
				}
				return nil
			}
		}
		return fmt.Errorf("no failover-committed from the witness")
	})

	for _, l := range readHookLines(t, out) {
		t.Logf("%+v", l)
	}
	// No node ran an event twice (one attempt each: none failed).
	seen := map[string]bool{}
	for _, l := range readHookLines(t, out) {
		if seen[l.node+" "+l.id] {
			t.Fatalf("event id %s ran twice on %s: %v", l.id, l.node, readHookLines(t, out))
		}
		seen[l.node+" "+l.id] = true
	}
}

// recordRunner is a hooks.Runner that records each event's environment
// instead of running anything (the agents here share one process).
type recordRunner struct {
	mu     sync.Mutex
	events []map[string]string
}

func (r *recordRunner) Run(_ context.Context, _, env []string, _ []byte) ([]byte, error) {
	m := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	r.mu.Lock()
	r.events = append(r.events, m)
	r.mu.Unlock()
	return nil, nil
}

// find returns the first recorded event of kind on node.
func (r *recordRunner) find(node, kind string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e["NEWBIEHA_NODE"] == node && e["NEWBIEHA_EVENT"] == kind {
			return e, true
		}
	}
	return nil, false
}

// A VIP conflict runs conflict-seen on each node whose probe hears it (the
// holder and the witness here); maintenance off and a drill's end run too.
func TestHooks_ConflictMaintenanceOffAndDrillEnd(t *testing.T) {
	rec := &recordRunner{}
	c := newTestCluster(t)
	c.wire = newFakeWire(t)
	c.settings = []byte("vip:\n  address: 10.99.0.100/24\n  conflict_probe_interval: 200ms\n" + testTimingsYAML +
		"hooks:\n  - exec: {command: [/nonexistent/never-run]}\n")
	c.configure = func(_ string, cfg *Config) { cfg.HookRunner = rec }
	c.init("node1", "127.0.0.1")
	c.join("node2", "127.0.0.2", fsm.RoleGPU, "node1")
	c.join("witness", "127.0.0.3", fsm.RoleWitness, "node1")
	c.waitHolder("node1")
	c.wire.mu.Lock()
	c.wire.foreign = []net.HardwareAddr{{0xde, 0xad, 0xbe, 0xef, 0, 2}}
	c.wire.mu.Unlock()
	ctx := context.Background()
	local := NewLocalClient(c.nodes["node1"].dataDir)
	if err := local.Maintenance(ctx, true, "window"); err != nil {
		t.Fatal(err)
	}
	if err := local.Maintenance(ctx, false, "done"); err != nil {
		t.Fatal(err)
	}
	if err := NewLocalClient(c.nodes["node2"].dataDir).DrillEvent(ctx, DrillEventRequest{ID: "d2", Runbook: "kill-holder", Phase: DrillPhaseEnd, Summary: "ok: 1 failed request"}); err != nil {
		t.Fatal(err)
	}
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader")
	}
	waitFor(t, 20*time.Second, "the events", func() error {
		for _, w := range [][2]string{{"node1", "conflict-seen"}, {"node2", "conflict-seen"}, {"witness", "conflict-seen"}, {leader.name, "maintenance-off"}, {"node2", "drill-ended"}} {
			if _, ok := rec.find(w[0], w[1]); !ok {
				return fmt.Errorf("no %s on %s", w[1], w[0])
			}
		}
		return nil
	})
	e, _ := rec.find("node1", "conflict-seen")
	if e["NEWBIEHA_ROLE"] != "holder" || e["NEWBIEHA_EPOCH"] != "1" || !strings.Contains(e["NEWBIEHA_REASON"], "de:ad:be:ef:00:02") {
		t.Fatalf("node1's conflict-seen: %v", e)
	}
	if e, _ := rec.find("witness", "conflict-seen"); e["NEWBIEHA_ROLE"] != "witness" {
		t.Fatalf("the witness's conflict-seen: %v", e)
	}
	if e, _ := rec.find("node2", "drill-ended"); !strings.Contains(e["NEWBIEHA_REASON"], "drill d2: ok: 1 failed request") {
		t.Fatalf("drill-ended: %v", e)
	}
	if e, ok := rec.find("node2", "conflict-seen"); !ok || e["NEWBIEHA_ROLE"] != "standby" {
		t.Fatalf("node2, a standby hearing two hosts, ran %v (%v)", e, ok)
	}
}
