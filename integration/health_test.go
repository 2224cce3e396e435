//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fault switches the stub model server on h (POST /fault, inside h's namespace).
func (f *failoverLab) fault(h *host, mode string) {
	f.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.ns, "curl", "-sS", "-m", "5", "-X", "POST",
		"-d", `{"mode":"`+mode+`"}`, "http://127.0.0.1:8080/fault").CombinedOutput()
	if err != nil {
		f.t.Fatalf("set fault %s on %s: %v: %s", mode, h.name, err, out)
	}
}

// healthOf reads a member's own verdict from status.
func (f *failoverLab) blocked(on *host) (string, error) {
	out, err := f.cli(on, "status", "--data-dir", on.dataDir, "--output", "json")
	if err != nil {
		return "", err
	}
	var s struct {
		Blocked string `json:"blocked"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return "", err
	}
	return s.Blocked, nil
}

func TestHealth_ErrorsMoveTheVIPOnceAndBothBadStays(t *testing.T) {
	f := newFailoverLabWith(t, "", "failover:\n  hold_down: 3s\n")
	// The stub on node1 starts answering 500s: the VIP moves to node2.
	wait := f.watch("--until", "node2", "--duration", "40s")
	began := time.Now()
	f.fault(f.n1, "error")
	r := wait()
	if r.Last != "node2" {
		t.Fatalf("client last saw %q", r.Last)
	}
	checkOneMAC(t, r)
	t.Logf("service errors to node2 serving: %v", time.Since(began).Round(time.Millisecond))
	h := f.checkHistory(f.n1, f.n2, f.w)
	if got := lastReason(h); got != "node2/health:node1:http:service" {
		t.Fatalf("history ends with %s", got)
	}

	// node1 recovers: nothing moves back (no preemption).
	f.fault(f.n1, "none")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if f.holds(f.n1) || !f.holds(f.n2) {
			t.Fatal("the VIP moved back to node1 after it recovered")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A drill forces node2's check to fail: the role moves to node1, and
	// history says it was a drill.
	f.mustCLI(f.n1, "drill", "inject", "--node", "node2", "--check", "http:service", "--for", "20s", "--data-dir", f.n1.dataDir)
	waitFor(t, 20*time.Second, "the drill to move the VIP to node1", func() error {
		if !f.holds(f.n1) || f.holds(f.n2) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	h = f.checkHistory(f.n1, f.n2, f.w)
	if got := lastReason(h); got != "node1/health:node2:http:service (drill)" {
		t.Fatalf("history ends with %s", got)
	}
	if ev := f.mustCLI(f.n1, "history", "--events", "--data-dir", f.n1.dataDir); !strings.Contains(ev, "drill") || !strings.Contains(ev, "http:service forced failing") {
		t.Fatalf("the drill is not in the event history:\n%s", ev)
	}

	// Both unhealthy: the VIP stays, and status says why.
	f.fault(f.n1, "error")
	waitFor(t, 20*time.Second, "status to say why nothing moves", func() error {
		b, err := f.blocked(f.w)
		if err != nil {
			return err
		}
		if !strings.Contains(b, "no other GPU node can take over") {
			return fmt.Errorf("blocked = %q", b)
		}
		return nil
	})
	if !f.holds(f.n1) || f.holds(f.n2) {
		t.Fatal("the VIP moved although both GPU nodes are unhealthy")
	}
}

// A GPU failure moves the active role. This machine has no GPU, so NVML
// fails here and a drill stands in for it both ways: it first forces the
// required gpu check to pass on both nodes (as real healthy GPUs would),
// then makes node1's fail. The GPU check itself, with NVML's mock of a DGX
// H200 behind it, is tested in health/.
func TestHealth_InjectedGPUFailureMovesTheRole(t *testing.T) {
	checks := "checks:\n  - {name: gpus, kind: gpu, required: true, interval: 1s, timeout: 500ms, gpu: {expected_devices: 1}}\nfailover:\n  hold_down: 1s\n"
	f := newFailoverLabWith(t, "", checks, func(f *failoverLab) {
		for _, h := range []*host{f.n1, f.n2} {
			waitFor(t, 30*time.Second, "a passing drill on "+h.name+"'s gpu check", func() error {
				_, err := f.cli(h, "drill", "inject", "--check", "gpu:gpus", "--pass", "--for", "10m", "--data-dir", h.dataDir)
				return err
			})
		}
	})
	wait := f.watch("--until", "node2", "--duration", "40s")
	f.mustCLI(f.n2, "drill", "inject", "--node", "node1", "--check", "gpu:gpus", "--for", "1m", "--data-dir", f.n2.dataDir)
	r := wait()
	if r.Last != "node2" {
		t.Fatalf("client last saw %q", r.Last)
	}
	checkOneMAC(t, r)
	h := f.checkHistory(f.n1, f.n2, f.w)
	if got := lastReason(h); got != "node2/health:node1:gpu:gpus (drill)" {
		t.Fatalf("history ends with %s", got)
	}
	// Status on the witness reads node1's checks from gossip, which may
	// trail the move by a publish interval.
	var st string
	waitFor(t, 10*time.Second, "the witness's status to show node1's failing gpu check", func() error {
		var err error
		if st, err = f.cli(f.w, "status", "--data-dir", f.w.dataDir); err != nil {
			return err
		}
		if !strings.Contains(st, "gpu:gpus failing (drill)") {
			return fmt.Errorf("status:\n%s", st)
		}
		return nil
	})
	t.Logf("status:\n%s", st)
}
