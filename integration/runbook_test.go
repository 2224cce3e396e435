//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The runbooks of docs/operations.md, run as written. A block fenced
// "```sh runbook=NAME" holds one command a line, each after the prompt of
// the host it runs on ("node2#   systemctl restart newbieha"); a trailing
// "# exits 1" says the command must exit 1 (a plan printed, nothing done);
// a block fenced "```yaml file=NAME" is a file the runbooks use. The lab
// has the hosts and addresses the page names; the commands run in the
// host's namespace with the page's defaults (the data dir through
// NEWBIEHA_DATA_DIR), from one directory shared by the hosts, as an
// operator's files would be copied between them.

const operationsDoc = "../docs/operations.md"

type runbookStep struct {
	line  int
	host  string
	cmd   string
	exits int
}

type runbookDoc struct {
	runbooks map[string][]runbookStep
	order    []string
	files    map[string]string
}

var (
	fenceRe  = regexp.MustCompile("^```([a-z]+) +(runbook|file)=([A-Za-z0-9._-]+) *$")
	promptRe = regexp.MustCompile(`^([a-z0-9-]+)#\s+(\S.*)$`)
	exitsRe  = regexp.MustCompile(`#\s*exits (\d+)\b`)
)

// parseRunbooks reads the runbook and file blocks of a page; a line in a
// runbook block that is not a prompted command or a comment is an error,
// so that no command on the page goes untested.
func parseRunbooks(path string) (runbookDoc, error) {
	doc := runbookDoc{runbooks: map[string][]runbookStep{}, files: map[string]string{}}
	f, err := os.Open(path)
	if err != nil {
		return doc, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	var kind, name string
	var body strings.Builder
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case kind == "":
			if m := fenceRe.FindStringSubmatch(line); m != nil {
				kind, name = m[2], m[3]
				body.Reset()
				if kind == "runbook" {
					if _, dup := doc.runbooks[name]; dup {
						return doc, fmt.Errorf("%s:%d: runbook %s twice", path, n, name)
					}
					doc.order = append(doc.order, name)
					doc.runbooks[name] = nil
				}
			}
		case line == "```":
			if kind == "file" {
				doc.files[name] = body.String()
			}
			kind = ""
		case kind == "file":
			body.WriteString(line + "\n")
		default:
			t := strings.TrimSpace(line)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			m := promptRe.FindStringSubmatch(line)
			if m == nil {
				return doc, fmt.Errorf("%s:%d: runbook %s: %q is not HOST# COMMAND", path, n, name, line)
			}
			s := runbookStep{line: n, host: m[1], cmd: m[2]}
			if e := exitsRe.FindStringSubmatch(m[2]); e != nil {
				fmt.Sscan(e[1], &s.exits)
			}
			doc.runbooks[name] = append(doc.runbooks[name], s)
		}
	}
	if kind != "" {
		return doc, fmt.Errorf("%s: block %s=%s not closed", path, kind, name)
	}
	return doc, sc.Err()
}

// systemctlShim is the lab's stand-in for systemd, for the commands of
// the runbooks: what the unit (deploy/systemd/newbieha-gpu.service) does,
// in a shell. start runs ExecStart in the background and returns once the
// agent serves its socket (Type=notify); stop sends SIGTERM (KillSignal),
// waits TimeoutStopSec (20 s), then SIGKILL, and runs ExecStopPost (vip
// release). The lab kills whatever is left in its namespaces at cleanup.
const systemctlShim = `#!/bin/sh
set -u
dd=${NEWBIEHA_DATA_DIR:?}
pidf=$dd.pid
log=${NEWBIEHA_LAB_LOG:?}
alive() { [ -d /proc/$1 ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$1/stat 2>/dev/null; }
running() { [ -f "$pidf" ] && alive "$(cat "$pidf")"; }
start() {
  running && return 0
  newbieha agent --data-dir "$dd" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidf"
  i=0
  while [ $i -lt 300 ]; do
    newbieha status --data-dir "$dd" >/dev/null 2>&1
    [ $? -ne 2 ] && return 0
    running || { echo "lab systemctl: the agent exited; see $log" >&2; return 1; }
    sleep 0.1; i=$((i+1))
  done
  echo "lab systemctl: the agent did not serve within 30 s" >&2; return 1
}
stop() {
  if running; then
    p=$(cat "$pidf"); kill -TERM "$p"; i=0
    while alive "$p"; do
      i=$((i+1)); [ $i -eq 200 ] && kill -KILL "$p"
      [ $i -gt 300 ] && { echo "lab systemctl: agent $p does not exit" >&2; return 1; }
      sleep 0.1
    done
  fi
  rm -f "$pidf"
  newbieha vip release --data-dir "$dd" >/dev/null 2>&1
  return 0
}
unit=${2:-}
case "$unit" in newbieha|newbieha.service|newbieha-gpu|newbieha-witness|"") ;; *) echo "lab systemctl: unknown unit $unit" >&2; exit 5;; esac
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  daemon-reload|enable) exit 0 ;;
  is-active) running && echo active || { echo inactive; exit 3; } ;;
  *) echo "lab systemctl: $1 is not supported" >&2; exit 2 ;;
esac
`

