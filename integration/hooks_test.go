//go:build integration

package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenIn opens a TCP listener inside the network namespace ns: the
// socket belongs to the namespace its thread was in when it was made. The
// thread goes back to its own namespace before it is unlocked (the lab's
// cleanup kills every process it finds in its namespaces, and a process is
// found by its main thread's); if it cannot, it stays locked and Go
// discards it.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer own.Close()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{ln, err} // stay locked: this thread is discarded
			return
		}
		runtime.UnlockOSThread()
		ch <- res{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ln
}

// hookRequest is one request the lab's webhook receiver got.
type hookRequest struct {
	Event   hookEvent
	Attempt int
	SigOK   bool
	Status  int
	At      time.Time
}

type hookEvent struct {
	ID             string `json:"id"`
	Event          string `json:"event"`
	Node           string `json:"node"`
	Role           string `json:"role"`
	Epoch          uint64 `json:"epoch"`
	Reason         string `json:"reason"`
	PreviousHolder string `json:"previous_holder"`
	Holder         string `json:"holder"`
}

// receiver is a webhook receiver in the lab: it checks each signature
// with its own HMAC, answers 500 to the first attempt of every event, then
// 200, and keeps every request.
type receiver struct {
	secret []byte
	mu     sync.Mutex
	reqs   []hookRequest
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, rc.secret)
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	var e hookEvent
	_ = json.Unmarshal(body, &e)
	attempt, _ := strconv.Atoi(r.Header.Get("X-Newbieha-Attempt"))
	status := http.StatusOK
	if attempt == 1 {
		status = http.StatusInternalServerError
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, hookRequest{Event: e, Attempt: attempt, SigOK: hmac.Equal([]byte(want), []byte(r.Header.Get("X-Newbieha-Signature"))), Status: status, At: time.Now()})
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.reqs...)
}

// find returns the requests for an event kind from node at epoch.
func (rc *receiver) find(kind, node string, epoch uint64) []hookRequest {
	var out []hookRequest
	for _, r := range rc.requests() {
		if r.Event.Event == kind && r.Event.Node == node && r.Event.Epoch == epoch {
			out = append(out, r)
		}
	}
	return out
}

// execLine is a line the lab's logging exec hook wrote.
type execLine struct{ node, event, epoch, role, prev, id string }

func readExecLines(t *testing.T, path string) []execLine {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []execLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Split(l, "|"); len(f) == 6 {
			out = append(out, execLine{f[0], f[1], f[2], f[3], f[4], f[5]})
		}
	}
	return out
}

func findExec(lines []execLine, node, event, epoch string) bool {
	for _, l := range lines {
		if l.node == node && l.event == event && l.epoch == epoch {
			return true
		}
	}
	return false
}

// pidsIn reads the pids the hanging hook wrote for attempt n at epoch.
func pidsIn(dir string, epoch, n int) ([]int, bool) {
	var pids []int
	for _, f := range []string{"parent", "child"} {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s.%d.%d", f, epoch, n)))
		if err != nil {
			return nil, false
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, false
		}
		pids = append(pids, p)
	}
	return pids, true
}

func running(pid int) bool { return syscall.Kill(pid, 0) == nil }

type failoverJSON struct {
	Epoch      uint64  `json:"epoch"`
	HeldMs     float64 `json:"held_ms"`
	SwitchedMs float64 `json:"switched_ms"`
}

