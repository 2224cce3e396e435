//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failoverLab is node1, node2, a witness and a client on one bridge, the
// stub model server on both GPU nodes, a cluster with a VIP, node1 active.
type failoverLab struct {
	*lab
	n1, n2, w, client *host
	vip               string // address without prefix
}

func newFailoverLab(t testing.TB) *failoverLab { return newFailoverLabWith(t, "", "") }

// newFailoverLabWith adds vipExtra (indented keys) to the settings' vip
// section and extra YAML after it; prepare runs once the agents have
// started, before the lab waits for node1 to hold the VIP.
func newFailoverLabWith(t testing.TB, vipExtra, extra string, prepare ...func(*failoverLab)) *failoverLab {
	return newFailoverLabOpts(t, labOptions{vipExtra: vipExtra, extra: extra}, prepare...)
}

// labOptions shape a failoverLab.
type labOptions struct {
	// vipExtra (indented keys) goes into the settings' vip section, extra
	// after it.
	vipExtra, extra string
	// service, when set, runs once the hosts exist, before any agent
	// starts, and returns the settings' service section (indented keys);
	// the lab then starts no stub model server itself.
	service func(*failoverLab) string
}

func newFailoverLabOpts(t testing.TB, o labOptions, prepare ...func(*failoverLab)) *failoverLab {
	l := newLab(t, "10.77.0")
	f := &failoverLab{lab: l, vip: "10.77.0.100"}
	f.n1, f.n2, f.w, f.client = l.addHost("node1", 1), l.addHost("node2", 2), l.addHost("witness", 3), l.addHost("client", 9)
	service := "  health_url: http://127.0.0.1:8080/health\n"
	if o.service != nil {
		service = o.service(f)
	} else {
		for _, h := range []*host{f.n1, f.n2} {
			l.startProc(h, h.dataDir+".stub.log", stubPath, "--listen", ":8080", "--node", h.name)
		}
	}
	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(cfg, []byte("vip:\n  address: "+f.vip+"/24\n"+o.vipExtra+"service:\n"+service+o.extra), 0o600); err != nil {
		t.Fatal(err)
	}
	out := l.mustCLI(f.n1, "init", "--name", "node1", "--advertise", f.n1.ip, "--data-dir", f.n1.dataDir, "--cluster-config", cfg, "--output", "json")
	var res struct{ Token string }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	l.startAgent(f.n1)
	l.mustCLI(f.n2, "join", f.n1.ip, "--token", res.Token, "--name", "node2", "--role", "gpu", "--advertise", f.n2.ip, "--data-dir", f.n2.dataDir)
	l.startAgent(f.n2)
	l.mustCLI(f.w, "join", f.n1.ip, "--token", res.Token, "--name", "witness", "--role", "witness", "--advertise", f.w.ip, "--data-dir", f.w.dataDir)
	l.startAgent(f.w)
	for _, p := range prepare {
		p(f)
	}
	waitFor(t, 30*time.Second, "three voters and node1 holding the VIP", func() error {
		s, err := l.status(f.w)
		if err != nil {
			return err
		}
		if err := healthy(s, "node1", "node2", "witness"); err != nil {
			return err
		}
		if !f.holds(f.n1) || f.holds(f.n2) || f.holds(f.w) {
			return fmt.Errorf("VIP on node1=%v node2=%v witness=%v", f.holds(f.n1), f.holds(f.n2), f.holds(f.w))
		}
		return nil
	})
	return f
}

// holds reports whether the VIP is on the host's interface now.
func (f *failoverLab) holds(h *host) bool {
	out, err := exec.Command("ip", "-n", h.ns, "-o", "addr", "show", "dev", h.hostIf).CombinedOutput()
	return err == nil && strings.Contains(string(out), " "+f.vip+"/")
}

