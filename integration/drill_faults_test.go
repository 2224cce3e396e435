//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// drillCase is one shipped runbook run in the lab and checked against the
// independent client.
type drillCase struct {
	runbook string
	// on is where the CLI runs; via is how it reaches the cluster (nil:
	// the local socket of on).
	on  *host
	via []string
	// from and to are the active node the plan must resolve and the
	// holder the client must hear last.
	from, to string
	// client is how long the independent client runs (past the drill's
	// end), limit how long the drill may take.
	client, limit time.Duration
	// clientOn is where the independent client runs: the lab's client
	// host by default; the probe's own host when the fault cuts that host
	// off (the witness in holder-isolated sees the holder go at the cut).
	clientOn *host
}

// settleFor waits until no voter is in its start-up quarantine and the
// runbook's preconditions hold (a dry run from c.on via c.via passes).
func (f *failoverLab) settleFor(c drillCase) {
	t := f.t
	t.Helper()
	waitFor(t, 60*time.Second, "no voter in quarantine and "+c.runbook+"'s preconditions", func() error {
		s, err := f.status(f.w)
		if err != nil {
			return err
		}
		if err := settled(s); err != nil {
			return err
		}
		args := append([]string{"drill", "run", c.runbook, "--dry-run", "--data-dir", c.on.dataDir}, c.via...)
		if out, err := f.cli(c.on, args...); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// clientLongestOutage is the longest run of failed requests the client
// (vipwatch, one line per failure) logged between from and to: from the
// first failure's line to the line of the answer that ended it ("switch A
// -> B after N ms" or "B back after N ms"), as vipwatch measures it.
func (f *failoverLab) clientLongestOutage(logPath string, from, to time.Time) float64 {
	b, err := os.ReadFile(logPath)
	if err != nil {
		f.t.Fatalf("client log: %v", err)
	}
	longest := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 {
			continue
		}
		tod, err := time.Parse("15:04:05.000", fields[0])
		if err != nil {
			continue
		}
		day := from.Local()
		at := time.Date(day.Year(), day.Month(), day.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
		if at.Before(from) || at.After(to) {
			continue
		}
		_, after, ok := strings.Cut(l, " after ")
		if !ok || !(strings.Contains(l, " switch ") || strings.Contains(l, " back after ")) {
			continue
		}
		var ms float64
		if _, err := fmt.Sscanf(after, "%f ms", &ms); err == nil {
			longest = math.Max(longest, ms)
		}
	}
	return longest
}

// runChecked runs c with an independent client in the lab's client
// namespace, and checks that it passed and that its figures agree with the
// client's: failed requests within one, the longest outage within one
// probe cycle (its interval and its timeout: a request that times out
// ends an outage up to that much later than one sent a moment after).
func (f *failoverLab) runChecked(c drillCase) drillReport {
	t := f.t
	t.Helper()
	f.settleFor(c)
	on := c.clientOn
	if on == nil {
		on = f.client
	}
	wait, clientLog := f.watchLoggedOn(on, "--duration", c.client.String())
	rep, code, progress := f.drillRun(c.on, c.runbook, c.limit, c.via...)
	for try := 0; code == 2 && try < 3; try++ {
		// A refusal changes nothing; a status read during an election can
		// fail a precondition for a moment.
		t.Logf("%s refused, again: %s", c.runbook, progress)
		f.settleFor(c)
		rep, code, progress = f.drillRun(c.on, c.runbook, c.limit, c.via...)
	}
	client := wait()
	clientFailed := f.clientFailures(clientLog, rep.Start, rep.End)
	clientOutage := f.clientLongestOutage(clientLog, rep.Start, rep.End)
	fo := "-"
	if rep.Figures.FailoverMs != nil {
		fo = fmt.Sprintf("%.0f ms", *rep.Figures.FailoverMs)
	}
	t.Logf("%s: exit %d\n%s", c.runbook, code, progress)
	t.Logf("%s figures: failover %s, longest outage %.0f ms, %d of %d requests failed, %d ARP rounds (%d with two MACs); client: %d failed during the drill (%d of %d in all), longest outage %.0f ms, last answer from %s",
		c.runbook, fo, rep.Figures.LongestOutageMs, rep.Figures.FailedRequests, rep.Figures.Requests, rep.Figures.ARPRounds, rep.Figures.ARPDoubleRounds,
		clientFailed, client.Failed, client.Requests, clientOutage, client.Last)
	for _, e := range rep.Expectations {
		t.Logf("  %v %s: %s %s", e.Passed, e.Key, e.Measured, e.Miss)
	}
	if code != 0 || rep.Verdict != "passed" {
		t.Fatalf("%s: exit %d, verdict %s (%s): %+v", c.runbook, code, rep.Verdict, rep.AbortReason, rep.Expectations)
	}
	if rep.Active != c.from {
		t.Errorf("%s resolved active %s, want %s", c.runbook, rep.Active, c.from)
	}
	if client.Last != c.to {
		t.Errorf("%s: the client last heard %q, want %s", c.runbook, client.Last, c.to)
	}
	if d := rep.Figures.FailedRequests - clientFailed; d < -1 || d > 1 {
		t.Errorf("%s: the report counts %d failed requests, the independent client %d: more than one probe interval apart", c.runbook, rep.Figures.FailedRequests, clientFailed)
	}
	if cycle := 220.0; math.Abs(rep.Figures.LongestOutageMs-clientOutage) > cycle {
		t.Errorf("%s: longest outage %.0f ms in the report, %.0f ms for the client: more than one probe cycle (%.0f ms) apart", c.runbook, rep.Figures.LongestOutageMs, clientOutage, cycle)
	}
	checkOneMAC(t, client)
	return rep
}

// The shipped runbooks that crash an agent or cut the holder off run in
// the lab with the built binary, each agent under a supervisor that starts
// it again 1 s after it dies (as the systemd unit does): holder-crashes
// and holder-isolated from the witness, witness-lost from the standby.
// Each passes and agrees with the independent client. Then the two abort
// and leftover acceptance items: killing the standby during
// holder-crashes aborts it and undoes the crash (the crashed agent is back);
// a runner killed mid-run leaves no partition, injection or service fault
// behind once their bound has passed.
func TestDrill_CrashAndIsolationRunbooks(t *testing.T) {
	f := newFailoverLabWith(t, "", "failover:\n  hold_down: 1s\n")
	for _, h := range []*host{f.n1, f.n2, f.w} {
		f.supervise(h)
	}
	certDir := filepath.Join(t.TempDir(), "op")
	f.mustCLI(f.n1, "operator", "cert", "--name", "drill-op", "--ttl", "1h", "--out", certDir, "--data-dir", f.n1.dataDir)
	viaW := []string{"--server", f.w.ip + ":7700", "--cert-dir", certDir}

	// holder-crashes: node1's agent is killed by the drill, node2 takes
	// over, the supervisor starts node1 again.
	f.runChecked(drillCase{runbook: "../docs/runbooks/holder-crashes.yaml", on: f.w, via: viaW, from: "node1", to: "node2", client: 45 * time.Second, limit: 150 * time.Second})
	if n := f.restartsOf(f.n1); n != 1 {
		t.Errorf("node1's agent was started again %d times, want 1", n)
	}
	if h := f.checkHistory(f.n2, f.w); lastReason(h) != "node2/holder-lost:node1" {
		t.Errorf("history ends with %s", lastReason(h))
	}

	// witness-lost: the probe runs from the standby (node1), the CLI on
	// its socket; the witness's agent crashes and comes back; nothing moves.
	f.runChecked(drillCase{runbook: "../docs/runbooks/witness-lost.yaml", on: f.n1, from: "node2", to: "node2", client: 80 * time.Second, limit: 150 * time.Second})
	if n := f.restartsOf(f.w); n != 1 {
		t.Errorf("the witness's agent was started again %d times, want 1", n)
	}

	// holder-isolated: node2 is cut off from node1 and the witness; node1
	// takes over within the runbook's 1 s, seen in status in time now that
	// the poll does not wait on the cut-off member.
	// The probe runs on the witness, which the cut separates from the old
	// holder: so does the independent client.
	f.runChecked(drillCase{runbook: "../docs/runbooks/holder-isolated.yaml", on: f.w, via: viaW, from: "node2", to: "node1", client: 80 * time.Second, limit: 180 * time.Second, clientOn: f.w})
	if out, err := exec.Command("ip", "netns", "exec", f.n2.ns, "nft", "list", "set", "inet", "newbieha_drill", "cut").CombinedOutput(); err != nil || strings.Contains(string(out), f.n1.ip) || strings.Contains(string(out), f.w.ip) {
		t.Errorf("the cut is still on node2 after the drill: %v\n%s", err, out)
	}

	f.abortOnStandbyKill(viaW)
	f.runnerDiesMidRun(certDir)
}

// syncBuffer is a bytes.Buffer a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// abortOnStandbyKill: during holder-crashes (node1 active, node2 standby)
// the standby's agent is killed for good once the crash is in place. The
// drill aborts naming the standby, undoes the crash (waits for node1's
// agent to be back), reports aborted and exits 1.
func (f *failoverLab) abortOnStandbyKill(viaW []string) {
	t := f.t
	c := drillCase{runbook: "../docs/runbooks/holder-crashes.yaml", on: f.w, via: viaW}
	f.settleFor(c)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", f.w.ns, binPath, "drill", "run", c.runbook, "--data-dir", f.w.dataDir, "-o", "json"}, viaW...)...)
	var out bytes.Buffer
	var errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	restarts := f.restartsOf(f.n1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	waitFor(t, 30*time.Second, "node1's agent crashed by the drill", func() error {
		if f.restartsOf(f.n1) == restarts && !strings.Contains(errb.String(), "steps[1]") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	f.kill(f.n2, syscall.SIGKILL)
	err := cmd.Wait()
	took := time.Since(begin)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("aborted drill: %v\n%s", err, errb.String())
	}
	var ab drillReport
	if err := json.Unmarshal(out.Bytes(), &ab); err != nil {
		t.Fatalf("aborted drill report: %v\n%s", err, out.String())
	}
	t.Logf("abort after %v: %s\n%s", took.Round(time.Millisecond), ab.AbortReason, errb.String())
	if ab.Verdict != "aborted" || !strings.HasPrefix(ab.AbortReason, "standby node2 ") || took > 40*time.Second {
		t.Fatalf("verdict %s (%s) after %v", ab.Verdict, ab.AbortReason, took)
	}
	if !strings.Contains(errb.String(), "steps[0] fault undone") {
		t.Errorf("the crash was not undone (its agent back):\n%s", errb.String())
	}
	if n := f.restartsOf(f.n1); n != restarts+1 {
		t.Errorf("node1's agent started again %d times during the aborted drill, want 1", n-restarts)
	}
	waitFor(t, 15*time.Second, "the abort in the history", func() error {
		ev, err := f.cli(f.w, "history", "--events", "--data-dir", f.w.dataDir)
		if err != nil {
			return err
		}
		for _, want := range []string{"drill crash of node1's agent", "end: holder-crashes aborted (standby node2 "} {
			if !strings.Contains(ev, want) {
				return fmt.Errorf("no %q in:\n%s", want, ev)
			}
		}
		return nil
	})
	// node2 back, as its service manager would have it.
	f.startAgent(f.n2)
	f.supervise(f.n2)
}

// runnerDiesMidRun: a drill with a partition, a check injection and a
// service fault (the stub's error switch) on the standby, each for 10 s;
// the runner is SIGKILLed once all three are in place. After their bound
// none is left: no cut in the kernel's set, no injection, the service
// answering 200 again.
func (f *failoverLab) runnerDiesMidRun(certDir string) {
	t := f.t
	rb := filepath.Join(t.TempDir(), "leftovers.yaml")
	if err := os.WriteFile(rb, []byte(`version: 1
name: leftovers
description: three self-expiring faults on the standby, for a runner that dies
steady_state:
  probe:
    url: http://${vip}:8080/health
steps:
  - fault: partition
    target: standby
    from: [witness]
    duration: 10s
  - fault: check-fail
    target: standby
    duration: 10s
  - fault: service-errors
    target: standby
    status: 503
    duration: 10s
  - wait: 30s
expectations:
  - holder-stays: active
preconditions: [quorum, no-maintenance]
# The standby is made unhealthy on purpose: that is no reason to abort.
abort: {steady_state_lost_for: 30s, standby_unhealthy: false, quorum_lost: false}
time_limit: 1m
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// The CLI runs on the lab's client host and talks to the active node:
	// the standby is cut from the witness only, so the CLI reaches both.
	var act, stb *host
	waitFor(t, 60*time.Second, "a GPU node holding the VIP again", func() error {
		for _, h := range []*host{f.n1, f.n2} {
			if f.holds(h) {
				act = h
				return nil
			}
		}
		return fmt.Errorf("none does")
	})
	stb = f.n1
	if act == f.n1 {
		stb = f.n2
	}
	via := []string{"--server", act.ip + ":7700", "--cert-dir", certDir}
	c := drillCase{runbook: rb, on: f.w, via: via}
	f.settleFor(c)
	cliDir := filepath.Join(t.TempDir(), "cli")
	cmd := exec.Command("ip", append([]string{"netns", "exec", f.client.ns, binPath, "drill", "run", rb, "--data-dir", cliDir}, via...)...)
	var errb syncBuffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the three faults in place", func() error {
		if !strings.Contains(errb.String(), "steps[3]") {
			return fmt.Errorf("not yet:\n%s", errb.String())
		}
		return nil
	})
	injected := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t.Logf("runner killed with its faults in place:\n%s", errb.String())
	stub := func() (int, error) {
		out, err := exec.Command("ip", "netns", "exec", stb.ns, "curl", "-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}", "http://127.0.0.1:8080/health").CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("curl: %v: %s", err, out)
		}
		var code int
		_, err = fmt.Sscan(string(out), &code)
		return code, err
	}
	injectedNow := func() (bool, error) {
		st, err := f.cli(stb, "status", "--data-dir", stb.dataDir, "--output", "json")
		return strings.Contains(strings.Join(strings.Fields(st), ""), `"injected":true`), err
	}
	// During the bound the faults are there (the test would pass on
	// faults that never happened otherwise).
	if code, err := stub(); err != nil || code != 503 {
		t.Fatalf("the service fault is not in place during its bound: %d %v", code, err)
	}
	if out, _ := exec.Command("ip", "netns", "exec", stb.ns, "nft", "list", "set", "inet", "newbieha_drill", "cut").CombinedOutput(); !strings.Contains(string(out), f.w.ip) {
		t.Fatalf("the cut is not in place during its bound:\n%s", out)
	}
	if inj, err := injectedNow(); err != nil || !inj {
		t.Fatalf("the check injection is not in place during its bound: %v", err)
	}
	time.Sleep(time.Until(injected.Add(11 * time.Second)))
	waitFor(t, 5*time.Second, "every fault gone after its bound", func() error {
		if out, err := exec.Command("ip", "netns", "exec", stb.ns, "nft", "list", "set", "inet", "newbieha_drill", "cut").CombinedOutput(); err != nil || strings.Contains(string(out), f.w.ip) {
			return fmt.Errorf("the cut is still on %s: %v\n%s", stb.name, err, out)
		}
		if code, err := stub(); err != nil || code != 200 {
			return fmt.Errorf("the service on %s still answers %d (%v)", stb.name, code, err)
		}
		if inj, err := injectedNow(); err != nil || inj {
			return fmt.Errorf("a check injection is still on %s (%v)", stb.name, err)
		}
		return nil
	})
	t.Logf("no fault left %v after the runner died (bound 10 s)", time.Since(injected).Round(time.Millisecond))
}