// TestHooks_FailoverRunsExecHooksAndTheSignedWebhook: a planned failover
// with three hooks set: an exec hook that logs every event, one that
// hangs past its timeout on the two lease events, and a webhook to a
// receiver in the lab that answers 500 to each first attempt. The old
// holder's released and the new holder's became-holder run on their own
// nodes with the right epoch, the leader posts failover-committed, every
// signature verifies, the 500s are retried, the hanging hook is killed
// with its process group and retried once, and the failover ends while
// the hook still hangs, no slower than the same failover with no hooks.
func TestHooks_FailoverRunsExecHooksAndTheSignedWebhook(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("lab-webhook-secret-0123456789")
	secretFile := filepath.Join(dir, "hook.secret")
	logFile := filepath.Join(dir, "events")
	hangDir := filepath.Join(dir, "hang")
	if err := os.Mkdir(hangDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"hook.secret": string(secret) + "\n",
		"log.sh":      "#!/bin/sh\necho \"$NEWBIEHA_NODE|$NEWBIEHA_EVENT|$NEWBIEHA_EPOCH|$NEWBIEHA_ROLE|$NEWBIEHA_PREVIOUS_HOLDER|$NEWBIEHA_EVENT_ID\" >> " + logFile + "\n",
		// Every became-holder after the first hangs (a child in its group
		// too); the other events it gets return at once.
		"hang.sh": "#!/bin/sh\n[ \"$NEWBIEHA_EVENT\" = became-holder ] && [ \"$NEWBIEHA_EPOCH\" -ge 2 ] || exit 0\n" +
			"sleep 600 &\necho $! > " + hangDir + "/child.$NEWBIEHA_EPOCH.$NEWBIEHA_ATTEMPT\necho $$ > " + hangDir + "/parent.$NEWBIEHA_EPOCH.$NEWBIEHA_ATTEMPT\nwait\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(secretFile, 0o600); err != nil {
		t.Fatal(err)
	}
	rc := &receiver{secret: secret}
	const hangTimeout = 8 * time.Second
	hooksYAML := fmt.Sprintf(`hooks:
  - name: log
    exec:
      command: [%s]
      timeout: 10s
  - name: hang
    events: [became-holder, released]
    exec:
      command: [%s]
      timeout: %v
      retries: 1
      backoff: 1s
  - name: receiver
    events: [became-holder, released, failover-committed]
    webhook:
      url: http://10.77.0.9:9099/hook
      secret_file: %s
      timeout: 5s
      retries: 3
      backoff: 500ms
`, filepath.Join(dir, "log.sh"), filepath.Join(dir, "hang.sh"), hangTimeout, secretFile)
	f := newFailoverLabWith(t, "", hooksYAML, func(f *failoverLab) {
		ln := listenIn(t, f.client.ns, "10.77.0.9:9099")
		srv := &http.Server{Handler: rc}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	})

	// Before the failover: node1 became holder at epoch 1 and node2 standby.
	waitFor(t, 30*time.Second, "the startup events", func() error {
		lines := readExecLines(t, logFile)
		if !findExec(lines, "node1", "became-holder", "1") || !findExec(lines, "node2", "became-standby", "1") {
			return fmt.Errorf("exec hook lines %v", lines)
		}
		if len(rc.find("became-holder", "node1", 1)) < 1 {
			return fmt.Errorf("receiver has %d requests", len(rc.requests()))
		}
		return nil
	})

	failover := func(to *host, via *host) (failoverJSON, watchReport) {
		t.Helper()
		wait := f.watch("--until", to.name, "--duration", "30s")
		out := f.mustCLI(via, "failover", "--to", to.name, "--data-dir", via.dataDir, "--output", "json")
		var res failoverJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("failover output %q: %v", out, err)
		}
		r := wait()
		checkOneMAC(t, r)
		if r.Last != to.name {
			t.Fatalf("client last saw %q", r.Last)
		}
		return res, r
	}

	withHooks, withWatch := failover(f.n2, f.n1)
	if withHooks.Epoch != 2 {
		t.Fatalf("failover made epoch %d, want 2", withHooks.Epoch)
	}
	// The failover is over while the hanging hook still hangs: it did not
	// wait for it.
	pids, started := pidsIn(hangDir, 2, 1)
	t.Logf("when the failover ended, the hanging hook had started: %v", started)
	if started {
		for _, p := range pids {
			if !running(p) {
				t.Fatalf("the hanging hook's process %d is gone when the failover ended %.0f ms after it began; its timeout is %v", p, withHooks.SwitchedMs, hangTimeout)
			}
		}
	}
	if withHooks.SwitchedMs >= float64(hangTimeout.Milliseconds()) {
		t.Fatalf("the failover took %.0f ms, as long as the hanging hook's timeout", withHooks.SwitchedMs)
	}

	// The exec hooks ran on both GPU nodes with the right epochs.
	waitFor(t, 30*time.Second, "the failover's exec hook lines", func() error {
		lines := readExecLines(t, logFile)
		for _, w := range [][3]string{{"node1", "released", "1"}, {"node2", "became-holder", "2"}, {"node1", "became-standby", "2"}} {
			if !findExec(lines, w[0], w[1], w[2]) {
				return fmt.Errorf("no %v in %v", w, lines)
			}
		}
		return nil
	})
	for _, l := range readExecLines(t, logFile) {
		if l.node == "node2" && l.event == "became-holder" && l.epoch == "2" && (l.prev != "node1" || l.role != "holder") {
			t.Fatalf("node2's became-holder: %+v", l)
		}
	}

	// The webhook: each event refused once with a 500, delivered on the
	// retry, the same id in both, every signature valid; the leader
	// posted failover-committed for epoch 2.
	leader := ""
	waitFor(t, 30*time.Second, "the failover's webhooks", func() error {
		for _, w := range []struct {
			kind, node string
			epoch      uint64
		}{{"released", "node1", 1}, {"became-holder", "node2", 2}} {
			if rs := w2(rc.find(w.kind, w.node, w.epoch)); rs != "" {
				return fmt.Errorf("%s from %s at %d: %s", w.kind, w.node, w.epoch, rs)
			}
		}
		for _, r := range rc.requests() {
			if r.Event.Event == "failover-committed" && r.Event.Epoch == 2 && r.Attempt == 2 {
				leader = r.Event.Node
				return nil
			}
		}
		return fmt.Errorf("no failover-committed at epoch 2 retried")
	})
	for _, r := range rc.requests() {
		if !r.SigOK {
			t.Fatalf("a request's signature does not verify: %+v", r)
		}
	}
	s, err := f.status(f.w)
	if err != nil {
		t.Fatal(err)
	}
	if leader != s.Leader {
		t.Fatalf("failover-committed came from %s; the leader is %s", leader, s.Leader)
	}

	// The hanging hook: killed at its timeout with its child, retried once,
	// killed again, then given up (the agent's log says so).
	waitFor(t, 3*hangTimeout+30*time.Second, "the hanging hook's two attempts to be killed", func() error {
		for n := 1; n <= 2; n++ {
			pids, ok := pidsIn(hangDir, 2, n)
			if !ok {
				return fmt.Errorf("attempt %d has not started", n)
			}
			for _, p := range pids {
				if running(p) {
					return fmt.Errorf("attempt %d: process %d still runs", n, p)
				}
			}
		}
		b, _ := os.ReadFile(f.n2.logPath)
		if !strings.Contains(string(b), "hook failed: giving up") || !strings.Contains(string(b), "hook=hang") {
			return fmt.Errorf("node2's log does not say the hanging hook gave up")
		}
		return nil
	})
	if _, ok := pidsIn(hangDir, 2, 3); ok {
		t.Fatal("the hanging hook ran a third time; retries is 1")
	}

	// More failovers with the hooks (each new holder's became-holder
	// hangs), then the same with no hooks at all: the ones with hooks are
	// no slower (bounds generous: hooks add no wait at all; a lab's
	// failovers vary by tens of ms).
	with := []failoverJSON{withHooks}
	failed := withWatch.Failed
	for _, to := range []*host{f.n1, f.n2} {
		r, w := failover(to, to)
		with = append(with, r)
		failed += w.Failed
	}
	noHooks := filepath.Join(dir, "nohooks.yaml")
	if err := os.WriteFile(noHooks, []byte("vip:\n  address: "+f.vip+"/24\nservice:\n  health_url: http://127.0.0.1:8080/health\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.mustCLI(f.n1, "config", "apply", noHooks, "--data-dir", f.n1.dataDir)
	var without []failoverJSON
	failedWithout := 0
	for _, to := range []*host{f.n1, f.n2, f.n1} {
		r, w := failover(to, to)
		without = append(without, r)
		failedWithout += w.Failed
	}
	show := func(rs []failoverJSON) (string, float64) {
		var sw, held []string
		var heldMs []float64
		for _, r := range rs {
			sw, held = append(sw, fmt.Sprintf("%.0f", r.SwitchedMs)), append(held, fmt.Sprintf("%.0f", r.HeldMs))
			heldMs = append(heldMs, r.HeldMs)
		}
		slices.Sort(heldMs)
		return fmt.Sprintf("switched in %s ms, lease held after %s ms", strings.Join(sw, "/"), strings.Join(held, "/")), heldMs[len(heldMs)/2]
	}
	wh, withMedian := show(with)
	nh, withoutMedian := show(without)
	t.Logf("3 failovers with hooks (the new holder's hook hanging, a receiver answering 500): %s; %d client requests failed", wh, failed)
	t.Logf("3 failovers with no hooks: %s; %d client requests failed", nh, failedWithout)
	if withMedian > 3*withoutMedian+500 {
		t.Fatalf("the new holder held its lease after a median %.0f ms with hooks, %.0f ms without", withMedian, withoutMedian)
	}
	for _, r := range with {
		if r.SwitchedMs >= float64(hangTimeout.Milliseconds()) {
			t.Fatalf("a failover with hooks took %.0f ms, as long as the hanging hook's timeout", r.SwitchedMs)
		}
	}
	if failed > 3 {
		t.Fatalf("the 3 failovers with hooks cost the client %d requests, want at most 1 each (planned failovers)", failed)
	}
}

// w2 checks the requests for one event: a 500 to attempt 1, then attempt 2
// delivered, with the same id. It returns what is wrong, or "".
func w2(rs []hookRequest) string {
	if len(rs) < 2 {
		return fmt.Sprintf("%d requests", len(rs))
	}
	if rs[0].Attempt != 1 || rs[0].Status != http.StatusInternalServerError || rs[1].Attempt != 2 || rs[1].Status != http.StatusOK {
		return fmt.Sprintf("attempts %+v", rs)
	}
	if rs[0].Event.ID != rs[1].Event.ID || rs[0].Event.ID == "" {
		return fmt.Sprintf("ids %q and %q", rs[0].Event.ID, rs[1].Event.ID)
	}
	if !rs[1].At.After(rs[0].At.Add(400 * time.Millisecond)) {
		return fmt.Sprintf("the retry came %v after the 500, before its backoff of 500ms", rs[1].At.Sub(rs[0].At))
	}
	return ""
}