// watch runs vipwatch in the client namespace (HTTP through the VIP every
// 20 ms, and ARP probes for the VIP) until it returns; it returns once the
// client has had its first answer; call wait for its report.
func (f *failoverLab) watch(args ...string) (wait func() watchReport) {
	t := f.t
	out := filepath.Join(t.TempDir(), "watch.json")
	log := out + ".log"
	args = append([]string{"--url", "http://" + f.vip + ":8080/health", "--quiet", "--json", out,
		"--arp-iface", f.client.hostIf, "--arp-ip", f.vip}, args...)
	cmd := f.startProc(f.client, log, watchPath, args...)
	waitFor(t, 30*time.Second, "the client's first answer through the VIP", func() error {
		b, _ := os.ReadFile(log)
		if !strings.Contains(string(b), "first answer from ") {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	finish := 90 * time.Second
	for i, a := range args {
		if a == "--duration" && i+1 < len(args) {
			if d, err := time.ParseDuration(args[i+1]); err == nil && d+60*time.Second > finish {
				finish = d + 60*time.Second
			}
		}
	}
	return func() watchReport {
		t.Helper()
		waitFor(t, finish, "vipwatch to finish", func() error {
			if err := cmd.Process.Signal(syscall.Signal(0)); err == nil {
				return fmt.Errorf("running")
			}
			return nil
		})
		var r watchReport
		b, err := os.ReadFile(out)
		if err != nil {
			lb, _ := os.ReadFile(log)
			t.Fatalf("vipwatch report: %v\n%s", err, lb)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		lb, _ := os.ReadFile(log)
		t.Logf("client saw:\n%s", lb)
		return r
	}
}

// watchReport is the part of vipwatch's JSON report the tests read.
type watchReport struct {
	Requests int            `json:"requests"`
	Failed   int            `json:"failed"`
	ByNode   map[string]int `json:"by_node"`
	Switches []struct {
		From     string    `json:"from"`
		To       string    `json:"to"`
		OutageMs float64   `json:"outage_ms"`
		Failed   int       `json:"failed"`
		At       time.Time `json:"at"`
	} `json:"switches"`
	First    string      `json:"first"`
	Last     string      `json:"last"`
	MaxGapMs float64     `json:"max_gap_ms"` // the longest time without a good answer
	FailedAt []time.Time `json:"failed_at"`  // with --record-failures
	ARP      *struct {
		Probes    int                     `json:"probes"`
		MaxMACs   int                     `json:"max_macs"`
		Conflicts []string                `json:"conflicts"`
		MACs      map[string][2]time.Time `json:"macs"`
	} `json:"arp"`
}

// checkOneMAC fails the test if two MACs ever answered one ARP probe.
func checkOneMAC(t testing.TB, r watchReport) {
	t.Helper()
	if r.ARP == nil || r.ARP.Probes == 0 {
		t.Fatal("no ARP probes were made")
	}
	if r.ARP.MaxMACs > 1 {
		t.Fatalf("two MACs answered for the VIP at once: %v", r.ARP.Conflicts)
	}
}

// checkHistory compares the history on the given hosts: identical, epochs
// strictly increasing, and returns it.
func (f *failoverLab) checkHistory(hosts ...*host) []transition {
	t := f.t
	t.Helper()
	var first []transition
	for _, h := range hosts {
		var hist []transition
		waitFor(t, 15*time.Second, "history on "+h.name, func() error {
			out, err := f.cli(h, "history", "--data-dir", h.dataDir, "--output", "json")
			if err != nil {
				return err
			}
			hist = nil
			if err := json.Unmarshal([]byte(out), &hist); err != nil {
				return err
			}
			if first != nil && !reflect.DeepEqual(first, hist) {
				return fmt.Errorf("history on %s differs:\n%v\n%v", h.name, first, hist)
			}
			return nil
		})
		if first == nil {
			first = hist
		}
	}
	for i := 1; i < len(first); i++ {
		if first[i].Epoch <= first[i-1].Epoch {
			t.Fatalf("epochs not strictly increasing: %v", first)
		}
	}
	return first
}

type transition struct {
	Epoch  uint64 `json:"epoch"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	Index  uint64 `json:"index"`
}

func lastReason(h []transition) string {
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1].To + "/" + h[len(h)-1].Reason
}

// SIGKILL of the holder, when it leads Raft and when the witness does: no
// code runs on node1, its fence closes at its deadline, and node2 is
// granted once node1's grants have run out.
func TestFailover_SIGKILLOfActiveAgent(t *testing.T) {
	for _, leads := range []bool{true, false} {
		t.Run(fmt.Sprintf("holder_leads=%v", leads), func(t *testing.T) {
			f := newFailoverLab(t)
			// GPU nodes hand leadership to the witness after leading for
			// a few seconds: put it where this run wants it just before
			// the kill.
			if leads {
				f.transferLeader(f.n1)
			} else {
				f.transferLeader(f.w)
			}
			wait := f.watch("--until", "node2", "--duration", "40s")
			killed := time.Now()
			f.kill(f.n1, syscall.SIGKILL)
			// No agent runs on node1 now: the fence has stopped it
			// answering, and the kernel removes the address by itself
			// (the backstop lifetime, 2 s).
			waitFor(t, 10*time.Second, "the VIP to leave node1 by itself", func() error {
				if f.holds(f.n1) {
					return fmt.Errorf("still on node1")
				}
				return nil
			})
			if gone := time.Since(killed); gone > 5*time.Second {
				t.Fatalf("VIP stayed %v on node1 after its agent died; the backstop lifetime is 2s", gone)
			}
			r := wait()
			if r.First != "node1" || r.Last != "node2" {
				t.Fatalf("client saw first %q last %q, want node1 then node2", r.First, r.Last)
			}
			checkOneMAC(t, r)
			if h := f.checkHistory(f.n2, f.w); lastReason(h) != "node2/holder-lost:node1" {
				t.Fatalf("history ends with %s", lastReason(h))
			}
		})
	}
}

// transferLeader moves Raft leadership to h with the CLI and waits until
// every member sees it.
func (f *failoverLab) transferLeader(h *host) {
	f.t.Helper()
	waitFor(f.t, 20*time.Second, h.name+" to lead", func() error {
		s, err := f.status(f.w)
		if err != nil {
			return err
		}
		if s.Leader == h.name {
			return nil
		}
		_, err = f.cli(f.n2, "raft", "transfer-leader", "--to", h.name, "--data-dir", f.n2.dataDir)
		return fmt.Errorf("leader %q (transfer: %v)", s.Leader, err)
	})
}

func TestFailover_HostLoss(t *testing.T) {
	f := newFailoverLab(t)
	wait := f.watch("--until", "node2", "--duration", "40s")
	run(t, "ip", "-n", f.n1.ns, "link", "set", f.n1.hostIf, "down")
	r := wait()
	if r.First != "node1" || r.Last != "node2" {
		t.Fatalf("client saw first %q last %q", r.First, r.Last)
	}
	checkOneMAC(t, r)
	f.checkHistory(f.n2, f.w)
}

// blackhole cuts IP traffic from h to each peer (both directions are cut
// by calling it for both sides).
func (f *failoverLab) blackhole(h *host, peers ...*host) (heal func()) {
	for _, p := range peers {
		run(f.t, "ip", "-n", h.ns, "route", "add", "blackhole", p.ip+"/32")
	}
	return func() {
		for _, p := range peers {
			_ = exec.Command("ip", "-n", h.ns, "route", "del", "blackhole", p.ip+"/32").Run()
		}
	}
}

func TestFailover_PartitionBetweenGPUNodesOnly(t *testing.T) {
	f := newFailoverLab(t)
	wait := f.watch("--duration", "6s")
	heal1 := f.blackhole(f.n1, f.n2)
	heal2 := f.blackhole(f.n2, f.n1)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if f.holds(f.n2) || !f.holds(f.n1) {
			t.Fatalf("partition between GPU nodes moved the VIP: node1=%v node2=%v", f.holds(f.n1), f.holds(f.n2))
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := wait()
	heal1()
	heal2()
	if len(r.Switches) != 0 || r.ByNode["node2"] != 0 || r.Failed != 0 {
		t.Fatalf("client saw a change during a GPU-only partition: %+v", r)
	}
	checkOneMAC(t, r)
}

func TestFailover_ActiveCutOffFromBothPeers(t *testing.T) {
	f := newFailoverLab(t)
	wait := f.watch("--until", "node2", "--duration", "40s")
	heals := []func(){f.blackhole(f.n1, f.n2, f.w), f.blackhole(f.n2, f.n1), f.blackhole(f.w, f.n1)}
	defer func() {
		for _, h := range heals {
			h()
		}
	}()
	waitFor(t, 10*time.Second, "node1 to drop the VIP by itself", func() error {
		if f.holds(f.n1) {
			return fmt.Errorf("still on node1")
		}
		return nil
	})
	r := wait()
	if r.Last != "node2" {
		t.Fatalf("client last saw %q", r.Last)
	}
	checkOneMAC(t, r)
	if f.holds(f.n1) {
		t.Fatal("cut-off node1 holds the VIP again")
	}
	f.checkHistory(f.n2, f.w)
}

// A paused holder, for pauses shorter and longer than its lease: its fence
// closes at its deadline whatever the pause, and after it resumes it never
// answers again unless a majority granted it a fresh lease. Never two
// MACs, one history.
func TestFailover_PausedActiveAgentNeverDoubles(t *testing.T) {
	for _, pause := range []time.Duration{500 * time.Millisecond, 2 * time.Second, 4 * time.Second, 10 * time.Second} {
		t.Run(pause.String(), func(t *testing.T) {
			f := newFailoverLab(t)
			wait := f.watch("--duration", (pause + 8*time.Second).String())
			if err := f.n1.agent.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pause)
			if err := f.n1.agent.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			r := wait()
			checkOneMAC(t, r)
			h := f.checkHistory(f.n1, f.n2, f.w)
			holder := f.n1
			if last := h[len(h)-1]; last.To == "node2" {
				holder = f.n2
			}
			if r.Last != holder.name {
				t.Fatalf("client last saw %q; history names %s active", r.Last, holder.name)
			}
			if pause >= 2*time.Second && holder != f.n2 {
				t.Fatalf("a %v pause of the holder did not move the role: %+v", pause, h)
			}
			t.Logf("pause %v: %d of %d requests failed, history %v", pause, r.Failed, r.Requests, h)
		})
	}
}

func TestFailover_PlannedAndBack(t *testing.T) {
	f := newFailoverLab(t)
	for _, step := range []struct {
		to  string
		via *host
	}{{"node2", f.n2}, {"node1", f.n1}} {
		wait := f.watch("--until", step.to, "--duration", "30s")
		out := f.mustCLI(step.via, "failover", "--to", step.to, "--data-dir", step.via.dataDir)
		if !strings.Contains(out, "switched to "+step.to+" in ") {
			t.Fatalf("failover output: %s", out)
		}
		r := wait()
		checkOneMAC(t, r)
		t.Logf("failover to %s via %s: %s; client: %d failed requests of %d", step.to, step.via.name, strings.TrimSpace(out), r.Failed, r.Requests)
		if r.Last != step.to {
			t.Fatalf("client last saw %q", r.Last)
		}
		if r.Failed > 1 {
			t.Errorf("a planned failover cost %d failed requests, want at most 1", r.Failed)
		}
	}
	h := f.checkHistory(f.n1, f.n2, f.w)
	if len(h) != 3 || h[1].Reason != "manual:failover" || h[2].Reason != "manual:failover" {
		t.Fatalf("history %+v", h)
	}
	// Clear errors.
	for _, c := range []struct{ to, want string }{
		{"node9", "unknown member"}, {"witness", "witness cannot be active"}, {"node1", "already the active node"},
	} {
		_, err := f.cli(f.n2, "failover", "--to", c.to, "--data-dir", f.n2.dataDir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("failover --to %s: %v, want %q", c.to, err, c.want)
		}
	}
	// Operator changes run on a GPU node: root on the witness acts only
	// while the witness leads (it holds no CA key to carry them).
	f.mustCLI(f.n2, "maintenance", "on", "--data-dir", f.n2.dataDir)
	if _, err := f.cli(f.n1, "failover", "--to", "node2", "--data-dir", f.n1.dataDir); err == nil || !strings.Contains(err.Error(), "maintenance") {
		t.Errorf("failover in maintenance: %v", err)
	}
}

// Raft leadership moves freely: to the witness, to node2 and back, during
// service; the VIP stays on node1, no request fails and the witness may
// keep leading. Then in maintenance, a leader change keeps the VIP too.
func TestFailover_LeaderTransfersCostNothing(t *testing.T) {
	f := newFailoverLab(t)
	wait := f.watch("--duration", "12s")
	f.transferLeader(f.w)
	f.transferLeader(f.n2)
	f.transferLeader(f.w)
	f.mustCLI(f.n1, "maintenance", "on", "--data-dir", f.n1.dataDir)
	f.transferLeader(f.n2)
	f.transferLeader(f.w)
	r := wait()
	checkOneMAC(t, r)
	if r.Failed != 0 || len(r.Switches) != 0 || r.ByNode["node2"] != 0 {
		t.Fatalf("leader transfers cost the client: %d failed of %d, switches %+v", r.Failed, r.Requests, r.Switches)
	}
	if !f.holds(f.n1) || f.holds(f.n2) || f.holds(f.w) {
		t.Fatal("the VIP moved with leadership")
	}
	s, err := f.status(f.w)
	if err != nil {
		t.Fatal(err)
	}
	if s.Leader != "witness" {
		t.Fatalf("leader %q; the witness may keep leading", s.Leader)
	}
	if h := f.checkHistory(f.n1, f.n2, f.w); len(h) != 1 {
		t.Fatalf("leader transfers changed the active role: %+v", h)
	}
}

// SIGTERM of the active agent (what systemctl stop and restart send) is a
// hand-over to the healthy standby, not an outage.
func TestFailover_SIGTERMOfActiveAgentHandsOver(t *testing.T) {
	f := newFailoverLab(t)
	wait := f.watch("--until", "node2", "--duration", "30s")
	f.kill(f.n1, syscall.SIGTERM)
	r := wait()
	checkOneMAC(t, r)
	if r.Last != "node2" {
		t.Fatalf("client last saw %q", r.Last)
	}
	if r.Failed > 1 {
		t.Errorf("SIGTERM of the active agent cost %d failed requests, want at most 1 (a hand-over)", r.Failed)
	}
	if h := f.checkHistory(f.n2, f.w); lastReason(h) != "node2/stop:node1" {
		t.Fatalf("history ends with %s", lastReason(h))
	}
	if f.holds(f.n1) {
		t.Fatal("the stopped agent left the VIP behind")
	}
}

func (f *failoverLab) l(name string) *host { return f.hosts[name] }
