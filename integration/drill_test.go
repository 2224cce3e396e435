//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drillReport is the part of a drill report (drill run -o json) the test
// reads.
type drillReport struct {
	Runbook     string    `json:"runbook"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Verdict     string    `json:"verdict"`
	AbortReason string    `json:"abort_reason"`
	Active      string    `json:"active"`
	Standby     string    `json:"standby"`
	Figures     struct {
		Requests        int      `json:"requests"`
		FailedRequests  int      `json:"failed_requests"`
		LongestOutageMs float64  `json:"longest_outage_ms"`
		ARPRounds       int      `json:"arp_rounds"`
		ARPDoubleRounds int      `json:"arp_double_rounds"`
		FailoverMs      *float64 `json:"failover_ms"`
	} `json:"figures"`
	Expectations []struct {
		Key      string `json:"key"`
		Passed   bool   `json:"passed"`
		Measured string `json:"measured"`
		Miss     string `json:"miss"`
	} `json:"expectations"`
}

// drillRun runs `newbieha drill run RUNBOOK -o json` on h and returns the
// report, the exit code and what it printed on stderr (its progress).
func (f *failoverLab) drillRun(h *host, runbook string, limit time.Duration, extra ...string) (drillReport, int, string) {
	t := f.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	args := append([]string{"netns", "exec", h.ns, binPath, "drill", "run", runbook, "--data-dir", h.dataDir, "-o", "json"}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("drill run %s: %v\n%s", runbook, err, errb.String())
	}
	var rep drillReport
	if code != 2 {
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("drill run %s: exit %d, report: %v\nstdout:\n%s\nstderr:\n%s", runbook, code, err, out.String(), errb.String())
		}
	}
	return rep, code, errb.String()
}

// The built binary runs the shipped planned-switchover and gpu-fails
// runbooks from the witness against a lab cluster: each passes (exit 0)
// and its failed-request count agrees with an independent client's within
// one probe interval (one request). Then the reports are listed and shown,
// and a drill refused by a precondition exits 2 and changes nothing.
func TestDrill_ShippedRunbooksFromTheWitness(t *testing.T) {
	// The gpu check as in TestHealth_InjectedGPUFailureMovesTheRole: no
	// GPU here, so a 10-minute passing injection stands in for healthy
	// GPUs, and the drill's own injection makes the active one fail.
	checks := "checks:\n  - {name: gpus, kind: gpu, required: true, interval: 1s, timeout: 500ms, gpu: {expected_devices: 1}}\nfailover:\n  hold_down: 1s\n"
	f := newFailoverLabWith(t, "", checks, func(f *failoverLab) {
		for _, h := range []*host{f.n1, f.n2} {
			waitFor(t, 30*time.Second, "a passing drill on "+h.name+"'s gpu check", func() error {
				_, err := f.cli(h, "drill", "inject", "--check", "gpu:gpus", "--pass", "--for", "10m", "--data-dir", h.dataDir)
				return err
			})
		}
	})
	// The CLI runs on the witness, as the runbooks' "from: witness" asks,
	// with an operator certificate: root on the witness's socket cannot
	// carry a change to the leader (the witness holds no CA key).
	certDir := filepath.Join(t.TempDir(), "op")
	f.mustCLI(f.n1, "operator", "cert", "--name", "drill-op", "--ttl", "1h", "--out", certDir, "--data-dir", f.n1.dataDir)
	remote := []string{"--server", f.n1.ip + ":7700", "--cert-dir", certDir}
	settle := func(runbook string) {
		waitFor(t, 30*time.Second, "no voter in quarantine, both GPU nodes healthy", func() error {
			s, err := f.status(f.w)
			if err != nil {
				return err
			}
			if err := settled(s); err != nil {
				return err
			}
			out, err := f.cli(f.w, append([]string{"drill", "run", runbook, "--dry-run", "--data-dir", f.w.dataDir}, remote...)...)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}

	for _, tc := range []struct {
		runbook  string
		from, to string
		// client is how long the independent client runs: past the
		// drill's end (about 6 s and 32 s).
		client, limit time.Duration
	}{
		{"planned-switchover", "node1", "node2", 12 * time.Second, 90 * time.Second},
		{"gpu-fails", "node2", "node1", 40 * time.Second, 150 * time.Second},
	} {
		path := "../docs/runbooks/" + tc.runbook + ".yaml"
		settle(path)
		wait, clientLog := f.watchLogged("--duration", tc.client.String())
		begin := time.Now()
		rep, code, progress := f.drillRun(f.w, path, tc.limit, remote...)
		// A refusal changes nothing: on a loaded host a precondition can
		// fail for a moment (a status read during an election), so try
		// again after the cluster has settled.
		for try := 0; code == 2 && try < 3; try++ {
			t.Logf("%s refused, again: %s", tc.runbook, progress)
			settle(path)
			rep, code, progress = f.drillRun(f.w, path, tc.limit, remote...)
		}
		took := time.Since(begin)
		client := wait()
		clientFailed := f.clientFailures(clientLog, rep.Start, rep.End)
		t.Logf("%s: exit %d after %v\n%s", tc.runbook, code, took.Round(time.Millisecond), progress)
		fo := "-"
		if rep.Figures.FailoverMs != nil {
			fo = fmt.Sprintf("%.0f ms", *rep.Figures.FailoverMs)
		}
		t.Logf("%s figures: failover %s, longest outage %.0f ms, %d of %d requests failed, %d ARP rounds (%d with two MACs); client: %d failed during the drill, %d of %d in all",
			tc.runbook, fo, rep.Figures.LongestOutageMs, rep.Figures.FailedRequests, rep.Figures.Requests, rep.Figures.ARPRounds, rep.Figures.ARPDoubleRounds,
			clientFailed, client.Failed, client.Requests)
		if code != 0 || rep.Verdict != "passed" {
			t.Fatalf("%s: exit %d, verdict %s (%s): %+v", tc.runbook, code, rep.Verdict, rep.AbortReason, rep.Expectations)
		}
		if rep.Active != tc.from || rep.Standby != tc.to {
			t.Errorf("%s resolved active %s, standby %s; want %s, %s", tc.runbook, rep.Active, rep.Standby, tc.from, tc.to)
		}
		if client.Last != tc.to {
			t.Errorf("the client last heard %q, want %s", client.Last, tc.to)
		}
		if d := rep.Figures.FailedRequests - clientFailed; d < -1 || d > 1 {
			t.Errorf("%s: the report counts %d failed requests, the independent client %d during the drill: more than one probe interval apart", tc.runbook, rep.Figures.FailedRequests, clientFailed)
		}
		if rep.Figures.ARPRounds == 0 || rep.Figures.ARPDoubleRounds != 0 {
			t.Errorf("%s: ARP rounds %d, with two MACs %d", tc.runbook, rep.Figures.ARPRounds, rep.Figures.ARPDoubleRounds)
		}
		checkOneMAC(t, client)
	}

	// The history has each drill's start and end, with the caller (the
	// witness applies the last entry a moment after it is committed).
	waitFor(t, 10*time.Second, "both drills' start and end in history --events on the witness", func() error {
		ev, err := f.cli(f.w, "history", "--events", "--data-dir", f.w.dataDir)
		if err != nil {
			return err
		}
		for _, want := range []string{"drill-op: drill ", "-planned-switchover start, runbook planned-switchover", "end: planned-switchover passed", "-gpu-fails start, runbook gpu-fails", "end: gpu-fails passed"} {
			if !strings.Contains(ev, want) {
				return fmt.Errorf("no %q in:\n%s", want, ev)
			}
		}
		return nil
	})
	list := f.mustCLI(f.w, "drill", "list", "--data-dir", f.w.dataDir)
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "gpu-fails") || !strings.Contains(lines[2], "planned-switchover") {
		t.Fatalf("drill list:\n%s", list)
	}
	id := strings.Fields(lines[2])[0]
	md := f.mustCLI(f.w, "drill", "report", id, "-o", "markdown", "--data-dir", f.w.dataDir)
	if !strings.Contains(md, "## drill planned-switchover: PASSED") || !strings.Contains(md, "| PASS | failed requests ≤ 1 |") {
		t.Errorf("drill report %s -o markdown:\n%s", id, md)
	}

	// A runbook whose expectation cannot hold fails, exit 1, and says by
	// how much. node2's gpu check is its own again since gpu-fails
	// cleared the injection: make it pass as before.
	f.mustCLI(f.n2, "drill", "inject", "--check", "gpu:gpus", "--pass", "--for", "10m", "--data-dir", f.n2.dataDir)
	impossible := filepath.Join(t.TempDir(), "impossible.yaml")
	if err := os.WriteFile(impossible, []byte(`version: 1
name: impossible-switchover
description: a planned failover judged by a limit no failover meets
steady_state:
  probe:
    url: http://${vip}:8080/health
steps:
  - fault: planned-failover
    to: standby
  - wait: {until: {holder: standby}, timeout: 2s}
expectations:
  - holder-becomes: standby
    within: 1ms
preconditions: [gpu-nodes-healthy, quorum, no-maintenance, no-drill-running]
time_limit: 1m
`), 0o600); err != nil {
		t.Fatal(err)
	}
	settle(impossible)
	rep, code, progress := f.drillRun(f.w, impossible, 60*time.Second, remote...)
	if code != 1 || rep.Verdict != "failed" || len(rep.Expectations) != 1 || rep.Expectations[0].Passed || !strings.HasPrefix(rep.Expectations[0].Miss, "by ") {
		t.Fatalf("an expectation that cannot hold: exit %d, %+v\n%s", code, rep, progress)
	}
	t.Logf("impossible-switchover: exit %d, holder-becomes %s, missed %s", code, rep.Expectations[0].Measured, rep.Expectations[0].Miss)

	// gpu-nodes-split: nftables rules on the active node (node2) cut it
	// from node1 for 30 s; nothing moves and the client sees nothing. The
	// CLI talks to the witness's API (with the operator certificate):
	// node1, cut from the leader, would report no leader and no holder.
	viaW := []string{"--server", f.w.ip + ":7700", "--cert-dir", certDir}
	split := "../docs/runbooks/gpu-nodes-split.yaml"
	settle(split)
	wait, clientLog := f.watchLogged("--duration", "75s")
	rep, code, progress = f.drillRun(f.w, split, 150*time.Second, viaW...)
	for try := 0; code == 2 && try < 3; try++ {
		t.Logf("gpu-nodes-split refused, again: %s", progress)
		settle(split)
		rep, code, progress = f.drillRun(f.w, split, 150*time.Second, viaW...)
	}
	client := wait()
	clientFailed := f.clientFailures(clientLog, rep.Start, rep.End)
	t.Logf("gpu-nodes-split: exit %d\n%s", code, progress)
	t.Logf("gpu-nodes-split figures: longest outage %.0f ms, %d of %d requests failed, %d ARP rounds (%d with two MACs); client: %d failed during the drill, %d of %d in all",
		rep.Figures.LongestOutageMs, rep.Figures.FailedRequests, rep.Figures.Requests, rep.Figures.ARPRounds, rep.Figures.ARPDoubleRounds, clientFailed, client.Failed, client.Requests)
	// The runner is under test here, not the split: the holder must stay
	// and the counts agree; a stray timed-out request on this host (the
	// client sees it too) may fail the runbook's at-most-one.
	if (code != 0 && code != 1) || rep.Verdict == "aborted" || len(rep.Expectations) == 0 || !rep.Expectations[0].Passed {
		t.Fatalf("gpu-nodes-split: exit %d, verdict %s (%s): %+v", code, rep.Verdict, rep.AbortReason, rep.Expectations)
	}
	if code != 0 {
		t.Logf("gpu-nodes-split FAILED its expectations (not this test's subject): %+v", rep.Expectations)
	}
	if d := rep.Figures.FailedRequests - clientFailed; d < -1 || d > 1 {
		t.Errorf("gpu-nodes-split: the report counts %d failed requests, the client %d", rep.Figures.FailedRequests, clientFailed)
	}
	if out, err := exec.Command("ip", "netns", "exec", f.n2.ns, "nft", "list", "set", "inet", "newbieha_drill", "cut").CombinedOutput(); err != nil || strings.Contains(string(out), f.n1.ip) {
		t.Errorf("the cut is still on node2 after the drill: %v\n%s", err, out)
	}

	act, stb := f.n2, f.n1

	// Root on the witness's own socket cannot carry changes: refused, exit 2.
	_, code, progress = f.drillRun(f.w, "../docs/runbooks/planned-switchover.yaml", 30*time.Second)
	if code != 2 || !strings.Contains(progress, "root on witness's socket cannot carry a change") {
		t.Fatalf("a drill on the witness's socket: exit %d\n%s", code, progress)
	}

	// Maintenance on: the next drill is refused, exit 2, and nothing moves.
	f.mustCLI(f.n1, "maintenance", "on", "--data-dir", f.n1.dataDir)
	_, code, progress = f.drillRun(f.w, "../docs/runbooks/planned-switchover.yaml", 30*time.Second, remote...)
	if code != 2 || !strings.Contains(progress, "precondition no-maintenance: maintenance is on") {
		t.Fatalf("a drill in maintenance: exit %d\n%s", code, progress)
	}
	if h := f.checkHistory(f.n1, f.n2, f.w); len(h) != 4 {
		t.Fatalf("history after a refused drill: %+v", h)
	}
	f.mustCLI(f.n1, "maintenance", "off", "--data-dir", f.n1.dataDir)

	// Abort: the standby dies during gpu-fails on the active node. The
	// CLI talks to the active node; the drill aborts, naming the standby,
	// and clears the injection at once, long before its 30 s.
	viaAct := []string{"--server", act.ip + ":7700", "--cert-dir", certDir}
	settle("../docs/runbooks/gpu-fails.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const forced = "check gpu:gpus forced failing for 30s"
	injected := func() (int, error) {
		ev, err := f.cli(act, "history", "--events", "--data-dir", act.dataDir)
		return strings.Count(ev, forced), err
	}
	before, err := injected()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", f.w.ns, binPath, "drill", "run", "../docs/runbooks/gpu-fails.yaml", "--data-dir", f.w.dataDir, "-o", "json"}, viaAct...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	waitFor(t, 20*time.Second, "the gpu-fail fault in place", func() error {
		if n, err := injected(); err != nil || n <= before {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	})
	f.kill(stb, syscall.SIGKILL)
	err = cmd.Wait()
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
	if ab.Verdict != "aborted" || !strings.HasPrefix(ab.AbortReason, "standby "+stb.name+" ") || took > 20*time.Second {
		t.Fatalf("verdict %s (%s) after %v", ab.Verdict, ab.AbortReason, took)
	}
	if !strings.Contains(errb.String(), "steps[0] fault undone") {
		t.Errorf("the fault was not undone:\n%s", errb.String())
	}
	waitFor(t, 10*time.Second, "the injection cleared, and the abort in the history", func() error {
		ev, err := f.cli(act, "history", "--events", "--data-dir", act.dataDir)
		if err != nil {
			return err
		}
		for _, want := range []string{"check gpu:gpus injection cleared", "end: gpu-fails aborted (standby " + stb.name + " "} {
			if !strings.Contains(ev, want) {
				return fmt.Errorf("no %q in:\n%s", want, ev)
			}
		}
		return nil
	})
}

// clientFailures counts the failed requests the client (vipwatch without
// --quiet, one line per failure: "15:04:05.000  -  error") logged between
// from and to.
func (f *failoverLab) clientFailures(logPath string, from, to time.Time) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		f.t.Fatalf("client log: %v", err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		if len(fields) < 2 || fields[1] != "-" {
			continue
		}
		tod, err := time.Parse("15:04:05.000", fields[0])
		if err != nil {
			continue
		}
		day := from.Local()
		at := time.Date(day.Year(), day.Month(), day.Day(), tod.Hour(), tod.Minute(), tod.Second(), tod.Nanosecond(), time.Local)
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// watchLogged is watch with a line logged for each failed request, and
// the log's path: the independent client of a drill.
func (f *failoverLab) watchLogged(args ...string) (wait func() watchReport, logPath string) {
	return f.watchLoggedOn(f.client, args...)
}

// watchLoggedOn is watchLogged with the client on h: where a drill's probe
// runs, when that vantage point is part of the fault (a cut-off witness).
func (f *failoverLab) watchLoggedOn(h *host, args ...string) (wait func() watchReport, logPath string) {
	t := f.t
	out := filepath.Join(t.TempDir(), "watch.json")
	logPath = out + ".log"
	args = append([]string{"--url", "http://" + f.vip + ":8080/health", "--json", out,
		"--arp-iface", h.hostIf, "--arp-ip", f.vip}, args...)
	cmd := f.startProc(h, logPath, watchPath, args...)
	waitFor(t, 30*time.Second, "the client's first answer through the VIP", func() error {
		b, _ := os.ReadFile(logPath)
		if !strings.Contains(string(b), "first answer from ") {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	return func() watchReport {
		t.Helper()
		waitFor(t, 160*time.Second, "vipwatch to finish", func() error {
			if err := cmd.Process.Signal(syscall.Signal(0)); err == nil {
				return fmt.Errorf("running")
			}
			return nil
		})
		var r watchReport
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("vipwatch report: %v", err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}, logPath
}
