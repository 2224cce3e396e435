package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/newbieha/newbieha/cluster"
	"github.com/newbieha/newbieha/fsm"
)

// TestMain lets a test run this binary as the CLI (NEWBIEHA_TEST_MAIN=1):
// the pseudo-terminal test needs a real process on a real terminal.
func TestMain(m *testing.M) {
	if os.Getenv("NEWBIEHA_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeAgent serves GET /v1/status on the local socket of a data dir with
// whatever status holds.
func fakeAgent(t *testing.T, status *atomic.Pointer[cluster.Status]) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "nbst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", cluster.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(status.Load())
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return dir
}

func healthyStatus(leader string) *cluster.Status {
	return &cluster.Status{Node: "node1", Leader: leader, Active: fsm.Assignment{Node: "node1", Epoch: 1},
		Members: []cluster.MemberStatus{{Name: "node1", Raft: cluster.RaftLeader, Answered: true, Alive: true}}}
}

// Exit codes: 0 healthy, 1 degraded (each reason), 2 no agent.
func TestStatus_ExitCodes(t *testing.T) {
	var st atomic.Pointer[cluster.Status]
	dir := fakeAgent(t, &st)
	degraded := map[string]func(*cluster.Status){
		"no raft leader": func(s *cluster.Status) { s.Leader = "" },
		"no active node": func(s *cluster.Status) { s.Active = fsm.Assignment{} },
		"nobody holds":   func(s *cluster.Status) { s.VIP = cluster.VIPStatus{Address: "10.0.0.100/24"} },
		"did not answer": func(s *cluster.Status) {
			s.Members = append(s.Members, cluster.MemberStatus{Name: "node2", Raft: cluster.RaftUnreachable})
			s.Unanswered = []string{"node2"}
		},
		"VIP conflict": func(s *cluster.Status) {
			s.VIP = cluster.VIPStatus{Address: "10.0.0.100/24", Holder: "node1", Conflict: "held by node1 and node2"}
		},
		"move blocked": func(s *cluster.Status) { s.Blocked = "hold-down" },
		"member node2 is unhealthy: http:service failing": func(s *cluster.Status) {
			s.Members = append(s.Members, cluster.MemberStatus{Name: "node2", Role: fsm.RoleGPU, Raft: cluster.RaftFollower, Answered: true, HealthReason: "http:service failing"})
		},
		"member witness grants no lease for 2.5s more": func(s *cluster.Status) {
			m := cluster.MemberStatus{Name: "witness", Role: fsm.RoleWitness, Raft: cluster.RaftFollower, Answered: true}
			m.Lease.Quarantine = cluster.Duration(2500 * time.Millisecond)
			s.Members = append(s.Members, m)
		},
	}
	st.Store(healthyStatus("node1"))
	if err := run(t, "status", "--data-dir", dir); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	for want, change := range degraded {
		s := healthyStatus("node1")
		change(s)
		st.Store(s)
		err := run(t, "status", "--data-dir", dir)
		if exitCode(err) != statusDegraded || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: exit %d, %v; want 1 naming it", want, exitCode(err), err)
		}
	}
	if err := run(t, "status", "--data-dir", t.TempDir()); exitCode(err) != statusNoAnswer {
		t.Fatalf("no agent: exit %d, %v; want 2", exitCode(err), err)
	}
}

func run(t *testing.T, args ...string) error {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(new(strings.Builder))
	root.SetErr(new(strings.Builder))
	return root.Execute()
}

// status --watch in a pseudo-terminal redraws in place and shows a change
// (a new leader) without being run again.
func TestStatus_WatchRedrawsInAPseudoTerminal(t *testing.T) {
	var st atomic.Pointer[cluster.Status]
	st.Store(healthyStatus("node1"))
	dir := fakeAgent(t, &st)
	cmd := exec.Command(os.Args[0], "status", "--watch", "--interval", "100ms", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "NEWBIEHA_TEST_MAIN=1")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		tty.Close()
	})
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(tty)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, open := <-lines:
				if !open {
					t.Fatalf("the terminal closed before %s", what)
				}
				if ok(l) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s on the terminal", what)
			}
		}
	}
	leader := func(name string) func(string) bool {
		return func(l string) bool { return strings.Contains(l, "leader:") && strings.Contains(l, name) }
	}
	expect("leader node1", leader("node1"))
	expect("a redraw from the top (cursor home)", func(l string) bool { return strings.Contains(l, "\x1b[H") })
	s := healthyStatus("node2")
	s.Members = append(s.Members, cluster.MemberStatus{Name: "node2", Raft: cluster.RaftLeader, Answered: true})
	st.Store(s)
	expect("leader node2 after the change", leader("node2"))
	if _, err := os.Stat(filepath.Join(dir, "drills")); err == nil {
		t.Fatal("status wrote into the data dir")
	}
}

// status --wait asks again until the cluster is healthy: it returns 0 once
// a degraded cluster heals, 1 when it stays degraded past the wait, 2 when
// no agent ever answered; and NEWBIEHA_DATA_DIR stands for --data-dir.
func TestStatus_WaitUntilHealthy(t *testing.T) {
	var st atomic.Pointer[cluster.Status]
	dir := fakeAgent(t, &st)
	s := healthyStatus("node1")
	s.Leader = ""
	st.Store(s)
	healed := make(chan struct{})
	go func() {
		time.Sleep(400 * time.Millisecond)
		st.Store(healthyStatus("node2"))
		close(healed)
	}()
	t.Setenv("NEWBIEHA_DATA_DIR", dir)
	if err := run(t, "status", "--wait", "30s", "--interval", "100ms"); err != nil {
		t.Fatalf("status --wait on a cluster that heals: %v", err)
	}
	select {
	case <-healed:
	default:
		t.Fatal("status --wait returned 0 before the cluster was healthy")
	}
	s = healthyStatus("node1")
	s.Blocked = "hold-down"
	st.Store(s)
	if err := run(t, "status", "--wait", "500ms", "--interval", "100ms"); exitCode(err) != statusDegraded || !strings.Contains(err.Error(), "hold-down") {
		t.Fatalf("status --wait on a cluster that stays degraded: exit %d, %v", exitCode(err), err)
	}
	if err := run(t, "status", "--wait", "300ms", "--interval", "100ms", "--data-dir", t.TempDir()); exitCode(err) != statusNoAnswer {
		t.Fatalf("status --wait with no agent: exit %d, %v", exitCode(err), err)
	}
	if err := run(t, "status", "--wait", "-1s"); err == nil || !strings.Contains(err.Error(), "--wait -1s") {
		t.Fatalf("negative --wait: %v", err)
	}
}
