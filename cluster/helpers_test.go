package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/newbieha/newbieha/fsm"
)

// testLogger routes logs to t.Log until the test ends.
func testLogger(t *testing.T, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

// testClock is a clock tests can move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// freePorts finds three free TCP ports on ip.
func freePorts(t *testing.T, ip string) Ports {
	t.Helper()
	var ps []int
	for len(ps) < 3 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("find free port on %s: %v", ip, err)
		}
		ps = append(ps, ln.Addr().(*net.TCPAddr).Port)
		defer ln.Close()
	}
	return Ports{API: ps[0], Raft: ps[1], Gossip: ps[2]}
}

func testTimings() RaftTimings {
	return RaftTimings{HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond, LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 20 * time.Millisecond}
}

// testNode is one agent of an in-process cluster on real TCP.
type testNode struct {
	name    string
	role    fsm.Role
	ip      string
	dataDir string
	ports   Ports
	agent   *Agent
}

// testCluster runs agents on 127.0.0.x over real TCP and TLS.
type testCluster struct {
	t     *testing.T
	clock *testClock
	nodes map[string]*testNode
	token string
	// wire, when set, gives every agent a fake VIP on it.
	wire     *fakeWire
	settings []byte
	health   map[string]*fakeHealth
	// initOptions, when set, adjusts the options of init.
	initOptions func(*InitOptions)
	// configure, when set, adjusts each agent's config before it starts.
	configure func(name string, cfg *Config)
}

func newTestCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t, clock: &testClock{}, nodes: map[string]*testNode{}, health: map[string]*fakeHealth{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.agent != nil {
				_ = n.agent.Close()
			}
		}
	})
	return c
}

// init creates the cluster with its first node.
func (c *testCluster) init(name, ip string) *testNode {
	c.t.Helper()
	n := &testNode{name: name, role: fsm.RoleGPU, ip: ip, dataDir: c.t.TempDir(), ports: freePorts(c.t, ip)}
	// The tests join more than the two nodes init's token admits by default.
	opts := InitOptions{DataDir: n.dataDir, Name: name, Advertise: ip, Ports: n.ports, Raft: testTimings(), ClusterConfig: c.settings, Logger: testLogger(c.t, "init-"+name), TokenUses: 20}
	if c.initOptions != nil {
		c.initOptions(&opts)
	}
	res, err := Init(context.Background(), opts)
	if err != nil {
		c.t.Fatalf("init %s: %v", name, err)
	}
	c.token = res.Token
	c.nodes[name] = n
	c.start(name)
	waitFor(c.t, 10*time.Second, name+" to lead with its state applied", func() error {
		if !n.agent.IsLeader() {
			return fmt.Errorf("%s is %s", name, n.agent.RaftState())
		}
		if _, ok := n.agent.FSM().Member(name); !ok {
			return fmt.Errorf("%s has not applied its own member record yet", name)
		}
		return nil
	})
	return n
}

// join admits a node through via's API and starts its agent.
func (c *testCluster) join(name, ip string, role fsm.Role, via string) *testNode {
	c.t.Helper()
	n := &testNode{name: name, role: role, ip: ip, dataDir: c.t.TempDir(), ports: freePorts(c.t, ip)}
	if err := c.tryJoin(n, via, c.token); err != nil {
		c.t.Fatalf("join %s via %s: %v", name, via, err)
	}
	c.nodes[name] = n
	c.start(name)
	return n
}

func (c *testCluster) tryJoin(n *testNode, via, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Join(ctx, JoinOptions{DataDir: n.dataDir, Addr: c.nodes[via].agent.cfg.Node.APIAddr(), Token: token, Name: n.name, Role: n.role, Advertise: n.ip, Ports: n.ports, Raft: testTimings()})
	return err
}

// start runs (or restarts) the agent of a node from its data dir.
func (c *testCluster) start(name string) *Agent {
	c.t.Helper()
	n := c.nodes[name]
	cfg, err := LoadNodeConfig(n.dataDir + "/" + ConfigFileName)
	if err != nil {
		c.t.Fatalf("load config of %s: %v", name, err)
	}
	acfg := Config{DataDir: n.dataDir, Node: cfg, Logger: testLogger(c.t, name), Now: c.clock.Now, AdmitRetry: 100 * time.Millisecond, PeerTimeout: time.Second}
	if c.wire != nil {
		acfg.NewVIP = c.wire.factory(name)
		acfg.Node.VIPInterface = "fake0"
		acfg.ProbeVIP = c.wire.probeFor(name)
	}
	if h := c.health[name]; h != nil {
		acfg.Health = h
	}
	if c.configure != nil {
		c.configure(name, &acfg)
	}
	a, err := Start(acfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	n.agent = a
	return a
}

func (c *testCluster) stop(name string) {
	c.t.Helper()
	n := c.nodes[name]
	if err := n.agent.Close(); err != nil {
		c.t.Errorf("close %s: %v", name, err)
	}
	n.agent = nil
}

func (c *testCluster) leader() *testNode {
	for _, n := range c.nodes {
		if n.agent != nil && n.agent.IsLeader() {
			return n
		}
	}
	return nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
}

// healthyStatus checks that s shows exactly want as voters with one leader.
func healthyStatus(s Status, want ...string) error {
	if len(s.Members) != len(want) {
		return fmt.Errorf("%s sees %d members, want %d: %+v", s.Node, len(s.Members), len(want), s.Members)
	}
	leaders := 0
	for i, m := range s.Members {
		if m.Name != want[i] {
			return fmt.Errorf("%s: member %d is %q, want %q", s.Node, i, m.Name, want[i])
		}
		if !m.Voter {
			return fmt.Errorf("%s: %s is not a voter", s.Node, m.Name)
		}
		if m.SeesLeader != s.Leader {
			return fmt.Errorf("%s: %s sees leader %q, %s sees %q", s.Node, m.Name, m.SeesLeader, s.Node, s.Leader)
		}
		switch m.Raft {
		case RaftLeader:
			leaders++
			if s.Leader != m.Name {
				return fmt.Errorf("%s: leader field %q but %s reports leader", s.Node, s.Leader, m.Name)
			}
		case RaftFollower:
		default:
			return fmt.Errorf("%s: %s is %s", s.Node, m.Name, m.Raft)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%s: %d leaders", s.Node, leaders)
	}
	return nil
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
