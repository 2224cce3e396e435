//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cutover of docs/cutover.md rehearsed on the namespace lab: the
// seed's Keepalived pair (Debian's keepalived, the seed's configuration
// with the lab's VIP and interfaces) serving the model while a client asks
// through the VIP, then each step of the guide, the client's failed
// requests counted per step. At the end the cluster runs the settings
// `import keepalived` made of the seed's files, and killing the service on
// the active node moves the VIP.

// seedDir holds the copies of ../shared/fixtures the importer tests use.
const seedDir = "../migrate/keepalived/testdata"

func keepalivedPath(t testing.TB) string {
	p, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("needs keepalived (Debian's package), installed by .ci/run")
	}
	return p
}

type cutoverLab struct {
	*failoverLab
	dir       string
	keepalive map[string]*exec.Cmd
}

// seedConf is the seed's keepalived.conf for h: the lab's VIP and
// interface for the operators' own, the lab's check script, and for the
// backup the two lines the fixture's README says differ.
func (c *cutoverLab) seedConf(t *testing.T, h *host, backup bool) string {
	b, err := os.ReadFile(filepath.Join(seedDir, "seed-keepalived-master.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer("192.168.1.100/24", c.vip+"/24", "interface eth0", "interface "+h.hostIf,
		"/usr/local/bin/check_newbie.sh", filepath.Join(c.dir, "check_newbie.sh")).Replace(string(b))
	if backup {
		s = strings.NewReplacer("state MASTER", "state BACKUP", "priority 100", "priority 90").Replace(s)
	}
	path := filepath.Join(c.dir, h.name+"-keepalived.conf")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (c *cutoverLab) startKeepalived(t *testing.T, h *host, backup bool) {
	conf := c.seedConf(t, h, backup)
	p := filepath.Join(c.dir, h.name)
	c.keepalive[h.name] = c.startProc(h, p+"-keepalived.log", keepalivedPath(t), "--dont-fork", "--log-console", "--log-detail",
		"--use-file", conf, "--pid", p+".ka.pid", "--vrrp_pid", p+".vrrp.pid", "--checkers_pid", p+".chk.pid")
}

// stopKeepalived is `systemctl stop keepalived`: SIGTERM, and wait.
func (c *cutoverLab) stopKeepalived(t *testing.T, h *host) {
	t.Helper()
	k := c.keepalive[h.name]
	_ = k.Process.Signal(syscall.SIGTERM)
	waitFor(t, 15*time.Second, "keepalived on "+h.name+" to stop", func() error {
		if err := k.Process.Signal(syscall.Signal(0)); err == nil {
			return fmt.Errorf("running")
		}
		return nil
	})
}

type cutoverStep struct {
	name             string
	requests, failed int
	outageMs         float64 // the longest time without a good answer
	answeredBy       map[string]int
}

// measure runs step while the client asks through the VIP for d.
func (c *cutoverLab) measure(t *testing.T, name string, d time.Duration, step func()) cutoverStep {
	t.Helper()
	wait := c.watch("--duration", d.String())
	step()
	r := wait()
	checkOneMAC(t, r)
	s := cutoverStep{name: name, requests: r.Requests, failed: r.Failed, answeredBy: r.ByNode, outageMs: r.MaxGapMs}
	t.Logf("step %q: %d requests, %d failed, outage %.0f ms, answered by %v", name, s.requests, s.failed, s.outageMs, s.answeredBy)
	return s
}

func TestCutover_FromTheSeedKeepalivedPair(t *testing.T) {
	keepalivedPath(t)
	l := newLab(t, "10.79.0")
	f := &failoverLab{lab: l, vip: "10.79.0.100"}
	f.n1, f.n2, f.w, f.client = l.addHost("node1", 1), l.addHost("node2", 2), l.addHost("witness", 3), l.addHost("client", 9)
	c := &cutoverLab{failoverLab: f, dir: filepath.Join(l.dir, "cutover"), keepalive: map[string]*exec.Cmd{}}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The seed's check script, as far as the lab has what it checks: the
	// model's /health (no container named newbie-image: the lab runs the
	// model as a process, as compose would; no GPU, so no nvidia-smi).
	check := "#!/bin/bash\n# The seed's check_newbie.sh, lab edition: the HTTP part.\nRESPONSE=$(curl -s -o /dev/null -w \"%{http_code}\" http://localhost:8080/health)\nif [ \"$RESPONSE\" -ne 200 ]; then\n  exit 1\nfi\nexit 0\n"
	if err := os.WriteFile(filepath.Join(c.dir, "check_newbie.sh"), []byte(check), 0o755); err != nil {
		t.Fatal(err)
	}
	stubs := map[string]*exec.Cmd{}
	for _, h := range []*host{f.n1, f.n2} {
		stubs[h.name] = l.startProc(h, h.dataDir+".stub.log", stubPath, "--listen", ":8080", "--node", h.name)
	}
	c.startKeepalived(t, f.n1, false)
	c.startKeepalived(t, f.n2, true)
	waitFor(t, 30*time.Second, "Keepalived's master holding the VIP", func() error {
		if !f.holds(f.n1) || f.holds(f.n2) {
			return fmt.Errorf("VIP on node1=%v node2=%v", f.holds(f.n1), f.holds(f.n2))
		}
		return nil
	})
	var steps []cutoverStep
	steps = append(steps, c.measure(t, "0. Keepalived serving", 4*time.Second, func() {}))

	// 1-3: import the settings, form the cluster in maintenance beside
	// Keepalived.
	settings := filepath.Join(c.dir, "settings.yaml")
	steps = append(steps, c.measure(t, "1-3. agents installed, cluster formed in maintenance", 40*time.Second, func() {
		f.mustCLI(f.n1, "import", "keepalived", c.seedConf(t, f.n1, false), "--check-script", filepath.Join(c.dir, "check_newbie.sh"), "-o", settings)
		f.mustCLI(f.n1, "init", "--name", "node1", "--advertise", f.n1.ip, "--data-dir", f.n1.dataDir, "--cluster-config", settings,
			"--maintenance", "cutover from keepalived")
		f.startAgent(f.n1)
		tok := filepath.Join(c.dir, "token")
		waitFor(t, 20*time.Second, "a token from node1", func() error {
			_, err := f.cli(f.n1, "token", "create", "--uses", "2", "--out", tok, "--data-dir", f.n1.dataDir)
			return err
		})
		for _, j := range []struct {
			h    *host
			role string
		}{{f.n2, "gpu"}, {f.w, "witness"}} {
			f.mustCLI(j.h, "join", f.n1.ip, "--token-file", tok, "--name", j.h.name, "--role", j.role, "--advertise", j.h.ip, "--data-dir", j.h.dataDir)
			f.startAgent(j.h)
		}
		waitFor(t, 30*time.Second, "three voters, in maintenance, nobody active", func() error {
			s, err := f.status(f.w)
			if err != nil {
				return err
			}
			if err := healthy(s, "node1", "node2", "witness"); err != nil {
				return err
			}
			return settled(s)
		})
	}))
	if f.holds(f.n2) || !f.holds(f.n1) {
		t.Fatalf("after the cluster formed: VIP on node1=%v node2=%v; Keepalived's master should still hold it alone", f.holds(f.n1), f.holds(f.n2))
	}
	steps = append(steps, c.measure(t, "4. Keepalived stopped on the backup", 5*time.Second, func() { c.stopKeepalived(t, f.n2) }))
	steps = append(steps, c.measure(t, "5. Keepalived stopped on the master, then maintenance off", 10*time.Second, func() {
		c.stopKeepalived(t, f.n1)
		f.mustCLI(f.n1, "maintenance", "off", "--data-dir", f.n1.dataDir)
	}))
	waitFor(t, 20*time.Second, "newbieha's node1 holding the VIP", func() error {
		if !f.holds(f.n1) || f.holds(f.n2) {
			return fmt.Errorf("VIP on node1=%v node2=%v", f.holds(f.n1), f.holds(f.n2))
		}
		return nil
	})
	hist := f.checkHistory(f.n1, f.n2, f.w)
	if len(hist) != 1 || lastReason(hist) != "node1/startup" {
		t.Fatalf("history after the cutover: %v", hist)
	}
	// The imported settings at work: the model dies on node1, the VIP
	// moves to node2.
	steps = append(steps, c.measure(t, "after: the model server on node1 killed", 15*time.Second, func() {
		_ = stubs["node1"].Process.Kill()
	}))
	hist = f.checkHistory(f.n1, f.n2, f.w)
	if lastReason(hist) != "node2/health:node1:http:service" {
		t.Fatalf("history after the service died: %v", hist)
	}
	for _, s := range steps[:3] {
		if s.failed != 0 {
			t.Errorf("step %q: %d failed requests; the steps before the switch must cost clients nothing", s.name, s.failed)
		}
	}
	// The switch itself: Keepalived's master removes the address as it
	// stops, newbieha claims it once maintenance is off; a Keepalived
	// failover takes 3 s, the gap here must be shorter.
	if sw := steps[3]; sw.outageMs >= 3000 || sw.answeredBy["node1"] == 0 {
		t.Errorf("step %q: %.0f ms without an answer (answered by %v)", sw.name, sw.outageMs, sw.answeredBy)
	}
	var table strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&table, "| %s | %d | %d | %.0f |\n", s.name, s.requests, s.failed, s.outageMs)
	}
	t.Logf("per step (requests, failed, outage ms):\n%s", table.String())
}
