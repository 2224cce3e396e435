//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binaries under test: from the environment (make sets them), or
// built by TestMain.
var binPath, stubPath, watchPath string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "newbieha-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range []struct {
		p        *string
		env, pkg string
	}{
		{&binPath, "NEWBIEHA_BIN", "../cmd/newbieha"},
		{&stubPath, "NEWBIEHA_STUB_BIN", "../cmd/stub-model"},
		{&watchPath, "NEWBIEHA_VIPWATCH_BIN", "../cmd/vipwatch"},
	} {
		if *b.p = os.Getenv(b.env); *b.p != "" {
			continue
		}
		*b.p = filepath.Join(tmp, filepath.Base(b.pkg))
		if out, err := exec.Command("go", "build", "-o", *b.p, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// requireRoot skips a test that needs root and iproute2 where they are
// truly absent; CI and the dev machine have both.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

// lab is a set of hosts, each a network namespace with one veth link to a
// shared bridge namespace, on a private /24 that exists only inside them.
type lab struct {
	t      testing.TB
	id     string
	bridge string // namespace holding the bridge
	subnet string // e.g. "10.77.0"
	hosts  map[string]*host
	dir    string // data dirs and logs of every host
	mu     sync.Mutex
	procs  []*exec.Cmd
	waits  []chan struct{}
	// closing stops the supervisors (cleanup has begun).
	closing bool
	// after runs at the end of cleanup, once every process is gone (the
	// containers the agents ran, for one).
	after []func()
}

// host is one namespace of the lab.
type host struct {
	name    string
	ns      string
	ip      string
	hostIf  string // veth end inside the host ns
	brIf    string // veth end in the bridge ns
	dataDir string
	agent   *exec.Cmd
	logPath string
	// agentDone is closed when agent has exited.
	agentDone chan struct{}
	// supervised: the lab's supervisor starts the agent again when it
	// exits (as the systemd unit's Restart=always); restarts counts it.
	supervised bool
	restarts   int
	// env is added to the agent's environment.
	env []string
	// bin is the agent's binary; binPath when empty.
	bin string
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLab(t testing.TB, subnet string) *lab {
	requireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	// The lab's folder comes first, so that its removal (a cleanup, run
	// last-in first-out) waits until l.cleanup has shown the agents' logs.
	l := &lab{t: t, id: hex.EncodeToString(b), subnet: subnet, hosts: map[string]*host{}, dir: t.TempDir()}
	l.bridge = "nbha" + l.id + "-br"
	t.Cleanup(l.cleanup)
	run(t, "ip", "netns", "add", l.bridge)
	run(t, "ip", "-n", l.bridge, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.bridge, "link", "set", "br0", "up")
	return l
}

// addHost creates a namespace with address subnet.N/24 linked to the bridge.
func (l *lab) addHost(name string, n int) *host {
	t := l.t
	h := &host{
		name:    name,
		ns:      fmt.Sprintf("nbha%s-%s", l.id, name),
		ip:      fmt.Sprintf("%s.%d", l.subnet, n),
		hostIf:  fmt.Sprintf("n%s%d", l.id, n),
		brIf:    fmt.Sprintf("b%s%d", l.id, n),
		dataDir: filepath.Join(l.dir, name),
	}
	h.logPath = h.dataDir + ".log"
	l.hosts[name] = h
	run(t, "ip", "netns", "add", h.ns)
	run(t, "ip", "link", "add", h.hostIf, "type", "veth", "peer", "name", h.brIf)
	run(t, "ip", "link", "set", h.hostIf, "netns", h.ns)
	run(t, "ip", "link", "set", h.brIf, "netns", l.bridge)
	run(t, "ip", "-n", l.bridge, "link", "set", h.brIf, "master", "br0", "up")
	run(t, "ip", "-n", h.ns, "addr", "add", h.ip+"/24", "dev", h.hostIf)
	run(t, "ip", "-n", h.ns, "link", "set", h.hostIf, "up")
	run(t, "ip", "-n", h.ns, "link", "set", "lo", "up")
	return h
}

// cli runs the newbieha CLI inside the host's namespace.
func (l *lab) cli(h *host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, binPath}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	// status exits 1 when the cluster is degraded, with the full answer on
	// stdout: the tests read it in every state.
	var ee *exec.ExitError
	if len(args) > 0 && args[0] == "status" && errors.As(err, &ee) && ee.ExitCode() == 1 {
		return out.String(), nil
	}
	if err != nil {
		return out.String(), fmt.Errorf("newbieha %s on %s: %v: %s", strings.Join(args, " "), h.name, err, errb.String())
	}
	return out.String(), nil
}

func (l *lab) mustCLI(h *host, args ...string) string {
	l.t.Helper()
	out, err := l.cli(h, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// agentBin is the binary h's agent runs.
func (h *host) agentBin() string {
	if h.bin != "" {
		return h.bin
	}
	return binPath
}

// startAgent runs `newbieha agent` in the host's namespace, logging to a file.
func (l *lab) startAgent(h *host) {
	l.t.Helper()
	cmd, done, err := l.spawn(h, h.logPath, h.env, h.agentBin(), "agent", "--data-dir", h.dataDir)
	if err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	h.agent, h.agentDone = cmd, done
	l.mu.Unlock()
}

// supervise makes the lab start h's agent again, 1 s after it exits by
// itself (a drilled crash), as the systemd unit does (Restart=always,
// RestartSec=1s); kill and the lab's cleanup end it.
func (l *lab) supervise(h *host) {
	l.mu.Lock()
	already := h.supervised
	h.supervised = true
	l.mu.Unlock()
	if already {
		return
	}
	go func() {
		for {
			l.mu.Lock()
			done := h.agentDone
			l.mu.Unlock()
			if done == nil {
				return
			}
			<-done
			time.Sleep(time.Second)
			l.mu.Lock()
			if !h.supervised || l.closing || h.agentDone != done {
				h.supervised = false
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			cmd, next, err := l.spawn(h, h.logPath, h.env, h.agentBin(), "agent", "--data-dir", h.dataDir)
			l.mu.Lock()
			if err != nil {
				h.supervised = false
				l.mu.Unlock()
				return
			}
			h.agent, h.agentDone = cmd, next
			h.restarts++
			l.mu.Unlock()
		}
	}()
}

// restartsOf is how often the supervisor has started h's agent again.
func (l *lab) restartsOf(h *host) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return h.restarts
}

// startProc runs a program in the host's namespace, output appended to
// logPath; the lab kills it at cleanup.
func (l *lab) startProc(h *host, logPath, bin string, args ...string) *exec.Cmd {
	l.t.Helper()
	cmd, _, err := l.spawn(h, logPath, nil, bin, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return cmd
}

// spawn is startProc with env added to the environment; done is closed
// once the program has exited. Safe off the test's goroutine.
func (l *lab) spawn(h *host, logPath string, env []string, bin string, args ...string) (*exec.Cmd, chan struct{}, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("start %s on %s: %v", bin, h.name, err)
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.waits = append(l.waits, done)
	l.mu.Unlock()
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	return cmd, done, nil
}

// kill sends sig to the host's agent and waits until it is gone; the
// supervisor, if any, leaves it down.
func (l *lab) kill(h *host, sig syscall.Signal) {
	l.t.Helper()
	l.mu.Lock()
	h.supervised = false
	agent, done := h.agent, h.agentDone
	l.mu.Unlock()
	if agent == nil {
		return
	}
	_ = agent.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		l.t.Fatalf("%s agent did not exit", h.name)
	}
	l.mu.Lock()
	if h.agent == agent {
		h.agent, h.agentDone = nil, nil
	}
	l.mu.Unlock()
}

func (l *lab) cleanup() {
	l.mu.Lock()
	l.closing = true
	procs := l.procs
	l.mu.Unlock()
	for _, p := range procs {
		if p.Process != nil {
			_ = p.Process.Signal(syscall.SIGCONT) // a paused one too
			_ = p.Process.Kill()
		}
	}
	l.mu.Lock()
	waits := l.waits
	l.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-time.After(10 * time.Second):
		}
	}
	// Whatever else runs in the lab's namespaces (agents a runbook's
	// systemctl started, their children) goes too.
	for _, h := range l.hosts {
		out, _ := exec.Command("ip", "netns", "pids", h.ns).Output()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			// Never the test itself: a thread of it may be in the
			// namespace (setns), which ip netns pids reports as the
			// process.
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, h := range l.hosts {
		if l.t.Failed() || os.Getenv("LAB_LOGS") != "" {
			if b, err := os.ReadFile(h.logPath); err == nil {
				l.t.Logf("---- log of %s ----\n%s", h.name, tail(string(b), 60))
			}
		}
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.bridge).Run()
	for i := len(l.after) - 1; i >= 0; i-- {
		l.after[i]()
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// status is the part of `newbieha status --output json` the tests read.
type status struct {
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Members []struct {
		Name       string `json:"name"`
		Role       string `json:"role"`
		Address    string `json:"address"`
		Raft       string `json:"raft"`
		Voter      bool   `json:"voter"`
		SeesLeader string `json:"sees_leader"`
		Lease      struct {
			Quarantine string `json:"quarantine"`
		} `json:"lease"`
	} `json:"members"`
}

// settled says no voter is in its quarantine after a start, so the next
// fault is a single fault (a voter that has just restarted grants nothing
// for 3.3 s: with another lost at once, no majority could grant).
func settled(s status) error {
	for _, m := range s.Members {
		if m.Lease.Quarantine != "" && m.Lease.Quarantine != "0s" {
			return fmt.Errorf("%s is in quarantine for %s more", m.Name, m.Lease.Quarantine)
		}
	}
	return nil
}

func (l *lab) status(h *host) (status, error) {
	out, err := l.cli(h, "status", "--data-dir", h.dataDir, "--output", "json")
	if err != nil {
		return status{}, err
	}
	var s status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return status{}, fmt.Errorf("status json: %v: %s", err, out)
	}
	return s, nil
}

// healthy checks that s lists exactly names as voters, one leader, and
// every member agreeing on it.
func healthy(s status, names ...string) error {
	if len(s.Members) != len(names) {
		return fmt.Errorf("%s lists %d members, want %d", s.Node, len(s.Members), len(names))
	}
	leaders := 0
	for i, m := range s.Members {
		if m.Name != names[i] || !m.Voter {
			return fmt.Errorf("%s: member %d = %+v, want voter %s", s.Node, i, m, names[i])
		}
		if m.Raft == "leader" {
			leaders++
		} else if m.Raft != "follower" {
			return fmt.Errorf("%s: %s is %s", s.Node, m.Name, m.Raft)
		}
		if m.SeesLeader != s.Leader {
			return fmt.Errorf("%s: %s sees leader %q, not %q", s.Node, m.Name, m.SeesLeader, s.Leader)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%s: %d leaders", s.Node, leaders)
	}
	return nil
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}
