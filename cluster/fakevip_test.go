package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeWire is a shared L2 segment for fake VIPs. Each node's fence is a
// deadline on the boot clock (shared by every agent of the test process, as
// real time is); a node answers for the VIP while its address is present
// and its fence is open. The wire fails the test the moment two could.
type fakeWire struct {
	t         *testing.T
	mu        sync.Mutex
	deadline  map[string]time.Duration // node -> fence deadline (boot clock)
	present   map[string]bool          // node -> address on the interface
	claims    []fakeClaim
	crashed   map[string]bool    // Release and Close do nothing: as if the agent died
	foreign   []net.HardwareAddr // hosts outside the cluster that answer for the VIP
	announces map[string]int
	prepared  map[string]int // node -> Prepare calls (fences installed)
}

type fakeClaim struct {
	node string
	at   time.Time
}

func newFakeWire(t *testing.T) *fakeWire {
	return &fakeWire{t: t, deadline: map[string]time.Duration{}, present: map[string]bool{}, crashed: map[string]bool{}, announces: map[string]int{}, prepared: map[string]int{}}
}

// factory returns a VIPFactory for node.
func (w *fakeWire) factory(node string) VIPFactory {
	return func(spec VIPSpec) (VIP, error) {
		if !spec.Prefix.IsValid() || spec.Lifetime < time.Second {
			return nil, fmt.Errorf("bad spec %+v", spec)
		}
		return &fakeVIP{w: w, node: node}, nil
	}
}

// answering reports whether node answers for the VIP at now (w.mu held).
func (w *fakeWire) answering(node string, now time.Duration) bool {
	return w.present[node] && now < w.deadline[node]
}

// holders lists nodes that answer for the VIP now.
func (w *fakeWire) holders() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	now := bootClock()
	for n := range w.present {
		if w.answering(n, now) {
			out = append(out, n)
		}
	}
	return out
}

func (w *fakeWire) lastClaim() fakeClaim {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.claims) == 0 {
		return fakeClaim{}
	}
	return w.claims[len(w.claims)-1]
}

type fakeVIP struct {
	w    *fakeWire
	node string
}

func (v *fakeVIP) Prepare() error {
	v.w.mu.Lock()
	v.w.prepared[v.node]++
	v.w.mu.Unlock()
	return nil
}

func (v *fakeVIP) Hold(_ context.Context, deadline time.Duration) (bool, error) {
	w := v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	now := bootClock()
	if now >= deadline {
		return false, errors.New("deadline passed")
	}
	for n := range w.present {
		if n != v.node && w.answering(n, now) {
			w.t.Errorf("TWO HOLDERS: %s opens its fence until +%v while %s answers until +%v", v.node, deadline-now, n, w.deadline[n]-now)
		}
	}
	w.deadline[v.node] = deadline
	claimed := !w.present[v.node]
	if claimed {
		w.claims = append(w.claims, fakeClaim{node: v.node, at: time.Now()})
	}
	w.present[v.node] = true
	return claimed, nil
}

func (v *fakeVIP) Announce(context.Context) error {
	v.w.mu.Lock()
	v.w.announces[v.node]++
	v.w.mu.Unlock()
	return nil
}

// probeFor is a ProbeVIP for a node without a VIP actuator.
func (w *fakeWire) probeFor(node string) func(context.Context, string, netip.Addr, time.Duration) ([]net.HardwareAddr, error) {
	return func(ctx context.Context, _ string, _ netip.Addr, d time.Duration) ([]net.HardwareAddr, error) {
		return (&fakeVIP{w: w, node: node}).Probe(ctx, d)
	}
}

// Probe answers like ARP: every other holder and every foreign host.
func (v *fakeVIP) Probe(context.Context, time.Duration) ([]net.HardwareAddr, error) {
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	out := append([]net.HardwareAddr(nil), v.w.foreign...)
	now := bootClock()
	for n := range v.w.present {
		if n != v.node && v.w.answering(n, now) {
			out = append(out, net.HardwareAddr{2, 0, 0, 0, 0, byte(len(n))})
		}
	}
	return out, nil
}

// crash makes node's agent unable to release or close: as if it died
// with its fence open until the deadline it last wrote.
func (w *fakeWire) crash(node string) {
	w.mu.Lock()
	w.crashed[node] = true
	w.mu.Unlock()
}

func (v *fakeVIP) Release() error {
	v.w.mu.Lock()
	if !v.w.crashed[v.node] {
		v.w.deadline[v.node] = 0
		delete(v.w.present, v.node)
	}
	v.w.mu.Unlock()
	return nil
}

func (v *fakeVIP) Close() error { return v.Release() }

func (v *fakeVIP) Held() (bool, time.Duration, error) {
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	return v.w.present[v.node], time.Hour, nil
}

// fakeHealth is a switchable HealthReporter.
type fakeHealth struct {
	mu  sync.Mutex
	bad string
}

func (h *fakeHealth) set(bad string) { h.mu.Lock(); h.bad = bad; h.mu.Unlock() }
func (h *fakeHealth) Detail() any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]string{"fake": h.bad}
}

// Pending is true while bad starts with "pending:" (no verdict yet).
func (h *fakeHealth) Pending() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.HasPrefix(h.bad, "pending:")
}

func (h *fakeHealth) Healthy() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad == "", h.bad
}