// runbookLab is the three hosts of the page and a client.
type runbookLab struct {
	*failoverLab
	work, bin string
}

func newRunbookLab(t *testing.T, doc runbookDoc) *runbookLab {
	l := newLab(t, "10.0.0")
	f := &failoverLab{lab: l, vip: "10.0.0.100"}
	f.n1, f.n2, f.w, f.client = l.addHost("node1", 1), l.addHost("node2", 2), l.addHost("witness", 3), l.addHost("client", 9)
	r := &runbookLab{failoverLab: f, work: filepath.Join(l.dir, "work"), bin: filepath.Join(l.dir, "bin")}
	for _, d := range []string{r.work, r.bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binPath, filepath.Join(r.bin, "newbieha")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.bin, "systemctl"), []byte(systemctlShim), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range doc.files {
		if err := os.WriteFile(filepath.Join(r.work, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The model server, as docker compose runs it today on both GPU nodes.
	for _, h := range []*host{f.n1, f.n2} {
		l.startProc(h, h.dataDir+".stub.log", stubPath, "--listen", ":8080", "--node", h.name)
	}
	return r
}

// run runs one runbook step on its host and checks its exit status.
func (r *runbookLab) run(t *testing.T, s runbookStep) {
	t.Helper()
	h := r.hosts[s.host]
	if h == nil {
		t.Fatalf("%s:%d: no host %q in the lab", operationsDoc, s.line, s.host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.ns, "env",
		"PATH="+r.bin+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"NEWBIEHA_DATA_DIR="+h.dataDir, "NEWBIEHA_LAB_LOG="+h.logPath, "HOME="+r.work,
		"sh", "-c", s.cmd)
	cmd.Dir = r.work
	start := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s:%d: %s# %s: %v", operationsDoc, s.line, s.host, s.cmd, err)
	}
	t.Logf("%s# %s  (%.1fs, exit %d)\n%s", s.host, s.cmd, time.Since(start).Seconds(), code, strings.TrimRight(string(out), "\n"))
	if code != s.exits {
		t.Fatalf("%s:%d: %s# %s exited %d, want %d:\n%s", operationsDoc, s.line, s.host, s.cmd, code, s.exits, out)
	}
}

func (r *runbookLab) runbook(t *testing.T, doc runbookDoc, name string) {
	t.Helper()
	steps, ok := doc.runbooks[name]
	if !ok || len(steps) == 0 {
		t.Fatalf("%s has no runbook %q", operationsDoc, name)
	}
	for _, s := range steps {
		r.run(t, s)
	}
}

// Every runbook of docs/operations.md, in the page's order, on one lab:
// first cluster, certificates, backup, rolling restart, lost quorum. Each
// is followed by checks of what it should have done.
func TestRunbooks_OperationsPage(t *testing.T) {
	doc, err := parseRunbooks(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first-cluster", "certificates", "backup", "rolling-restart", "lost-quorum"}
	if strings.Join(doc.order, " ") != strings.Join(want, " ") {
		t.Fatalf("runbooks on the page: %v; this test checks %v (add the checks for a new one)", doc.order, want)
	}
	r := newRunbookLab(t, doc)
	f := r.failoverLab
	healthyWithHolder := func(holder *host) func() error {
		return func() error {
			s, err := f.status(f.w)
			if err != nil {
				return err
			}
			if err := healthy(s, "node1", "node2", "witness"); err != nil {
				return err
			}
			if !f.holds(holder) {
				return fmt.Errorf("%s does not hold the VIP", holder.name)
			}
			return nil
		}
	}

	r.runbook(t, doc, "first-cluster")
	waitFor(t, 30*time.Second, "three voters and node1 holding the VIP", healthyWithHolder(f.n1))

	r.runbook(t, doc, "certificates")
	for _, p := range []string{"alice/operator.crt", "alice/operator.key", "alice/ca.crt"} {
		if _, err := os.Stat(filepath.Join(r.work, p)); err != nil {
			t.Fatalf("operator certificate: %v", err)
		}
	}
	events := f.mustCLI(f.n1, "history", "--events", "--data-dir", f.n1.dataDir)
	if !strings.Contains(events, "alice") {
		t.Fatalf("the operator's action is not in the history as alice:\n%s", events)
	}

	r.runbook(t, doc, "backup")
	fi, err := os.Stat(filepath.Join(r.work, "backup.nbha"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}

	before := f.checkHistory(f.n1, f.n2, f.w)
	wait := f.watch("--until", "node2", "--duration", "150s")
	r.runbook(t, doc, "rolling-restart")
	rep := wait()
	checkOneMAC(t, rep)
	hist := f.checkHistory(f.n1, f.n2, f.w)
	if len(hist) != len(before)+1 || lastReason(hist) != "node2/stop:node1" {
		t.Fatalf("history after the rolling restart: %v; want one move, node2 by stop:node1", hist)
	}
	t.Logf("rolling restart: %d requests through the VIP, %d failed", rep.Requests, rep.Failed)
	if rep.Failed > 2 {
		t.Fatalf("rolling restart: %d failed requests; the active node's restart is a handover (at most a request or two)", rep.Failed)
	}
	waitFor(t, 30*time.Second, "healthy, node2 holding the VIP", healthyWithHolder(f.n2))

	// Two hosts lost for good: their agents gone at once (SIGKILL, the
	// host's power), their disks replaced (wiped data dirs). The runbook
	// starts on the survivor.
	before = f.checkHistory(f.n1, f.n2, f.w)
	for _, h := range []*host{f.n2, f.w} {
		r.crash(t, h)
		if err := os.RemoveAll(h.dataDir); err != nil {
			t.Fatal(err)
		}
	}
	r.runbook(t, doc, "lost-quorum")
	// The active role stays with the name node2 when no other GPU node
	// was healthy at its removal (node1's agent had just started): the
	// replacement node2 then holds. Either way, one holder.
	waitFor(t, 60*time.Second, "three voters again and one GPU node holding the VIP", func() error {
		s, err := f.status(f.w)
		if err != nil {
			return err
		}
		if err := healthy(s, "node1", "node2", "witness"); err != nil {
			return err
		}
		if f.holds(f.n1) == f.holds(f.n2) || f.holds(f.w) {
			return fmt.Errorf("VIP on node1=%v node2=%v witness=%v", f.holds(f.n1), f.holds(f.n2), f.holds(f.w))
		}
		return nil
	})
	hist = f.checkHistory(f.n1, f.n2, f.w)
	if len(hist) < len(before) || !reflect.DeepEqual(hist[:len(before)], before) {
		t.Fatalf("history after the recovery:\n%v\ndoes not start with the history before the loss:\n%v", hist, before)
	}
	t.Logf("history after the recovery: %v", hist)
}

// crash SIGKILLs the agent the lab's systemctl started on h and waits
// until it is gone.
func (r *runbookLab) crash(t *testing.T, h *host) {
	t.Helper()
	b, err := os.ReadFile(h.dataDir + ".pid")
	if err != nil {
		t.Fatalf("%s has no agent to crash: %v", h.name, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		t.Fatalf("pid file of %s: %q", h.name, b)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 15*time.Second, h.name+"'s agent to die", func() error {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && !strings.Contains(string(st), ") Z ") {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	})
	_ = os.Remove(h.dataDir + ".pid")
}
