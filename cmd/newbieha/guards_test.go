package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

// opsAgent is a fake agent on a data dir's local socket: it answers
// status and config from its fields and records every POST (path, body).
type opsAgent struct {
	mu       sync.Mutex
	status   cluster.Status
	settings cluster.Settings
	posts    []string
}

func (f *opsAgent) posted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.posts...)
}

func newOpsAgent(t *testing.T, st cluster.Status) (*opsAgent, string) {
	t.Helper()
	f := &opsAgent{status: st, settings: cluster.DefaultSettings()}
	dir, err := os.MkdirTemp("/tmp", "nbops")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", cluster.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/status":
			_ = json.NewEncoder(w).Encode(f.status)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/config":
			y, _ := f.settings.YAML()
			_ = json.NewEncoder(w).Encode(cluster.ConfigResponse{YAML: string(y), Settings: f.settings})
		case r.Method == http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			f.posts = append(f.posts, r.URL.Path+" "+string(b))
			if r.URL.Path == "/v1/tokens" {
				_ = json.NewEncoder(w).Encode(cluster.TokenResponse{Token: "nbha1.test-token", Expires: time.Now().Add(time.Hour), Role: fsm.RoleGPU})
				return
			}
			_, _ = io.WriteString(w, "{}")
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f, dir
}

// threeNodes: node1 active and leader, node2 GPU standby, witness; all up
// on 10.0.0.0/24.
func threeNodes() cluster.Status {
	return cluster.Status{Node: "node1", Leader: "node1", Active: fsm.Assignment{Node: "node1", Epoch: 3},
		Members: []cluster.MemberStatus{
			{Name: "node1", Role: fsm.RoleGPU, Address: "10.0.0.11", Voter: true, Answered: true, Alive: true},
			{Name: "node2", Role: fsm.RoleGPU, Address: "10.0.0.12", Voter: true, Answered: true, Alive: true},
			{Name: "witness", Role: fsm.RoleWitness, Address: "10.0.1.13", Voter: true, Answered: true, Alive: true},
		}}
}

// remove of the active node, or of a voter the quorum needs, is refused
// without --force, saying why; other removals go through.
func TestRemove_ActiveOrQuorumNeedsForce(t *testing.T) {
	st := threeNodes()
	st.Members[2].Answered, st.Members[2].Alive = false, false // the witness is down
	f, dir := newOpsAgent(t, st)

	_, _, err := runOut(t, "remove", "node1", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "node1 is the active node") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("remove active: %v", err)
	}
	_, _, err = runOut(t, "remove", "node2", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "without it 1 of the 2 remaining voters are alive (witness down)") {
		t.Fatalf("remove a voter the quorum needs: %v", err)
	}
	if p := f.posted(); len(p) != 0 {
		t.Fatalf("refused removals reached the agent: %v", p)
	}
	// The dead witness may go: node1 and node2 remain, both alive.
	if _, _, err := runOut(t, "remove", "witness", "--data-dir", dir); err != nil {
		t.Fatalf("remove the dead witness: %v", err)
	}
	if _, _, err := runOut(t, "remove", "node2", "--force", "--data-dir", dir); err != nil {
		t.Fatalf("remove --force: %v", err)
	}
	p := f.posted()
	if len(p) != 2 || !strings.Contains(p[0], `"witness"`) || !strings.Contains(p[1], `"node2"`) {
		t.Fatalf("posted %v; want the witness's then node2's removal", p)
	}
}

func TestLineDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nx\nf\ng\n"
	b := "a\nb\nC\nd\ne\nx\nf\ng\nh\n"
	want := " a\n b\n-c\n+C\n d\n e\n@@\n f\n g\n+h\n"
	if got := lineDiff(a, b, 2); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := lineDiff(a, a, 2); got != "" {
		t.Fatalf("equal: %q", got)
	}
}

// config show -o json prints the settings as JSON.
func TestConfigShow_JSON(t *testing.T) {
	_, dir := newOpsAgent(t, threeNodes())
	out, _, err := runOut(t, "config", "show", "-o", "json", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var s cluster.Settings
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("not JSON settings: %v\n%s", err, out)
	}
	if out, _, err := runOut(t, "config", "show", "--data-dir", dir); err != nil || !strings.Contains(out, "vip:") {
		t.Fatalf("yaml: %v\n%s", err, out)
	}
}

// config apply --dry-run prints the diff and the warnings and applies
// nothing; apply refuses a VIP outside every GPU member's subnet unless
// --force, and warns of one outside some member's subnet.
func TestConfigApply_DryRunAndVIPSubnet(t *testing.T) {
	st := threeNodes()
	st.Members[1].Address = "10.0.2.12" // node2 on another subnet
	f, dir := newOpsAgent(t, st)
	write := func(vip string) string {
		p := t.TempDir() + "/settings.yaml"
		if err := os.WriteFile(p, []byte("vip:\n  address: "+vip+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, far := write("10.0.0.100/24"), write("192.168.5.100/24")

	out, _, err := runOut(t, "config", "apply", "--dry-run", good, "--data-dir", dir)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, w := range []string{"--- live settings", "+++ " + good, `-    address: ""`, "+    address: 10.0.0.100/24",
		"warning: VIP 10.0.0.100/24 is outside the subnet of node2 (10.0.2.12)", "dry run: nothing applied"} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, out)
		}
	}
	out, _, err = runOut(t, "config", "apply", "--dry-run", far, "--data-dir", dir)
	if err == nil || !strings.Contains(out, "outside every GPU member's subnet: node1 (10.0.0.11), node2 (10.0.2.12)") || !strings.Contains(err.Error(), "would refuse") {
		t.Fatalf("dry run of a far VIP: %v\n%s", err, out)
	}
	if p := f.posted(); len(p) != 0 {
		t.Fatalf("a dry run applied: %v", p)
	}
	if _, _, err := runOut(t, "config", "apply", far, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "outside every GPU member's subnet (--force applies it anyway") {
		t.Fatalf("apply of a far VIP: %v", err)
	}
	if p := f.posted(); len(p) != 0 {
		t.Fatalf("a refused apply applied: %v", p)
	}
	if _, _, err := runOut(t, "config", "apply", "--force", far, "--data-dir", dir); err != nil {
		t.Fatalf("apply --force: %v", err)
	}
	if _, stderr, err := runOut(t, "config", "apply", good, "--data-dir", dir); err != nil || !strings.Contains(stderr, "outside the subnet of node2") {
		t.Fatalf("apply: %v, stderr %q", err, stderr)
	}
	if p := f.posted(); len(p) != 2 || !strings.HasPrefix(p[0], "/v1/config ") || !strings.Contains(p[0], "192.168.5.100") || !strings.Contains(p[1], "10.0.0.100") {
		t.Fatalf("posted %v", p)
	}
}
